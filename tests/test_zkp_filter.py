"""zkp_filter: the challenge-response exchange and the port filter, through
BPF_PROG_TEST_RUN (replies checked with scapy, MACs with Python's hmac) and
between two network namespaces with the real client."""

from __future__ import annotations

import os
import subprocess
import sys
import pytest
from scapy.layers.inet import IP, IPOption_NOP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop
from scapy.layers.l2 import ARP, Ether

from cryptbpf.bpf import attach
from cryptbpf import lifecycle, netns
from cryptbpf.programs.zkp_filter import client as zc
from cryptbpf.errors import CryptbpfError
from cryptbpf.bpf.object import BpfObject
from cryptbpf.bpf.pins import Pinned
from cryptbpf.programs.zkp_filter import SPEC, control as zf

from conftest import TEST_OBJ_DIR, require_feature, run_cli, system_snapshot, udp_echo, udp_echo_reachable
from xdp_frames import (CLIENT, SERVER, XDP_DROP, XDP_PASS, XDP_TX, check_reply,
                        tcp_frame, udp_frame)

CTRL = 7227
PROTECTED = 2222
SLOT_S = 30
SECRET = b"correct horse battery staple 123"
KEY_ID = 7


@pytest.fixture
def zkp(load_object):
    for f in SPEC.requires:
        require_feature(f)
    obj = load_object("zkp_filter")
    obj.server_key = os.urandom(32)   # known to the test: challenges can be recomputed
    zf.install_server_key(obj, obj.server_key)
    zf.add_key(obj, KEY_ID, zc.derive_verifier(SECRET))
    zf.protect(obj, PROTECTED)
    return obj


def run(obj, frame: bytes):
    return obj.program("zkp_filter").test_run(data=frame)


def stats(obj) -> dict:
    return SPEC.stats(obj)


def nonzero(obj) -> dict:
    return {k: v for k, v in stats(obj).items() if v}


def now_slot() -> int:
    return zf.boot_ns() // (SLOT_S * 10**9)


def hello(obj, src=CLIENT, **kw) -> dict:
    req = udp_frame(zc.pack("hello", client_nonce=os.urandom(16)), CTRL, src=src, **kw)
    res = run(obj, req)
    assert res.retval == XDP_TX
    return zc.unpack(check_reply(res.data, req))


def proof(obj, chal: dict, src=CLIENT, secret=SECRET, key_id=KEY_ID, proof_addr=None):
    msg = zc.proof_message(chal, zc.derive_verifier(secret), proof_addr or src, key_id)
    return run(obj, udp_frame(msg, CTRL, src=src)), msg


def authorize(obj, src=CLIENT):
    res, _ = proof(obj, hello(obj, src), src)
    assert res.retval == XDP_TX


def reaches_protected(obj, src=CLIENT) -> bool:
    verdicts = {run(obj, tcp_frame(PROTECTED, src)).retval,
                run(obj, udp_frame(b"app data", PROTECTED, src=src)).retval}
    assert len(verdicts) == 1
    return verdicts == {XDP_PASS}


# ------------------------------------------------------------ challenge

def test_hello_is_answered_with_the_challenge_python_computes(zkp):
    nonce = os.urandom(16)
    req = udp_frame(zc.pack("hello", client_nonce=nonce), CTRL, sport=51234)
    res = run(zkp, req)
    assert res.retval == XDP_TX
    m = zc.unpack(check_reply(res.data, req))
    assert m["type"] == 2 and m["client_nonce"] == nonce  # ZKP_CHALLENGE
    assert m["slot"] in (now_slot(), now_slot() - 1)  # the clock may tick in between
    assert m["challenge"] == zc.compute_challenge(zkp.server_key, CLIENT, m["slot"], nonce)
    assert m["proof"] == bytes(32) and m["key_id"] == 0
    assert nonzero(zkp) == {"hellos": 1}


@pytest.mark.parametrize("variant", [{"vlan": 42}, {"ip_options": [IPOption_NOP()] * 4}],
                         ids=["vlan", "ip-options"])
