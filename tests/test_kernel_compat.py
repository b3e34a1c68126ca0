"""What each program says it needs from the kernel is the truth: on any
kernel that has every feature in its `requires`, the verifier accepts the
object; on one that lacks a feature, `cryptbpf doctor` names it. Runs on
the host and in the virtme-ng guests (docs/kernel_compat.md)."""

from __future__ import annotations

import pytest

from cryptbpf.bpf import kernel
from cryptbpf import paths
from cryptbpf.doctor import program_report
from cryptbpf.bpf.elf_features import object_features
from cryptbpf.programs import discover

from conftest import require_root

SPECS = discover()


@pytest.mark.parametrize("name", sorted(SPECS))
def test_program_loads_wherever_its_requirements_are_met(name):
    require_root()
    spec = SPECS[name]
    missing = kernel.missing(spec.requires)
    rep = program_report(spec, privileged=True)
    if missing:
        assert rep["runnable"] is False and "missing" in rep["reason"]
        for feature in missing:
            assert kernel.FEATURES[feature].what in rep["reason"]
        pytest.skip(f"{name} needs {kernel.describe(missing)}, which kernel {kernel.release()} lacks")
    assert rep["loads"], (f"{name}: kernel {kernel.release()} has everything it requires "
                          f"({', '.join(spec.requires)}) but {rep['reason']}")
    assert rep["runnable"] is True


@pytest.mark.parametrize("name", sorted(n for n, s in SPECS.items() if s.optional))
def test_doctor_names_the_parts_this_kernel_cannot_run(name):
    """A program that loads but lacks an optional part here (the tunnel's
    AES suite on 6.1) is reported runnable, with that part and the missing
    features named; on a kernel with everything, nothing is listed."""
    require_root()
    spec = SPECS[name]
    if kernel.missing(spec.requires):
        pytest.skip(f"{name} does not run on kernel {kernel.release()} at all")
    rep = program_report(spec, privileged=True)
    expected = {what: kernel.missing(f) for what, f in spec.optional.items() if kernel.missing(f)}
    assert rep["runnable"] is True and set(rep["unavailable"]) == set(expected)
    for what, missing in expected.items():
        for feature in missing:
            assert kernel.FEATURES[feature].what in rep["unavailable"][what]


def test_every_requirement_names_a_probed_feature():
    for name, spec in SPECS.items():
        unknown = [f for f in spec.requires + sum(spec.optional.values(), [])
                   if f not in kernel.FEATURES]
        assert not unknown, f"{name} requires unknown features {unknown}"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_requires_declares_every_feature_the_object_uses(name):
    """doctor and the minimum kernel trust `requires`: a helper or kfunc the
    object calls but the spec does not declare would make a kernel without
    it look supported until the verifier refused the program."""
    spec = SPECS[name]
    used, _optional = object_features(paths.bpf_object(spec.object))
    undeclared = sorted(used - set(spec.requires))
    assert not undeclared, f"{name}'s object uses {undeclared}, not in its ProgramSpec.requires"


@pytest.mark.parametrize("feature", sorted(kernel.FEATURES))
def test_feature_probe_agrees_with_the_kernel_version(feature):
    """A mainline feature the kernel is new enough for must probe as present
    (conftest.require_feature relies on it); one it is too old for must not,
    unless the distribution backported it (reported, not failed)."""
    f = kernel.FEATURES[feature]
    if f.since is None:
        pytest.skip(f"{feature} is out of tree: present only on patched kernels")
    if kernel.should_have(feature):
        assert kernel.has(feature), f"Linux {kernel.release()} >= {f.since} but {feature} probes as missing"
    elif kernel.has(feature):
        pytest.skip(f"{feature} (mainline {f.since}) present on {kernel.release()}: backported")
