"""A WireGuard interface's handshake side (wireguard-go's Device): the UDP
sockets on the listen port (IPv4 and IPv6; the data plane takes transport
messages before they reach them, handshake messages arrive here), the
peers, the index table, mac1/mac2/cookie checks and rate limiting under
load, and a select() loop that also serves the data plane's events and
runs the timers.

    dev = Device(config.parse(text, "wg0"))     # data plane: open_dataplane
    dev.run(stop.is_set)                        # until stop is set
    dev.close()
"""

from __future__ import annotations

import collections
import errno
import os
import select
import socket
import struct
import sys
import time

from ...errors import CryptbpfError
from . import dataplane as dataplane_mod
from .config import InterfaceConfig
from .cookie import CookieChecker
from .noise import (HandshakeError, MessageCookieReplySize, MessageCookieReplyType, MessageInitiationSize,
                    MessageInitiationType, MessageResponseSize, MessageResponseType, StaticIdentity,
                    message_type, open_initiation, receiver_index)
from .peer import Peer
from .ratelimiter import Ratelimiter
from .timers import UNDER_LOAD_AFTER_TIME

TICK = 0.1                          # seconds between timer checks
UNDER_LOAD_THRESHOLD = 128          # handshake messages a second (wireguard-go: a queue 1/8 full)
_SIZES = {MessageInitiationType: MessageInitiationSize, MessageResponseType: MessageResponseSize,
          MessageCookieReplyType: MessageCookieReplySize}


