"""encrypted_tunnel with real traffic between two network namespaces joined
by veth: ping at every size, TCP and UDP, what a capture on the wire sees,
tampering and replay by a man in the middle, rekeying under load, and
unload restoring the devices exactly.

One loaded instance serves both namespaces: its entries are keyed by the
remote address, so host A's view (peer B) and host B's (peer A) do not mix.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time

import pytest

from cryptbpf import lifecycle
from cryptbpf.bpf import pins
from cryptbpf.keys import write_key_file
from cryptbpf.programs.encrypted_tunnel import SPEC, cli as et
from cryptbpf.programs.encrypted_tunnel import control, traffic, wire

from conftest import require_feature, run_cli, system_snapshot

MARKER = b"CRYPTBPF-MARKER-7f3a"
PACKET_OUTGOING = 4


class Tunnel:
    def __init__(self, pair, secret, suite):
        self.pair, self.secret, self.suite = pair, secret, suite
        self.mtu = 1500 - wire.OVERHEAD[suite]     # the peer route's MTU

    def peer_stats(self, addr: str) -> dict:
        with pins.Pinned(SPEC.name) as h:
            return control.peer_stats(h, control.get_peer(h, addr).index)


def bring_up(pair, secret: bytes, suite: int):
    for f in SPEC.requires + control.SUITE_REQUIRES[suite]:
        require_feature(f)
    # generic XDP: native XDP on a veth changes its peer's offloads
    lifecycle.load(SPEC, pair.dev_a, key=secret, netns=pair.ns_a, xdp_mode="skb",
                   options={"peer": [pair.addr_b], "suite": [wire.SUITE_NAMES[suite]]})
    lifecycle.load(SPEC, pair.dev_b, netns=pair.ns_b, xdp_mode="skb")
    et.add_peer(pair.addr_a, secret, suite)


@pytest.fixture(params=[wire.CHACHA, wire.CBC], ids=["chacha20-poly1305", "aes-256-cbc-hmac-sha256"])
def tunnel(request, veth_pair):
    secret = os.urandom(32)
    try:
        bring_up(veth_pair, secret, request.param)
        yield Tunnel(veth_pair, secret, request.param)
    finally:
        if pins.is_loaded(SPEC.name):
            lifecycle.unload(SPEC.name)


@pytest.fixture
def chacha_tunnel(veth_pair):
    secret = os.urandom(32)
    try:
        bring_up(veth_pair, secret, wire.CHACHA)
        yield Tunnel(veth_pair, secret, wire.CHACHA)
    finally:
        if pins.is_loaded(SPEC.name):
            lifecycle.unload(SPEC.name)


def test_ping_every_size(tunnel):
    p = tunnel.pair
    top = tunnel.mtu - 28                          # IPv4 + ICMP headers
    with traffic.Pinger(p.ns_a, p.addr_b) as ping:
        failed = [n for n in range(top + 1) if not ping.echo(MARKER[:n] + os.urandom(max(0, n - len(MARKER))))]
        assert not failed, f"sizes without a reply: {failed[:20]}"
        with pytest.raises(OSError):               # too big never leaves in clear
            ping.echo(b"x" * (top + 1))
    st = tunnel.peer_stats(p.addr_b)
    assert st["tx_packets"] >= top + 1 and st["rx_packets"] >= top + 1
    assert not any(st[k] for k in ("auth_failed", "replayed", "malformed", "errors", "too_big"))


def test_tcp_bulk_and_udp(tunnel):
    p = tunnel.pair
    data = os.urandom(3 << 20)
    import hashlib
    assert traffic.tcp_transfer(p.ns_a, p.ns_b, p.addr_b, data) == hashlib.sha256(data).digest()
    back = os.urandom(1 << 20)
    assert traffic.tcp_transfer(p.ns_b, p.ns_a, p.addr_a, back, port=5603) == hashlib.sha256(back).digest()
    sizes = [0, 1, 100, 1000, tunnel.mtu - 28, 3000, 9000]     # the last two are fragmented
    payloads = [os.urandom(n) for n in sizes]
    assert traffic.udp_exchange(p.ns_a, p.ns_b, p.addr_b, payloads) == payloads
    for addr in (p.addr_a, p.addr_b):
        st = tunnel.peer_stats(addr)
        assert not any(st[k] for k in ("auth_failed", "replayed", "malformed", "errors",
                                        "too_big", "unsupported", "clear_from_peer"))


def test_wire_capture_shows_only_ciphertext(tunnel):
    """AF_PACKET taps on both veth ends (the receiving one sees frames
    before TC ingress decrypts them) see only tunnel packets, and never
    the marker every payload carries."""
    p = tunnel.pair
    with traffic.Capture(p.ns_a, p.dev_a) as cap_a, traffic.Capture(p.ns_b, p.dev_b) as cap_b:
        with traffic.Pinger(p.ns_a, p.addr_b) as ping:
            assert all(ping.echo(MARKER * k) for k in (1, 10, 60))
        traffic.tcp_transfer(p.ns_a, p.ns_b, p.addr_b, MARKER * 20000)
        assert traffic.udp_exchange(p.ns_b, p.ns_a, p.addr_a, [MARKER * 30]) == [MARKER * 30]
    for cap in (cap_a, cap_b):
        between = cap.ipv4_between(p.addr_a, p.addr_b)
        assert len(between) > 100
        assert all(pkt[9] == wire.IPPROTO for pkt in between), "a packet between the peers in clear"
        assert not any(MARKER in f for _, f in cap.frames), "marker seen on the wire"
        for pkt in between[:50]:
            wire.parse(pkt)                        # well-formed tunnel packets


def test_man_in_the_middle(chacha_tunnel):
    """Replayed, bit-flipped and unknown-key copies of a captured packet,
    put back on the wire, are all dropped and counted by the receiver."""
    t = chacha_tunnel
    p = t.pair
    with traffic.Capture(p.ns_a, p.dev_a) as cap:
        assert traffic.udp_exchange(p.ns_a, p.ns_b, p.addr_b, [MARKER * 10]) == [MARKER * 10]
    frame = next(f for kind, f in cap.frames
                 if kind == PACKET_OUTGOING and f[12:14] == b"\x08\x00" and f[23] == wire.IPPROTO)
    flipped = bytearray(frame)                       # a fresh counter: not a replay,
    flipped[14 + 20 + 8] ^= 0x10                     # but the tag no longer matches
    other_key = bytearray(frame)
    other_key[14 + 20 + 2] = 9                       # key id
    before = t.peer_stats(p.addr_a)                  # B's view of A
    with traffic.Capture(p.ns_b, p.dev_b) as seen:
        for f in (frame, frame, bytes(flipped), bytes(other_key)):
            traffic.inject(p.ns_a, p.dev_a, f)
        time.sleep(0.3)
    # they arrived; the unknown-key one XDP drops before taps see it
    assert sum(f in (frame, bytes(flipped)) for _, f in seen.frames) == 3
    assert bytes(other_key) not in [f for _, f in seen.frames]
    after = t.peer_stats(p.addr_a)
    delta = {k: after[k] - before[k] for k in after}
    assert delta["replayed"] == 2 and delta["auth_failed"] == 1 and delta["xdp_unknown_key"] == 1
    assert delta["rx_packets"] == 0


def test_rekey_mid_transfer_loses_nothing(tunnel):
    t = tunnel
    p = t.pair
    data = os.urandom(6 << 20)
    result: dict = {}
    lost = []
    done = threading.Event()

    def transfer():
        result["digest"] = traffic.tcp_transfer(p.ns_a, p.ns_b, p.addr_b, data, pace=0.03)

    def pinger():
        with traffic.Pinger(p.ns_a, p.addr_b) as ping:
            while not done.is_set():
                if not ping.echo(MARKER, timeout=2.0):
                    lost.append(ping.seq)
                time.sleep(0.02)

    threads = [threading.Thread(target=transfer), threading.Thread(target=pinger)]
    for th in threads:
        th.start()
    time.sleep(0.8)
    with pins.Pinned(SPEC.name) as h:
        ra = control.rekey(h, p.addr_b, t.secret, grace=0.3)   # host A
        time.sleep(0.3)
        rb = control.rekey(h, p.addr_a, t.secret, grace=0.3)   # host B
    assert threads[0].is_alive(), "transfer over before the rekey: make it longer"
    threads[0].join(60)
    done.set()
    threads[1].join(10)
    import hashlib
    assert result.get("digest") == hashlib.sha256(data).digest()
    assert lost == []
    assert ra["tx_key_id"] == 1 and rb["tx_key_id"] == 1 and rb["rx_key_ids"] == [1, 2]
    with pins.Pinned(SPEC.name) as h:
        for addr in (p.addr_a, p.addr_b):
            peer = control.get_peer(h, addr)
            assert control.tx_state(h, peer)["key_id"] == 1
            rx = {s["key_id"]: s["accepted"] for s in control.rx_state(h, peer).values()}
            st = control.peer_stats(h, peer.index)
            assert not any(st[k] for k in ("auth_failed", "replayed", "unknown_key",
                                            "xdp_unknown_key", "errors"))
    # B received under both of A's keys; A under B's
    assert rx.get(1, 0) > 0


def device_state(ns: str, dev: str) -> dict:
    def sh(*cmd):
        return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True).stdout
    return {"snapshot": system_snapshot(ns, SPEC.name),
            "ethtool": sh("ethtool", "-k", dev),
            "link": json.loads(sh("ip", "-d", "-j", "link", "show", "dev", dev))[0],
            "routes": sh("ip", "-4", "route", "show", "table", "all")}


def test_cli_load_manage_unload_restores_everything(veth_pair, tmp_path):
    for f in SPEC.requires:
        require_feature(f)
    p = veth_pair
    key = tmp_path / "tunnel.key"
    write_key_file(key, os.urandom(32))
    before = {ns: device_state(ns, dev) for ns, dev in ((p.ns_a, p.dev_a), (p.ns_b, p.dev_b))}
    try:
        run_cli("load", "encrypted-tunnel", p.dev_a, "--netns", p.ns_a, "--xdp-mode", "skb",
                "--peer", p.addr_b, "--key-file", str(key), "--suite", "chacha20-poly1305", check=True)
        again = run_cli("load", "encrypted-tunnel", p.dev_b, "--netns", p.ns_b, "--peer", p.addr_a)
        assert again.returncode == 1 and "tunnel add-peer" in again.stderr
        run_cli("load", "encrypted-tunnel", p.dev_b, "--netns", p.ns_b, "--xdp-mode", "skb", check=True)
        out = run_cli("tunnel", "add-peer", p.addr_a, "--key-file", str(key), check=True).stdout
        assert f"tunnel MTU {1500 - wire.OVERHEAD[wire.CHACHA]}" in out
        loaded = device_state(p.ns_a, p.dev_a)
        assert loaded["link"]["gso_max_segs"] == 1 and "mtu lock" in loaded["routes"]
        with traffic.Pinger(p.ns_a, p.addr_b) as ping:
            assert ping.echo(MARKER)
        peers = json.loads(run_cli("tunnel", "peers", "--json", check=True).stdout)
        assert {x["peer"] for x in peers} == {p.addr_a, p.addr_b}
        assert all(x["suite"] == "chacha20-poly1305" for x in peers)
        assert str(key.read_bytes().hex()) not in json.dumps(peers)
        out = run_cli("tunnel", "rekey", "--key-file", str(key), "--peer", p.addr_b,
                      "--grace", "0.1", check=True).stdout
        assert "sending under key id 1" in out
        with traffic.Pinger(p.ns_a, p.addr_b) as ping:
            assert ping.echo(MARKER)                     # B already accepted key 1
        st = json.loads(run_cli("tunnel", "stats", "--json", check=True).stdout)
        assert st[p.addr_b]["tx_packets"] >= 2 and st[p.addr_a]["rx_packets"] >= 2
        bad = run_cli("tunnel", "add-peer", "10.99.0.1", "--key-file", str(key))
        assert bad.returncode == 1 and bad.stderr.startswith("cryptbpf: ")
        run_cli("tunnel", "remove-peer", p.addr_a, check=True)
    finally:
        run_cli("unload", "encrypted-tunnel")
    after = {ns: device_state(ns, dev) for ns, dev in ((p.ns_a, p.dev_a), (p.ns_b, p.dev_b))}
    for ns in before:
        for k in before[ns]:
            assert after[ns][k] == before[ns][k], (ns, k)
