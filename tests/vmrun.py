"""pytest plumbing for running the suite against other kernels
(docs/kernel_compat.md), imported by conftest.py:

- `--vm-kernel PATH` runs this very pytest invocation inside a virtme-ng
  guest booted with PATH (scripts/vm-test) and returns its result;
- `--results-json PATH` writes what scripts/compat-table reads: the kernel,
  its features, what `cryptbpf doctor` says about each program, and every
  test's outcome (with the skip reason);
- the `host_only` marker: tests that do not depend on the running kernel
  (pure Python, C compiled for the host, CLI argument checks). The guest run
  under software emulation deselects them (`-m "not host_only"`); the host
  run covers them. HOST_ONLY below marks tests in modules owned by others,
  so that adding a program never edits this list;
- in that subset (CRYPTBPF_VM_SUBSET=vm), starting the CLI as a subprocess
  skips the test with the reason (CLI_SKIP)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# nodeid prefixes of kernel-independent tests, with the reason they are.
HOST_ONLY = {
    "tests/test_layout.py": "cffi vs the objects' BTF: reads files, loads nothing",
    "tests/test_ecdsa_p256.py::test_arithmetic_hosted": "C field arithmetic compiled for the host",
    "tests/test_ecdsa_p256.py::test_p256_py": "Python P-256 helpers",
    "tests/test_cli.py::test_keys_new": "key file creation",
    "tests/test_cli.py::test_world_readable": "key file permission check",
    "tests/test_cli.py::test_not_root": "privilege message",
    "tests/test_cli.py::test_programs_lists": "program discovery",
    "tests/test_cli.py::test_errors_are_one_line": "argument checks before the kernel is asked "
                                                   "(one case expects the key check to come first: "
                                                   "on a kernel without bpf_crypto the feature check does)",
}


def pytest_addoption(parser):
    g = parser.getgroup("cryptbpf kernels")
    g.addoption("--vm-kernel", metavar="PATH", default=None,
                help="run the suite inside a virtme-ng guest booted with this kernel image "
                     "(or a Debian series such as 6.1); see docs/kernel_compat.md")
    g.addoption("--results-json", metavar="PATH", default=None,
                help="write the kernel, its features, the doctor report and every test's "
                     "outcome to PATH (read by scripts/compat-table)")


CLI_SKIP = ("starts the cryptbpf CLI as a subprocess: ~15 s per call under software "
            "emulation; the CLI's Python is kernel-independent and runs on the host "
            "(docs/kernel_compat.md)")


def _skip_cli_subprocesses():
    """In the emulated guest's subset, a test that starts `python -m
    cryptbpf.cli` (other than `doctor`, whose verdicts are the point of
    running on another kernel) is skipped when it does so."""
    real_init = subprocess.Popen.__init__

    def init(self, args, *a, **kw):
        argv = [str(x) for x in args] if isinstance(args, (list, tuple)) else str(args).split()
        if "cryptbpf.cli" in argv and "doctor" not in argv:
            pytest.skip(CLI_SKIP)
        real_init(self, args, *a, **kw)

    subprocess.Popen.__init__ = init


def pytest_configure(config):
    # (the host_only marker itself is registered in pyproject.toml)
    if os.environ.get("CRYPTBPF_VM_SUBSET") == "vm":
        _skip_cli_subprocesses()
    if config.getoption("results_json"):
        config.pluginmanager.register(ResultsRecorder(config), "cryptbpf-results")


def pytest_cmdline_main(config):
    kernel = config.getoption("vm_kernel")
    if not kernel or os.environ.get("CRYPTBPF_VM"):
        return None
    # the guest writes its own results (build/vm/<release>/summary.json)
    args = _strip_option(list(config.invocation_params.args), "--vm-kernel")
    args = _strip_option(args, "--results-json")
    return subprocess.call([str(ROOT / "scripts" / "vm-test"), kernel, *args], cwd=ROOT)


def _strip_option(args: list[str], name: str) -> list[str]:
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a == name:
            skip = True
        elif not a.startswith(name + "="):
            out.append(a)
    return out


def pytest_collection_modifyitems(config, items):
    for item in items:
        for prefix, why in HOST_ONLY.items():
            if item.nodeid.startswith(prefix):
                item.add_marker(pytest.mark.host_only(reason=why))
                break


class ResultsRecorder:
    def __init__(self, config):
        self.config = config
        self.path = Path(config.getoption("results_json"))
        self.tests: dict[str, dict] = {}
        self.start = time.time()
        self.deselected = 0

    def pytest_deselected(self, items):
        self.deselected += len(items)

    def pytest_runtest_logreport(self, report):
        t = self.tests.setdefault(report.nodeid, {"outcome": "passed", "duration": 0.0})
        t["duration"] = round(t["duration"] + report.duration, 3)
        if hasattr(report, "wasxfail"):
            t["outcome"] = "xfailed" if report.skipped else "xpassed"
            t["reason"] = report.wasxfail
        elif report.skipped:
            t["outcome"] = "skipped"
            if isinstance(report.longrepr, tuple):
                t["reason"] = report.longrepr[2].removeprefix("Skipped: ")
        elif report.failed:
            t["outcome"] = "failed" if report.when == "call" else "error"
            lines = (report.longreprtext or "").strip().splitlines()
            t["reason"] = lines[-1][:300] if lines else ""

    def pytest_sessionfinish(self, session, exitstatus):
        from cryptbpf.bpf import kernel
        from cryptbpf.doctor import program_report
        from cryptbpf.programs import discover

        specs = discover()
        priv = kernel.privileged()
        data = {
            "kernel": kernel.release(),
            "machine": platform.machine(),
            "vm": os.environ.get("CRYPTBPF_VM") or None,     # accel in the guest, None on a host
            "markexpr": self.config.getoption("markexpr") or "",
            "args": list(self.config.invocation_params.args),
            "exitstatus": int(exitstatus),
            "duration_s": round(time.time() - self.start, 1),
            "deselected": self.deselected,
            "features": {n: kernel.has(n) for n in kernel.FEATURES},
            "programs": {},
            "tests": self.tests,
        }
        for name, spec in specs.items():
            rep = program_report(spec, priv)
            rep.pop("summary", None)
            rep["object"] = spec.object
            data["programs"][name] = rep
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        tmp.replace(self.path)
