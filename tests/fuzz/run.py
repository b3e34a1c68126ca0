"""`make fuzz SECONDS=N [PROGRAMS=...]`: each program's fuzzer for N seconds
with a fresh seed (printed), every disagreement printed with its frame;
exit status 1 if there was one."""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # tests/: fuzz, xdp_frames

from fuzz import TARGETS, load_target  # noqa: E402
from fuzz.engine import fuzz  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=10.0, help="per program")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("programs", nargs="*", default=list(TARGETS))
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else int.from_bytes(os.urandom(4), "little")
    bad = 0
    for name in a.programs:
        with load_target(name) as target:
            sent, found = fuzz(target, random.Random(seed), until=time.time() + a.seconds)
        print(f"{name}: {sent} frames, {len(found)} disagreements (seed {seed})")
        for d in found:
            print(d)
        bad += len(found)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
