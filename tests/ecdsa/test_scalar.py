import random, subprocess, sys
N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
R = 2**256
sp = [1, 2, 3, N-1, N-2, (N-1)//2, (N+1)//2, 2**255, 2**128, 2**32, 2**32-1, 0xffffffff << 224, 2**200+1]
cases = []
for _ in range(20000):
    op = random.choice(["mont", "inv"])
    a = random.choice(sp + [random.randrange(1, N)] * 10)
    b = random.choice(sp + [random.randrange(N)] * 10)
    if op == "mont" and random.random() < 0.3: a = random.randrange(2**256)
    cases.append((op, a, b))
inp = "".join(f"{op} {a:064x} {b:064x}\n" for op, a, b in cases)
out = subprocess.run([sys.argv[1]], input=inp, capture_output=True, text=True, check=True).stdout.splitlines()
bad = 0; maxsteps = 0; tot = 0; ninv = 0
for (op, a, b), line in zip(cases, out):
    o, steps = line.split(); o = int(o, 16); steps = int(steps)
    exp = a * b * pow(R, -1, N) % N if op == "mont" else pow(a, -1, N)
    if op == "inv": maxsteps = max(maxsteps, steps); tot += steps; ninv += 1
    if o != exp:
        bad += 1
        if bad < 10: print("FAIL", op, hex(a), hex(b), hex(o), hex(exp))
print(len(cases), "cases,", bad, "failures; inv steps max", maxsteps, "avg", tot / max(ninv, 1))
sys.exit(1 if bad else 0)
