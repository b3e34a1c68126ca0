"""encrypted_tunnel: per-packet cost next to the bare cipher, and live
throughput/latency next to plain veth and wireguard-go, all in one run.

1. BPF_PROG_TEST_RUN: the whole TC program (parse, counter, header
   rewrite, AEAD or CBC+HMAC, checksum work, stats) against the same
   cipher alone at the same size (crypto_kat's entry points). The ratio
   is the share of per-packet work beyond the cipher.
2. Between two namespaces joined by veth (both ends on this machine's CPUs):
   iperf3 TCP and UDP throughput and ping latency for plain veth (default
   offloads, and with the tunnel's device settings but no tunnel), the
   tunnel with each suite, and wireguard-go (userspace WireGuard on TUN).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from ... import lifecycle
from ...bpf import pins
from ...kat import KatObject
from ...bench.live import WireguardGo, measure
from ...netns import VethPair, inside
from ...bpf.object import BpfObject
from ...paths import bpf_object
from . import control, device, wire

A, B = "10.1.0.1", "10.1.0.2"
ETH = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02", type=0x800))
SIZES = (64, 512, 1400)          # IP payload bytes
RUNS = 300


def _median(fn, runs: int = RUNS) -> float:
    return statistics.median(fn(i) for i in range(runs))


def _tunnel_costs(obj, secret: bytes, suite: int, size: int) -> tuple[float, float]:
    pkt = bytes(IP(src=A, dst=B) / UDP(sport=1, dport=2) / os.urandom(size - 8))
    seal = _median(lambda i: obj.program("tunnel_egress").test_run(data=ETH + pkt).duration_ns)
    keys = wire.derive(secret, suite, 0, B, A)
    back = bytes(IP(src=B, dst=A) / UDP(sport=2, dport=1) / os.urandom(size - 8))
    sealed = []
    c = size * 1000          # counters unused so far under this key
    while len(sealed) < RUNS:
        try:
            sealed.append(wire.seal(back, keys, c))
        except wire.TunnelError:
            pass
        c += 1
    opened = []
    for p in sealed:
        r = obj.program("tunnel_ingress").test_run(data=ETH + p)
        if r.retval != 0:
            raise RuntimeError(f"tunnel_ingress refused a Python-sealed packet: {control.peer_stats(obj, 0)}")
        opened.append(r.duration_ns)
    return seal, statistics.median(opened)


def _chacha_costs(kat: KatObject, size: int) -> tuple[float, float]:
    key, nonce, aad = os.urandom(32), os.urandom(12), os.urandom(24)
    msg = os.urandom(size + 1)                         # payload + next_proto
    kat.io(key=key, nonce=nonce, aad=aad, aad_len=len(aad))
    prog = kat.obj.program
    seal = _median(lambda i: prog("kat_aead_seal_skb").test_run(data=kat.frame(msg)).duration_ns)
    ct = ChaCha20Poly1305(key).encrypt(nonce, msg, aad)
    opn = _median(lambda i: prog("kat_aead_open_skb").test_run(data=kat.frame(ct)).duration_ns)
    return seal, opn


def _cbc_costs(kat: KatObject, size: int) -> tuple[float, float]:
    """AES-256-CBC of the padded payload + HMAC-SHA256 over AAD + it."""
    key = os.urandom(32)
    kat.aes_key(key)
    n = size + 1 + 16 - (size + 1) % 16
    iv, msg = os.urandom(16), os.urandom(n)
    prog = kat.obj.program
    enc = prog("bench_aes_cbc_encrypt").test_run(data=kat.frame(iv + msg), repeat=2000).duration_ns
    ct = prog("bench_aes_cbc_encrypt").test_run(data=kat.frame(iv + msg)).data[14 + 16:]
    dec = _median(lambda i: prog("kat_aes_cbc_decrypt").test_run(data=kat.frame(iv + ct)).duration_ns, 100)
    kat.io(alg=256, key=os.urandom(32), key_len=32)
    mac = prog("kat_hmac_skb").test_run(data=kat.frame(os.urandom(24 + n)), repeat=2000).duration_ns
    return enc + mac, mac + dec


def per_packet(echo) -> list[dict]:
    rows, secret = [], os.urandom(32)
    with KatObject() as kat:
        for suite, name in wire.SUITE_NAMES.items():
            with BpfObject.open(str(bpf_object("encrypted_tunnel"))) as obj:
                obj.load()
                control.add_peer(obj, B, A, secret, suite)
                for size in SIZES:
                    seal, opn = _tunnel_costs(obj, secret, suite, size)
                    raw_seal, raw_open = (_chacha_costs if suite == wire.CHACHA else _cbc_costs)(kat, size)
                    base = "the AEAD alone" if suite == wire.CHACHA else "CBC + HMAC alone"
                    rows.append({"name": f"tunnel seal {name} (TC egress, whole program)", "size": size,
                                 "ns": seal, "baseline": f"{base} (crypto_kat)", "baseline_ns": raw_seal,
                                 "beyond_cipher_pct": round(100 * (seal - raw_seal) / raw_seal, 1)})
                    rows.append({"name": f"tunnel open {name} (TC ingress, whole program)", "size": size,
                                 "ns": opn, "baseline": f"{base} (crypto_kat)", "baseline_ns": raw_open,
                                 "beyond_cipher_pct": round(100 * (opn - raw_open) / raw_open, 1)})
                    echo(f"  {name} {size} B: seal {seal:.0f} ns (cipher {raw_seal:.0f}), "
                         f"open {opn:.0f} ns (cipher {raw_open:.0f})")
                rows.append({"name": f"encrypted_tunnel verified insns", **{
                    n: p.verified_insns for n, p in obj.programs.items() if n.startswith("tunnel_")}})
    return rows


# ---------------------------------------------------------------- live

class _DeviceSettings:
    """The tunnel's device settings on both ends, without the tunnel."""

    def __init__(self, pair):
        self.pair = pair

    def __enter__(self):
        self.saved = []
        for ns, dev in ((self.pair.ns_a, self.pair.dev_a), (self.pair.ns_b, self.pair.dev_b)):
            with inside(ns):
                self.saved.append((ns, dev, device.offloads_off(dev), device.set_gso_max_segs(dev, 1)))
        return self

    def __exit__(self, *exc):
        for ns, dev, off, segs in self.saved:
            with inside(ns):
                device.set_gso_max_segs(dev, segs)
                device.restore_offloads(dev, off)


