"""One peer of an interface: its handshake (noise.Handshake), its cookies
(cookie.CookieGenerator), its timers (timers.Timers), and what it asks of
the data plane (install_keypair, expire_keypair, keepalive). The device
(device.py) owns the sockets and the index table and hands messages here.
"""

from __future__ import annotations

import time

from . import timers as T
from .config import PeerConfig
from .cookie import CookieGenerator
from .dataplane import DataPlane, PeerState
from .noise import Handshake, HandshakeState, Initiation, StaticIdentity, consume_initiation


class Peer:
    def __init__(self, peer_id: int, cfg: PeerConfig, local: StaticIdentity, dp: DataPlane,
                 device, clock=time.monotonic):
        self.id, self.cfg, self.dp, self.device, self.clock = peer_id, cfg, dp, device, clock
        self.handshake = Handshake(local, cfg.public_key, cfg.preshared_key)
        self.cookies = CookieGenerator(cfg.public_key, clock)
        self.timers = T.Timers(persistent_keepalive=float(cfg.persistent_keepalive))
        self.endpoint = cfg.endpoint
        self.last_handshake_unix = 0.0      # wall clock, for `wg show`
        self.rx_handshake_bytes = self.tx_handshake_bytes = 0

    # ---- sending ----
    def _send(self, msg: bytes, endpoint=None) -> bool:
        ep = endpoint or self.endpoint
        if ep is None:
            return False
        self.device.send(msg, ep)
        return True

    def send_initiation(self, retry: bool = False) -> bool:
        """A new initiation to the peer's endpoint (wireguard-go's
        SendHandshakeInitiation): not within REKEY_TIMEOUT of the last
        one unless it is a retry."""
        now = self.clock()
        if self.endpoint is None or (not retry and not self.timers.can_initiate(now)):
            return False
        old = self.handshake.local_index
        if old and self.handshake.state == HandshakeState.HandshakeInitiationCreated:
            self.device.free_index(old)
        msg = self.handshake.create_initiation(self.device.new_index(self))
        msg = self.cookies.add_macs(msg)
        self.timers.initiation_sent(now, retry)
        self.tx_handshake_bytes += len(msg)
        return self._send(msg)

    def send_keepalive(self) -> None:
        msg = self.dp.keepalive(self.id)
        if msg is None:         # no session: a keepalive needs one first
            self.send_initiation()
            return
        self.timers.keepalive_sent(self.clock())
        self._send(msg)

    # ---- receiving ----
    def on_initiation(self, ini: Initiation, msg: bytes, src) -> None:
        """An initiation from this peer, mac1 (and mac2) checked: answer
        it and hand the responder's keypair to the data plane."""
        now = self.clock()
        consume_initiation(self.handshake, ini, msg, now, T.HANDSHAKE_INITIATION_RATE)
        self.rx_handshake_bytes += len(msg)
        self.set_endpoint(src)
        response = self.cookies.add_macs(self.handshake.create_response(self.device.new_index(self)))
        self._derive(now)
        self.tx_handshake_bytes += len(response)
        self._send(response)

    def on_response(self, msg: bytes, src) -> None:
        now = self.clock()
        self.handshake.consume_response(msg)
        self.rx_handshake_bytes += len(msg)
        self.set_endpoint(src)
        self._derive(now)
        self.send_keepalive()       # confirms the session to the responder

    def _derive(self, now: float) -> None:
        s = self.handshake.begin_session()
        self.dp.install_keypair(self.id, s.local_index, s.remote_index, s.send_key, s.recv_key,
                                s.initiator)
        self.timers.session_derived(now, s.local_index, s.initiator)
        for idx in self.device.indices_of(self):
            if idx not in self.timers.keypairs:
                self.device.free_index(idx)
        self.last_handshake_unix = time.time()

    def on_cookie_reply(self, msg: bytes) -> None:
        self.cookies.consume_reply(msg)

    def set_endpoint(self, src) -> None:
        ep = (src[0], src[1])
        if ep != self.endpoint:
            self.endpoint = ep
            self.dp.set_peer(self.id, self.cfg.public_key, ep, self.cfg.allowed_ips)

    # ---- timers ----
    def tick(self, ps: PeerState | None = None) -> None:
        ps = ps or self.dp.peer_state(self.id)
        if ps.endpoint is not None:     # roaming, learned by the data plane
            self.endpoint = ps.endpoint
        for action in self.timers.tick(self.clock(), ps):
            if action == T.SEND_INITIATION:
                self.send_initiation()
            elif action == T.RETRY_INITIATION:
                self.send_initiation(retry=True)
            elif action == T.GIVE_UP:
                if self.handshake.local_index:
                    self.device.free_index(self.handshake.local_index)
                self.handshake.clear()
            elif action == T.SEND_KEEPALIVE:
                self.send_keepalive()
            elif action[0] == T.EXPIRE:
                self.dp.expire_keypair(action[1])
                self.device.free_index(action[1])

    def close(self) -> None:
        self.handshake.clear()
