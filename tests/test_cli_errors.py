"""Bad input to the peers and admin commands of signed-auth, cas,
offload, pki, zkp and pow: one `cryptbpf: ...` line on stderr, exit 1,
never a traceback -- checked before any network or kernel work, so these
run without root and without a loaded program."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import require_root, run_cli

NO_HOST = "nosuchhost.invalid"      # RFC 6761: never resolves
NOT_LOCAL = "198.51.100.254"        # TEST-NET-2: configured on no interface here


def _self_signed(key) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cli-errors leaf")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_errors")
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    for name, data, mode in (("key.pem", pem, 0o600), ("open.pem", pem, 0o644),
                             ("junk.pem", b"junk\n", 0o600), ("secret", os.urandom(32), 0o600),
                             ("data.bin", b"x" * 100, 0o644), ("leaf.pem", _self_signed(key), 0o644)):
        (d / name).write_bytes(data)
        os.chmod(d / name, mode)
    return d


CASES = {
    "sign: port too big": (["sign", "send", "--id", "1", "--key", "{d}/key.pem", "127.0.0.1", "99999", "x"],
                           "port 99999 out of range"),
    "sign: port 0": (["sign", "send", "--id", "1", "--key", "{d}/key.pem", "127.0.0.1", "0", "x"],
                     "port 0 out of range"),
    "sign: bad source port": (["sign", "send", "--id", "1", "--key", "{d}/key.pem", "--source-port", "70000",
                               "127.0.0.1", "9", "x"], "--source-port 70000"),
    "sign: missing key": (["sign", "send", "--id", "1", "--key", "{d}/nope.pem", "127.0.0.1", "9", "x"],
                          "does not exist"),
    "sign: key readable by others": (["sign", "send", "--id", "1", "--key", "{d}/open.pem", "127.0.0.1", "9", "x"],
                                     "readable by others"),
    "sign: junk key": (["sign", "send", "--id", "1", "--key", "{d}/junk.pem", "127.0.0.1", "9", "x"],
                       "not an unencrypted PEM private key"),
    "signed-auth: junk public key": (["signed-auth", "trust", "{d}/junk.pem", "--id", "1"], "not a PEM public key"),
    "cas send: port too big": (["cas", "send", "{d}/data.bin", "127.0.0.1", "99999"], "port 99999 out of range"),
    "cas send: missing file": (["cas", "send", "{d}/nope.bin", "127.0.0.1", "9"], "nope.bin"),
    "cas recv: port too big": (["cas", "recv", "{d}/out.bin", "--port", "99999"], "--port 99999 out of range"),
    "cas allow: not an id": (["cas", "allow", "zz"], "not a content id"),
    "offload request: port too big": (["offload", "request", "sha256", "127.0.0.1", "--port", "99999",
                                       "--data", "x"], "--port 99999 out of range"),
    "offload request: missing file": (["offload", "request", "sha256", "127.0.0.1", "--file", "{d}/nope"], "nope"),
    "offload request: bad op": (["offload", "request", "md5", "127.0.0.1"], "op must be one of"),
    "offload load-gen: port too big": (["offload", "load-gen", "127.0.0.1", "--port", "99999"],
                                       "--port 99999 out of range"),
    "offload keys add: key readable by others": (["offload", "keys", "add", "1", "hmac", "{d}/open.pem"],
                                                 "readable by others"),
    "pki connect: port too big": (["pki", "connect", "127.0.0.1", "99999", "--cert", "{d}/key.pem",
                                   "--key", "{d}/key.pem"], "port 99999 out of range"),
    "pki connect: junk certificate": (["pki", "connect", "127.0.0.1", "9", "--cert", "{d}/junk.pem",
                                       "--key", "{d}/key.pem"], "not a certificate"),
    "pki connect: missing certificate": (["pki", "connect", "127.0.0.1", "9", "--cert", "{d}/nope.pem",
                                          "--key", "{d}/key.pem"], "nope.pem"),
    "zkp connect: port too big": (["zkp", "connect", "127.0.0.1", "99999", "--secret-file", "{d}/secret",
                                   "--key-id", "1"], "port 99999 out of range"),
    "zkp connect: secret readable by others": (["zkp", "connect", "127.0.0.1", "9", "--secret-file",
                                                "{d}/open.pem", "--key-id", "1"], "readable by others"),
    "pow send: port too big": (["pow", "send", "127.0.0.1", "99999", "x"], "port 99999 out of range"),
    # a host that does not resolve is named (not a bare `[Errno -2] Name or service not known`)
    "sign: unknown host": (["sign", "send", "--id", "1", "--key", "{d}/key.pem", NO_HOST, "9", "x"],
                           f"cannot resolve host '{NO_HOST}'"),
    "pki connect: unknown host": (["pki", "connect", NO_HOST, "9", "--cert", "{d}/leaf.pem",
                                   "--key", "{d}/key.pem"], f"cannot resolve host '{NO_HOST}'"),
    "zkp connect: unknown host": (["zkp", "connect", NO_HOST, "9", "--secret-file", "{d}/secret",
                                   "--key-id", "1"], f"cannot resolve host '{NO_HOST}'"),
    "pow send: unknown host": (["pow", "send", NO_HOST, "9", "x"], f"cannot resolve host '{NO_HOST}'"),
    "cas send: unknown host": (["cas", "send", "{d}/data.bin", NO_HOST, "9"],
                               f"cannot resolve host '{NO_HOST}'"),
    "cas recv: unknown --bind host": (["cas", "recv", "{d}/out.bin", "--bind", NO_HOST],
                                      f"cannot resolve --bind '{NO_HOST}'"),
    "offload request: unknown host": (["offload", "request", "sha256", NO_HOST, "--data", "x"],
                                      f"cannot resolve server '{NO_HOST}'"),
    "offload load-gen: unknown host": (["offload", "load-gen", NO_HOST],
                                       f"cannot resolve server '{NO_HOST}'"),
    # a local address configured nowhere (bind: EADDRNOTAVAIL) is named
    "pow send: --source not local": (["pow", "send", "127.0.0.1", "9", "x", "--source", NOT_LOCAL],
                                     f"--source {NOT_LOCAL}: not an address of this host"),
    "zkp connect: --source not local": (["zkp", "connect", "127.0.0.1", "9", "--secret-file", "{d}/secret",
                                         "--key-id", "1", "--source", NOT_LOCAL],
                                        f"--source {NOT_LOCAL}: not an address of this host"),
    "cas recv: --bind not local": (["cas", "recv", "{d}/out.bin", "--bind", NOT_LOCAL],
                                   f"--bind {NOT_LOCAL}: not an address of this host"),
    # key sizes: what the programs and peers take, nothing written otherwise
    "keys new: size 0": (["keys", "new", "{d}/size0.key", "--size", "0"],
                         "key size 0 out of range: keys are 16..64 bytes"),
    "keys new: size 100000000": (["keys", "new", "{d}/huge.key", "--size", "100000000"],
                                 "key size 100000000 out of range: keys are 16..64 bytes"),
    "keys new: missing directory": (["keys", "new", "{d}/nodir/k.key"], "nodir/k.key"),
    "keys generate: public key in a missing directory": (
        ["keys", "generate", "{d}/pair.pem", "--public", "{d}/nodir/pair.pub.pem"],
        "directory {d}/nodir does not exist"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_and_exit_1(files, case):
    args, expect = CASES[case]
    res = run_cli(*[a.format(d=files) for a in args])
    assert res.returncode == 1, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cryptbpf: "), res.stderr
    assert expect.format(d=files) in lines[0], lines[0]
    assert "Traceback" not in res.stderr + res.stdout


def test_pki_leaf_key_readable_by_others_is_refused(files):
    """The leaf key of `pki connect` follows the 0600 rule like every key."""
    from cryptbpf.errors import CryptbpfError
    from cryptbpf.programs.pki_validator import client as peer
    with pytest.raises(CryptbpfError, match="readable by others"):
        peer.load_key(files / "open.pem")
    assert peer.load_key(files / "key.pem").curve.name == "secp256r1"


def test_demo_ca_tightens_an_existing_key_file(tmp_path):
    """Re-issuing into a directory whose key file was left world-readable
    leaves it 0600 (os.open's mode applies only when the file is created)."""
    from cryptbpf.programs.pki_validator import ca
    p = tmp_path / "leaf.key"
    p.write_bytes(b"old")
    os.chmod(p, 0o644)
    ca._write(p, b"new private key", private=True)
    assert p.read_bytes() == b"new private key" and (p.stat().st_mode & 0o777) == 0o600


# ---- nothing left behind by a refused key command

@pytest.mark.parametrize("size", ["0", "15", "65", "100000000"])
def test_keys_new_out_of_range_writes_nothing(tmp_path, size):
    res = run_cli("keys", "new", str(tmp_path / "k"), "--size", size)
    assert res.returncode == 1 and "16..64 bytes" in res.stderr, res.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("size", [16, 32, 64])
def test_keys_new_in_range(tmp_path, size):
    run_cli("keys", "new", str(tmp_path / "k"), "--size", str(size), check=True)
    assert len((tmp_path / "k").read_bytes()) == size
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600


def test_key_size_range_covers_every_program_and_peer():
    """keys new's bounds are what the programs load and the peers take."""
    from cryptbpf import keys, programs
    from cryptbpf.programs.crypto_offload import wire as P
    from cryptbpf.programs.zkp_filter import control as zkp_filter
    sizes = {n for spec in programs.discover().values() for n in spec.key_sizes}
    sizes |= set(zkp_filter.SECRET_SIZES) | {P.C("OFFLOAD_AEAD_KEY_SIZE"), 16, P.C("OFFLOAD_KEY_MAX")}
    assert (keys.MIN_KEY_SIZE, keys.MAX_KEY_SIZE) == (min(sizes), max(sizes))


def test_keys_generate_leaves_no_private_key_when_the_public_one_fails(tmp_path, monkeypatch):
    """Both paths are checked first; and a failure writing the public key
    (here: the disk fills up) removes the private key just written."""
    res = run_cli("keys", "generate", str(tmp_path / "a.pem"), "--public", str(tmp_path / "no/a.pub.pem"))
    assert res.returncode == 1 and list(tmp_path.iterdir()) == []
    res = run_cli("keys", "generate", str(tmp_path / "b.pem"), "--public", str(tmp_path / "b.pem"))
    assert res.returncode == 1 and list(tmp_path.iterdir()) == []

    from cryptbpf.crypto import p256_keys
    from cryptbpf.errors import CryptbpfError
    real_open = os.open

    def full_disk(path, flags, mode=0o777):
        if str(path).endswith(".pub.pem"):
            raise OSError(28, "No space left on device", str(path))
        return real_open(path, flags, mode)
    monkeypatch.setattr(p256_keys.os, "open", full_disk)
    with pytest.raises(CryptbpfError, match="No space left on device; no key file left behind"):
        p256_keys.generate_keypair(tmp_path / "c.pem", tmp_path / "c.pub.pem")
    assert list(tmp_path.iterdir()) == []


def test_key_file_that_cannot_be_written_is_removed(tmp_path, monkeypatch):
    from cryptbpf import keys
    from cryptbpf.errors import CryptbpfError

    class Full:
        def __init__(self, fd, mode):
            os.close(fd)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def write(self, data):
            raise OSError(28, "No space left on device")
    monkeypatch.setattr(keys.os, "fdopen", Full)
    with pytest.raises(CryptbpfError, match="No space left on device"):
        keys.write_key_file(tmp_path / "k", keys.random_key(32))
    assert list(tmp_path.iterdir()) == []


# ---- a silent or absent server: one line naming HOST:PORT, exit 1

@pytest.fixture
def silent_port():
    """A UDP port on 127.0.0.1 where a socket receives and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def _one_error_line(res) -> str:
    assert res.returncode == 1, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cryptbpf: "), res.stderr
    return lines[0]


def test_pow_send_without_any_answer_fails(silent_port):
    line = _one_error_line(run_cli("pow", "send", "127.0.0.1", str(silent_port), "x", "--timeout", "0.2"))
    assert f"no answer from 127.0.0.1:{silent_port} within 0.2s" in line
    # --no-reply asks for none: sending is all it does
    res = run_cli("pow", "send", "127.0.0.1", str(silent_port), "x", "--no-reply", "--timeout", "0.2")
    assert res.returncode == 0 and "sent 1, replies 0" in res.stdout, res.stderr


def test_pow_send_with_an_answer_succeeds():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(5)
        import threading

        def echo():
            data, peer = s.recvfrom(2048)
            s.sendto(b"pong:" + data, peer)
        t = threading.Thread(target=echo)
        t.start()
        res = run_cli("pow", "send", "127.0.0.1", str(s.getsockname()[1]), "ping")
        t.join()
    assert res.returncode == 0 and "reply: b'pong:ping'" in res.stdout, res.stderr


def test_zkp_connect_without_any_answer_names_host_and_port(files, silent_port):
    line = _one_error_line(run_cli("zkp", "connect", "127.0.0.1", str(silent_port), "--secret-file",
                                   str(files / "secret"), "--key-id", "1", "--timeout", "0.1"))
    assert f"no answer from 127.0.0.1:{silent_port}" in line


def test_pki_connect_to_a_closed_port_names_host_and_port(files):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]         # closed again below: ICMP port unreachable
    line = _one_error_line(run_cli("pki", "connect", "127.0.0.1", str(port), "--cert", str(files / "leaf.pem"),
                                   "--key", str(files / "key.pem"), "--timeout", "0.5"))
    assert f"hello: no answer from 127.0.0.1:{port} (port unreachable" in line


# ---- offload config: every value within its real bounds, nothing written otherwise

class _ConfigMap:
    def __init__(self):
        self.value, self.writes = None, 0

    def lookup(self, key):
        return self.value

    def update(self, key, value):
        self.value, self.writes = value, self.writes + 1


class _Handle:
    def __init__(self):
        self.m = _ConfigMap()

    def map(self, name):
        assert name == "offload_config"
        return self.m


@pytest.mark.parametrize("setting,value,expect", [
    ("kernel_max_len", "99999", "kernel_max_len=99999 out of range 0..1472"),
    ("kernel_max_len", "1473", "out of range 0..1472"),
    ("kernel_max_len", "-1", "out of range 0..1472"),
    ("ewma_shift", "16", "ewma_shift=16 out of range 0..15"),
    ("explore_every", str(2**32), "out of range 0..4294967295"),
    ("sample_every", "-3", "out of range 0..4294967295"),
    ("heartbeat_timeout_ms", "0", "heartbeat_timeout_ms=0 out of range 200.."),
    ("heartbeat_timeout_ms", "50", "out of range 200.."),
    ("heartbeat_timeout_ms", str(2**64), "out of range 200.."),
    ("refresh_ms", str(2**64), "refresh_ms=18446744073709551616 out of range 0.."),
    ("refresh_ms", "soon", "refresh_ms must be an integer, not 'soon'"),
    ("mode", "sideways", "mode must be one of auto, kernel, daemon"),
])
def test_offload_config_refuses_values_out_of_bounds(setting, value, expect):
    from cryptbpf.errors import CryptbpfError
    from cryptbpf.programs.crypto_offload import control
    h = _Handle()
    control.write_config(h, **control.DEFAULT_CONFIG)
    before = (h.m.value, h.m.writes)
    with pytest.raises(CryptbpfError) as e:
        control.write_config(h, **{setting: value})
    assert expect in str(e.value)
    assert (h.m.value, h.m.writes) == before


def test_offload_config_accepts_its_bounds():
    from cryptbpf.programs.crypto_offload import control
    h = _Handle()
    for lo_hi in (0, 1):
        values = {k: str(v[lo_hi]) for k, v in control.CONFIG_LIMITS.items()}
        cur = control.write_config(h, **values)
        assert control.read_config(h) == {**cur, "mode": "auto"}
        assert cur["kernel_max_len"] == (0, 1472)[lo_hi]


# ---- encrypted-tunnel: the peer address checked before `ip` sees it, --local must be local

@pytest.mark.parametrize("addr,expect", [
    ("10.0.0.300", "peer '10.0.0.300' is not an IPv4 address"),
    ("bogus", "peer 'bogus' is not an IPv4 address"),
    ("10.1", "peer '10.1' is not an IPv4 address"),
    ("10.0.0.0/24", "is a prefix"),
    ("fd00::2", "peer fd00::2 is an IPv6 address"),
    ("127.0.0.2", "loopback"),
    ("224.0.0.5", "multicast"),
    ("0.0.0.0", "unspecified"),
    ("255.255.255.255", "broadcast"),
])
def test_tunnel_add_peer_bad_address(files, addr, expect):
    require_root()
    line = _one_error_line(run_cli("tunnel", "add-peer", addr, "--key-file", str(files / "secret")))
    assert expect in line
    assert "ip -j route get" not in line and "valid prefix" not in line


def test_tunnel_local_address_must_be_configured_here(veth_pair):
    """--local is checked inside the device's namespace, before the peer
    route is changed."""
    from cryptbpf.errors import CryptbpfError
    from cryptbpf.netns import inside
    from cryptbpf.programs.encrypted_tunnel import device
    p = veth_pair

    def routes():
        return subprocess.run(["ip", "-n", p.ns_a, "route"], capture_output=True, text=True).stdout
    before = routes()
    with inside(p.ns_a):
        with pytest.raises(CryptbpfError, match=f"--local {NOT_LOCAL}: not an address of this host"):
            device.add_peer_route(p.addr_b, p.dev_a, 60, local=NOT_LOCAL)
        with pytest.raises(CryptbpfError, match=f"--local {p.addr_b}: not an address of this host"):
            device.add_peer_route(p.addr_b, p.dev_a, 60, local=p.addr_b)   # the peer's, not ours
        with pytest.raises(CryptbpfError, match=f"peer {p.addr_a} is an address of this host"):
            device.add_peer_route(p.addr_a, p.dev_a, 60)
        assert routes() == before
        rec = device.add_peer_route(p.addr_b, p.dev_a, 60, local=p.addr_a)
        try:
            assert rec["local"] == p.addr_a and f"{p.addr_b} " in routes()
        finally:
            device.remove_peer_route(rec, p.dev_a)
    assert routes() == before
