"""aes_roundtrip: bpf_crypto cbc(aes) against pycryptodome, through
BPF_PROG_TEST_RUN and between two network namespaces."""

from __future__ import annotations

import os

import pytest
from Crypto.Cipher import AES
from Crypto.Util.Padding import pad
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from cryptbpf import lifecycle
from cryptbpf.demo import exchange
from cryptbpf.crypto.aes_cbc import install_aes_key
from cryptbpf.programs.aes_roundtrip import SPEC

from conftest import require_feature, system_snapshot

TC_ACT_OK, TC_ACT_SHOT = 0, 2
LENGTHS = [0, 1, 15, 16, 17, 31, 32, 33, 100, 255, 256, 1000, 1400]


@pytest.fixture
def rt(load_object):
    for f in SPEC.requires:
        require_feature(f)
    return load_object("aes_roundtrip")


def datagram(payload: bytes, dport: int = 4242, **udp) -> bytes:
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") /
                 IP(src="10.1.0.1", dst="10.1.0.2") / UDP(sport=999, dport=dport, **udp) / payload)


def udp_payload(frame: bytes) -> bytes:
    return bytes(Ether(frame)[UDP].payload)


def ip_checksum_ok(frame: bytes) -> bool:
    ip = Ether(frame)[IP]
    fresh = IP(bytes(ip))
    del fresh.chksum
    return IP(bytes(fresh)).chksum == ip.chksum and ip.len == len(bytes(ip))


def stats(obj) -> dict:
    return SPEC.stats(obj)


@pytest.mark.parametrize("key_len", [16, 32])
def test_encrypt_matches_pycryptodome_and_decrypts_back(rt, key_len):
    key = os.urandom(key_len)
    install_aes_key(rt, "aes_setup", key)
    for n in LENGTHS:
        iv, msg = os.urandom(16), os.urandom(n)
        enc = rt.program("aes_encrypt").test_run(data=datagram(iv + msg))
        assert enc.retval == TC_ACT_OK
        assert udp_payload(enc.data) == iv + AES.new(key, AES.MODE_CBC, iv).encrypt(pad(msg, 16)), n
        assert ip_checksum_ok(enc.data)
        dec = rt.program("aes_decrypt").test_run(data=enc.data)
        assert dec.retval == TC_ACT_OK
        # byte-exact original, except the UDP checksum the program zeroes
        assert dec.data == datagram(iv + msg, chksum=0), n
    assert stats(rt)["encrypted"] == stats(rt)["decrypted"] == len(LENGTHS)


def test_decrypts_pycryptodome_ciphertext(rt):
    key, iv, msg = os.urandom(32), os.urandom(16), b"independent implementation" * 7
    install_aes_key(rt, "aes_setup", key)
    ct = AES.new(key, AES.MODE_CBC, iv).encrypt(pad(msg, 16))
    dec = rt.program("aes_decrypt").test_run(data=datagram(iv + ct))
    assert dec.retval == TC_ACT_OK and udp_payload(dec.data) == iv + msg


@pytest.mark.parametrize("last_block", [
    b"\x00" * 16,                      # pad byte 0
    b"\x11" * 16,                      # pad byte 17 > block
    b"A" * 13 + b"\x02\x03\x03",       # run broken
    b"A" * 15 + b"\x05",               # claims 5, only 1 matches
])
def test_bad_padding_is_dropped_and_counted(rt, last_block):
    key, iv = os.urandom(32), os.urandom(16)
    install_aes_key(rt, "aes_setup", key)
    ct = AES.new(key, AES.MODE_CBC, iv).encrypt(b"B" * 16 + last_block)
    res = rt.program("aes_decrypt").test_run(data=datagram(iv + ct))
    assert res.retval == TC_ACT_SHOT
    assert stats(rt)["bad_padding"] == 1 and stats(rt)["decrypted"] == 0


@pytest.mark.parametrize("ct_len", [0, 1, 15, 17, 40])
def test_unaligned_ciphertext_is_dropped(rt, ct_len):
    install_aes_key(rt, "aes_setup", os.urandom(32))
    res = rt.program("aes_decrypt").test_run(data=datagram(os.urandom(16 + ct_len)))
    assert res.retval == TC_ACT_SHOT and stats(rt)["malformed"] == 1


def test_no_key_means_drop_never_cleartext(rt):
    res = rt.program("aes_encrypt").test_run(data=datagram(os.urandom(16) + b"secret"))
    assert res.retval == TC_ACT_SHOT and stats(rt)["no_key"] == 1


def test_other_traffic_untouched(rt):
    install_aes_key(rt, "aes_setup", os.urandom(32))
    for frame in (datagram(os.urandom(40), dport=53), datagram(b"short"),
                  bytes(Ether() / IP(dst="10.1.0.2", proto=6) / (b"x" * 40))):
        for prog in ("aes_encrypt", "aes_decrypt"):
            res = rt.program(prog).test_run(data=frame)
            assert res.retval == TC_ACT_OK and res.data == frame
    assert not any(stats(rt).values())


def test_bad_key_length_refused(rt):
    from cryptbpf.errors import CryptbpfError
    with pytest.raises(CryptbpfError, match="refused the AES key: errno 22"):
        install_aes_key(rt, "aes_setup", os.urandom(24)[:20])
    assert rt.get_global_int("setup_status", signed=True) == -22


def test_between_namespaces_wire_is_ciphertext_and_round_trip_exact(veth_pair):
    for f in SPEC.requires:
        require_feature(f)
    before = {ns: system_snapshot(ns, SPEC.name) for ns in (veth_pair.ns_a, veth_pair.ns_b)}
    key, iv, msg = os.urandom(32), os.urandom(16), os.urandom(777)
    try:
        lifecycle.load(SPEC, veth_pair.dev_a, key=key, netns=veth_pair.ns_a)
        wire = exchange(veth_pair, iv + msg)
        assert wire == iv + AES.new(key, AES.MODE_CBC, iv).encrypt(pad(msg, 16))
        lifecycle.load(SPEC, veth_pair.dev_b, netns=veth_pair.ns_b)
        assert exchange(veth_pair, iv + msg) == iv + msg
        assert exchange(veth_pair, b"plain", port=5353) == b"plain"  # other port
    finally:
        lifecycle.unload(SPEC.name)
    after = {ns: system_snapshot(ns, SPEC.name) for ns in (veth_pair.ns_a, veth_pair.ns_b)}
    assert after == before
