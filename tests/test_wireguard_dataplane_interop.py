"""The BPF data plane against REAL wireguard-go, in two namespaces joined
by veth. Namespace A runs wireguard-go configured with `wg`; namespace B
runs the handshake daemon (device.py, noise.py: the wg-handshake work)
with bpf_dataplane.BpfDataPlane: every transport data message is sealed
and opened in BPF, handshake messages reach the daemon's socket.

Proven: the handshake initiated from either side (NeedHandshake from BPF
egress when we start), pings of every size up to the MTU both ways, IPv4
and IPv6 inner over IPv4 and IPv6 outer, a TCP bulk transfer whose sha256
matches, UDP, and wireguard-go's `wg show` reporting the handshake and the
transfer. Skipped where the handshake daemon is not part of the tree."""

from __future__ import annotations

import shutil
import socket

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
