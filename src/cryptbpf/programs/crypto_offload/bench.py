"""crypto_offload: what each path costs and where the router settles.

1. In-XDP cost per op and size: BPF_PROG_TEST_RUN, one run per distinct
   request (the program rewrites the frame into the reply, so `repeat`
   would time replies), averaged; next to hashlib / hmac / `cryptography`
   computing the same in this process.
2. Round trips between two namespaces (native XDP on veth, the daemon as
   `cryptbpf offload serve`): closed-loop load forced to each path, latency
   percentiles and requests per second per op and size.
3. Convergence: mode auto, mixed sizes; the estimates both paths measured
   and the crossover per op that the XDP program then routes by.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import signal
import subprocess
import sys
import time
import uuid

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from ...bench import userspace_ns
from ...bpf import attach
from ... import lifecycle
from ...netns import VethPair, inside
from ...bpf.object import BpfObject
from . import control
from . import wire as P
from .client import Client, load_gen
from ...paths import ROOT, bpf_object
from ...bpf.pins import Pinned
from .spec import SPEC

SIZES = [64, 256, 512, 1024, 1400]
HMAC_ID, AEAD_ID = 1, 2
RUNS = 300            # distinct requests per (op, size) for the XDP cost
COUNT = 1500          # requests per (op, size, path) between namespaces
XDP_TX = 3


def _key_id(op: str) -> int:
    return {"sha256": 0, "hmac": HMAC_ID, "seal": AEAD_ID}[op]


def _userspace(op: str, keys: dict, data: bytes):
    if op == "sha256":
        return lambda: hashlib.sha256(data).digest()
    if op == "hmac":
        return lambda: hmac.new(keys["hmac"], data, hashlib.sha256).digest()
    aead, nonce = ChaCha20Poly1305(keys["aead"]), os.urandom(12)
    return lambda: aead.encrypt(nonce, data, b"")


def xdp_cost(echo) -> list[dict]:
    keys = {"hmac": os.urandom(32), "aead": os.urandom(32)}
    rows = []
    with BpfObject.open(str(bpf_object(SPEC.object))) as o:
        o.load()
        control.setup(o)
        control.install_key(o, HMAC_ID, "hmac", keys["hmac"])
        control.install_key(o, AEAD_ID, "aead", keys["aead"])
        prog = o.program("offload_xdp")
        for op in P.OPS:
            for size in SIZES:
                frames = [bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") /
                                UDP(sport=40000, dport=P.DEFAULT_PORT) /
                                P.request(op, os.urandom(size), req_id=i, key_id=_key_id(op),
                                          nonce=os.urandom(12) if op == "seal" else b""))
                          for i in range(RUNS)]
                total = 0
                for f in frames:
                    res = prog.test_run(data=f)
                    assert res.retval == XDP_TX, f"{op} {size}: verdict {res.retval}"
                    total += res.duration_ns
                base = userspace_ns(_userspace(op, keys, os.urandom(size)))
                rows.append({"name": f"offload {op}: XDP request -> reply (in-kernel)", "size": size,
                             "ns": total / RUNS, "baseline": f"{op} in Python (OpenSSL)",
                             "baseline_ns": base})
    return rows


class _Lab:
    """crypto-offload on B (native XDP), xdp_pass on A, keys, the daemon."""

    def __init__(self, echo):
        self.echo = echo
        self.pair = VethPair("cbb" + uuid.uuid4().hex[:5], subnet="10.214.9")
        self.keys = {"hmac": os.urandom(32), "aead": os.urandom(32)}

    @contextlib.contextmanager
    def up(self):
        self.pair.create()
        peer = BpfObject.open(str(ROOT / "build" / "tests" / "xdp_pass.bpf.o")).load()
        daemon = None
        try:
            with inside(self.pair.ns_a):
                p = peer.program("xdp_pass")
                attach.xdp_attach(p.fd, p.id, attach.ifindex(self.pair.dev_a), "drv")
            # native mode on purpose (the fast path measured); the peer end
            # has xdp_pass, which is what load's warning on veth asks for
            lifecycle.load(SPEC, self.pair.dev_b, netns=self.pair.ns_b, xdp_mode="drv",
                           warn=lambda _msg: None)
            with Pinned(SPEC.name) as h:
                control.install_key(h, HMAC_ID, "hmac", self.keys["hmac"])
                control.install_key(h, AEAD_ID, "aead", self.keys["aead"])
            daemon = subprocess.Popen([sys.executable, "-m", "cryptbpf.cli", "offload", "serve", "-q",
                                       "--netns", self.pair.ns_b, "--address", self.pair.addr_b],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 30
            while not self.state()["alive"]:
                if daemon.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("crypto-offload daemon did not start")
                time.sleep(0.05)
            yield self
        finally:
            if daemon and daemon.poll() is None:
                daemon.send_signal(signal.SIGTERM)
                try:
                    daemon.wait(10)
                except subprocess.TimeoutExpired:
                    daemon.kill()
            with contextlib.suppress(Exception):
                lifecycle.unload(SPEC.name)
            peer.close()
            self.pair.close()

    def state(self):
        with Pinned(SPEC.name) as h:
            return control.daemon_state(h)

    def config(self, **kw):
        with Pinned(SPEC.name) as h:
            control.write_config(h, **kw)

    def load(self, op: str, sizes, count: int) -> list[dict]:
        with Client(self.pair.addr_b, P.DEFAULT_PORT, self.pair.ns_a, timeout=1.0) as c:
            return load_gen(c, op, sizes, count, key_id=_key_id(op), window=4)


def round_trips(echo) -> list[dict]:
    rows, notes = [], []
    with _Lab(echo).up() as lab:
        by = {}
        for mode in ("kernel", "daemon"):
            lab.config(mode=mode)
            for op in P.OPS:
                for r in lab.load(op, SIZES, COUNT):
                    by[(mode, op, r["size"])] = r
        for op in P.OPS:
            for size in SIZES:
                k, d = by[("kernel", op, size)], by[("daemon", op, size)]
                ks, ds = k["paths"].get("kernel", {}), d["paths"].get("daemon", {})
                if not ks.get("count") or not ds.get("count"):
                    continue
                rows.append({"name": f"offload {op}: round trip p50, kernel path", "size": size,
                             "ns": ks["p50_us"] * 1000, "baseline": "daemon path p50",
                             "baseline_ns": ds["p50_us"] * 1000})
                notes.append({"name": f"offload {op} {size} B between namespaces",
                              "kernel_us_p50_p90_p99": (ks["p50_us"], ks["p90_us"], ks["p99_us"]),
                              "kernel_req_per_s": k["per_second"],
                              "daemon_us_p50_p90_p99": (ds["p50_us"], ds["p90_us"], ds["p99_us"]),
                              "daemon_req_per_s": d["per_second"],
                              "lost": k["lost"] + d["lost"], "errors": k["errors"] + d["errors"]})
        notes += _convergence(lab, echo)
    return rows + notes


def _convergence(lab: _Lab, echo) -> list[dict]:
    """Auto mode over mixed sizes until each bucket has measurements on
    both paths (exploration 1 in 8), then the crossover per op."""
    lab.config(mode="auto", explore_every=8, refresh_ms=500)
    sizes = [64 + 128 * k for k in range(11)] + [1440]     # every bucket a frame holds
    for _ in range(3):
        for op in P.OPS:
            lab.load(op, sizes, 200)
    with Pinned(SPEC.name) as h:
        cross = control.crossover(h)
        decisions = control.decisions(h)
    out = []
    for op, c in cross.items():
        est = {b["sizes"]: (b["kernel_ns"], b["daemon_ns"]) for b in c["buckets"]
               if b["kernel_samples"] and b["daemon_samples"]}
        out.append({"name": f"offload {op}: converged routing (auto)",
                    "crossover": c["crossover"] if c["crossover"] is not None
                    else "none: kernel faster wherever both paths were measured",
                    "estimates_ns_kernel_daemon": est})
    out.append({"name": "offload decisions during the run", **decisions})
    return out


# `cryptbpf bench` names these offload.<function> (`--only offload`)
BENCH_NAME = "offload"
BENCHMARKS = [xdp_cost, round_trips]
