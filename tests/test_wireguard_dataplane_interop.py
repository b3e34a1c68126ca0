"""The BPF data plane against REAL wireguard-go, in two namespaces joined
by veth. Namespace A runs wireguard-go configured with `wg`; namespace B
runs the handshake daemon (device.py, noise.py: the wg-handshake work)
with bpf_dataplane.BpfDataPlane: every transport data message is sealed
and opened in BPF, handshake messages reach the daemon's socket.

Proven: the handshake initiated from either side (NeedHandshake from BPF
egress when we start), pings of every size up to the MTU both ways, IPv4
and IPv6 inner over IPv4 and IPv6 outer, a TCP bulk transfer whose sha256
matches, UDP, and wireguard-go's `wg show` reporting the handshake and the
transfer; rekeys in the middle of a TCP transfer, three initiated by us
(Device.request_handshake) and two by wireguard-go, with the stream's
sha256 intact and no drop on our side. Skipped where the handshake daemon
is not part of the tree."""

from __future__ import annotations

import shutil
import socket
import threading
import time

import pytest

from cryptbpf import netns

from conftest import require_feature, require_root
from wg_peers import MTU, OUR4, OUR6, PEER4 as GO4, PEER6 as GO6, Setup, ping, sh, tcp_transfer_intact, wait_for

pytest.importorskip("cryptbpf.programs.wireguard.device",
                    reason="the handshake daemon (wg-handshake) is not in this tree")

pytestmark = [pytest.mark.host_only]


@pytest.fixture(params=[4, 6], ids=["outer4", "outer6"])
def wg(request, tmp_path):
    require_root()
    require_feature("bpf_loop")
    if not shutil.which("wireguard-go") or not shutil.which("wg"):
        pytest.skip("needs wireguard-go and wireguard-tools (Debian packages)")
    s = Setup(tmp_path, request.param)
    try:
        yield s
    finally:
        s.close()


def test_wireguard_go_initiates_pings_of_every_size_both_families(wg):
    v = wg.veth
    assert ping(v.ns_a, OUR4), "no handshake initiated by wireguard-go"
    # IPv4: ICMP header 8 + IP 20; IPv6: 8 + 40; -M do: no fragmentation
    for size in (0, 1, 15, 16, 17, 100, 500, 1000, 1391, MTU - 28):
        assert ping(v.ns_a, OUR4, size), f"wg-go -> us, {size} B"
        assert ping(v.ns_b, GO4, size), f"us -> wg-go, {size} B"
    for size in (0, 100, 1000, MTU - 48):
        assert ping(v.ns_a, OUR6, size), f"wg-go -> us (IPv6), {size} B"
        assert ping(v.ns_b, GO6, size), f"us -> wg-go (IPv6), {size} B"
    st = wg.dp.stats(1)
    assert st["auth_failed"] == 0 and st["replayed"] == 0 and st["rx_packets"] > 20
    # we were the responder: BPF promoted our keypair on wg-go's first message
    assert wg.dp.peer_state(1).current_index != 0
    go = wg.peer_dump()
    assert go["latest_handshake"] > 0 and go["rx"] > 0 and go["tx"] > 0
    # wg-go counts the handshake messages too (its initiation 148 B, our
    # response 92 B, which the daemon's socket carried); the rest are ours
    ps = wg.dp.peer_state(1)
    assert go["rx"] - ps.tx_bytes in (92, 2 * 92) and go["tx"] - ps.rx_bytes in (148, 2 * 148)


def test_we_initiate_from_a_bpf_need_handshake(wg):
    v = wg.veth
    # the first packets find no keypair: dropped in BPF, the daemon is told
    sh(v.ns_b, "ping", "-c", "10", "-i", "0.3", "-W", "1", GO4, check=False)
    assert wait_for(lambda: ping(v.ns_b, GO4), 10, "a working session")
    st = wg.dp.stats(1)
    assert st["no_key"] >= 1 and st["events"] >= 1
    assert ping(v.ns_b, GO6, 1000)
    assert wg.peer_dump()["latest_handshake"] > 0


def test_tcp_bulk_transfer_arrives_intact_and_udp_too(wg):
    v = wg.veth
    assert ping(v.ns_a, OUR4)
    assert tcp_transfer_intact(v.ns_a, v.ns_b, GO4)
    # UDP both ways, each datagram once
    with netns.inside(v.ns_a):
        u_go = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    with netns.inside(v.ns_b):
        u_us = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    u_go.bind((GO6, 5300))
    u_us.bind((OUR6, 5301))
    u_go.settimeout(3)
    u_us.settimeout(3)
    for i in range(20):
        u_us.sendto(b"u%d" % i + bytes(i * 50), (GO6, 5300))
        d, a = u_go.recvfrom(2000)
        assert d == b"u%d" % i + bytes(i * 50)
        u_go.sendto(d[::-1], a)
        assert u_us.recv(2000) == d[::-1]
    u_go.close()
    u_us.close()
    st = wg.dp.stats(1)
    assert st["auth_failed"] == 0 and st["tx_bytes"] > 8 << 20