def test_reply_keeps_vlan_and_options_with_correct_checksums(zkp, variant):
    req = udp_frame(zc.pack("hello", client_nonce=os.urandom(16)), CTRL, **variant)
    res = run(zkp, req)
    assert res.retval == XDP_TX
    m = zc.unpack(check_reply(res.data, req))
    assert m["challenge"] == zc.compute_challenge(zkp.server_key, CLIENT, m["slot"], m["client_nonce"])


def test_challenges_differ_per_address_and_nonce(zkp):
    a, b = hello(zkp, "10.9.0.1"), hello(zkp, "10.9.0.3")
    assert a["challenge"] != b["challenge"]
    assert hello(zkp)["challenge"] != hello(zkp)["challenge"]


def test_no_server_key_no_challenge(load_object):
    obj = load_object("zkp_filter")
    res = run(obj, udp_frame(zc.pack("hello", client_nonce=os.urandom(16)), CTRL))
    assert res.retval == XDP_DROP and nonzero(obj) == {"no_key": 1}


# ------------------------------------------------------------ proof

def test_valid_proof_authorizes_source_and_is_answered(zkp):
    assert not reaches_protected(zkp)
    chal = hello(zkp)
    res, msg = proof(zkp, chal)
    assert res.retval == XDP_TX
    acc = zc.unpack(check_reply(res.data, udp_frame(msg, CTRL)))
    assert acc["type"] == 4 and acc["key_id"] == KEY_ID and acc["lifetime_s"] == 300
    assert acc["challenge"] == chal["challenge"] and acc["proof"] == bytes(32)
    assert reaches_protected(zkp)
    assert not reaches_protected(zkp, "10.9.0.99")        # only that source
    auth = zf.authorizations(zkp)
    assert [(a["source"], a["key_id"]) for a in auth] == [(CLIENT, KEY_ID)]
    assert 290 < auth[0]["expires_in_s"] <= 300
    assert zf.key_counters(zkp)[KEY_ID] == {"accepted": 1, "bad_proof": 0, "replayed": 0, "over_budget": 0}
    s = stats(zkp)
    assert (s["accepted"], s["passed"], s["dropped"]) == (1, 2, 4)


def test_wrong_secret_is_dropped_and_counted(zkp):
    res, _ = proof(zkp, hello(zkp), secret=b"not the secret at all, no no no")
    assert res.retval == XDP_DROP
    assert not reaches_protected(zkp)
    assert stats(zkp)["bad_proof"] == 1 and stats(zkp)["accepted"] == 0
    assert zf.key_counters(zkp)[KEY_ID]["bad_proof"] == 1


def test_replayed_proof_is_rejected(zkp):
    chal = hello(zkp)
    first, msg = proof(zkp, chal)
    assert first.retval == XDP_TX
    zf.revoke(zkp, KEY_ID)                        # forget the authorization ...
    zf.add_key(zkp, KEY_ID, zc.derive_verifier(SECRET))
    again = run(zkp, udp_frame(msg, CTRL))        # ... and replay the same proof
    assert again.retval == XDP_DROP
    assert not reaches_protected(zkp)
    assert stats(zkp)["replayed"] == 1 and zf.key_counters(zkp)[KEY_ID]["replayed"] == 1


def test_stale_challenge_is_rejected(zkp):
    nonce = os.urandom(16)
    for slot in (now_slot() - 2, now_slot() - 100, now_slot() + 5, now_slot() + 2**31):
        slot %= 2**32
        chal = {"slot": slot, "client_nonce": nonce,
                "challenge": zc.compute_challenge(zkp.server_key, CLIENT, slot, nonce)}
        res, _ = proof(zkp, chal)
        assert res.retval == XDP_DROP
    assert stats(zkp)["stale"] == 4 and not reaches_protected(zkp)


def test_previous_slot_challenge_is_still_accepted(zkp):
    nonce, slot = os.urandom(16), now_slot() - 1
    chal = {"slot": slot, "client_nonce": nonce,
            "challenge": zc.compute_challenge(zkp.server_key, CLIENT, slot, nonce)}
    res, _ = proof(zkp, chal)
    assert res.retval == XDP_TX and reaches_protected(zkp)


