"""`cryptbpf offload serve`: answers the requests XDP passes up, with the
CPU's crypto instructions through hashlib / hmac / `cryptography`, and
tells the XDP program how fast it is.

Per request the daemon measures its latency from the kernel's receive
timestamp of the datagram (SO_TIMESTAMPNS: the moment the stack took it
from XDP) to the reply having been handed to the kernel, folds it into an
EWMA per (op, size bucket), and publishes that into `daemon_cost`. A
heartbeat (CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns) goes into
`offload_daemon` at least every HEARTBEAT_S; a clean exit writes 0 so the
kernel stops passing requests at once, a crash is noticed when the
heartbeat goes stale.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import time
from typing import Callable, Optional

from ...errors import CryptbpfError
from ...netns import inside
from . import control
from . import wire as P

HEARTBEAT_S = 0.1
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESPEC = struct.Struct("@qq")


class Daemon:
    def __init__(self, handle, address: str = "0.0.0.0", port: int = P.DEFAULT_PORT,
                 netns: Optional[str] = None, delay_us: int = 0,
                 log: Callable[[str], None] = lambda _m: None):
        self.handle = handle
        self.delay_s = delay_us / 1e6
        self.log = log
        self.keys = handle.map("offload_keys")
        self.costs = handle.map("daemon_cost")
        self.heart = handle.map("offload_daemon")
        self.shift = control.read_config(handle)["ewma_shift"]
        self.est = control.read_costs(handle, "daemon_cost")
        self.served = 0
        self._last_beat = 0.0
        with inside(netns):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            # no SO_REUSEADDR: a second daemon on the port must fail, not
            # silently share it
            self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            self.sock.bind((address, port))
        except OSError as e:
            self.sock.close()
            raise CryptbpfError(f"cannot listen on {address}:{port}: {e.strerror}") from None

    # ---- lifecycle ----
    def serve(self, stop: Callable[[], bool] = lambda: False) -> None:
        """Answer requests until stop() is true (checked every heartbeat)."""
        self.beat(force=True)
        while not stop():
            ready, _, _ = select.select([self.sock], [], [], HEARTBEAT_S)
            if ready:
                self.handle_one()
            self.beat()

    def close(self) -> None:
        """Tell the kernel the daemon is gone (heartbeat 0, unless another
        daemon has taken over meanwhile), close the socket."""
        try:
            cur = P.L.unpack("struct offload_daemon", self.heart.lookup(0))
            if cur["pid"] in (0, os.getpid()):
                self.heart.update(0, P.L.pack("struct offload_daemon", heartbeat_ns=0, pid=0))
        finally:
            self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def beat(self, force: bool = False) -> None:
        t = time.monotonic()
        if force or t - self._last_beat >= HEARTBEAT_S:
            self._last_beat = t
            self.heart.update(0, P.L.pack("struct offload_daemon",
                                          heartbeat_ns=control.now_ns(), pid=os.getpid()))

    # ---- one request ----
    def handle_one(self) -> None:
        data, anc, _flags, addr = self.sock.recvmsg(65535, 64)
        rx_ns = _rx_timestamp(anc) or time.time_ns()
        keys: dict[int, Optional[tuple[int, bytes]]] = {}

        def key_type(key_id: int):
            keys[key_id] = control.key_lookup(self.keys, key_id)
            return keys[key_id][0] if keys[key_id] else None

        req, status = P.parse_request(data, key_type)
        if req is None:
            return                          # no request id: drop, like XDP
        result = b""
        if status == P.OK:
            key = keys[req.key_id][1] if req.op != P.OP_SHA256 else None
            result = P.answer(req, key)
        if self.delay_s:
            time.sleep(self.delay_s)        # --delay-us: an artificially slow daemon
        self.sock.sendto(P.reply(req.op, req.req_id, status, P.BY_DAEMON, result), addr)
        if status == P.OK:
            self.served += 1
            self.record(req, time.time_ns() - rx_ns)

    def record(self, req: P.Request, latency_ns: int) -> None:
        """Fold one latency into the EWMA (same rule as the kernel's) and
        publish it for the XDP program."""
        idx = P.cost_index(req.op, P.size_of(req.op, len(req.data), len(req.aad)))
        # read-modify-write: the map is the record (an operator may reset
        # an estimate); one lookup costs ~2 us against a ~50 us answer
        raw = self.costs.lookup(idx)
        e = P.L.unpack("struct offload_cost", raw) if raw else self.est[idx]
        latency_ns = max(latency_ns, 1)
        if e["samples"] == 0:
            e["ewma_ns"] = latency_ns
        else:
            e["ewma_ns"] += (latency_ns - e["ewma_ns"]) >> self.shift
        e["samples"] += 1
        control.write_cost(self.costs, idx, e["ewma_ns"], e["samples"], control.now_ns())


def _rx_timestamp(ancillary) -> Optional[int]:
    """The kernel's receive time (CLOCK_REALTIME ns) from SCM_TIMESTAMPNS."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            sec, nsec = _TIMESPEC.unpack_from(data)
            return sec * 1_000_000_000 + nsec
    return None
