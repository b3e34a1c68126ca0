"""The client end of crypto_ratelimit: send datagrams to a rate-limited UDP
service; when XDP answers with a proof-of-work challenge instead, solve it,
get admitted, and resend -- transparently.

    from cryptbpf.programs.crypto_ratelimit.client import PowClient
    with PowClient("10.0.0.2", 5353) as c:
        reply = c.request(b"query")        # None if the service said nothing
        c.solve_times                      # seconds per challenge solved

Wire format: bpf/include/crypto_ratelimit.h (read with cffi). The puzzle:
find a nonce (8 bytes) such that SHA-256(challenge || nonce) starts with
`difficulty` zero bits; expected work 2^difficulty hashes.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import socket
import time
from dataclasses import dataclass, field
from hashlib import sha256

from ...addresses import bind_local, resolve_ipv4
from ...errors import CryptbpfError
from ...bpf.headers import Layout

CHALLENGE_LABEL = b"cbpow v1"
_L = Layout("crypto_ratelimit")
MSG = "struct pow_msg"
MSG_SIZE = _L.sizeof(MSG)
MAGIC = _L.const("POW_MAGIC")
MAX_DIFFICULTY = _L.const("POW_MAX_DIFFICULTY")


def _be32(v: int) -> int:
    return int.from_bytes(v.to_bytes(4, "little"), "big")


def pack(type_: str, **fields) -> bytes:
    out = {"magic": _be32(MAGIC), "version": _L.const("POW_VERSION"),
           "type": _L.const(f"POW_{type_.upper()}")}
    for k, v in fields.items():
        out[k] = _be32(v) if k in ("slot", "tokens") else v
    return _L.pack(MSG, **out)


def unpack(data: bytes) -> dict | None:
    """A pow_msg as a dict (integers in host order), or None if `data` is
    not one (an ordinary reply of the service)."""
    if len(data) != MSG_SIZE or int.from_bytes(data[:4], "big") != MAGIC:
        return None
    m = _L.unpack(MSG, data)
    for k in ("magic", "slot", "tokens"):
        m[k] = _be32(m[k])
    return m if m["version"] == _L.const("POW_VERSION") else None


def compute_challenge(server_key: bytes, client_addr: str, slot: int, difficulty: int) -> bytes:
    """The challenge a server with `server_key` issues (tests, benchmarks)."""
    msg = (CHALLENGE_LABEL + ipaddress.IPv4Address(client_addr).packed + bytes(4) +
           slot.to_bytes(4, "big") + difficulty.to_bytes(4, "big") + bytes(16))
    return hmac.new(server_key, msg, sha256).digest()


def leading_zero_bits(digest: bytes) -> int:
    n = int.from_bytes(digest, "big")
    return len(digest) * 8 - n.bit_length()


def pow_digest(challenge: bytes, nonce: bytes) -> bytes:
    return sha256(challenge + nonce).digest()


def solve(challenge: bytes, difficulty: int, start: int | None = None) -> tuple[bytes, int]:
    """A nonce meeting `difficulty`, and how many hashes it took."""
    if not 0 <= difficulty <= MAX_DIFFICULTY:
        raise CryptbpfError(f"difficulty {difficulty} out of range 0-{MAX_DIFFICULTY}")
    base = sha256(challenge)
    limit = 1 << (256 - difficulty)
    n = int.from_bytes(os.urandom(8), "big") if start is None else start
    tries = 0
    while True:
        nonce = (n & (2**64 - 1)).to_bytes(8, "big")
        h = base.copy()
        h.update(nonce)
        tries += 1
        if int.from_bytes(h.digest(), "big") < limit:
            return nonce, tries
        n += 1


def solution_message(chal: dict, nonce: bytes) -> bytes:
    return pack("solution", difficulty=chal["difficulty"], slot=chal["slot"],
                challenge=chal["challenge"], nonce=nonce)


@dataclass
class PowStats:
    challenges: int = 0
    admitted: int = 0
    solve_times: list = field(default_factory=list)
    difficulties: list = field(default_factory=list)
    hashes: int = 0
    requests: int = 0       # explicit REQUESTs sent
    expected: int = 0       # request()s that waited for the service's reply
    replies: int = 0        # ... and got one


class PowClient:
    """A UDP client that pays proof-of-work when the server asks for it."""

    def __init__(self, host: str, port: int, timeout: float = 1.0, source: str | None = None,
                 max_rounds: int = 3):
        self.host = host
        self.server = (resolve_ipv4(host), port)
        self.timeout = timeout
        self.max_rounds = max_rounds
        self.stats = PowStats()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            if source:
                bind_local(self.sock, source, 0, "--source")
            self.sock.connect(self.server)
        except BaseException:
            self.sock.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self.sock.close()

    @property
    def solve_times(self) -> list[float]:
        return self.stats.solve_times

    def require_answer(self) -> None:
        """CryptbpfError when replies were waited for and none came at all
        (nothing listens there, or everything was dropped): a silent
        service is a failure of `cryptbpf pow send`, not an empty result."""
        if self.stats.expected and not self.stats.replies:
            raise CryptbpfError(
                f"no answer from {self.host}:{self.server[1]} within {self.timeout:g}s "
                f"(to {self.stats.expected} datagram(s); is the service running there, "
                "and its port reachable?)")

    def _recv(self, deadline: float) -> bytes | None:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        self.sock.settimeout(left)
        try:
            return self.sock.recv(65535)
        except (socket.timeout, ConnectionRefusedError):
            return None

    def request(self, data: bytes, expect_reply: bool = True) -> bytes | None:
        """Send `data`; return the service's reply, or None if none came.

        A CHALLENGE that comes back instead is paid for and `data` resent.
        When nothing comes back at all and a reply was expected, the server
        may have dropped the datagram without challenging (the driver could
        not grow a short datagram into a challenge, or this source used up
        its challenges): one REQUEST asks for a challenge explicitly. With
        expect_reply=False only a challenge arriving within 0.2 s is handled.
        """
        if unpack(data) is not None:
            raise CryptbpfError("payload looks like a pow message (starts with the magic)")
        self.sock.send(data)
        self.stats.expected += expect_reply
        rounds, probed = 0, False
        wait = self.timeout if expect_reply else min(self.timeout, 0.2)
        deadline = time.monotonic() + wait
        while True:
            got = self._recv(deadline)
            if got is None:
                if not expect_reply or probed:
                    return None
                probed = True
                self.stats.requests += 1
                self.sock.send(pack("request"))
                deadline = time.monotonic() + wait
                continue
            m = unpack(got)
            if m is None:
                self.stats.replies += 1
                return got
            if m["type"] != _L.const("POW_CHALLENGE"):
                continue           # a late ADMIT of an earlier round
            rounds += 1
            if rounds > self.max_rounds:
                raise CryptbpfError(f"still challenged after {self.max_rounds} solved puzzles")
            self._pay(m)
            self.sock.send(data)
            deadline = time.monotonic() + wait

    def _pay(self, chal: dict) -> None:
        self.stats.challenges += 1
        t0 = time.perf_counter()
        nonce, tries = solve(chal["challenge"], chal["difficulty"])
        self.stats.solve_times.append(time.perf_counter() - t0)
        self.stats.difficulties.append(chal["difficulty"])
        self.stats.hashes += tries
        msg = solution_message(chal, nonce)
        for _ in range(3):
            self.sock.send(msg)
            deadline = time.monotonic() + self.timeout
            while True:
                got = self._recv(deadline)
                if got is None:
                    break
                m = unpack(got)
                if m and m["type"] == _L.const("POW_ADMIT") and m["nonce"] == nonce:
                    self.stats.admitted += 1
                    return
        raise CryptbpfError("solution not accepted (challenge expired, or the server "
                            "rejected it)")