@pytest.mark.parametrize("forge", ["random", "other-key", "nonce-swapped"])
def test_forged_challenge_is_rejected(zkp, forge):
    chal = hello(zkp)
    if forge == "random":
        chal["challenge"] = os.urandom(32)
    elif forge == "other-key":
        chal["challenge"] = zc.compute_challenge(os.urandom(32), CLIENT, chal["slot"], chal["client_nonce"])
    else:
        chal["client_nonce"] = os.urandom(16)
    res, _ = proof(zkp, chal)
    assert res.retval == XDP_DROP
    assert stats(zkp)["bad_challenge"] == 1 and not reaches_protected(zkp)


def test_proof_from_another_address_is_rejected(zkp):
    # A's challenge and proof, sent from B: the challenge is bound to A
    res, _ = proof(zkp, hello(zkp, CLIENT), src="10.9.0.66", proof_addr=CLIENT)
    assert res.retval == XDP_DROP and stats(zkp)["bad_challenge"] == 1
    # B's own challenge, but the proof was computed for A's address
    res, _ = proof(zkp, hello(zkp, "10.9.0.66"), src="10.9.0.66", proof_addr=CLIENT)
    assert res.retval == XDP_DROP and stats(zkp)["bad_proof"] == 1
    assert not reaches_protected(zkp, "10.9.0.66") and not reaches_protected(zkp, CLIENT)


def test_key_id_is_bound_into_the_proof(zkp):
    zf.add_key(zkp, KEY_ID + 1, zc.derive_verifier(b"another secret, another client"))
    chal = hello(zkp)
    good = zc.compute_proof(zc.derive_verifier(SECRET), chal["challenge"], CLIENT, KEY_ID)
    msg = zc.pack("proof", key_id=KEY_ID + 1, slot=chal["slot"], client_nonce=chal["client_nonce"],
                  challenge=chal["challenge"], proof=good)
    assert run(zkp, udp_frame(msg, CTRL)).retval == XDP_DROP
    assert zf.key_counters(zkp)[KEY_ID + 1]["bad_proof"] == 1


def test_unknown_key_id_is_dropped(zkp):
    res, _ = proof(zkp, hello(zkp), key_id=999)
    assert res.retval == XDP_DROP and stats(zkp)["unknown_key"] == 1


def test_revocation_removes_key_and_its_authorizations(zkp):
    zf.add_key(zkp, 8, zc.derive_verifier(b"bob's secret, sixteen+ bytes"))
    authorize(zkp, CLIENT)
    res, _ = proof(zkp, hello(zkp, "10.9.0.5"), "10.9.0.5", secret=b"bob's secret, sixteen+ bytes", key_id=8)
    assert res.retval == XDP_TX
    assert zf.revoke(zkp, KEY_ID) == 1
    assert not reaches_protected(zkp, CLIENT) and reaches_protected(zkp, "10.9.0.5")
    assert KEY_ID not in zf.key_counters(zkp)
    res, _ = proof(zkp, hello(zkp), CLIENT)
    assert res.retval == XDP_DROP and stats(zkp)["unknown_key"] == 1
    with pytest.raises(CryptbpfError, match="no key with id"):
        zf.revoke(zkp, KEY_ID)


def test_expired_authorization_is_dropped(zkp):
    authorize(zkp)
    auth = zkp.map("authorized")
    key, raw = next(auth.items())
    layout = zf._L
    a = layout.unpack("struct zkp_auth", raw)
    auth.update(key, layout.pack("struct zkp_auth", **{**a, "expires_ns": zf.boot_ns() - 1}))
    assert not reaches_protected(zkp)
    assert stats(zkp)["expired"] == 2


