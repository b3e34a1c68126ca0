"""Frames for XDP BPF_PROG_TEST_RUN tests and checks of XDP_TX replies
(bpf/include/xdp_reply.bpf.h), with scapy as the independent reference."""

from __future__ import annotations

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Dot1Q, Ether

XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX = 0, 1, 2, 3

CLIENT_MAC, SERVER_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"
CLIENT, SERVER = "10.9.0.1", "10.9.0.2"


def udp_frame(payload: bytes, dport: int, src: str = CLIENT, dst: str = SERVER,
              sport: int = 40000, vlan: int | None = None, ip_options=None) -> bytes:
    eth = Ether(src=CLIENT_MAC, dst=SERVER_MAC)
    if vlan is not None:
        eth = eth / Dot1Q(vlan=vlan)
    ip = IP(src=src, dst=dst, options=ip_options) if ip_options else IP(src=src, dst=dst)
    return bytes(eth / ip / UDP(sport=sport, dport=dport) / payload)


def tcp_frame(dport: int, src: str = CLIENT, payload: bytes = b"") -> bytes:
    return bytes(Ether(src=CLIENT_MAC, dst=SERVER_MAC) / IP(src=src, dst=SERVER) /
                 TCP(sport=40001, dport=dport, flags="S") / payload)


def _checksums_ok(frame: bytes) -> bool:
    """IPv4 and UDP checksums as scapy recomputes them from scratch."""
    pkt = Ether(frame)
    ip, udp = pkt[IP], pkt[UDP]
    fresh = Ether(frame)
    del fresh[IP].chksum
    del fresh[UDP].chksum
    fresh = Ether(bytes(fresh))
    return fresh[IP].chksum == ip.chksum and fresh[UDP].chksum == udp.chksum and udp.chksum != 0


def check_reply(reply: bytes, request: bytes) -> bytes:
    """Assert `reply` is `request` sent back (MACs, addresses, ports swapped,
    lengths and checksums right, VLAN tag kept) and return its UDP payload."""
    q, r = Ether(request), Ether(reply)
    assert (r.src, r.dst) == (q.dst, q.src)
    if Dot1Q in q:
        assert Dot1Q in r and r[Dot1Q].vlan == q[Dot1Q].vlan
    assert (r[IP].src, r[IP].dst) == (q[IP].dst, q[IP].src)
    assert (r[UDP].sport, r[UDP].dport) == (q[UDP].dport, q[UDP].sport)
    assert r[IP].ttl == 64 and r[IP].options == q[IP].options
    payload = bytes(r[UDP].payload)
    assert r[UDP].len == 8 + len(payload)
    assert r[IP].len == r[IP].ihl * 4 + r[UDP].len
    l2 = 18 if Dot1Q in r else 14
    assert len(reply) == l2 + r[IP].len, "frame not resized to the reply"
    assert _checksums_ok(reply), "IP or UDP checksum wrong"
    return payload
