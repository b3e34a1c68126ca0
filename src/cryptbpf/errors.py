"""Exception family for everything libbpf and the kernel can refuse.

Modelled on pyca/cryptography and cilium/ebpf: one base error carrying errno,
a "not supported" error naming the feature and the kernel that added it, and a
verifier error whose message shows the relevant tail of the verifier log while
keeping the whole log available.
"""

from __future__ import annotations

import errno as _errno
import os


class CryptbpfError(Exception):
    """Base of every error cryptbpf raises on purpose."""


class BpfError(CryptbpfError):
    """A libbpf or bpf(2) call failed; `errno` says why."""

    def __init__(self, what: str, err: int, detail: str = ""):
        self.what = what
        self.errno = abs(err)
        reason = os.strerror(self.errno) if self.errno else "unknown error"
        msg = f"{what}: {reason} (errno {self.errno})"
        hint = _HINTS.get(self.errno) if os.geteuid() != 0 else None
        if detail:
            msg += f": {detail}"
        elif hint:
            msg += f" -- {hint}"
        super().__init__(msg)


_HINTS = {
    _errno.EPERM: "run as root (needs CAP_BPF and CAP_NET_ADMIN)",
    _errno.EACCES: "permission denied by the kernel (root? lockdown?)",
}


class NotSupportedError(CryptbpfError):
    """This kernel lacks a feature cryptbpf needs."""

    def __init__(self, feature: str, since: str | None = None, detail: str = ""):
        self.feature = feature
        self.since = since
        msg = f"{feature} is not supported by this kernel"
        if since:
            msg += f" (needs Linux {since} or newer)"
        if detail:
            msg += f": {detail}"
        super().__init__(msg)


class VerifierError(BpfError):
    """The verifier refused a program. `log` is the complete libbpf/verifier
    output; str(err) shows only its last lines, where the reason is."""

    TAIL_LINES = 20

    def __init__(self, what: str, err: int, log: str):
        self.log = log
        super().__init__(what, err, "verifier log tail:\n" + self.tail())

    def tail(self, lines: int | None = None) -> str:
        body = _verifier_section(self.log)
        keep = body.splitlines()[-(lines or self.TAIL_LINES):]
        return "\n".join(keep)


def _verifier_section(log: str) -> str:
    """The program load log between libbpf's BEGIN/END markers, if present."""
    start = log.find("-- BEGIN PROG LOAD LOG --")
    end = log.find("-- END PROG LOAD LOG --")
    if start != -1 and end != -1:
        return log[start + len("-- BEGIN PROG LOAD LOG --"):end].strip("\n")
    return log.strip("\n")
