"""encrypted_logger's records, keys, log files and their verification.

Everything here works on bytes: the records the kernel seals
(bpf/include/encrypted_logger.h), the key schedule that opens them, the
append-only file `cryptbpf logs record` writes and the checks `cryptbpf
logs verify` runs on it. The design is explained in docs/encrypted_logger.md.

Key schedule (the kernel holds only K(e) of the current epoch; the reader
holds the master key and derives every epoch):

    K(0)   = HMAC-SHA256(master, "cryptbpf log session" || le64(session))
    K(e+1) = HMAC-SHA256(K(e), "cryptbpf log ratchet")
    S(e)   = HMAC-SHA256(K(e), "cryptbpf log seal")     (the AEAD key)
    nonce  = le32(cpu) || le64(seq)
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import os
import struct
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterable, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from ...errors import CryptbpfError
from ...bpf.headers import Layout

LAYOUT = Layout("encrypted_logger")
C = LAYOUT.const
HDR_SIZE = LAYOUT.sizeof("struct elog_hdr")
EXEC_SIZE = LAYOUT.sizeof("struct elog_exec")
MARK_SIZE = LAYOUT.sizeof("struct elog_mark")
TAG_SIZE = C("ELOG_TAG_SIZE")
TYPE_EXEC, TYPE_MARK = C("ELOG_TYPE_EXEC"), C("ELOG_TYPE_MARK")
MARK_START, MARK_END, MARK_ROTATE = C("ELOG_MARK_START"), C("ELOG_MARK_END"), C("ELOG_MARK_ROTATE")
MARK_KINDS = {MARK_START: "start", MARK_END: "end", MARK_ROTATE: "rotate"}
BODY_SIZE = {TYPE_EXEC: EXEC_SIZE, TYPE_MARK: MARK_SIZE}

LABEL_SESSION = b"cryptbpf log session"
LABEL_RATCHET = b"cryptbpf log ratchet"
LABEL_SEAL = b"cryptbpf log seal"
LABEL_CHECK = b"cryptbpf log key check"


class AuthError(CryptbpfError):
    """A record does not authenticate under the key given."""


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


def session_key(master: bytes, session: int) -> bytes:
    """K(0) of a session: what the kernel gets at load time."""
    return _hmac(master, LABEL_SESSION + struct.pack("<Q", session))


def ratchet(chain: bytes) -> bytes:
    return _hmac(chain, LABEL_RATCHET)


def seal_key(chain: bytes) -> bytes:
    return _hmac(chain, LABEL_SEAL)


def key_check(master: bytes) -> int:
    """Public 64-bit fingerprint of the master key (a MAC of a constant):
    the loader publishes it so readers can reject a wrong key file."""
    return int.from_bytes(_hmac(master, LABEL_CHECK)[:8], "little")


class KeyChain:
    """Seal keys of every (session, epoch), derived from the master key and
    cached; epochs are derived forwards from the nearest known chain key."""

    def __init__(self, master: bytes):
        if len(master) != C("ELOG_KEY_SIZE"):
            raise CryptbpfError(f"encrypted-logger keys are {C('ELOG_KEY_SIZE')} bytes")
        self._master = master
        self._chains: dict[int, tuple[int, bytes]] = {}   # session -> (epoch, K(epoch))
        self._seal: dict[tuple[int, int], ChaCha20Poly1305] = {}
        self.check = key_check(master)

    def aead(self, session: int, epoch: int) -> ChaCha20Poly1305:
        got = self._seal.get((session, epoch))
        if got is None:
            e, chain = self._chains.get(session, (0, session_key(self._master, session)))
            if epoch < e:  # behind the cache: start over from K(0)
                e, chain = 0, session_key(self._master, session)
            while e < epoch:
                chain, e = ratchet(chain), e + 1
            self._chains[session] = (e, chain)
            got = self._seal[(session, epoch)] = ChaCha20Poly1305(seal_key(chain))
        return got


# ---------------------------------------------------------------- records

@dataclass
class Sealed:
    """One record as the kernel wrote it (header in clear, body sealed)."""
    raw: bytes
    hdr: dict[str, Any]

    @property
    def stream(self) -> tuple[int, int]:
        return self.hdr["session"], self.hdr["cpu"]

    @property
    def seq(self) -> int:
        return self.hdr["seq"]

    @property
    def type(self) -> int:
        return self.hdr["type"]


def parse(raw: bytes) -> Sealed:
    """Check a record's framing (not its authenticity)."""
    if len(raw) < HDR_SIZE + TAG_SIZE:
        raise CryptbpfError(f"record of {len(raw)} bytes is shorter than header + tag")
    hdr = LAYOUT.unpack("struct elog_hdr", raw[:HDR_SIZE])
    if hdr["version"] != C("ELOG_VERSION"):
        raise CryptbpfError(f"record version {hdr['version']} (this cryptbpf reads {C('ELOG_VERSION')})")
    if BODY_SIZE.get(hdr["type"]) != hdr["len"] or len(raw) != HDR_SIZE + hdr["len"] + TAG_SIZE:
        raise CryptbpfError(f"record type {hdr['type']} with body length {hdr['len']} "
                            f"in {len(raw)} bytes: malformed")
    return Sealed(bytes(raw), hdr)


