"""Content-addressed file transfer over UDP: the userspace peer of the
content_verifier XDP program.

A file is cut into chunks that each fit one datagram of the path MTU; a
chunk's id is SHA-256 of its content. A tree of manifest chunks lists the
ids in file order (level-0 manifests list data chunks, level-n manifests
list level-(n-1) manifests); the single top manifest is the root and its id
names the whole file. Everything on the wire is `struct cas_hdr || content`
from bpf/include/content_verifier.h, big-endian.

The receiver checks every chunk again in userspace (defence in depth: the
XDP program should already have dropped forgeries), keeps only chunks whose
content hashes to their id, interprets a chunk by where its id appears in the
tree (never by the unauthenticated type byte), asks the sender for what it
misses (CAS_TYPE_WANT) when the line goes quiet, and says CAS_WANT_DONE when
the file is complete.
"""

from __future__ import annotations

import hashlib
import hmac
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Optional

from ...addresses import bind_local, resolve
from ...errors import CryptbpfError
from ...bpf.headers import Layout

LAYOUT = Layout("content_verifier")
C = LAYOUT.const
ID_LEN = C("CAS_ID_LEN")
DEFAULT_PORT = C("CAS_DEFAULT_PORT")
# Chunks are sized for IPv6 (40-byte header, no extension headers) + UDP
# whatever the family, so a file's ids depend only on the MTU (20 bytes per
# datagram fewer over IPv4, in exchange for one allowlist per file and MTU).
UDP_OVERHEAD = 40 + 8
MAX_LEVEL = 8                       # deeper trees than this are refused (43^9 chunks at MTU 1500)
MAX_WANT = 32                       # ids per request: fits the IPv6 minimum MTU (1280)

# Linux socket options the socket module does not name: (level, MTU_DISCOVER, PMTUDISC_DO, MTU)
_PMTU = {socket.AF_INET: (socket.IPPROTO_IP, 10, 2, 14),
         socket.AF_INET6: (socket.IPPROTO_IPV6, 23, 2, 24)}


class WireStruct:
    """A wire struct of the shared header packed big-endian. The field list,
    offsets and sizes come from the C header through cffi; only the byte
    order (network order for every multi-byte field) is decided here."""

    _INT = {1: "B", 2: "H", 4: "I", 8: "Q"}

    def __init__(self, ctype: str):
        ffi = LAYOUT.ffi
        fmt, self.names, self.defaults, off = ">", [], [], 0
        for name, f in ffi.typeof(ctype).fields:
            size = ffi.sizeof(f.type)
            if f.offset != off:
                raise AssertionError(f"{ctype}.{name}: padding on the wire")
            array = f.type.kind == "array"   # u8[] only in wire structs
            fmt += f"{size}s" if array else self._INT[size]
            self.names.append(name)
            self.defaults.append(b"" if array else 0)   # struct zero-fills short bytes
            off += size
        self.struct = struct.Struct(fmt)
        self.size = self.struct.size
        assert self.size == ffi.sizeof(ctype), ctype

    def pack(self, **fields) -> bytes:
        vals = [fields.pop(n, d) for n, d in zip(self.names, self.defaults)]
        if fields:
            raise TypeError(f"unknown fields {sorted(fields)}")
        return self.struct.pack(*vals)

    def unpack(self, data: bytes) -> dict:
        return dict(zip(self.names, self.struct.unpack_from(data)))


HDR = WireStruct("struct cas_hdr")
MANIFEST = WireStruct("struct cas_manifest")
WANT = WireStruct("struct cas_want")
DATA, MANIFEST_T, WANT_T = C("CAS_TYPE_DATA"), C("CAS_TYPE_MANIFEST"), C("CAS_TYPE_WANT")
F_ROOT = C("CAS_F_ROOT")
W_ROOT, W_DONE = C("CAS_WANT_ROOT"), C("CAS_WANT_DONE")


def content_id(content: bytes) -> bytes:
    return hashlib.sha256(content).digest()


def chunk_size_for_mtu(mtu: int) -> int:
    """Content bytes per datagram so that no datagram exceeds `mtu` (IPv4
    or IPv6)."""
    overhead = UDP_OVERHEAD + HDR.size
    if mtu < overhead + MANIFEST.size + 2 * ID_LEN:
        raise CryptbpfError(f"MTU {mtu} is too small for content-addressed chunks "
                            f"(needs >= {overhead + MANIFEST.size + 2 * ID_LEN})")
    return min(mtu, 0xFFFF) - overhead


def fanout(chunk_size: int) -> int:
    """Ids per manifest chunk."""
    return (chunk_size - MANIFEST.size) // ID_LEN


# ---------------------------------------------------------------- datagrams