def test_auth_ttl_knob(load_object):
    obj = load_object("zkp_filter", auth_ttl_s=5)
    zf.install_server_key(obj, os.urandom(32))
    zf.add_key(obj, KEY_ID, zc.derive_verifier(SECRET))
    res, msg = proof(obj, hello(obj))
    assert zc.unpack(check_reply(res.data, udp_frame(msg, CTRL)))["lifetime_s"] == 5
    assert 0 < zf.authorizations(obj)[0]["expires_in_s"] <= 5


# ------------------------------------------------------------ malformed input

def test_control_messages_of_every_wrong_length_are_dropped(zkp):
    good = zc.pack("hello", client_nonce=os.urandom(16))
    for n in list(range(0, len(good))) + [len(good) + 1, len(good) + 4, 200]:
        payload = (good * 3)[:n]
        res = run(zkp, udp_frame(payload, CTRL))
        assert res.retval == XDP_DROP, n
    assert nonzero(zkp) == {"malformed": len(good) + 3}


@pytest.mark.parametrize("field,value", [("magic", 0x435a4b51), ("version", 2), ("type", 2),
                                         ("type", 4), ("type", 0), ("reserved", 1)])
def test_control_messages_with_bad_fields_are_dropped(zkp, field, value):
    raw = bytearray(zc.pack("proof", client_nonce=os.urandom(16)))
    off = {"magic": 0, "version": 4, "type": 5, "reserved": 6}[field]
    size = 4 if field == "magic" else 2 if field == "reserved" else 1
    raw[off:off + size] = value.to_bytes(size, "big")
    assert run(zkp, udp_frame(bytes(raw), CTRL)).retval == XDP_DROP
    assert nonzero(zkp) == {"malformed": 1}


@pytest.mark.parametrize("kind", ["hello", "proof", "tcp", "udp"])
def test_truncated_frames_of_every_length_are_dropped(zkp, kind):
    authorize(zkp)        # even an authorized source: a cut header is never "valid"
    before = stats(zkp)
    if kind == "hello":
        frame = udp_frame(zc.pack("hello", client_nonce=os.urandom(16)), CTRL)
    elif kind == "proof":
        frame = udp_frame(zc.proof_message(hello(zkp), zc.derive_verifier(SECRET), CLIENT, KEY_ID), CTRL)
        before = stats(zkp)
    elif kind == "tcp":
        frame = tcp_frame(PROTECTED)
    else:
        frame = udp_frame(b"x" * 30, PROTECTED)
    for n in range(14, len(frame)):
        res = run(zkp, frame[:n])
        assert res.retval == XDP_DROP, n
    after = stats(zkp)
    assert after["bad_l4"] - before["bad_l4"] == len(frame) - 14
    assert after["accepted"] == before["accepted"] and after["hellos"] == before["hellos"]


def test_ip_length_beyond_frame_is_dropped(zkp):
    frame = bytearray(udp_frame(zc.pack("hello", client_nonce=os.urandom(16)), CTRL))
    frame[16:18] = (int.from_bytes(frame[16:18], "big") + 1).to_bytes(2, "big")
    assert run(zkp, bytes(frame)).retval == XDP_DROP
    # UDP length disagreeing with IP length: not a well-formed control message
    frame = bytearray(udp_frame(zc.pack("hello", client_nonce=os.urandom(16)), CTRL))
    frame[38:40] = (int.from_bytes(frame[38:40], "big") - 1).to_bytes(2, "big")
    assert run(zkp, bytes(frame)).retval == XDP_DROP and stats(zkp)["malformed"] == 1


# ------------------------------------------------------------ other traffic

def test_other_traffic_is_untouched(zkp):
    frames = [udp_frame(b"dns?", 53), tcp_frame(22), bytes(Ether() / ARP()),
              bytes(Ether() / IP(src=CLIENT, dst=SERVER, proto=1) / (b"\x08\x00" + bytes(30))),
              bytes(Ether() / IPv6() / UDP(dport=53) / b"v6"),
              bytes(Ether() / IP(src=CLIENT, dst=SERVER, frag=10, proto=6) / bytes(40))]
    for f in frames:
        res = run(zkp, f)
        assert res.retval == XDP_PASS and res.data == f
    assert not any(stats(zkp).values())


