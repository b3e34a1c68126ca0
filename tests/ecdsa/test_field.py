import random, subprocess, sys
P = 2**256 - 2**224 + 2**192 + 2**96 - 1
special = [0, 1, 2, P-1, P-2, 2**256-2**224, 2**224, 2**192, 2**96, 2**96-1, P-2**96, 2**255, (P-1)//2, 0xffffffff, 2**32, P - 2**32]
vals = special + [random.randrange(P) for _ in range(200)] + [random.randrange(2**32) << random.randrange(0,224,32) for _ in range(50)]
vals = [v % P for v in vals]
cases = []
for _ in range(30000):
    a, b = random.choice(vals), random.choice(vals)
    if random.random() < 0.5: a = random.randrange(P)
    op = random.choice(["add", "sub", "mul", "sqr", "mulk"])
    if op == "mulk": b = random.choice([2, 3, 4, 8, 0, 1, 0xffff, random.randrange(1 << 16)])
    cases.append((op, a, b))
for a in special:
    for b in special:
        for op in ["add","sub","mul","sqr"]:
            cases.append((op,a,b))
    for k in (0, 1, 2, 3, 4, 8, 0xffff):
        cases.append(("mulk", a, k))
inp = "".join(f"{op} {a:064x} {b:064x}\n" for op, a, b in cases)
out = subprocess.run([sys.argv[1]], input=inp, capture_output=True, text=True, check=True).stdout.split()
bad = 0
for (op, a, b), o in zip(cases, out):
    exp = {"add": a + b, "sub": a - b, "mul": a * b, "sqr": a * a, "mulk": a * (b & 0xffff)}[op] % P
    if int(o, 16) != exp:
        bad += 1
        if bad < 10: print("FAIL", op, hex(a), hex(b), o, hex(exp))
print(len(cases), "cases,", bad, "failures")
sys.exit(1 if bad else 0)
