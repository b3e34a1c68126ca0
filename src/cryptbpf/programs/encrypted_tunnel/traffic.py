"""Real traffic between network namespaces, for the tunnel's tests, demo
and benchmark: ICMP echo of chosen sizes, a TCP transfer, UDP datagrams,
an AF_PACKET capture and raw re-injection. Every socket is created inside
its namespace (netns.inside) and then used from any thread; every wait has
a timeout."""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

from ...netns import inside

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_QDISC_BYPASS = 20
IP_MTU_DISCOVER, IP_PMTUDISC_DO = 10, 2


def _icmp_checksum(data: bytes) -> int:
    if len(data) & 1:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


class Pinger:
    """ICMP echo from namespace `ns` to `dst` with the DF bit set (no local
    fragmentation: a size that does not fit the route MTU fails to send)."""

    def __init__(self, ns: str, dst: str, ident: int | None = None):
        with inside(ns):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        self.sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
        self.dst = dst
        self.ident = ident if ident is not None else os.getpid() & 0xFFFF
        self.seq = 0

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def echo(self, payload: bytes, timeout: float = 1.0) -> bool:
        """True when the matching echo reply with the same payload arrives."""
        self.seq = (self.seq + 1) & 0xFFFF
        hdr = struct.pack("!BBHHH", 8, 0, 0, self.ident, self.seq)
        msg = hdr[:2] + struct.pack("!H", _icmp_checksum(hdr + payload)) + hdr[4:] + payload
        self.sock.sendto(msg, (self.dst, 0))     # OSError EMSGSIZE if it cannot fit
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65535)
            except socket.timeout:
                return False
            icmp = data[(data[0] & 0xF) * 4:]
            if icmp[0] == 0 and struct.unpack("!HH", icmp[4:8]) == (self.ident, self.seq):
                return icmp[8:] == payload
        return False


def tcp_transfer(ns_src: str, ns_dst: str, dst: str, data: bytes, port: int = 5601,
                 chunk: int = 65536, pace: float = 0.0, timeout: float = 60.0) -> bytes:
    """Send `data` over TCP from ns_src to dst:port in ns_dst; returns the
    SHA-256 of what the receiver read. `pace` seconds between chunks."""
    with inside(ns_dst):
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((dst, port))
        srv.listen(1)
    with inside(ns_src):
        cli = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.settimeout(timeout)
    cli.settimeout(timeout)
    result: dict = {}

    def receive():
        try:
            conn, _ = srv.accept()
            conn.settimeout(timeout)
            h = hashlib.sha256()
            with conn:
                while b := conn.recv(1 << 16):
                    h.update(b)
            result["digest"] = h.digest()
        except OSError as e:
            result["error"] = e

    t = threading.Thread(target=receive)
    t.start()
    try:
        cli.connect((dst, port))
        for i in range(0, len(data), chunk):
            cli.sendall(data[i:i + chunk])
            if pace:
                time.sleep(pace)
        cli.shutdown(socket.SHUT_WR)
        t.join(timeout)
    finally:
        cli.close()
        srv.close()
    if "error" in result:
        raise result["error"]
    return result.get("digest", b"")


def udp_exchange(ns_src: str, ns_dst: str, dst: str, payloads: list[bytes],
                 port: int = 5602, timeout: float = 2.0) -> list[bytes]:
    """Send each datagram from ns_src to dst:port (one at a time); returns
    what arrived."""
    with inside(ns_dst):
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.bind((dst, port))
    with inside(ns_src):
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.settimeout(timeout)
    got = []
    with rx, tx:
        for p in payloads:
            tx.sendto(p, (dst, port))
            try:
                got.append(rx.recv(65535))
            except socket.timeout:
                pass
    return got


@dataclass
class Capture:
    """AF_PACKET capture of every frame on `dev` (both directions) in `ns`,
    in a background thread, until stop()."""
    ns: str
    dev: str
    frames: list = field(default_factory=list)   # (pkttype, bytes)

    def __enter__(self):
        with inside(self.ns):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            self.sock.bind((self.dev, ETH_P_ALL))
        self.sock.settimeout(0.1)
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            self.frames.append((addr[2], data))

    def stop(self):
        time.sleep(0.2)       # let the last frames in
        self._stop.set()
        self._t.join()
        self.sock.close()

    def __exit__(self, *exc):
        if not self._stop.is_set():
            self.stop()

    def ipv4_between(self, a: str, b: str) -> list[bytes]:
        """IPv4 packets (no Ethernet header) between a and b, either way."""
        ends = {socket.inet_aton(a), socket.inet_aton(b)}
        return [f[14:] for _, f in self.frames
                if f[12:14] == b"\x08\x00" and {f[26:30], f[30:34]} == ends]


def inject(ns: str, dev: str, frame: bytes) -> None:
    """Put a raw frame on the wire of `dev`, bypassing the qdisc layer and
    so TC egress: what a man in the middle would send."""
    with inside(ns):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    with s:
        s.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
        s.bind((dev, 0))
        s.send(frame)