@dataclass(frozen=True)
class Chunk:
    id: bytes
    type: int
    content: bytes
    flags: int = 0

    @classmethod
    def of(cls, type_: int, content: bytes, flags: int = 0) -> "Chunk":
        return cls(content_id(content), type_, content, flags)

    def datagram(self) -> bytes:
        return HDR.pack(magic=C("CAS_MAGIC"), version=C("CAS_VERSION"), type=self.type,
                        flags=self.flags, length=len(self.content), id=self.id) + self.content


def parse_datagram(dgram: bytes) -> Chunk:
    """The chunk a datagram carries, checked like the XDP program checks it
    (header, exact length, SHA-256 of the content == id in constant time).
    ValueError says why it is refused."""
    if len(dgram) < HDR.size:
        raise ValueError("truncated header")
    h = HDR.unpack(dgram)
    if (h["magic"] != C("CAS_MAGIC") or h["version"] != C("CAS_VERSION") or
            h["type"] not in (DATA, MANIFEST_T, WANT_T) or h["reserved"] or
            h["flags"] & ~C("CAS_F_ALL") or (h["flags"] & F_ROOT and h["type"] != MANIFEST_T)):
        raise ValueError("bad header")
    content = dgram[HDR.size:]
    if h["length"] != len(content):
        raise ValueError("bad length")
    if not hmac.compare_digest(content_id(content), h["id"]):
        raise ValueError("content does not hash to its id")
    return Chunk(h["id"], h["type"], content, h["flags"])


@dataclass(frozen=True)
class Manifest:
    size: int
    level: int
    ids: list

    def content(self) -> bytes:
        return MANIFEST.pack(size=self.size, count=len(self.ids), level=self.level) + b"".join(self.ids)

    @classmethod
    def parse(cls, content: bytes) -> "Manifest":
        if len(content) < MANIFEST.size:
            raise ValueError("manifest shorter than its header")
        m = MANIFEST.unpack(content)
        body = content[MANIFEST.size:]
        if m["reserved"] != bytes(3) or len(body) != m["count"] * ID_LEN or m["level"] > MAX_LEVEL:
            raise ValueError("manifest header does not match its body")
        ids = [body[i:i + ID_LEN] for i in range(0, len(body), ID_LEN)]
        return cls(m["size"], m["level"], ids)


def want(ids: list, flags: int = 0) -> Chunk:
    return Chunk.of(WANT_T, WANT.pack(count=len(ids), flags=flags) + b"".join(ids))


def parse_want(content: bytes) -> tuple[int, list]:
    w = WANT.unpack(content) if len(content) >= WANT.size else None
    body = content[WANT.size:]
    if w is None or len(body) != w["count"] * ID_LEN:
        raise ValueError("malformed want")
    return w["flags"], [body[i:i + ID_LEN] for i in range(0, len(body), ID_LEN)]


# ---------------------------------------------------------------- encoding

@dataclass
class Encoded:
    root: bytes
    chunks: dict                  # id -> Chunk (each distinct content once)
    order: list                   # send order: root, manifests top-down, data
    size: int
    chunk_size: int


def encode(data: bytes, chunk_size: int) -> Encoded:
    """Cut `data` into chunks of `chunk_size` bytes and build the manifest
    tree above them. Identical chunks are stored and sent once."""
    per = fanout(chunk_size)
    data_chunks = [Chunk.of(DATA, data[i:i + chunk_size]) for i in range(0, len(data), chunk_size)]
    chunks = {c.id: c for c in data_chunks}
    level_items = [(c.id, len(c.content)) for c in data_chunks]
    levels, level = [], 0
    while True:
        groups = [level_items[i:i + per] for i in range(0, len(level_items), per)] or [[]]
        manifests = [Chunk.of(MANIFEST_T, Manifest(sum(s for _, s in g), level, [i for i, _ in g]).content())
                     for g in groups]
        levels.append(manifests)
        if len(manifests) == 1:
            break
        level_items = [(m.id, sum(s for _, s in g)) for m, g in zip(manifests, groups)]
        level += 1
    top = levels[-1][0]
    root = Chunk(top.id, MANIFEST_T, top.content, F_ROOT)
    order = [root.id]
    for manifests in reversed(levels[:-1]):
        for m in manifests:
            chunks.setdefault(m.id, m)
            order.append(m.id)
    chunks[root.id] = root
    seen = set(order)
    for c in data_chunks:
        if c.id not in seen:
            seen.add(c.id)
            order.append(c.id)
    return Encoded(root.id, chunks, order, len(data), chunk_size)


# ---------------------------------------------------------------- reassembly

