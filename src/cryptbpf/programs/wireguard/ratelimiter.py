"""Handshake initiation rate limiting per source address, as wireguard-go's
ratelimiter.go: a token bucket per address, packetsPerSecond = 20 with a
burst of 5, entries idle for a second forgotten. The daemon applies it
under load, to initiations that carry a valid mac2 (wireguard-go's order).
Time is the daemon's clock() (seconds), passed in."""

from __future__ import annotations

import ipaddress

PACKETS_PER_SECOND = 20
PACKETS_BURSTABLE = 5
GARBAGE_COLLECT_TIME = 1.0
PACKET_COST = 1.0 / PACKETS_PER_SECOND
MAX_TOKENS = PACKET_COST * PACKETS_BURSTABLE


class Ratelimiter:
    def __init__(self):
        self._table: dict[bytes, list[float]] = {}     # address -> [tokens, last time]
        self._last_gc = None

    def allow(self, addr: str, now: float) -> bool:
        if self._last_gc is None or now - self._last_gc > GARBAGE_COLLECT_TIME:
            self._table = {k: v for k, v in self._table.items() if now - v[1] <= GARBAGE_COLLECT_TIME}
            self._last_gc = now
        key = ipaddress.ip_address(addr.split("%")[0]).packed
        entry = self._table.get(key)
        if entry is None:
            self._table[key] = [MAX_TOKENS - PACKET_COST, now]
            return True
        entry[0] = min(MAX_TOKENS, entry[0] + now - entry[1])
        entry[1] = now
        if entry[0] >= PACKET_COST:
            entry[0] -= PACKET_COST
            return True
        return False
