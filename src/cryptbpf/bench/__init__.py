"""`make bench` / `cryptbpf bench`: every module here with a `BENCHMARKS`
list (the primitives') and every program package's `bench` module is
discovered and run; results go to OUT.json and OUT.md.

A benchmark is a function `bench(echo) -> list[dict]`; each row has at least
`name`, `size` (bytes), `ns` (per operation) and optionally `baseline_ns`
(the userspace counterpart measured in the same run) -- so every figure is
a ratio against something measured at the same moment on the same machine.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import pkgutil
import platform
import time
from pathlib import Path

from ..bpf import kernel
from ..crypto.kernel_ciphers import primitive_paths


def _modules():
    """Benchmark modules by name: the primitives' here (sha2, chacha, ...)
    and each program package's `bench`, under its BENCH_NAME."""
    from .. import programs
    found = {}
    for mod in pkgutil.iter_modules(__path__):
        if not mod.name.startswith("_"):
            found[mod.name] = importlib.import_module(f"{__name__}.{mod.name}")
    for mod in pkgutil.iter_modules(programs.__path__):
        if mod.ispkg and importlib.util.find_spec(f"{programs.__name__}.{mod.name}.bench"):
            m = importlib.import_module(f"{programs.__name__}.{mod.name}.bench")
            found[m.BENCH_NAME] = m
    return dict(sorted(found.items()))


def discover():
    for name, m in _modules().items():
        for fn in getattr(m, "BENCHMARKS", []):
            yield f"{name}.{fn.__name__}", fn


def mbps(size: int, ns: float) -> float:
    return size / ns * 1e3 if ns else 0.0  # bytes/ns -> MB/s


def userspace_ns(fn, min_time: float = 0.2) -> float:
    """Per-call time of `fn()` in userspace, best of 3 timed batches."""
    n = 1
    while True:  # calibrate a batch that takes ~min_time/3
        t0 = time.perf_counter_ns()
        for _ in range(n):
            fn()
        dt = time.perf_counter_ns() - t0
        if dt > min_time * 1e9 / 3:
            break
        n *= 4
    best = dt / n
    for _ in range(2):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter_ns() - t0) / n)
    return best


def bpf_each_ns(prog, frames: list[bytes], want: int) -> float:
    """Mean BPF_PROG_TEST_RUN time over `frames`, one run each: for packets
    that change program state (a used proof, a solved puzzle), which a
    `repeat` run would judge differently after the first iteration."""
    total = 0
    for f in frames:
        r = prog.test_run(data=f)
        assert r.retval == want, f"unexpected verdict {r.retval}"
        total += r.duration_ns
    return total / len(frames)


def bpf_repeat_ns(prog, frame: bytes, want: int, repeat: int) -> float:
    """Best of 3 BPF_PROG_TEST_RUNs of `repeat` iterations (shared machine)."""
    best = None
    for _ in range(3):
        r = prog.test_run(data=frame, repeat=repeat)
        assert r.retval == want, f"unexpected verdict {r.retval}"
        best = r.duration_ns if best is None else min(best, r.duration_ns)
    return best


def _table(rows: list[dict]) -> str:
    lines = ["| benchmark | size (B) | BPF ns/op | BPF MB/s | userspace | userspace MB/s | BPF/userspace |",
             "|---|---:|---:|---:|---|---:|---:|"]
    for r in rows:
        base = r.get("baseline_ns")
        lines.append("| {} | {} | {:.0f} | {:.0f} | {} | {} | {} |".format(
            r["name"], r["size"], r["ns"], mbps(r["size"], r["ns"]),
            r.get("baseline", ""), f"{mbps(r['size'], base):.0f}" if base else "",
            f"{base / r['ns']:.2f}" if base else ""))
    return "\n".join(lines)


def run_all(out: Path, only: list[str], echo) -> list[dict]:
    rows, extra = [], []
    for name, fn in discover():
        if only and not any(name.startswith(o) for o in only):
            continue
        echo(f"running {name} ...")
        res = fn(echo)
        rows += [r for r in res if "ns" in r]
        extra += [r for r in res if "ns" not in r]
    meta = {"kernel": kernel.release(), "machine": platform.machine(),
            "processor": platform.processor(), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "primitives": primitive_paths()}
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.json").write_text(json.dumps({"meta": meta, "results": rows, "notes": extra}, indent=2))
    md = [f"# cryptbpf benchmarks\n", f"Kernel {meta['kernel']}, {meta['machine']}, {meta['time']}. "
          "BPF figures: BPF_PROG_TEST_RUN average over `repeat` runs (one CPU); userspace: "
          "best of 3 batches, same run. Ratio > 1 means BPF is faster.\n",
          "Paths: " + "; ".join(f"{k}: {v}" for k, v in meta["primitives"].items()) + "\n",
          _table(rows), ""]
    for n in extra:
        md.append(f"- {n['name']}: " + ", ".join(f"{k}={v}" for k, v in n.items() if k != "name"))
    Path(f"{out}.md").write_text("\n".join(md) + "\n")
    echo(_table(rows))
    echo(f"\nwrote {out}.json and {out}.md")
    return rows
