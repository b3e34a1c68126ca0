"""encrypted-logger: real execs, sealed in the kernel, opened here with
pyca/cryptography (ChaCha20-Poly1305) under keys derived with hashlib's
HMAC -- an implementation independent of the BPF one."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from cryptbpf.programs.encrypted_logger import wire as auditlog
from cryptbpf import lifecycle
from cryptbpf.bpf import pins
from cryptbpf.keys import write_key_file
from cryptbpf.programs.encrypted_logger import SPEC, control as el
from cryptbpf.bpf.ringbuf import RingBuffer

from conftest import require_feature, run_cli

NAME = el.NAME


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("elog")
    master, other = os.urandom(32), os.urandom(32)
    write_key_file(d / "log.key", master)
    write_key_file(d / "wrong.key", other)
    return {"master": master, "file": d / "log.key", "wrong": d / "wrong.key", "dir": d}


@pytest.fixture(scope="module")
def features():
    from conftest import require_root
    require_root()
    for f in ("btf", "ringbuf", "bpf_loop"):
        require_feature(f)
    if pins.is_loaded(NAME):
        pytest.skip(f"{NAME} is already loaded on this machine (by someone else)")


@contextlib.contextmanager
def loaded(master: bytes, **knobs):
    lifecycle.load(SPEC, None, knobs, master)
    try:
        with pins.Pinned(NAME) as h:
            yield h
    finally:
        lifecycle.unload(NAME)


@pytest.fixture
def logger(features, keys):
    """A fresh instance (no time-based ratchet: epochs move only when a
    test rotates); the tests with other settings load their own."""
    with loaded(keys["master"], epoch_ms=0) as h:
        yield h


def read_ring(h, until=None, timeout: float = 3.0) -> list[bytes]:
    """Raw records from the ring buffer until `until(records)` or timeout."""
    out: list[bytes] = []
    deadline = time.monotonic() + timeout
    with RingBuffer(h.map("elog_ring"), out.append) as rb:
        while time.monotonic() < deadline:
            rb.poll(50)
            if until and until(out):
                break
    return out


def opened(master: bytes, raws: list[bytes]) -> list[dict]:
    keys = auditlog.KeyChain(master)
    return [auditlog.open_record(keys, auditlog.parse(r)) for r in raws]


def by_pid(master, pid):
    def until(raws):
        return any(r.get("pid") == pid for r in opened(master, raws[-64:]))
    return until


def cgroup_id() -> int:
    path = Path("/proc/self/cgroup").read_text().strip().split("::", 1)[1]
    return os.stat(f"/sys/fs/cgroup{path}").st_ino


# ---------------------------------------------------------------- loader

def test_load_without_device_pins_a_link_and_unload_leaves_nothing(features, keys):
    """The device-less lifecycle: load pins the program, maps and the link;
    status shows it; unload removes every pin and detaches the link."""
    res = run_cli("load", NAME, "--key-file", str(keys["file"]), check=True)
    try:
        assert "attached to kernel (link tp_btf/sched_process_exec)" in res.stdout
        link_pin = pins.pin_dir(NAME) / "links" / "elog_exec"
        assert link_pin.exists()
        st = run_cli("status", "--json", check=True)
        entry = next(e for e in json.loads(st.stdout) if e["program"] == NAME)
        (hook,) = entry["devices"]["kernel"]
        assert hook == {"kind": "link", "section": "tp_btf/sched_process_exec",
                        "program": "elog_exec", "pin": str(link_pin)}
        assert entry["epoch"] == 0 and entry["ring_bytes"] == 512 * 1024
        assert _our_link_ids(), "bpftool sees no link for elog_exec"
        again = run_cli("load", NAME, "--key-file", str(keys["file"]))
        assert again.returncode == 1 and "already loaded on kernel" in again.stderr
    finally:
        res = run_cli("unload", NAME, check=True)
    assert "detached from kernel" in res.stdout
    assert not pins.pin_dir(NAME).exists()
    assert not pins.state_path(NAME).exists()
    assert not _our_link_ids(), "the tracepoint link outlived unload"


def _our_link_ids() -> list[int]:
    out = subprocess.run(["bpftool", "-j", "link", "show"], capture_output=True, text=True).stdout
    progs = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True).stdout
    ours = {p["id"] for p in json.loads(progs or "[]") if p.get("name") == "elog_exec"}
    return [l["id"] for l in json.loads(out or "[]") if l.get("prog_id") in ours]


def test_device_arguments_are_checked(features, keys):
    res = run_cli("load", NAME, "lo", "--key-file", str(keys["file"]))
    assert res.returncode == 1 and "not to a device" in res.stderr and "Traceback" not in res.stderr
    res = run_cli("load", "aes-roundtrip")
    assert res.returncode == 1 and "give DEVICE" in res.stderr
    assert not pins.is_loaded(NAME)


# ---------------------------------------------------------------- records

def test_exec_is_recorded_with_exact_fields_and_only_ciphertext_in_the_ring(logger, keys):
    marker = "cbmark-" + uuid.uuid4().hex
    t0 = time.time_ns()
    proc = subprocess.Popen(["/bin/echo", marker, "second arg"], stdout=subprocess.DEVNULL)
    proc.wait()
    t1 = time.time_ns()
    raws = read_ring(logger, by_pid(keys["master"], proc.pid))
    assert all(marker.encode() not in r for r in raws), "plaintext marker in the ring buffer"
    recs = [r for r in opened(keys["master"], raws) if r.get("pid") == proc.pid]
    assert len(recs) == 1
    r = recs[0]
    assert r["type"] == "exec"
    assert r["filename"] == "/bin/echo"
    assert r["argv"] == ["/bin/echo", marker, "second arg"]
    assert r["argv_total"] == len(f"/bin/echo\0{marker}\0second arg\0")
    assert not r["argv_truncated"] and not r["argv_unreadable"]
    assert r["comm"] == "echo"
    assert r["ppid"] == os.getpid()
    assert (r["uid"], r["gid"], r["euid"], r["egid"]) == (os.getuid(), os.getgid(), os.geteuid(), os.getegid())
    assert r["cgroup_id"] == cgroup_id()
    assert t0 - 50_000_000 <= r["time_ns"] <= t1 + 50_000_000
    assert r["session"] == f"{logger.get_global_int('session'):016x}"


def test_other_user_and_long_argv(logger, keys):
    """uid/gid as the kernel sees them (not ours), argv cut at 256 bytes."""
    args = ["/bin/true"] + [f"a{i:03d}-" + "x" * 20 for i in range(20)]
    proc = subprocess.Popen(args, user=65534, group=65534, extra_groups=[])
    proc.wait()
    raws = read_ring(logger, by_pid(keys["master"], proc.pid))
    r = next(r for r in opened(keys["master"], raws) if r.get("pid") == proc.pid)
    assert (r["uid"], r["gid"], r["euid"], r["egid"]) == (65534, 65534, 65534, 65534)
    full = "\0".join(args) + "\0"
    assert r["argv_total"] == len(full) and r["argv_truncated"]
    kept = full[:256].split("\0")
    assert r["argv"] == kept and r["argv"][:3] == args[:3]


def test_follow_prints_json_and_rejects_a_wrong_key(logger, keys):
    marker = "cbfollow-" + uuid.uuid4().hex
    fol = subprocess.Popen([sys.executable, "-m", "cryptbpf.cli", "logs", "follow", "--key-file",
                            str(keys["file"]), "--json", "--duration", "6"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.5)  # the follower is polling by now (python start-up + discovery)
    proc = subprocess.Popen(["/bin/echo", marker], stdout=subprocess.DEVNULL)
    proc.wait()
    out, err = fol.communicate(timeout=30)
    assert fol.returncode == 0, err
    lines = [json.loads(l) for l in out.splitlines()]
    mine = [l for l in lines if l.get("pid") == proc.pid]
    assert len(mine) == 1 and mine[0]["argv"] == ["/bin/echo", marker]
    assert all(l["type"] in ("exec", "mark", "gap") for l in lines)

    bad = run_cli("logs", "follow", "--key-file", str(keys["wrong"]), "--duration", "1")
    assert bad.returncode == 1
    assert bad.stderr.strip().startswith("cryptbpf: wrong key") and "Traceback" not in bad.stderr


# ---------------------------------------------------------------- keys

def _keystate(h) -> tuple[dict, list[dict]]:
    """The key state and its two slots (decoded with the shared header)."""
    L = auditlog.LAYOUT
    raw = h.map("elog_keys").lookup(0)
    off = dict((n, o) for n, o, _ in L.fields("struct elog_keystate"))["slot"]
    size = L.sizeof("struct elog_key_slot")
    slots = [L.unpack("struct elog_key_slot", raw[off + i * size:]) for i in (0, 1)]
    return L.unpack("struct elog_keystate", raw), slots


def test_epoch_rollover_mid_stream_decrypts_and_wipes_old_keys(features, keys):
    """Time-based ratchets (epoch_ms=150) and a forced one, between execs:
    every record opens with the key Python derives for its epoch, and the
    kernel keeps only the current epoch's keys."""
    master = keys["master"]
    with loaded(master, epoch_ms=150) as h:
        pids = []
        for i in range(3):
            p = subprocess.Popen(["/bin/echo", f"epoch-test-{i}"], stdout=subprocess.DEVNULL)
            p.wait()
            pids.append(p.pid)
            time.sleep(0.3)
        el.rotate(h)
        p = subprocess.Popen(["/bin/echo", "after-rotate"], stdout=subprocess.DEVNULL)
        p.wait()
        pids.append(p.pid)
        raws = read_ring(h, by_pid(master, pids[-1]))
        recs = {r["pid"]: r for r in opened(master, raws) if r.get("pid") in pids}
        assert set(recs) == set(pids)
        epochs = [recs[p]["epoch"] for p in pids]
        assert epochs == sorted(epochs) and len(set(epochs)) == 4, epochs
        assert any(r.get("mark") == "rotate" for r in opened(master, raws))

        ks, slots = _keystate(h)
        e = ks["epoch"]
        assert e >= epochs[-1] >= 3 and SPEC.stats(h)["ratchets"] == e
        chain = auditlog.session_key(master, h.get_global_int("session"))
        for _ in range(e):
            chain = auditlog.ratchet(chain)
        cur, old = slots[e & 1], slots[(e + 1) & 1]
        assert cur["epoch"] == e and cur["chain"] == chain and cur["seal"] == auditlog.seal_key(chain)
        assert old["epoch"] == auditlog.C("ELOG_SLOT_INVALID")
        assert old["chain"] == bytes(32) and old["seal"] == bytes(32)