class Device:
    def __init__(self, cfg: InterfaceConfig, make_dataplane=dataplane_mod.open_dataplane,
                 clock=time.monotonic, log=None):
        self.cfg, self.clock = cfg, clock
        self.log = log or (lambda msg: print(f"{cfg.name}: {msg}", file=sys.stderr, flush=True))
        self.identity = StaticIdentity(cfg.private_key)
        self.checker = CookieChecker(self.identity.public_key, clock)
        self.ratelimiter = Ratelimiter()
        self.under_load_threshold = UNDER_LOAD_THRESHOLD
        # handshake messages refused or answered otherwise, by reason
        self.counters = dict.fromkeys(("malformed", "mac1_invalid", "cookie_replies_sent", "ratelimited",
                                       "refused", "unknown_peer", "cookie_replies_taken"), 0)
        self._load_window: list[float] = []
        self._under_load_until = -1.0
        self._indices: dict[int, Peer] = {}
        self.peers: dict[int, Peer] = {}
        self._by_key: dict[bytes, Peer] = {}
        self.socks: list[socket.socket] = []
        self.dp = None
        self._handshake_requests: collections.deque[int] = collections.deque()
        try:
            self.listen_port = self._open_sockets(cfg.listen_port or 0)
            self.dp = make_dataplane(cfg, self.listen_port)
            for peer_id, pc in enumerate(cfg.peers, 1):
                peer = Peer(peer_id, pc, self.identity, self.dp, self, clock)
                self.dp.set_peer(peer_id, pc.public_key, pc.endpoint, pc.allowed_ips)
                self.peers[peer_id] = self._by_key[pc.public_key] = peer
            for peer in self.peers.values():
                if peer.cfg.persistent_keepalive:      # wireguard-go: a keepalive when the device comes up
                    peer.send_keepalive()
        except BaseException:
            self.close()
            raise

    # ---- sockets ----
    def _open_sockets(self, port: int) -> int:
        s4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socks.append(s4)
        try:
            s4.bind(("0.0.0.0", port))
        except OSError as e:
            raise CryptbpfError(f"{self.cfg.name}: cannot bind UDP port {port}: {e.strerror}") from None
        port = s4.getsockname()[1]
        try:
            s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        except OSError:
            s6 = None       # no IPv6 in this kernel
        if s6 is not None:
            self.socks.append(s6)
            s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                s6.bind(("::", port))
            except OSError as e:
                if e.errno != errno.EADDRNOTAVAIL:
                    raise CryptbpfError(f"{self.cfg.name}: cannot bind UDP port {port} (IPv6): "
                                        f"{e.strerror}") from None
                self.socks.remove(s6)
                s6.close()
        for s in self.socks:
            s.setblocking(False)
        return port

    def send(self, msg: bytes, endpoint) -> None:
        family = socket.AF_INET6 if ":" in endpoint[0] else socket.AF_INET
        for s in self.socks:
            if s.family == family:
                try:
                    s.sendto(msg, (endpoint[0], endpoint[1]))
                except OSError:
                    pass        # unreachable now; the timers retry
                return

    # ---- the index table ----
    def new_index(self, peer: Peer) -> int:
        while True:
            idx = struct.unpack("<I", os.urandom(4))[0]
            if idx and idx not in self._indices:
                self._indices[idx] = peer
                return idx

    def free_index(self, idx: int) -> None:
        self._indices.pop(idx, None)

    def indices_of(self, peer: Peer) -> list[int]:
        return [i for i, p in self._indices.items() if p is peer and i != peer.handshake.local_index]

    # ---- receiving ----
    def under_load(self) -> bool:
        now = self.clock()
        self._load_window = [t for t in self._load_window if now - t < 1.0]
        self._load_window.append(now)
        if len(self._load_window) > self.under_load_threshold:
            self._under_load_until = now + UNDER_LOAD_AFTER_TIME
        return now < self._under_load_until

    def handle(self, msg: bytes, src) -> None:
        """One datagram from `src`: a handshake message or nothing."""
        mtype = message_type(msg)
        c = self.counters
        if _SIZES.get(mtype) != len(msg):
            c["malformed"] += 1
            return
        try:
            if mtype == MessageCookieReplyType:
                peer = self._indices.get(receiver_index(msg))
                if not peer:
                    c["unknown_peer"] += 1
                    return
                peer.on_cookie_reply(msg)
                c["cookie_replies_taken"] += 1
                return
            if not self.checker.check_mac1(msg):
                c["mac1_invalid"] += 1
                return
            if self.under_load():
                if not self.checker.check_mac2(msg, src):
                    sender = struct.unpack_from("<I", msg, 4)[0]
                    self.send(self.checker.create_reply(msg, sender, src), src)
                    c["cookie_replies_sent"] += 1
                    return
                if mtype == MessageInitiationType and not self.ratelimiter.allow(src[0], self.clock()):
                    c["ratelimited"] += 1
                    return
            if mtype == MessageInitiationType:
                ini = open_initiation(self.identity, msg)
                peer = self._by_key.get(ini.remote_static)
            else:
                peer = self._indices.get(receiver_index(msg))
            if not peer:
                c["unknown_peer"] += 1
            elif mtype == MessageInitiationType:
                peer.on_initiation(ini, msg, src)
            else:
                peer.on_response(msg, src)
        except HandshakeError:
            c["refused"] += 1       # as wireguard-go: silently (counted)
        except CryptbpfError as e:      # the data plane refused (a route to a new endpoint, ...)
            self.log(f"handshake message from {src[0]}: {e}")

    # ---- the loop ----
    def request_handshake(self, peer_id: int) -> None:
        """Ask the loop (from any thread) to initiate a handshake with the
        peer, as the timers do (Peer.send_initiation: REKEY_TIMEOUT after
        the last initiation at the earliest; asked again each tick until
        it is sent). For tests that rekey on demand."""
        self._handshake_requests.append(peer_id)

    def _serve_requests(self) -> None:
        for _ in range(len(self._handshake_requests)):
            peer_id = self._handshake_requests.popleft()
            peer = self.peers.get(peer_id)
            if peer and peer.endpoint is not None and not peer.send_initiation():
                self._handshake_requests.append(peer_id)

    def fds(self) -> list:
        return [*self.socks, self.dp]

    def step(self, timeout: float = TICK) -> None:
        ready, _, _ = select.select(self.fds(), [], [], timeout)
        for r in ready:
            if r is self.dp:
                for ev in self.dp.events():
                    peer = self.peers.get(ev.peer_id)
                    if peer:
                        peer.send_initiation()
                continue
            while True:
                try:
                    msg, src = r.recvfrom(2048)
                except BlockingIOError:
                    break
                except OSError:
                    break       # ICMP errors reported on the socket
                self.handle(msg, src)
        self._serve_requests()
        for peer in self.peers.values():
            try:
                peer.tick()
            except CryptbpfError as e:
                self.log(f"peer {peer.id}: {e}")

    def run(self, should_stop) -> None:
        while not should_stop():
            self.step()

    # ---- state ----
    def status(self) -> dict:
        """What `wg show` shows (no private or preshared key)."""
        from .noise import key_to_base64
        peers = []
        for peer in self.peers.values():
            ps = self.dp.peer_state(peer.id)
            ep = ps.endpoint or peer.endpoint
            peers.append({
                "public_key": key_to_base64(peer.cfg.public_key),
                "preshared_key": peer.cfg.preshared_key is not None,
                "endpoint": None if ep is None else (f"[{ep[0]}]:{ep[1]}" if ":" in ep[0]
                                                     else f"{ep[0]}:{ep[1]}"),
                "allowed_ips": [str(n) for n in peer.cfg.allowed_ips],
                "latest_handshake": int(peer.last_handshake_unix),
                "transfer_rx": ps.rx_bytes + peer.rx_handshake_bytes,
                "transfer_tx": ps.tx_bytes + peer.tx_handshake_bytes,
                "persistent_keepalive": peer.cfg.persistent_keepalive,
            })
        return {"interface": self.cfg.name, "public_key": key_to_base64(self.identity.public_key),
                "listen_port": self.listen_port, "peers": peers, "handshake_counters": dict(self.counters)}

    def close(self) -> None:
        for peer in self.peers.values():
            peer.close()
        self.peers.clear()
        for s in self.socks:
            s.close()
        self.socks = []
        if self.dp is not None:
            self.dp.close()
            self.dp = None