@pytest.fixture
def wg4(tmp_path):
    require_root()
    require_feature("bpf_loop")
    if not shutil.which("wireguard-go") or not shutil.which("wg"):
        pytest.skip("needs wireguard-go and wireguard-tools (Debian packages)")
    s = Setup(tmp_path, 4)
    try:
        yield s
    finally:
        s.close()


def _drops(wg) -> dict:
    """What our side dropped that a rekey must not cause."""
    from cryptbpf.programs.wireguard import bpf_dataplane as bdp
    st, none = wg.dp.stats(1), wg.dp.stats(bdp.NO_PEER_ROW)
    return {"auth_failed": st["auth_failed"] + none["auth_failed"], "replayed": st["replayed"],
            "unknown_key": st["unknown_key"] + none["unknown_key"], "key_expired": st["key_expired"],
            "no_key": st["no_key"]}


def _stream_during(work, server_ns: str, client_ns: str, addr: str) -> bool:
    """A TCP stream from client_ns to addr that goes on while work() runs
    in a thread; True if it arrived intact. What work() raised is raised."""
    done, err = threading.Event(), []

    def run():
        try:
            work()
        except BaseException as e:       # noqa: BLE001 - handed to the test thread
            err.append(e)
        finally:
            done.set()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        return tcp_transfer_intact(server_ns, client_ns, addr, size=4 << 20,
                                   more=lambda: not done.is_set(), limit=4 << 30)
    finally:
        done.set()
        t.join(60)
        assert not t.is_alive(), "the rekeying thread did not finish"
        if err:
            raise err[0]


def test_we_rekey_three_times_during_a_tcp_transfer_and_nothing_is_lost(wg4):
    """Our side initiates (Peer.send_initiation, through the daemon's loop)
    three times while a TCP stream runs from us to wireguard-go: each new
    keypair becomes our current at once, the old one stays as previous
    for what wireguard-go still sends with it, and wireguard-go switches
    when our first packet on the new one arrives. WireGuard loses no
    packet on a rekey: no drop of any kind on our side."""
    s, v = wg4, wg4.veth
    assert ping(v.ns_a, OUR4)            # wireguard-go initiated: a session, we responded
    assert wait_for(lambda: s.dp.peer_state(1).current_index, 5, "our keypair promoted")
    indices = [s.dp.peer_state(1).current_index]
    go_first = s.peer_dump()["latest_handshake"]
    before = _drops(s)
    def rekey():
        while len(indices) < 4:
            s.dev.request_handshake(1)
            old = indices[-1]
            indices.append(wait_for(lambda: (s.dp.peer_state(1).current_index or old) != old
                                    and s.dp.peer_state(1).current_index, 15, "a new keypair"))

    assert _stream_during(rekey, v.ns_a, v.ns_b, GO4)
    assert len(set(indices)) == 4, indices      # three new sessions, each a new keypair
    kps = s.dev.peers[1].timers.keypairs
    assert all(kps[i].initiator for i in indices[-2:]), "wireguard-go initiated, not we"
    # wireguard-go saw them as handshakes too (REKEY_TIMEOUT, 5 s, apart)
    assert s.peer_dump()["latest_handshake"] > go_first
    assert _drops(s) == before, (before, _drops(s))
    assert before == dict.fromkeys(before, 0)


def test_wireguard_go_reinitiates_during_a_tcp_transfer_and_we_respond(wg4):
    """The responder's side of a rekey: wireguard-go's peer is removed and
    added again (it forgets its session, nothing else changes; the only
    way to make it initiate before REKEY_AFTER_TIME, 120 s) twice while
    wireguard-go sends us a TCP stream. It initiates; our new keypair is
    held as next until wireguard-go's first packet on it arrives, then
    promoted. What wireguard-go dropped meanwhile (our packets on the
    session it forgot) TCP sends again: the stream arrives intact, and our
    side drops nothing."""
    from cryptbpf.programs.wireguard import noise
    s, v = wg4, wg4.veth
    assert ping(v.ns_b, GO4) or ping(v.ns_b, GO4)   # we initiated (NeedHandshake): a session
    pub = noise.key_to_base64(s.dev.identity.public_key)
    endpoint = s.peer_dump()["endpoint"]
    indices = [s.dp.peer_state(1).current_index]
    before = _drops(s)

    def reinitiate():
        while len(indices) < 3:
            time.sleep(1)
            old = indices[-1]
            sh(v.ns_a, "wg", "set", s.peer_dev, "peer", pub, "remove")
            sh(v.ns_a, "wg", "set", s.peer_dev, "peer", pub, "allowed-ips", f"{OUR4}/32,{OUR6}/128",
               "endpoint", endpoint)
            indices.append(wait_for(lambda: (s.dp.peer_state(1).current_index or old) != old
                                    and s.dp.peer_state(1).current_index, 15, "wireguard-go's new session"))

    assert _stream_during(reinitiate, v.ns_b, v.ns_a, OUR4)
    assert len(set(indices)) == 3, indices
    kps = s.dev.peers[1].timers.keypairs
    assert all(not kps[i].initiator for i in indices[1:] if i in kps), "we initiated, not wireguard-go"
    assert _drops(s)["auth_failed"] == before["auth_failed"] == 0
    assert _drops(s)["replayed"] == before["replayed"] == 0
    assert _drops(s)["key_expired"] == 0