def _tunnel(pair, suite, secret):
    from . import SPEC, cli as et
    lifecycle.load(SPEC, pair.dev_a, key=secret, netns=pair.ns_a, xdp_mode="skb",
                   options={"peer": [pair.addr_b], "suite": [wire.SUITE_NAMES[suite]]})
    lifecycle.load(SPEC, pair.dev_b, netns=pair.ns_b, xdp_mode="skb")
    et.add_peer(pair.addr_a, secret, suite)


def live(echo) -> list[dict]:
    rows = []
    import shutil
    if not shutil.which("iperf3") or not shutil.which("ping"):
        return [{"name": "live tunnel benchmark", "skipped": "needs iperf3 and ping (scripts/setup)"}]
    if pins.is_loaded("encrypted-tunnel"):
        return [{"name": "live tunnel benchmark", "skipped": "encrypted-tunnel is loaded here"}]
    with VethPair("cbbench", subnet="10.214.0") as pair:
        rows.append(measure(pair, pair.addr_b, "plain veth (default offloads)", echo))
        with _DeviceSettings(pair):
            rows.append(measure(pair, pair.addr_b, "plain veth (tunnel's device settings, no crypto)", echo))
        for suite, name in wire.SUITE_NAMES.items():
            try:
                _tunnel(pair, suite, os.urandom(32))
                rows.append(measure(pair, pair.addr_b, f"encrypted-tunnel {name}", echo))
                with pins.Pinned("encrypted-tunnel") as h:
                    st = control.peer_stats(h, control.get_peer(h, pair.addr_a).index)
                rows[-1]["receiver_auth_failed"] = st["auth_failed"]
            finally:
                if pins.is_loaded("encrypted-tunnel"):
                    lifecycle.unload("encrypted-tunnel")
        try:
            with WireguardGo(pair):
                time.sleep(0.5)
                rows.append(measure(pair, WireguardGo.ADDR[1], "wireguard-go", echo))
        except (subprocess.CalledProcessError, FileNotFoundError, json.JSONDecodeError) as e:
            rows.append({"name": "live: wireguard-go", "skipped": str(e)[:200]})
    return rows


# `cryptbpf bench` names these tunnel.<function> (`--only tunnel`)
BENCH_NAME = "tunnel"
BENCHMARKS = [per_packet, live]
