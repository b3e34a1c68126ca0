"""What the kernel would do with a frame: an independent Python reading of
the rules in docs/fail_closed.md (the table "What the kernel does, and what
the classifier does about it"), written from that table and RFC 791/8200,
not from bpf/include/frame_classify.bpf.h. Each program's model starts
from it; a disagreement with the BPF classifier shows in every program.

`classify(frame)` returns a Frame: `kind` is "ipv4", "ipv6", "not_ip" or
"bad" (the classifier's FRAME_BAD_*: a header the kernel drops, or deeper
than the walk), plus what the programs read."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

MAX_TAGS, MAX_EXT = 8, 4
TAGS = (0x8100, 0x88A8)
IPV6_EXT = (0, 43, 44, 60, 51)
TCP, UDP, ICMP, ICMPV6 = 6, 17, 1, 58


@dataclass
class Frame:
    kind: str
    why: str = ""                  # kind "bad": "l2", "ext" (deeper than the walk), "hdr", "len"
    family: int = 0                # 4 or 6 once the IP header's addresses were read (even if "bad")
    l3_off: int = 0
    saddr: bytes = b""
    daddr: bytes = b""
    proto: int = -1
    sport: int | None = None      # None: no ports (not TCP/UDP, later fragment)
    dport: int | None = None
    udp_len: int = 0
    ihl: int = 0
    l4_off: int = 0
    l3_end: int = 0
    frag_first: bool = False
    frag_later: bool = False
    ip_opts: bool = False          # options other than NOP/EOL
    opts_dropped: bool = False     # options the kernel drops the datagram for (see _opts_dropped)
    vlan_id: bool = False
    tags: int = 0
    icmp_err: bool = False
    quoted: dict = field(default_factory=dict)   # proto, port (ours), peer

    @property
    def payload(self) -> tuple[int, int]:
        """(offset, length) of a UDP payload as the UDP length says."""
        return self.l4_off + 8, self.udp_len - 8

    def udp_exact(self) -> bool:
        """An unfragmented IPv4/UDP datagram, no options but NOP/EOL, whose
        UDP length is its IP payload: what XDP can answer in place."""
        return (self.kind == "ipv4" and self.proto == UDP and not self.frag_first
                and not self.frag_later and not self.ip_opts
                and self.udp_len == self.l3_end - self.l4_off)


def _csum_ok(hdr: bytes) -> bool:
    s = sum(struct.unpack(f"!{len(hdr) // 2}H", hdr))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s == 0xFFFF


def classify(b: bytes, max_ext: int = MAX_EXT, l3_only: bool = False) -> Frame:
    """max_ext: IPv6 extension headers walked (content-verifier: 6);
    l3_only: stop after the IP header (only its own lengths are checked)."""
    if len(b) < 14:
        return Frame("bad", "l2")
    proto, off, f = struct.unpack_from("!H", b, 12)[0], 14, Frame("not_ip")
    while proto in TAGS:
        if f.tags == MAX_TAGS or off + 4 > len(b):
            return Frame("bad", "l2")
        tci, proto = struct.unpack_from("!HH", b, off)
        f.vlan_id |= bool(tci & 0xFFF)
        f.tags += 1
        off += 4
    f.l3_off = off
    if proto == 0x0800:
        return _ipv4(b, f, l3_only)
    if proto == 0x86DD:
        return _ipv6(b, f, max_ext, l3_only)
    return f


def _bad(f: Frame, why: str = "hdr") -> Frame:
    f.kind, f.why = "bad", why
    return f


def _ports(b: bytes, f: Frame, l4: int) -> bool:
    """Read the ports of a TCP/UDP header that is whole in the frame."""
    need = {UDP: 8, TCP: 20}.get(f.proto)
    if need is None:
        return True
    if l4 + need > len(b):
        return False
    f.sport, f.dport = struct.unpack_from("!HH", b, l4)
    if f.proto == UDP:
        f.udp_len = struct.unpack_from("!H", b, l4 + 4)[0]
    return True


def _l4_lengths(f: Frame) -> bool:
    if f.frag_later:
        return True
    room = f.l3_end - f.l4_off
    if room < {UDP: 8, TCP: 20, ICMP: 8, ICMPV6: 8}.get(f.proto, 0):
        return False
    if f.proto == UDP and not f.frag_first and not 8 <= f.udp_len <= room:
        return False
    return True


def _icmp_quote(b: bytes, f: Frame, l4: int, v6: bool) -> None:
    t = b[l4]
    if (v6 and not 1 <= t <= 4) or (not v6 and t not in (3, 4, 5, 11, 12)):
        return
    f.icmp_err = True
    q = l4 + 8
    if v6:
        if q + 40 + 8 > len(b) or b[q + 6] not in (TCP, UDP):
            return
        f.quoted = {"proto": b[q + 6], "port": struct.unpack_from("!H", b, q + 40)[0], "peer": None}
        return
    if q + 20 > len(b) or b[q] >> 4 != 4:
        return
    qihl = (b[q] & 15) * 4
    if qihl < 20 or b[q + 9] not in (TCP, UDP) or q + qihl + 8 > len(b):
        return
    f.quoted = {"proto": b[q + 9], "port": struct.unpack_from("!H", b, q + qihl)[0],
                "peer": b[q + 16:q + 20]}


# ip_options_compile() (net/ipv4/ip_options.c) and ip_rcv_options() on a
# host with accept_source_route 0 (the default) drop a datagram whose
# options have a wrong length, a record route (7) shorter than 3 or with a
# pointer below 4 (or one that leaves no room for an address), a timestamp
# (68) shorter than 4 or with a pointer below 5, a router alert (148) not 4
# long, and source routes (LSRR 131, SSRR 137). Any other option counts as
# "dropped" here too: the programs leave options they do not judge to the
# stack (crypto-offload: the daemon answers if the kernel delivers).
_KNOWN_OPTS = {7: (3, 4), 68: (4, 5), 148: (4, 0)}


def _opts_dropped(opts: bytes) -> bool:
    i = 0
    while i < len(opts):
        t = opts[i]
        if t == 0:
            return False
        if t == 1:
            i += 1
            continue
        n = opts[i + 1] if i + 1 < len(opts) else 0
        if n < 2 or i + n > len(opts) or t not in _KNOWN_OPTS:
            return True
        min_len, min_ptr = _KNOWN_OPTS[t]
        if n < min_len or (t == 148 and n != 4) or (min_ptr and opts[i + 2] < min_ptr):
            return True
        if t == 7 and opts[i + 2] <= n and opts[i + 2] + 3 > n:
            return True
        i += n
    return False


def _ipv4(b: bytes, f: Frame, l3_only: bool = False) -> Frame:
    o = f.l3_off
    f.kind = "ipv4"
    if o + 20 > len(b):
        return _bad(f)
    f.saddr, f.daddr, f.proto, f.family = b[o + 12:o + 16], b[o + 16:o + 20], b[o + 9], 4
    if b[o] >> 4 != 4 or b[o] & 15 < 5:
        return _bad(f)
    f.ihl = (b[o] & 15) * 4
    if o + f.ihl > len(b) or not _csum_ok(b[o:o + f.ihl]):
        return _bad(f)
    for x in b[o + 20:o + f.ihl]:       # NOPs are skipped, EOL ends the list
        if x == 0:
            break
        if x != 1:
            f.ip_opts = True
            break
    f.opts_dropped = f.ip_opts and _opts_dropped(b[o + 20:o + f.ihl])
    tot, frag = struct.unpack_from("!H2xH", b, o + 2)
    f.l3_end, f.l4_off = o + tot, o + f.ihl
    f.frag_later, f.frag_first = bool(frag & 0x1FFF), not frag & 0x1FFF and bool(frag & 0x2000)
    if l3_only:
        return _bad(f, "len") if tot < f.ihl or f.l3_end > len(b) else f
    if not f.frag_later:
        if not _ports(b, f, f.l4_off):
            return _bad(f)
        if f.proto == ICMP:
            if f.l4_off + 8 > len(b):
                return _bad(f)
            _icmp_quote(b, f, f.l4_off, False)
    if tot < f.ihl or f.l3_end > len(b) or not _l4_lengths(f):
        return _bad(f, "len")
    return f


def _ipv6(b: bytes, f: Frame, max_ext: int, l3_only: bool = False) -> Frame:
    o = f.l3_off
    f.kind = "ipv6"
    if o + 40 > len(b):
        return _bad(f)
    f.family = 6
    if b[o] >> 4 != 6:
        return _bad(f)
    f.saddr, f.daddr = b[o + 8:o + 24], b[o + 24:o + 40]
    f.l3_end, f.l4_off, nxt = o + 40 + struct.unpack_from("!H", b, o + 4)[0], o + 40, b[o + 6]
    if l3_only:
        f.proto = nxt
        return _bad(f, "len") if f.l3_end > len(b) else f
    for _ in range(max_ext):
        if nxt not in IPV6_EXT:
            break
        e = f.l4_off
        if e + 8 > len(b):
            return _bad(f)
        if nxt == 44:
            if struct.unpack_from("!H", b, e + 2)[0] & 0xFFF8:
                f.frag_later = True
            else:
                f.frag_first = True
            f.l4_off += 8
        else:
            f.l4_off += (b[e + 1] + 2) * 4 if nxt == 51 else (b[e + 1] + 1) * 8
        nxt = b[e]
        if f.frag_later:
            break
    f.proto = nxt
    if f.frag_later:
        return _bad(f, "len") if f.l3_end > len(b) else f
    if nxt in IPV6_EXT:
        return _bad(f, "ext")
    if not _ports(b, f, f.l4_off):
        return _bad(f)
    if nxt == ICMPV6:
        if f.l4_off + 8 > len(b):
            return _bad(f)
        _icmp_quote(b, f, f.l4_off, True)
    if f.l4_off > f.l3_end or f.l3_end > len(b) or not _l4_lengths(f):
        return _bad(f, "len")
    return f
