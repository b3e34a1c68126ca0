"""The peer: one-shot requests (`cryptbpf offload request`) and a closed-loop
load generator (`cryptbpf offload load-gen`) reporting latency percentiles
per serving path and size."""

from __future__ import annotations

import os
import select
import socket
import time
from dataclasses import dataclass, field
from typing import Iterable, Optional

from ...addresses import resolve_ipv4
from ...errors import CryptbpfError
from ...netns import inside
from . import wire as P


class Client:
    """A UDP socket towards one server. Replies are matched by request id."""

    def __init__(self, server: str, port: int = P.DEFAULT_PORT, netns: Optional[str] = None,
                 timeout: float = 1.0):
        self.addr = (server, port)
        self.timeout = timeout
        addr = (resolve_ipv4(server, "server"), port)
        with inside(netns):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._grow_receive_buffer(4 << 20)
        self.sock.connect(addr)
        self._next_id = int.from_bytes(os.urandom(4), "little") & 0x7fffffff

    def _grow_receive_buffer(self, size: int) -> None:
        """Room for a burst of replies. SO_RCVBUF is capped by rmem_max
        (~200 KiB), which holds only ~45 replies where XDP_TX'd frames
        arrive as page-sized skbs (veth on Linux 6.1); root may go past
        the cap with SO_RCVBUFFORCE."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), size)
        except PermissionError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def next_id(self) -> int:
        self._next_id = (self._next_id + 1) & 0xffffffff
        return self._next_id

    def send(self, payload: bytes) -> None:
        self.sock.send(payload)

    def recv(self, timeout: Optional[float] = None) -> Optional[bytes]:
        """One reply datagram, or None after `timeout` seconds."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.sock], [], [], left)
            if not ready:
                return None
            try:
                return self.sock.recv(65535)
            except ConnectionRefusedError:   # an ICMP error about an earlier datagram
                continue
        return None

    def exchange(self, payload: bytes, req_id: int, timeout: Optional[float] = None) -> Optional[P.Reply]:
        """Send a raw request payload; the reply with `req_id`, or None."""
        self.send(payload)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while (left := deadline - time.monotonic()) > 0:
            raw = self.recv(left)
            if raw is None:
                return None
            rep = P.parse_reply(raw)
            if rep.req_id == req_id:
                return rep
        return None

    def call(self, op: str | int, data: bytes = b"", *, key_id: int = 0,
             nonce: bytes = b"", aad: bytes = b"") -> tuple[P.Reply, int]:
        """One request; (reply, round-trip ns). Raises on timeout."""
        rid = self.next_id()
        t0 = time.perf_counter_ns()
        rep = self.exchange(P.request(op, data, req_id=rid, key_id=key_id, nonce=nonce, aad=aad), rid)
        if rep is None:
            raise CryptbpfError(f"no reply from {self.addr[0]}:{self.addr[1]} within {self.timeout}s")
        return rep, time.perf_counter_ns() - t0


# ---------------------------------------------------------------- load

@dataclass
class PathStats:
    latencies_ns: list[int] = field(default_factory=list)

    def summary(self) -> dict:
        lat = sorted(self.latencies_ns)
        if not lat:
            return {"count": 0}

        def pct(p: float) -> float:
            return round(lat[min(len(lat) - 1, int(p / 100 * len(lat)))] / 1000, 1)
        return {"count": len(lat), "p50_us": pct(50), "p90_us": pct(90), "p99_us": pct(99),
                "max_us": round(lat[-1] / 1000, 1)}


def load_gen(client: Client, op: str, sizes: Iterable[int], count: int, *, key_id: int = 0,
             aad_len: int = 0, window: int = 8, timeout: float = 1.0) -> list[dict]:
    """For each size, `count` requests with up to `window` outstanding
    (closed loop). Per size: requests/s, errors, lost, and latency
    percentiles per serving path (kernel / daemon)."""
    results = []
    for size in sizes:
        results.append(_run_size(client, op, size, count, key_id, aad_len, window, timeout))
    return results


def _run_size(client, op, size, count, key_id, aad_len, window, timeout) -> dict:
    data, aad = os.urandom(size), os.urandom(aad_len) if op == "seal" else b""
    paths: dict[str, PathStats] = {}
    pending: dict[int, int] = {}
    sent = errors = lost = 0
    t_start = time.perf_counter_ns()

    def send_one():
        nonlocal sent
        rid = client.next_id()
        nonce = os.urandom(P.NONCE_SIZE) if op == "seal" else b""
        payload = P.request(op, data, req_id=rid, key_id=key_id, nonce=nonce, aad=aad)
        pending[rid] = time.perf_counter_ns()
        client.send(payload)
        sent += 1

    while sent < min(window, count):
        send_one()
    while pending:
        raw = client.recv(timeout)
        now = time.perf_counter_ns()
        if raw is None:                   # everything outstanding is lost
            lost += len(pending)
            pending.clear()
        else:
            rep = P.parse_reply(raw)
            t0 = pending.pop(rep.req_id, None)
            if t0 is None:
                continue                  # a late reply to a request given up on
            if rep.ok:
                paths.setdefault(rep.path, PathStats()).latencies_ns.append(now - t0)
            else:
                errors += 1
        while sent < count and len(pending) < window:
            send_one()
    elapsed = (time.perf_counter_ns() - t_start) / 1e9
    return {"op": op, "size": size, "requests": count, "per_second": round(count / elapsed),
            "errors": errors, "lost": lost,
            "paths": {p: s.summary() for p, s in sorted(paths.items())}}
