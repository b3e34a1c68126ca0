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
import re
import statistics
import subprocess
import tempfile
import time

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from ... import lifecycle
from ...bpf import pins
from ...kat import KatObject
from ...netns import VethPair, inside
from ...bpf.object import BpfObject
from ...paths import bpf_object
from . import control, device, wire

A, B = "10.1.0.1", "10.1.0.2"
ETH = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02", type=0x800))
SIZES = (64, 512, 1400)          # IP payload bytes
RUNS = 300
LIVE_SECONDS = 3


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

def _sh(*cmd, **kw) -> str:
    return subprocess.run(list(cmd), capture_output=True, text=True, check=True, **kw).stdout


def _iperf(pair: VethPair, dst: str, udp: bool) -> dict:
    port = "5311" if udp else "5310"
    srv = subprocess.Popen(["ip", "netns", "exec", pair.ns_b, "iperf3", "-s", "-1", "-p", port],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.4)
        args = ["-u", "-b", "0", "-l", "1400"] if udp else []
        out = subprocess.run(["ip", "netns", "exec", pair.ns_a, "iperf3", "-c", dst, "-p", port,
                              "-t", str(LIVE_SECONDS), "-J", *args],
                             capture_output=True, text=True, timeout=LIVE_SECONDS + 30).stdout
        end = json.loads(out)["end"]
        if udp:
            s = end["sum"]
            return {"mbit_s": round(s["bits_per_second"] * (1 - s.get("lost_percent", 0) / 100) / 1e6),
                    "lost_pct": round(s.get("lost_percent", 0), 1)}
        return {"mbit_s": round(end["sum_received"]["bits_per_second"] / 1e6)}
    finally:
        srv.wait(timeout=10) if srv.poll() is None and _wait(srv) else None


def _wait(p, t: float = 5) -> bool:
    try:
        p.wait(timeout=t)
    except subprocess.TimeoutExpired:
        p.terminate()
    return False


def _ping(pair: VethPair, dst: str) -> float:
    out = subprocess.run(["ip", "netns", "exec", pair.ns_a, "ping", "-c", "200", "-i", "0.005", "-q", dst],
                         capture_output=True, text=True).stdout
    m = re.search(r"= [\d.]+/([\d.]+)/", out)
    return float(m.group(1)) * 1000 if m else float("nan")


def _measure(pair: VethPair, dst: str, label: str, echo) -> dict:
    row = {"name": f"live: {label}", "tcp_mbit_s": _iperf(pair, dst, False)["mbit_s"]}
    u = _iperf(pair, dst, True)
    row.update({"udp_mbit_s": u["mbit_s"], "udp_lost_pct": u["lost_pct"], "ping_rtt_us": round(_ping(pair, dst))})
    echo(f"  {row}")
    return row


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


class _WireguardGo:
    """wireguard-go on TUN in each namespace, over the same veth."""
    ADDR = ("10.213.0.1", "10.213.0.2")

    def __init__(self, pair):
        self.pair, self.procs = pair, []

    def __enter__(self):
        p = self.pair
        env = dict(os.environ, WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD="1")
        keys = []
        for _ in range(2):
            priv = _sh("wg", "genkey").strip()
            keys.append((priv, _sh("wg", "pubkey", input=priv).strip()))
        self.tmp = tempfile.TemporaryDirectory()
        ends = ((p.ns_a, "cbwga", p.addr_b, 0), (p.ns_b, "cbwgb", p.addr_a, 1))
        for ns, ifname, peer_addr, i in ends:
            self.procs.append(subprocess.Popen(["ip", "netns", "exec", ns, "wireguard-go", "-f", ifname],
                                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for ns, ifname, peer_addr, i in ends:
            keyfile = os.path.join(self.tmp.name, f"{ifname}.key")
            fd = os.open(keyfile, os.O_WRONLY | os.O_CREAT, 0o600)
            os.write(fd, keys[i][0].encode())
            os.close(fd)
            for _ in range(50):
                if os.path.exists(f"/var/run/wireguard/{ifname}.sock"):
                    break
                time.sleep(0.1)
            _sh("ip", "netns", "exec", ns, "wg", "set", ifname, "private-key", keyfile,
                "listen-port", "51820", "peer", keys[1 - i][1],
                "allowed-ips", f"{self.ADDR[1 - i]}/32", "endpoint", f"{peer_addr}:51820")
            _sh("ip", "-n", ns, "addr", "add", f"{self.ADDR[i]}/24", "dev", ifname)
            _sh("ip", "-n", ns, "link", "set", ifname, "up")
        return self

    def __exit__(self, *exc):
        for proc in self.procs:
            proc.terminate()
            _wait(proc)
        self.tmp.cleanup()


def live(echo) -> list[dict]:
    rows = []
    import shutil
    if not shutil.which("iperf3") or not shutil.which("ping"):
        return [{"name": "live tunnel benchmark", "skipped": "needs iperf3 and ping (scripts/setup)"}]
    if pins.is_loaded("encrypted-tunnel"):
        return [{"name": "live tunnel benchmark", "skipped": "encrypted-tunnel is loaded here"}]
    with VethPair("cbbench", subnet="10.214.0") as pair:
        rows.append(_measure(pair, pair.addr_b, "plain veth (default offloads)", echo))
        with _DeviceSettings(pair):
            rows.append(_measure(pair, pair.addr_b, "plain veth (tunnel's device settings, no crypto)", echo))
        for suite, name in wire.SUITE_NAMES.items():
            try:
                _tunnel(pair, suite, os.urandom(32))
                rows.append(_measure(pair, pair.addr_b, f"encrypted-tunnel {name}", echo))
                with pins.Pinned("encrypted-tunnel") as h:
                    st = control.peer_stats(h, control.get_peer(h, pair.addr_a).index)
                rows[-1]["receiver_auth_failed"] = st["auth_failed"]
            finally:
                if pins.is_loaded("encrypted-tunnel"):
                    lifecycle.unload("encrypted-tunnel")
        try:
            with _WireguardGo(pair):
                time.sleep(0.5)
                rows.append(_measure(pair, _WireguardGo.ADDR[1], "wireguard-go", echo))
        except (subprocess.CalledProcessError, FileNotFoundError, json.JSONDecodeError) as e:
            rows.append({"name": "live: wireguard-go", "skipped": str(e)[:200]})
    return rows


# `cryptbpf bench` names these tunnel.<function> (`--only tunnel`)
BENCH_NAME = "tunnel"
BENCHMARKS = [per_packet, live]
