"""Bad input to the peers and admin commands of signed-auth, cas,
offload, pki, zkp and pow: one `cryptbpf: ...` line on stderr, exit 1,
never a traceback -- checked before any network or kernel work, so these
run without root and without a loaded program."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from conftest import run_cli


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_errors")
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    for name, data, mode in (("key.pem", pem, 0o600), ("open.pem", pem, 0o644),
                             ("junk.pem", b"junk\n", 0o600), ("secret", os.urandom(32), 0o600),
                             ("data.bin", b"x" * 100, 0o644)):
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
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_and_exit_1(files, case):
    args, expect = CASES[case]
    res = run_cli(*[a.format(d=files) for a in args])
    assert res.returncode == 1, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cryptbpf: "), res.stderr
    assert expect in lines[0], lines[0]
    assert "Traceback" not in res.stderr + res.stdout


def test_pki_leaf_key_readable_by_others_is_refused(files):
    """The leaf key of `pki connect` follows the 0600 rule like every key."""
    from cryptbpf.errors import CryptbpfError
    from cryptbpf.pki import peer
    with pytest.raises(CryptbpfError, match="readable by others"):
        peer.load_key(files / "open.pem")
    assert peer.load_key(files / "key.pem").curve.name == "secp256r1"


def test_demo_ca_tightens_an_existing_key_file(tmp_path):
    """Re-issuing into a directory whose key file was left world-readable
    leaves it 0600 (os.open's mode applies only when the file is created)."""
    from cryptbpf.pki import ca
    p = tmp_path / "leaf.key"
    p.write_bytes(b"old")
    os.chmod(p, 0o644)
    ca._write(p, b"new private key", private=True)
    assert p.read_bytes() == b"new private key" and (p.stat().st_mode & 0o777) == 0o600