class Tree:
    """What a receiver knows: verified chunks by id, and which ids it still
    waits for, each with the role (level) its position in the tree gives it:
    -1 for data, n >= 0 for a level-n manifest, None for the root.

    Anyone can make a chunk that verifies, so chunks the tree does not (yet)
    need -- early arrivals before their manifest, or junk -- are kept only up
    to `max_early` of them: a flood of valid-but-foreign chunks cannot grow
    the receiver's memory without bound."""

    def __init__(self, root: Optional[bytes] = None, max_early: int = 4096):
        self.store: dict = {}
        self.waiting: dict = {}
        self.root: Optional[bytes] = None
        self.max_early = max_early
        self._early = 0
        self._done: set = set()
        if root is not None:
            self.set_root(root)

    def set_root(self, root: bytes) -> None:
        self.root = root
        self._need(root, None)

    def add(self, cid: bytes, content: bytes) -> str:
        """Offer a verified chunk: "new" (kept), "duplicate", or "unwanted"
        (not needed and the early-arrival buffer is full)."""
        if cid in self.store:
            return "duplicate"
        if cid not in self.waiting:
            if self._early >= self.max_early:
                return "unwanted"
            self._early += 1
        self.store[cid] = content
        for role in self.waiting.pop(cid, ()):
            self._resolve(cid, role)
        return "new"

    @property
    def complete(self) -> bool:
        return self.root is not None and not self.waiting

    def missing(self) -> list:
        return list(self.waiting)

    def _need(self, cid: bytes, role) -> None:
        if cid in self.store:
            self._resolve(cid, role)
        else:
            self.waiting.setdefault(cid, set()).add(role)

    def _resolve(self, cid: bytes, role) -> None:
        stack = [(cid, role)]
        while stack:
            cid, role = stack.pop()
            if (cid, role) in self._done or role == -1:
                continue
            self._done.add((cid, role))
            m = self.manifest(cid, role)
            child = -1 if m.level == 0 else m.level - 1
            for c in m.ids:
                if c in self.store:
                    stack.append((c, child))
                else:
                    self.waiting.setdefault(c, set()).add(child)

    def manifest(self, cid: bytes, role) -> Manifest:
        try:
            m = Manifest.parse(self.store[cid])
        except ValueError as e:
            raise CryptbpfError(f"manifest {cid.hex()[:16]} is malformed: {e}") from None
        if role is not None and m.level != role:
            raise CryptbpfError(f"manifest {cid.hex()[:16]} has level {m.level}, its parent says {role}")
        return m

    def assemble(self) -> bytes:
        """The file, once complete; every manifest's size is checked."""
        if not self.complete:
            raise CryptbpfError(f"{len(self.waiting)} chunk(s) missing")
        out = bytearray()
        self._append(self.root, None, out)
        return bytes(out)

    def _append(self, cid: bytes, role, out: bytearray) -> None:
        m = self.manifest(cid, role)
        start = len(out)
        for c in m.ids:
            if m.level == 0:
                out += self.store[c]
            else:
                self._append(c, m.level - 1, out)
        if len(out) - start != m.size:
            raise CryptbpfError(f"manifest {cid.hex()[:16]} says {m.size} bytes, its chunks hold {len(out) - start}")


# ---------------------------------------------------------------- sockets

def path_mtu(sock: socket.socket) -> int:
    """The path MTU of a connected UDP socket (IP_MTU / IPV6_MTU), with
    fragmentation forbidden so the kernel never fragments what we send (the
    verifier drops fragments)."""
    level, discover, do, mtu = _PMTU[sock.family]
    sock.setsockopt(level, discover, do)
    return sock.getsockopt(level, mtu)


@dataclass
class SendReport:
    root: bytes
    size: int
    chunks: int
    datagrams: int = 0
    resent: int = 0
    confirmed: bool = False
    ignored: int = 0


class Sender:
    """Send an encoded file over a socket connected to the receiver, then
    answer its WANT requests until it says DONE or stays quiet for `linger`
    seconds. Sending is paced in bursts so a receiver hashing in XDP is not
    flooded; losses are repaired by the receiver's requests. Until the
    receiver has said anything, the root is repeated every `nudge` seconds:
    a receiver that started late (or lost everything) learns the root and
    whom to ask from it."""

    def __init__(self, sock: socket.socket, enc: Encoded, linger: float = 3.0,
                 burst: int = 32, gap: float = 0.001, nudge: float = 0.5):
        self.sock, self.enc, self.linger, self.burst, self.gap = sock, enc, linger, burst, gap
        self.nudge = nudge
        self.report = SendReport(enc.root, enc.size, len(enc.chunks))

    def _send(self, ids) -> None:
        for n, cid in enumerate(ids):
            if n and n % self.burst == 0:
                time.sleep(self.gap)
            try:
                self.sock.send(self.enc.chunks[cid].datagram())
            except ConnectionRefusedError:
                pass  # an ICMP error from an earlier datagram; the receiver may start late
            self.report.datagrams += 1

    def run(self) -> SendReport:
        self._send(self.enc.order)
        deadline = time.monotonic() + self.linger
        heard = False
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left if heard else min(left, self.nudge))
            try:
                dgram = self.sock.recv(65535)
            except socket.timeout:
                if not heard:
                    self._send([self.enc.root])
                    self.report.resent += 1
                continue
            except ConnectionRefusedError:
                continue   # ICMP port unreachable: no receiver (yet)
            heard = True
            try:
                c = parse_datagram(dgram)
                if c.type != WANT_T:
                    raise ValueError("not a request")
                flags, ids = parse_want(c.content)
            except ValueError:
                self.report.ignored += 1
                continue
            if flags & W_DONE:
                self.report.confirmed = True
                break
            ids = ([self.enc.root] if flags & W_ROOT else []) + [i for i in ids if i in self.enc.chunks]
            self._send(ids)
            self.report.resent += len(ids)
            deadline = time.monotonic() + self.linger
        return self.report