def nonce(hdr: dict[str, Any]) -> bytes:
    return struct.pack("<IQ", hdr["cpu"], hdr["seq"])


def open_record(keys: KeyChain, rec: Sealed) -> dict[str, Any]:
    """Authenticate and decrypt; the decoded body with its header fields.
    Raises AuthError if the tag does not match (modified, or wrong key)."""
    h = rec.hdr
    try:
        body = keys.aead(h["session"], h["epoch"]).decrypt(nonce(h), rec.raw[HDR_SIZE:],
                                                           rec.raw[:HDR_SIZE])
    except InvalidTag:
        raise AuthError(f"record cpu {h['cpu']} seq {h['seq']} does not authenticate") from None
    return decode_body(h, body)


def _cstr(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode(errors="backslashreplace")


def decode_body(h: dict[str, Any], body: bytes) -> dict[str, Any]:
    out = {"type": "exec" if h["type"] == TYPE_EXEC else "mark", "session": f"{h['session']:016x}",
           "cpu": h["cpu"], "seq": h["seq"], "epoch": h["epoch"], "lost": h["lost"]}
    if h["type"] == TYPE_EXEC:
        x = LAYOUT.unpack("struct elog_exec", body)
        argv_raw = x["argv"][:x["argv_len"]]
        argv = [a.decode(errors="backslashreplace") for a in argv_raw.split(b"\0")]
        if argv and argv[-1] == "" and argv_raw.endswith(b"\0"):
            argv.pop()  # the terminating NUL of the last argument
        out.update(time_ns=x["time_ns"], boot_ns=x["boot_ns"], pid=x["pid"], ppid=x["ppid"],
                   uid=x["uid"], gid=x["gid"], euid=x["euid"], egid=x["egid"],
                   cgroup_id=x["cgroup_id"], comm=_cstr(x["comm"]),
                   filename=x["filename"][:x["filename_len"]].decode(errors="backslashreplace"),
                   argv=argv, argv_total=x["argv_total"],
                   argv_truncated=bool(x["argv_flags"] & C("ELOG_ARGV_TRUNCATED")),
                   argv_unreadable=bool(x["argv_flags"] & C("ELOG_ARGV_FAULT")))
    else:
        m = LAYOUT.unpack("struct elog_mark", body)
        cpus = [c for c in range(256) if m["cpus"][c // 64] >> (c % 64) & 1]
        out.update(time_ns=m["time_ns"], boot_ns=m["boot_ns"], mark=MARK_KINDS.get(m["kind"], str(m["kind"])),
                   run_id=f"{m['run_id']:016x}", cpus=cpus)
    out["time"] = iso_time(out["time_ns"])
    return out


def iso_time(ns: int) -> str:
    t = _dt.datetime.fromtimestamp(ns / 1e9, _dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ns % 1_000_000_000:09d}Z"


def format_text(r: dict[str, Any]) -> str:
    head = f"{r['time']} cpu{r['cpu']} #{r['seq']} e{r['epoch']}"
    if r["type"] == "mark":
        return f"{head} mark {r['mark']} run {r['run_id']}"
    argv = " ".join(_shell_quote(a) for a in r["argv"])
    more = " ..." if r["argv_truncated"] else ""
    ids = f"uid={r['uid']} gid={r['gid']}"
    if (r["euid"], r["egid"]) != (r["uid"], r["gid"]):
        ids += f" euid={r['euid']} egid={r['egid']}"
    return (f"{head} exec pid={r['pid']} ppid={r['ppid']} {ids} cgroup={r['cgroup_id']} "
            f"comm={r['comm']} file={r['filename']} argv: {argv}{more}")


def _shell_quote(s: str) -> str:
    import shlex
    return shlex.quote(s)


# ---------------------------------------------------------------- live streams

@dataclass
class Gap:
    """Records of one CPU's stream that a reader did not get."""
    cpu: int
    first: int          # first missing seq (joined: the seq we joined at)
    count: int
    kernel_lost: int    # of which the kernel says it lost (ring buffer full, key busy)
    joined: bool = False  # first record seen of a running stream: only the
                          # kernel's count of earlier losses is known

    def describe(self) -> str:
        if self.joined:
            return (f"cpu {self.cpu}: joined the stream at seq {self.first}; the kernel lost "
                    f"{self.kernel_lost} record(s) before that (ring buffer full)")
        rng = f"seq {self.first}" if self.count == 1 else f"seq {self.first}..{self.first + self.count - 1}"
        if self.kernel_lost == self.count:
            return f"cpu {self.cpu}: {self.count} record(s) lost in the kernel ({rng}; ring buffer full)"
        if self.kernel_lost:
            return (f"cpu {self.cpu}: {self.count} record(s) missing ({rng}), {self.kernel_lost} of "
                    "them lost in the kernel, the rest read by another reader")
        return f"cpu {self.cpu}: {self.count} record(s) missing ({rng}; read by another reader?)"


class StreamTracker:
    """Per-CPU continuity for a live reader: each record either continues its
    stream or reveals a gap, explained (or not) by the kernel's lost count."""

    def __init__(self):
        self._last: dict[tuple[int, int], tuple[int, int]] = {}   # stream -> (seq, lost)

    def feed(self, rec: Sealed) -> Gap | None:
        h = rec.hdr
        prev = self._last.get(rec.stream)
        self._last[rec.stream] = (h["seq"], h["lost"])
        if prev is None:
            # a running stream: what came before was read by someone else
            # or lost in the kernel; only the latter is worth a line
            if h["lost"]:
                return Gap(h["cpu"], h["seq"], h["lost"], h["lost"], joined=True)
            return None
        seq, lost = prev
        missing = h["seq"] - seq - 1
        if missing <= 0:
            return None
        return Gap(h["cpu"], seq + 1, missing, max(0, h["lost"] - lost))


# ---------------------------------------------------------------- files

FILE_MAGIC = b"CBPFLOG\0"
FILE_VERSION = 1
# magic[8] | le16 version | le16 reserved | le32 header size | le64 key check
FILE_HEADER = struct.Struct("<8sHHIQ")
LEN_PREFIX = struct.Struct("<I")
MAX_RECORD = HDR_SIZE + max(BODY_SIZE.values()) + TAG_SIZE


def file_header(check: int) -> bytes:
    return FILE_HEADER.pack(FILE_MAGIC, FILE_VERSION, 0, FILE_HEADER.size, check)


def read_file_header(f: BinaryIO, path: Any) -> int:
    """The key check stored in the header (not authenticated: only a hint)."""
    raw = f.read(FILE_HEADER.size)
    if len(raw) < FILE_HEADER.size:
        raise CryptbpfError(f"{path}: not a cryptbpf log (too short for the file header)")
    magic, version, _, size, check = FILE_HEADER.unpack(raw)
    if magic != FILE_MAGIC:
        raise CryptbpfError(f"{path}: not a cryptbpf log (bad magic)")
    if version != FILE_VERSION or size != FILE_HEADER.size:
        raise CryptbpfError(f"{path}: log file version {version} (this cryptbpf reads {FILE_VERSION})")
    return check


@dataclass
class FileEntry:
    position: int       # 1-based record number in the file
    offset: int         # byte offset of its length prefix
    raw: bytes | None   # None: cut short (truncated file)
    error: str = ""


def iter_file(path: Any) -> tuple[int, Iterator[FileEntry]]:
    f = open(path, "rb")
    check = read_file_header(f, path)

    def entries() -> Iterator[FileEntry]:
        with f:
            pos, off = 0, FILE_HEADER.size
            while True:
                pre = f.read(LEN_PREFIX.size)
                if not pre:
                    return
                pos += 1
                if len(pre) < LEN_PREFIX.size:
                    yield FileEntry(pos, off, None, "file ends inside a length prefix")
                    return
                (n,) = LEN_PREFIX.unpack(pre)
                if n > MAX_RECORD:
                    yield FileEntry(pos, off, None, f"length prefix {n} exceeds the largest record "
                                                    f"({MAX_RECORD}): file corrupt from here on")
                    return
                raw = f.read(n)
                if len(raw) < n:
                    yield FileEntry(pos, off, None, f"file ends inside the record ({len(raw)} of {n} bytes)")
                    return
                yield FileEntry(pos, off, raw)
                off += LEN_PREFIX.size + n
    return check, entries()


class LogWriter:
    """Append records to a log file, creating it (with its header) if
    needed; knows the last sequence number of every stream already in it."""

    def __init__(self, path: Any, check: int):
        self.path = path
        self.last: dict[tuple[int, int], int] = {}
        if os.path.exists(path) and os.path.getsize(path) > 0:
            have, entries = iter_file(path)
            if have != check:
                raise CryptbpfError(f"{path} was recorded from a logger loaded with another key; "
                                    "record into a new file")
            for e in entries:
                if e.raw is None:
                    raise CryptbpfError(f"{path}: record {e.position}: {e.error}; "
                                        "refusing to append to a damaged file")
                try:
                    r = parse(e.raw)
                except CryptbpfError:
                    continue
                self.last[r.stream] = r.seq
            self._f = open(path, "ab")
        else:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._f = os.fdopen(fd, "ab")
            self._f.write(file_header(check))
        self.written = 0

    def append(self, raw: bytes) -> None:
        self._f.write(LEN_PREFIX.pack(len(raw)) + raw)
        self.written += 1

    def flush(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        if self._f:
            self.flush()
            self._f.close()
            self._f = None


# ---------------------------------------------------------------- verification

# How far back in time a record may be relative to an earlier record of
# another CPU: the ring buffer's order is reservation order, and a record's
# time is taken a few microseconds before (seal, possibly a ratchet).
CROSS_CPU_SLACK_NS = 500_000_000


@dataclass
class Finding:
    position: int
    kind: str          # modified | reordered | duplicate | dropped | truncated | malformed | header
    message: str

    def to_dict(self):
        return {"position": self.position, "kind": self.kind, "message": self.message}


@dataclass
class Report:
    path: str
    records: int = 0
    authentic: int = 0
    exec_records: int = 0
    marks: int = 0
    problems: list[Finding] = field(default_factory=list)
    notes: list[Finding] = field(default_factory=list)   # kernel-counted losses, recording gaps
    first_time: str = ""
    last_time: str = ""
    streams: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def intact(self) -> bool:
        return not self.problems

    def to_dict(self):
        return {"path": self.path, "intact": self.intact, "records": self.records,
                "authentic": self.authentic, "exec_records": self.exec_records, "marks": self.marks,
                "first_time": self.first_time, "last_time": self.last_time, "streams": self.streams,
                "problems": [p.to_dict() for p in self.problems],
                "notes": [n.to_dict() for n in self.notes]}


@dataclass
class _Rec:
    position: int
    sealed: Sealed
    body: dict[str, Any] | None     # None: did not authenticate


def verify_file(path: Any, master: bytes) -> Report:
    """Prove a log file intact, or say where it is not.

    - every record authenticates (AEAD tag over header and body): else
      "modified";
    - within each CPU's stream, sequence numbers rise in file order: else
      "reordered" / "duplicate";
    - every hole in a stream is explained by the kernel's own count of
      records it lost (hdr.lost, authenticated) or lies between the END and
      START marks of two recording runs: else "dropped";
    - every recording run ends with an END mark on every CPU it started on,
      and every stream ends with an END mark: else "truncated";
    - across CPUs, time does not run backwards by more than the ring
      buffer's reordering slack: else "reordered".
    """
    keys = KeyChain(master)
    check, entries = iter_file(path)
    rep = Report(str(path))
    recs: list[_Rec] = []
    for e in entries:
        rep.records += 1
        if e.raw is None:
            rep.problems.append(Finding(e.position, "truncated", f"record {e.position}: {e.error}"))
            break
        try:
            sealed = parse(e.raw)
        except CryptbpfError as exc:
            rep.problems.append(Finding(e.position, "malformed", f"record {e.position}: {exc}"))
            continue
        try:
            body = open_record(keys, sealed)
            rep.authentic += 1
        except AuthError:
            body = None
            rep.problems.append(Finding(e.position, "modified",
                                        f"record {e.position} (cpu {sealed.hdr['cpu']} seq "
                                        f"{sealed.seq}) fails authentication: modified"))
        recs.append(_Rec(e.position, sealed, body))
    if recs and not rep.authentic:
        raise CryptbpfError(f"{path}: none of its {len(recs)} records authenticates under this key "
                            "(wrong key file?)")
    if check != keys.check and rep.authentic:
        rep.problems.append(Finding(0, "header", "file header's key check does not match the key "
                                                 "that authenticates the records: header modified"))
    good = [r for r in recs if r.body is not None]
    # a record that fails authentication is reported once, as modified: its
    # (claimed) place in its stream is not also reported as a hole
    claimed = {(r.sealed.stream, r.sealed.seq) for r in recs if r.body is None}
    _check_streams(good, claimed, rep)
    _check_runs(good, rep)
    _check_time(good, rep)
    rep.exec_records = sum(1 for r in good if r.body["type"] == "exec")
    rep.marks = sum(1 for r in good if r.body["type"] == "mark")
    if good:
        rep.first_time = min(good, key=lambda r: r.body["time_ns"]).body["time"]
        rep.last_time = max(good, key=lambda r: r.body["time_ns"]).body["time"]
    rep.problems.sort(key=lambda f: f.position)
    return rep


def _is_mark(r: _Rec, kind: str) -> bool:
    return r.body["type"] == "mark" and r.body["mark"] == kind


def _check_streams(good: list[_Rec], claimed: set, rep: Report) -> None:
    streams: dict[tuple[int, int], list[_Rec]] = {}
    for r in good:
        streams.setdefault(r.sealed.stream, []).append(r)
    for (session, cpu), rs in streams.items():
        name = f"{session:016x}/cpu{cpu}"
        seqs = [r.sealed.seq for r in rs]
        rep.streams[name] = {"records": len(rs), "first_seq": min(seqs), "last_seq": max(seqs),
                             "kernel_lost": max(r.sealed.hdr["lost"] for r in rs)}
        # duplicates, then order: the records that are out of place are
        # those outside a longest increasing run of sequence numbers (one
        # record moved = one report, not one per record it jumped over)
        seen: dict[int, int] = {}
        unique = []
        for r in rs:
            if r.sealed.seq in seen:
                rep.problems.append(Finding(r.position, "duplicate",
                                            f"record {r.position}: cpu {cpu} seq {r.sealed.seq} "
                                            f"already appeared as record {seen[r.sealed.seq]}"))
                continue
            seen[r.sealed.seq] = r.position
            unique.append(r)
        in_order = _longest_increasing([r.sealed.seq for r in unique])
        for k, r in enumerate(unique):
            if k not in in_order:
                before = unique[k - 1].sealed.seq if k else None
                rep.problems.append(Finding(r.position, "reordered",
                                            f"record {r.position}: cpu {cpu} seq {r.sealed.seq} is out "
                                            "of place" + (f" (follows seq {before})" if before is not None
                                                          else " (first of its stream)")))
        # holes, in sequence order
        ordered = sorted({r.sealed.seq: r for r in rs}.values(), key=lambda r: r.sealed.seq)
        head = ordered[0]
        first = head.sealed.seq
        while first and ((session, cpu), first - 1) in claimed:
            first -= 1      # the stream starts with modified records (reported)
        if first == head.sealed.seq and first != 0 and not _is_mark(head, "start"):
            rep.problems.append(Finding(head.position, "dropped",
                                        f"cpu {cpu}: stream starts at seq {head.sealed.seq} (record "
                                        f"{head.position}) without a START mark: records before it "
                                        "are missing"))
        for a, b in zip(ordered, ordered[1:]):
            hole = b.sealed.seq - a.sealed.seq - 1
            lost = b.sealed.hdr["lost"] - a.sealed.hdr["lost"]
            modified = sum(1 for s in range(a.sealed.seq + 1, b.sealed.seq)
                           if ((session, cpu), s) in claimed) if hole < 4096 else 0
            if lost < 0 or lost > hole:
                rep.problems.append(Finding(b.position, "malformed",
                                            f"record {b.position}: cpu {cpu} kernel loss count goes "
                                            f"from {a.sealed.hdr['lost']} to {b.sealed.hdr['lost']} "
                                            f"over {hole} missing records"))
                continue
            rng = f"seq {a.sealed.seq + 1}" + (f"..{b.sealed.seq - 1}" if hole > 1 else "")
            if lost:
                rep.notes.append(Finding(b.position, "kernel-lost",
                                         f"before record {b.position}: cpu {cpu}: {lost} record(s) "
                                         "lost in the kernel (ring buffer full), counted there"))
            unexplained = hole - lost - modified
            if unexplained <= 0:
                continue
            if _is_mark(a, "end") and _is_mark(b, "start"):
                rep.notes.append(Finding(b.position, "not-recorded",
                                         f"before record {b.position}: cpu {cpu} {rng}: between two "
                                         "recording runs (not recorded)"))
            else:
                rep.problems.append(Finding(b.position, "dropped",
                                            f"before record {b.position}: cpu {cpu} {rng}: "
                                            f"{unexplained} record(s) dropped from the file"))
        last = ordered[-1]
        if not _is_mark(last, "end"):
            rep.problems.append(Finding(last.position, "truncated",
                                        f"cpu {cpu}: stream ends at record {last.position} (seq "
                                        f"{last.sealed.seq}) without an END mark: file truncated "
                                        "(or the recorder was killed)"))


def _longest_increasing(seqs: list[int]) -> set[int]:
    """Indexes of one longest strictly increasing subsequence (patience
    sorting, O(n log n))."""
    import bisect
    tails: list[int] = []       # smallest tail value of a run of each length
    tail_idx: list[int] = []
    prev = [-1] * len(seqs)
    for i, s in enumerate(seqs):
        k = bisect.bisect_left(tails, s)
        if k == len(tails):
            tails.append(s)
            tail_idx.append(i)
        else:
            tails[k], tail_idx[k] = s, i
        prev[i] = tail_idx[k - 1] if k else -1
    out, i = set(), tail_idx[-1] if tail_idx else -1
    while i >= 0:
        out.add(i)
        i = prev[i]
    return out


def _check_runs(good: list[_Rec], rep: Report) -> None:
    """Each run's START marks name the CPUs it covers; each of them must
    have both its START and its END mark in the file."""
    runs: dict[str, dict[str, Any]] = {}
    for r in good:
        b = r.body
        if b["type"] != "mark" or b["mark"] not in ("start", "end"):
            continue
        run = runs.setdefault(b["run_id"], {"cpus": set(), "start": {}, "end": {}})
        run["cpus"] |= set(b["cpus"])
        run[b["mark"]][b["cpu"]] = r.position
    last = good[-1].position if good else 0
    for run_id, run in runs.items():
        for cpu in sorted(run["cpus"]):
            if cpu not in run["start"]:
                rep.problems.append(Finding(min(run["start"].values(), default=1), "dropped",
                                            f"run {run_id}: cpu {cpu}'s START mark is missing "
                                            "(its records were removed)"))
            if cpu not in run["end"]:
                rep.problems.append(Finding(last, "truncated",
                                            f"run {run_id}: cpu {cpu} has no END mark: file truncated "
                                            "(or the recorder was killed)"))


def _check_time(good: list[_Rec], rep: Report) -> None:
    latest = None
    for r in good:
        t = r.body["time_ns"]
        if latest is not None and t < latest.body["time_ns"] - CROSS_CPU_SLACK_NS \
                and latest.sealed.stream != r.sealed.stream:
            rep.problems.append(Finding(r.position, "reordered",
                                        f"record {r.position} (cpu {r.body['cpu']}) is "
                                        f"{(latest.body['time_ns'] - t) / 1e9:.3f} s older than record "
                                        f"{latest.position} (cpu {latest.body['cpu']}) before it: reordered"))
        if latest is None or t > latest.body["time_ns"]:
            latest = r


def read_file(path: Any, master: bytes) -> Iterable[dict[str, Any]]:
    """Decrypted records of a file in file order (no continuity checks)."""
    keys = KeyChain(master)
    check, entries = iter_file(path)
    for e in entries:
        if e.raw is None:
            raise CryptbpfError(f"{path}: record {e.position}: {e.error}")
        try:
            yield open_record(keys, parse(e.raw))
        except AuthError:
            if e.position == 1 and check != keys.check:
                raise CryptbpfError(f"{path}: records do not authenticate under this key "
                                    "(wrong key file?)") from None
            raise CryptbpfError(f"{path}: record {e.position} fails authentication (modified); "
                                "run `cryptbpf logs verify`") from None
