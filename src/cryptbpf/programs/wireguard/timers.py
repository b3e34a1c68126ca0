"""WireGuard's timers (paper section 6, wireguard-go's timers.go and
constants.go), as a pure decision over time: `Timers.tick(now, state)`
says what one peer must do now, given the clock and what the data plane
reports (dataplane.PeerState); peer.py does it.

The data plane sends and receives data in BPF, so there are no per-packet
events: the daemon polls peer_state() and compares its times (CLOCK_MONOTONIC
ns, the clock of bpf_ktime_get_ns and of time.monotonic) with its own.
Time is injected (`now`, seconds), so the tests drive it with a fake clock.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable

RekeyAfterMessages = REKEY_AFTER_MESSAGES = 1 << 60
RejectAfterMessages = REJECT_AFTER_MESSAGES = (1 << 64) - (1 << 13) - 1
REKEY_AFTER_TIME = 120.0
REKEY_ATTEMPT_TIME = 90.0
REKEY_TIMEOUT = 5.0
MAX_TIMER_HANDSHAKES = int(REKEY_ATTEMPT_TIME / REKEY_TIMEOUT)
REKEY_TIMEOUT_JITTER_MAX = 0.334
REJECT_AFTER_TIME = 180.0
KEEPALIVE_TIMEOUT = 10.0
COOKIE_REFRESH_TIME = 120.0
HANDSHAKE_INITIATION_RATE = 0.020
UNDER_LOAD_AFTER_TIME = 1.0

# what tick() asks for
SEND_INITIATION = "send_initiation"        # a new handshake (not a retry)
RETRY_INITIATION = "retry_initiation"      # retransmit: no response within REKEY_TIMEOUT
GIVE_UP = "give_up"                        # REKEY_ATTEMPT_TIME passed without a response
SEND_KEEPALIVE = "send_keepalive"
EXPIRE = "expire"                          # ("expire", local_index): REJECT_AFTER_TIME


def _s(ns: int) -> float | None:
    return ns / 1e9 if ns else None


def _after(a: float | None, b: float | None) -> bool:
    """a happened, and after b (or b never did)."""
    return a is not None and (b is None or a > b)


@dataclass
class KeypairTimes:
    created: float
    initiator: bool


@dataclass
class Timers:
    persistent_keepalive: float = 0.0
    jitter: Callable[[], float] = field(default=lambda: random.uniform(0, REKEY_TIMEOUT_JITTER_MAX))
    keypairs: dict[int, KeypairTimes] = field(default_factory=dict)
    handshake_started: float | None = None      # first initiation of the attempt in progress
    last_initiation_sent: float | None = None
    retransmit_after: float = REKEY_TIMEOUT
    handshake_attempts: int = 0
    last_handshake: float | None = None          # a session derived
    last_keepalive_sent: float | None = None
    sent_last_minute_handshake: bool = False
    seen_data_tx: float | None = None            # last data sent, as of the previous tick
    handled_data_tx: float | None = None         # last data sent that newHandshake acted on
    unanswered_since: float | None = None        # first data sent since we last heard from the peer
    rx_unanswered_since: float | None = None     # first data received since we last sent
    handled_data_rx: float | None = None
    started: float | None = None

    # ---- events peer.py reports ----
    def can_initiate(self, now: float) -> bool:
        """Not within REKEY_TIMEOUT of the last initiation (wireguard-go)."""
        return self.last_initiation_sent is None or now - self.last_initiation_sent >= REKEY_TIMEOUT

    def initiation_sent(self, now: float, retry: bool) -> None:
        if retry:
            self.handshake_attempts += 1
        else:
            self.handshake_attempts = 0
            if self.handshake_started is None:
                self.handshake_started = now
        self.last_initiation_sent = now
        self.retransmit_after = REKEY_TIMEOUT + self.jitter()

    def session_derived(self, now: float, local_index: int, initiator: bool) -> None:
        """A handshake finished (either side): the retransmissions stop."""
        self.keypairs[local_index] = KeypairTimes(now, initiator)
        while len(self.keypairs) > 3:       # current, previous, next: the data plane wipes the rest
            self.keypairs.pop(next(iter(self.keypairs)))
        self.handshake_started = None
        self.handshake_attempts = 0
        self.last_handshake = now
        self.sent_last_minute_handshake = False

    def keepalive_sent(self, now: float) -> None:
        self.last_keepalive_sent = now

    def give_up(self) -> None:
        self.handshake_started = None
        self.handshake_attempts = 0

    @property
    def handshaking(self) -> bool:
        return self.handshake_started is not None

    # ---- the decision ----
    def tick(self, now: float, ps) -> list:
        """Actions due at `now` for a peer whose data plane state is `ps`."""
        if self.started is None:
            self.started = now
        out: list = []
        for idx, kp in list(self.keypairs.items()):
            if now - kp.created >= REJECT_AFTER_TIME:
                del self.keypairs[idx]
                out.append((EXPIRE, idx))

        if self.handshaking and now - self.last_initiation_sent >= self.retransmit_after:
            if now - self.handshake_started >= REKEY_ATTEMPT_TIME or \
                    self.handshake_attempts >= MAX_TIMER_HANDSHAKES:
                self.give_up()
                out.append(GIVE_UP)
            else:
                out.append(RETRY_INITIATION)

        rx, tx = _s(ps.last_rx_ns), _s(ps.last_tx_ns)
        data_rx, data_tx = _s(ps.last_data_rx_ns), _s(ps.last_data_tx_ns)
        new_tx = _after(data_tx, self.seen_data_tx)
        new_rx = _after(data_rx, self.handled_data_rx)
        cur = self.keypairs.get(ps.current_index)
        want_handshake = False
        if cur and new_tx:      # keepKeyFreshSending
            if ps.send_counter > REKEY_AFTER_MESSAGES or \
                    (cur.initiator and now - cur.created > REKEY_AFTER_TIME):
                want_handshake = True
        if cur and new_rx and cur.initiator and not self.sent_last_minute_handshake and \
                now - cur.created > REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT:
            self.sent_last_minute_handshake = True       # keepKeyFreshReceiving
            want_handshake = True
        # newHandshake: data sent and nothing received within
        # KEEPALIVE_TIMEOUT + REKEY_TIMEOUT of the first such send
        if data_tx is not None and _after(rx, data_tx):
            self.unanswered_since = None
        elif _after(data_tx, self.handled_data_tx) and self.unanswered_since is None:
            self.unanswered_since = data_tx
        if self.unanswered_since is not None and \
                now - self.unanswered_since >= KEEPALIVE_TIMEOUT + REKEY_TIMEOUT:
            self.unanswered_since, self.handled_data_tx = None, data_tx
            want_handshake = True
        if want_handshake and not self.handshaking:
            out.append(SEND_INITIATION)

        last_sent = max((t for t in (tx, self.last_keepalive_sent) if t is not None), default=None)
        # sendKeepalive: data received, nothing sent back within
        # KEEPALIVE_TIMEOUT of the first such packet (again while it lasts)
        since = self.rx_unanswered_since
        if since is not None and last_sent is not None and last_sent >= since:
            self.rx_unanswered_since = since = None
        if since is None and _after(data_rx, last_sent):
            self.rx_unanswered_since = since = data_rx
        if since is not None and now - since >= KEEPALIVE_TIMEOUT:
            out.append(SEND_KEEPALIVE)
        elif self.persistent_keepalive:
            last_any = max((t for t in (last_sent, rx, self.last_handshake) if t is not None),
                           default=self.started)
            if now - last_any >= self.persistent_keepalive:
                out.append(SEND_KEEPALIVE)
        self.seen_data_tx, self.handled_data_rx = data_tx, data_rx
        return out