def test_ipv6_to_protected_port_is_dropped_even_behind_extension_headers(zkp):
    for f in (Ether() / IPv6() / UDP(dport=PROTECTED),
              Ether() / IPv6() / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / UDP(dport=PROTECTED),
              Ether() / IPv6() / (IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt()) /
              (IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt()) / UDP(dport=PROTECTED)):
        assert run(zkp, bytes(f)).retval == XDP_DROP
    s = stats(zkp)
    assert (s["dropped"], s["bad_l4"]) == (2, 1)


def test_unprotect(zkp):
    zf.protect(zkp, PROTECTED, on=False)
    assert reaches_protected(zkp)
    assert zf.protected_ports(zkp) == []


# ------------------------------------------------------------ between namespaces

APP_PORT = 5555


def _app_reachable(ns: str, addr: str) -> bool:
    return udp_echo_reachable(ns, addr, APP_PORT)


def cli_in_ns(ns: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m", "cryptbpf.cli", *args],
                          capture_output=True, text=True)


@pytest.fixture
def zkp_between(veth_pair, request, tmp_path):
    """zkp-filter on B's device protecting APP_PORT, an echo server on B."""
    for f in SPEC.requires:
        require_feature(f)
    mode = request.param
    before = system_snapshot(veth_pair.ns_b, zf.NAME)
    peer = None
    if mode == "drv":
        # veth hands XDP_TX frames only to a peer with an XDP program
        peer = BpfObject.open(str(TEST_OBJ_DIR / "xdp_pass.bpf.o")).load()
        with netns.inside(veth_pair.ns_a):
            attach.xdp_attach(peer.program("xdp_pass").fd, peer.program("xdp_pass").id,
                              attach.ifindex(veth_pair.dev_a), "drv")
    lifecycle.load(SPEC, veth_pair.dev_b, netns=veth_pair.ns_b, xdp_mode=mode,
                   options={"protect": [str(APP_PORT)]})
    secret = tmp_path / "alice.secret"
    secret.write_bytes(SECRET)
    secret.chmod(0o600)
    try:
        with udp_echo(veth_pair.ns_b, veth_pair.addr_b, APP_PORT):
            yield veth_pair, secret
    finally:
        lifecycle.unload(zf.NAME)
        if peer:
            peer.close()
    assert system_snapshot(veth_pair.ns_b, zf.NAME) == before


@pytest.mark.parametrize("zkp_between", ["skb", "drv"], indirect=True)
def test_port_opens_only_after_the_exchange(zkp_between):
    v, secret = zkp_between
    assert not _app_reachable(v.ns_a, v.addr_b)
    r = run_cli("zkp", "add-key", str(KEY_ID), "--secret-file", str(secret))
    assert r.returncode == 0, r.stderr
    with netns.inside(v.ns_a):
        with pytest.raises(CryptbpfError, match="proof not accepted"):
            zc.connect(v.addr_b, CTRL, b"guessing the secret won't work", KEY_ID, timeout=0.3, retries=1)
    assert not _app_reachable(v.ns_a, v.addr_b)
    # the real CLI, run inside the client's namespace
    r = cli_in_ns(v.ns_a, "zkp", "connect", v.addr_b, str(CTRL), "--secret-file", str(secret),
                  "--key-id", str(KEY_ID))
    assert r.returncode == 0, r.stderr
    assert f"authorized {v.addr_a} at {v.addr_b} for 300 s" in r.stdout
    assert _app_reachable(v.ns_a, v.addr_b)
    with Pinned(zf.NAME) as h:
        st = SPEC.status(h)
    assert st["stats"]["accepted"] == 1 and st["stats"]["bad_proof"] >= 1
    assert st["authorized"][0]["source"] == v.addr_a
    r = run_cli("zkp", "revoke", str(KEY_ID))
    assert r.returncode == 0 and "1 source(s) de-authorized" in r.stdout
    assert not _app_reachable(v.ns_a, v.addr_b)