def send_file(data: bytes, host: str, port: int, mtu: Optional[int] = None,
              linger: float = 3.0) -> SendReport:
    """Send `data` to a `cas recv` at host:port; chunks sized to the path
    MTU unless `mtu` is given (it must not exceed the path MTU)."""
    family, addr = resolve(host, port)
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.connect(addr)
        pmtu = path_mtu(s)
        chunk = chunk_size_for_mtu(min(mtu, pmtu) if mtu else pmtu)
        return Sender(s, encode(data, chunk), linger).run()


@dataclass
class RecvReport:
    root: Optional[bytes] = None
    data: Optional[bytes] = None
    verified: int = 0              # distinct chunks kept
    duplicates: int = 0
    rejected: dict = field(default_factory=dict)   # reason -> count (userspace re-check)
    requests: int = 0              # WANT datagrams sent
    missing: list = field(default_factory=list)
    peer: Optional[tuple] = None


class Receiver:
    """Receive one file on a bound socket. `expect` pins the root id (the
    only way to know the file is the one you asked for); without it the
    first root manifest that arrives is adopted."""

    def __init__(self, sock: socket.socket, expect: Optional[bytes] = None,
                 idle: float = 0.3, timeout: float = 10.0, max_want: Optional[int] = None):
        self.sock, self.expect, self.idle, self.timeout = sock, expect, idle, timeout
        self.tree = Tree(expect)
        self.max_want = max_want or MAX_WANT
        self.report = RecvReport(root=expect)

    def _reject(self, why: str) -> None:
        self.report.rejected[why] = self.report.rejected.get(why, 0) + 1

    def _take(self, dgram: bytes, addr) -> bool:
        """Handle one datagram; True if it brought a new chunk."""
        try:
            c = parse_datagram(dgram)
        except ValueError as e:
            self._reject(str(e))
            return False
        if c.type == WANT_T:
            self._reject("request sent to the receiver")
            return False
        if c.flags & F_ROOT and self.tree.root is None:
            self.tree.set_root(c.id)
            self.report.root = c.id
        if self.report.peer is None or c.id == self.tree.root:
            self.report.peer = addr
        kept = self.tree.add(c.id, c.content)
        if kept == "duplicate":
            self.report.duplicates += 1
        elif kept == "unwanted":
            self._reject("not part of the file (early-chunk buffer full)")
        else:
            self.report.verified += 1
        return kept == "new"

    def _ask(self) -> None:
        if self.report.peer is None:
            return
        if self.tree.root is None:
            req = want([], W_ROOT)
        else:
            req = want(self.tree.missing()[:self.max_want])
        self.sock.sendto(req.datagram(), self.report.peer)
        self.report.requests += 1

    def run(self) -> RecvReport:
        deadline = time.monotonic() + self.timeout
        while not self.tree.complete:
            left = deadline - time.monotonic()
            if left <= 0:
                self.report.missing = self.tree.missing() if self.tree.root else []
                return self.report
            self.sock.settimeout(min(self.idle, left))
            try:
                dgram, addr = self.sock.recvfrom(65535)
            except socket.timeout:
                self._ask()
                continue
            if self._take(dgram, addr):
                deadline = time.monotonic() + self.timeout   # progress
        self.report.data = self.tree.assemble()
        done = want([], W_DONE).datagram()
        for _ in range(3):   # UDP: say it more than once, the sender stops at the first
            self.sock.sendto(done, self.report.peer)
        return self.report


def receive_socket(port: int, bind: str = "0.0.0.0") -> socket.socket:
    """A UDP socket bound to the protected port with a large receive buffer
    (bursts arrive faster than Python reads them)."""
    s = socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET, socket.SOCK_DGRAM)
    for opt in (getattr(socket, "SO_RCVBUFFORCE", 33), socket.SO_RCVBUF):
        try:
            s.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
            break
        except PermissionError:
            continue
    try:
        bind_local(s, bind, port, "--bind")
    except BaseException:
        s.close()
        raise
    return s