# ---------------------------------------------------------------- overflow

def test_ring_buffer_overflow_is_counted_and_shown_as_a_gap(features, keys):
    master = keys["master"]
    # all on one CPU: a gap shows in the stream of the CPU that lost
    # records, when that CPU's next record arrives
    cpu = min(os.sched_getaffinity(0))
    on_cpu = {"preexec_fn": lambda: os.sched_setaffinity(0, {cpu})}
    with loaded(master, epoch_ms=0, ring_kb=4) as h:   # room for ~6 records
        for _ in range(12):
            subprocess.run(["/bin/true"], **on_cpu)
        stats = SPEC.stats(h)
        assert stats["lost_ringbuf"] >= 12 - 6
        first: list[bytes] = []
        with RingBuffer(h.map("elog_ring"), first.append) as rb:
            rb.consume()                              # make room
        assert 0 < len(first) <= 4096 // (auditlog.HDR_SIZE + auditlog.EXEC_SIZE + 16)
        p = subprocess.Popen(["/bin/true", "after-overflow"], **on_cpu)
        p.wait()
        later = read_ring(h, by_pid(master, p.pid))
        tracker, gaps = auditlog.StreamTracker(), []
        for raw in first + later:
            gap = tracker.feed(auditlog.parse(raw))
            if gap:
                gaps.append(gap)
        assert gaps, "lost records left no visible gap"
        assert all(g.kernel_lost == g.count for g in gaps)
        assert sum(g.count for g in gaps) <= SPEC.stats(h)["lost_ringbuf"]
        assert "lost in the kernel" in gaps[0].describe()
        assert any(r.get("pid") == p.pid for r in opened(master, later))

        # and `logs follow` shows it: overflow again, then follow
        for _ in range(12):
            subprocess.run(["/bin/true"])
        fol = subprocess.Popen([sys.executable, "-m", "cryptbpf.cli", "logs", "follow", "--key-file",
                                str(keys["file"]), "--json", "--duration", "5"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(2.5)
        for _ in range(3):
            subprocess.run(["/bin/true"])
        out, err = fol.communicate(timeout=30)
        assert fol.returncode == 0, err
        shown = [json.loads(l) for l in out.splitlines()]
        gap_lines = [l for l in shown if l["type"] == "gap"]
        assert gap_lines and all(g["kernel_lost"] == g["count"] > 0 for g in gap_lines)


# ---------------------------------------------------------------- files

@pytest.fixture(scope="module")
def recorded(features, keys):
    """A log file recorded by `cryptbpf logs record` around a marked exec;
    the tampering tests work on copies of it."""
    with loaded(keys["master"], epoch_ms=0) as h:
        return _record(h, keys["dir"] / "exec.clog")


def _record(logger, path):
    marker = "cbrecord-" + uuid.uuid4().hex
    rec = subprocess.Popen([sys.executable, "-m", "cryptbpf.cli", "logs", "record", str(path)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.5)
    p = subprocess.Popen(["/bin/echo", marker], stdout=subprocess.DEVNULL)
    p.wait()
    el.rotate(logger)     # an epoch change inside the file
    for _ in range(3):
        subprocess.run(["/bin/true"])
    time.sleep(0.5)
    rec.send_signal(signal.SIGINT)
    out, err = rec.communicate(timeout=30)
    assert rec.returncode == 0, err
    assert "records appended" in out
    return {"path": path, "marker": marker, "pid": p.pid}


def _entries(path) -> list[bytes]:
    _, it = auditlog.iter_file(path)
    return [e.raw for e in it]


def _write(path, raws: list[bytes], like: Path):
    """A log file of these records, with the file header of `like`."""
    with open(path, "wb") as f:
        f.write(like.read_bytes()[:auditlog.FILE_HEADER.size])
        for r in raws:
            f.write(auditlog.LEN_PREFIX.pack(len(r)) + r)


def _verify(path, key_file) -> tuple[int, dict]:
    res = run_cli("logs", "verify", str(path), "--key-file", str(key_file), "--json")
    assert "Traceback" not in res.stderr
    return res.returncode, (json.loads(res.stdout) if res.stdout.strip() else {})


def test_recorded_file_verifies_and_holds_no_plaintext(recorded, keys):
    path = recorded["path"]
    assert recorded["marker"].encode() not in path.read_bytes()
    assert os.stat(path).st_mode & 0o777 == 0o600
    rc, rep = _verify(path, keys["file"])
    assert rc == 0 and rep["intact"], rep["problems"]
    assert rep["authentic"] == rep["records"] > 0
    recs = list(auditlog.read_file(path, keys["master"]))
    mine = [r for r in recs if r.get("pid") == recorded["pid"]]
    assert len(mine) == 1 and mine[0]["argv"] == ["/bin/echo", recorded["marker"]]
    assert len({r["epoch"] for r in recs}) >= 2
    kinds = [r["mark"] for r in recs if r["type"] == "mark"]
    assert kinds.count("start") == kinds.count("end") == len(el.online_cpus())


def _pick(raws):
    """Index i of an exec record in the middle of its stream: records of the
    same stream come before and after it (not necessarily next in the file)."""
    recs = [auditlog.parse(r) for r in raws]
    for i, r in enumerate(recs[:-1]):
        if r.type == auditlog.TYPE_EXEC and any(x.stream == r.stream for x in recs[:i]) \
                and any(x.stream == r.stream for x in recs[i + 1:]):
            return i, recs
    pytest.skip("no suitable record in the recording")


def test_modified_record_is_reported_by_position(recorded, keys, tmp_path):
    raws = _entries(recorded["path"])
    i, _ = _pick(raws)
    bad = bytearray(raws[i])
    bad[auditlog.HDR_SIZE + 100] ^= 0x01          # one ciphertext bit
    _write(tmp_path / "m.clog", raws[:i] + [bytes(bad)] + raws[i + 1:], recorded["path"])
    rc, rep = _verify(tmp_path / "m.clog", keys["file"])
    assert rc == 1
    assert [(p["kind"], p["position"]) for p in rep["problems"]] == [("modified", i + 1)]

    hdr = bytearray(raws[i])
    hdr[24] ^= 0x01                               # the header's `lost` field (AAD)
    _write(tmp_path / "h.clog", raws[:i] + [bytes(hdr)] + raws[i + 1:], recorded["path"])
    rc, rep = _verify(tmp_path / "h.clog", keys["file"])
    assert rc == 1 and ("modified", i + 1) in [(p["kind"], p["position"]) for p in rep["problems"]]


def test_reordered_record_is_reported_by_position(recorded, keys, tmp_path):
    """Two neighbouring records of one stream swapped. Not two records
    with another CPU's records between them: moving a record past those
    can also (rightly) report them, by time, when seconds lie between."""
    raws = _entries(recorded["path"])
    recs = [auditlog.parse(r) for r in raws]
    i = next((k for k in range(len(recs) - 1) if recs[k].stream == recs[k + 1].stream
              and auditlog.TYPE_EXEC in (recs[k].type, recs[k + 1].type)), None)
    if i is None:
        pytest.skip("no two neighbouring records of one CPU in the recording")
    j = i + 1
    swapped = list(raws)
    swapped[i], swapped[j] = swapped[j], swapped[i]
    _write(tmp_path / "r.clog", swapped, recorded["path"])
    rc, rep = _verify(tmp_path / "r.clog", keys["file"])
    assert rc == 1 and rep["problems"]
    # one of the two swapped records is out of place (and nothing else)
    assert {(p["kind"], p["position"]) for p in rep["problems"]} <= {("reordered", i + 1),
                                                                     ("reordered", j + 1)}


def test_dropped_record_is_reported_by_position(recorded, keys, tmp_path):
    raws = _entries(recorded["path"])
    i, recs = _pick(raws)
    j = next(k for k in range(i + 1, len(recs)) if recs[k].stream == recs[i].stream)
    _write(tmp_path / "d.clog", raws[:i] + raws[i + 1:], recorded["path"])
    rc, rep = _verify(tmp_path / "d.clog", keys["file"])
    assert rc == 1
    probs = rep["problems"]
    assert [(p["kind"], p["position"]) for p in probs] == [("dropped", j)]   # j+1 shifted by one
    assert f"seq {recs[i].seq}:" in probs[0]["message"]


def test_truncated_file_is_reported(recorded, keys, tmp_path):
    raws = _entries(recorded["path"])
    _write(tmp_path / "t.clog", raws[:-3], recorded["path"])   # END marks (and more) cut off
    rc, rep = _verify(tmp_path / "t.clog", keys["file"])
    assert rc == 1 and rep["problems"]
    assert {p["kind"] for p in rep["problems"]} == {"truncated"}

    whole = recorded["path"].read_bytes()
    (tmp_path / "c.clog").write_bytes(whole[:-10])   # cut inside the last record
    rc, rep = _verify(tmp_path / "c.clog", keys["file"])
    assert rc == 1
    assert ("truncated", len(raws)) in [(p["kind"], p["position"]) for p in rep["problems"]]


def test_wrong_key_fails_cleanly(recorded, keys):
    for cmd in (["verify"], ["show"]):
        res = run_cli("logs", *cmd, str(recorded["path"]), "--key-file", str(keys["wrong"]))
        assert res.returncode == 1
        assert res.stderr.startswith("cryptbpf: ") and "wrong key" in res.stderr
        assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
