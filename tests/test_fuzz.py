"""Bounded differential fuzzing (tests/fuzz/): per program, a fixed seed and
count of valid, mutated and random frames through BPF_PROG_TEST_RUN, each
verdict and each counter equal to the program's Python model. A few
seconds per program; `make fuzz SECONDS=N` runs longer with fresh seeds."""

from __future__ import annotations

import os
import random

import pytest

from cryptbpf import programs

from conftest import require_feature, require_root
from fuzz import TARGETS, load_target
from fuzz.engine import MUTATIONS, fuzz

SEED = 20261204
# ~2-3 s per program here; the emulated guest (CRYPTBPF_VM_SUBSET=vm, tests/vmrun.py)
# is an order of magnitude slower: fewer frames there
COUNT = 300 if os.environ.get("CRYPTBPF_VM_SUBSET") == "vm" else 1500


@pytest.mark.parametrize("name", TARGETS)
def test_program_agrees_with_its_model(name):
    require_root()
    for f in programs.discover()[name.replace("_", "-")].requires:
        require_feature(f)
    with load_target(name) as target:
        sent, found = fuzz(target, random.Random(SEED), count=COUNT)
    assert sent == COUNT
    assert not found, "\n".join(str(d) for d in found)


def test_the_model_can_disagree():
    """A model that is wrong on purpose is caught (the comparison is live)."""
    require_root()
    require_feature("bpf_loop")

    with load_target("zkp_filter") as target:
        real = target.expect
        target.expect = lambda frame: (lambda v, d: (v, {**d, "passed": d.get("passed", 0) + 1}))(*real(frame))
        _, found = fuzz(target, random.Random(SEED), count=20, stop_at=1)
    assert found and found[0].kind == "counters"


def test_every_mutation_changes_frames():
    rng = random.Random(SEED)
    from xdp_frames import udp_frame
    f = udp_frame(b"x" * 40, 7227)
    for name, m in MUTATIONS.items():
        assert any(m(rng, f) != f for _ in range(20)), name
