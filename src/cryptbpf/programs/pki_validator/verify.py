"""`cryptbpf pki verify`: the kernel's verdict on a certificate chain,
without a network and without the program being loaded anywhere.

A private instance of build/bpf/pki_validator.bpf.o -- the object `load`
attaches -- is loaded (not attached), given a challenge key and the trust
anchors through the same control.py code as a loaded server, and its XDP
program pki_xdp is run with BPF_PROG_TEST_RUN on the frames a client would
send: HELLO, one CERT per certificate of the path (client.build_path), the
leaf. The verdict is the counter the program bumped; nothing is
re-implemented here. The proof of possession is not run (it needs the
leaf's private key and proves nothing about the chain).

Validation time: the program computes Unix time as
`bpf_ktime_get_tai_ns() - pki_cfg.tai_offset_ns`; pin_clock() publishes the
offset that makes that `at`, again before each certificate, so the
kernel's clock reads `at` for the whole check.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import asdict, dataclass, field

from cryptography import x509

from ...bpf.object import BpfObject
from ...errors import CryptbpfError
from ...paths import bpf_object
from . import control as admin
from .client import Peer, Rejected, build_path, der_of

NSEC = 1_000_000_000
XDP_TX = 3
SRC, DST = "192.0.2.1", "192.0.2.2"      # TEST-NET-1: the frames never leave the run
SRC_MAC, DST_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"


def parse_time(text: str) -> int:
    """Unix seconds from `@N`, `N` or ISO 8601 (`2026-01-31T12:00:00Z`; a
    time without offset is UTC; a date alone is its midnight UTC)."""
    t = text.strip()
    try:
        return int(t[1:] if t.startswith("@") else t)
    except ValueError:
        pass
    try:
        d = dt.datetime.fromisoformat(t.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise CryptbpfError(f"--at {text!r}: not a time (ISO 8601 like 2026-01-31T12:00:00Z, "
                            "or Unix seconds)") from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.timezone.utc)
    return int(d.timestamp())


def pin_clock(handle, at: int) -> None:
    """Make the program's Unix time read `at` for the next second: the
    offset it subtracts from CLOCK_TAI is published as tai_now - at."""
    if at <= 0:
        raise CryptbpfError(f"validation time {at} is not after 1970")
    admin._set_config(handle, tai_offset_ns=time.clock_gettime_ns(time.CLOCK_TAI) - at * NSEC,
                      clock_set=1)


class RunPeer(Peer):
    """The client's exchange (client.Peer) over BPF_PROG_TEST_RUN frames of
    pki_xdp instead of a socket; `before_send` runs before each frame."""

    def __init__(self, prog, src: str = SRC, before_send=None):
        self.L, self.prog, self.local_ip = admin.layout(), prog, src
        self.host, self.port = "BPF_PROG_TEST_RUN", self.L.const("PKI_CTRL_PORT")
        self.challenge, self.sent, self.last = None, [], None
        self.before_send = before_send

    def _exchange(self, payload: bytes, what: str) -> dict:
        from scapy.layers.inet import IP, UDP
        from scapy.layers.l2 import Ether
        self.sent.append(payload)
        if self.before_send:
            self.before_send()
        frame = bytes(Ether(src=SRC_MAC, dst=DST_MAC) / IP(src=self.local_ip, dst=DST) /
                      UDP(sport=40000, dport=self.port) / payload)
        r = self.prog.test_run(data=frame)
        self.last = r.retval
        if r.retval != XDP_TX:
            raise Rejected(what)
        data = r.data[len(frame) - len(payload):]
        m = self.L.unpack("struct pki_msg", data)
        m["body"] = data[self.L.const("PKI_MSG_LEN"):]
        return m


@dataclass
class Step:
    role: str            # "ca" or "leaf"
    subject: str
    serial: str
    result: str          # the counter pki_xdp bumped: cert_ok, expired, ...


@dataclass
class Verdict:
    accepted: bool
    reason: str          # "cert_ok", or the counter of the rejection
    at: int
    at_utc: str
    anchors: list[str]
    steps: list[Step] = field(default_factory=list)
    path_complete: bool = True   # build_path found a path to an anchor

    def to_dict(self) -> dict:
        return asdict(self)


def _moved(before: dict, after: dict) -> list[str]:
    return [k for k in after if after[k] != before[k] and k != "hello"]


def verify(leaf: x509.Certificate, chain: list[x509.Certificate],
           anchors: list[x509.Certificate], at: int | None = None) -> Verdict:
    """Run the chain through pki_xdp at Unix time `at` (now if None)."""
    if not anchors:
        raise CryptbpfError("give at least one --trust CA.pem")
    at = int(time.time()) if at is None else at
    path = build_path(leaf, chain, anchors)
    complete = path is not None
    if path is None:        # no path: send the best guess, the kernel says why
        path = build_path(leaf, chain)
    verdict = Verdict(False, "", at, dt.datetime.fromtimestamp(at, dt.timezone.utc).isoformat(),
                      [a.subject.rfc4514_string() for a in anchors], path_complete=complete)
    obj = BpfObject.open(str(bpf_object("pki_validator")))
    try:
        obj.load()
        admin.install_challenge_key(obj)
        admin.set_lifetime(obj, 3600)
        for a in anchors:
            admin.trust(obj, a)
        peer = RunPeer(obj.program("pki_xdp"), before_send=lambda: pin_clock(obj, at))
        peer.hello()
        for cert, leafp in [(c, False) for c in path] + [(leaf, True)]:
            s0 = admin.stats(obj)
            try:
                peer.send_cert(der_of(cert), leaf=leafp)
            except Rejected:
                pass
            moved = _moved(s0, admin.stats(obj))
            result = moved[0] if len(moved) == 1 else ",".join(moved) or "no verdict"
            verdict.steps.append(Step("leaf" if leafp else "ca", cert.subject.rfc4514_string(),
                                      f"{cert.serial_number:#x}", result))
            if result != "cert_ok":
                verdict.reason = result
                return verdict
    finally:
        obj.close()
    verdict.accepted, verdict.reason = True, "cert_ok"
    return verdict
