"""wireguard: per-packet cost of the BPF data plane, and live throughput and
latency side by side with plain veth, wireguard-go (Debian 12's and Debian
13's) and the encrypted-tunnel's chacha20-poly1305 suite, in one run.

1. BPF_PROG_TEST_RUN: wg_seal and wg_open, whole programs (classify, LPM,
   keypair, counter, encapsulation, AEAD, checksums, stats), per size.
2. Between two namespaces joined by veth, iperf3 TCP and UDP and ping
   (bench/live.py) through each path, and the ratios against both
   wireguard-go's. Targets (issue 20): TCP >= 1.5x, UDP >= 2x, ping RTT
   <= 0.5x wireguard-go. Keys are installed directly (static keypairs):
   the handshake does not run during a measurement anyway.

Debian 13's wireguard-go is fetched by scripts/fetch-wireguard-go (apt
with a temporary trixie sources list); its column is skipped with the
reason when that fails.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import statistics
import subprocess
import sys
import time

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from ...bench.live import WireguardGo, measure
from ...bpf import pins
from ...bpf.object import BpfObject
from ...netns import VethPair
from ...paths import ROOT, bpf_object
from . import wire
from .bpf_dataplane import BpfDataPlane, Maps

SIZES = (64, 512, 1400)          # inner packet bytes
RUNS = 300
WG_INNER = ("10.212.250.1", "10.212.250.2")
KEYS = (os.urandom(32), os.urandom(32))


def _median(fn, runs: int = RUNS) -> float:
    return statistics.median(fn(i) for i in range(runs))


def per_packet(echo) -> list[dict]:
    rows = []
    with BpfObject.open(str(bpf_object("wireguard"))) as obj:
        obj.load()
        m = Maps(obj)
        m.configure(51820, 1, bytes(6), bytes(6), 1420)
        m.add_peer(1)
        m.allow(1, ipaddress.ip_network("10.0.0.0/8"))
        m.install_keypair(1, 1, 2, KEYS[0], KEYS[1], initiator=True)
        m.set_endpoint(1, "192.0.2.2", 51821, 1, "192.0.2.1")
        eth = bytes(Ether(type=0x800))
        for size in SIZES:
            pkt = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP() / os.urandom(size - 28))
            seal = _median(lambda i: obj.program("wg_seal").test_run(data=eth + pkt).duration_ns)
            base = 10_000 * size
            frames = [bytes(Ether() / IP(src="192.0.2.2", dst="192.0.2.1") / UDP(sport=51821, dport=51820)
                            / wire.seal(KEYS[1], 1, base + i, pkt)) for i in range(RUNS)]
            opn = statistics.median(obj.program("wg_open").test_run(data=f).duration_ns for f in frames)
            rows.append({"name": "wireguard seal (wg_seal, whole program)", "size": size, "ns": seal})
            rows.append({"name": "wireguard open (wg_open, whole program)", "size": size, "ns": opn})
            echo(f"  {size} B: seal {seal:.0f} ns, open {opn:.0f} ns")
        rows.append({"name": "wireguard verified insns",
                     **{n: p.verified_insns for n, p in obj.programs.items()}})
    return rows


# ---------------------------------------------------------------- live

class _BpfWireguard:
    """Two BPF data planes (wg0 in each namespace), static keypairs."""

    def __init__(self, pair: VethPair):
        self.pair, self.planes = pair, []

    def __enter__(self):
        p = self.pair
        try:
            for i, (ns, dev) in enumerate(((p.ns_a, p.dev_a), (p.ns_b, p.dev_b))):
                self.planes.append(BpfDataPlane("cbwgb0", 51820, [dev], mtu=1420,
                                                addresses=[f"{WG_INNER[i]}/24"], ns=ns))
            a, b = self.planes
            a.set_peer(1, bytes(32), (p.addr_b, 51820), [ipaddress.ip_network(f"{WG_INNER[1]}/32")])
            b.set_peer(1, bytes(32), (p.addr_a, 51820), [ipaddress.ip_network(f"{WG_INNER[0]}/32")])
            a.install_keypair(1, 11, 22, KEYS[0], KEYS[1], initiator=True)
            b.install_keypair(1, 22, 11, KEYS[1], KEYS[0], initiator=True)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        for dp in self.planes:
            dp.close()


def _cli(*args: str) -> None:
    res = subprocess.run([sys.executable, "-m", "cryptbpf.cli", *args], capture_output=True, text=True)
    if res.returncode:
        raise RuntimeError(f"cryptbpf {' '.join(args)}: {res.stderr.strip()}")


class _Tunnel:
    """encrypted-tunnel, chacha20-poly1305, through its CLI (one program
    package does not import another)."""

    def __init__(self, pair: VethPair, keyfile: str):
        self.pair, self.keyfile = pair, keyfile

    def __enter__(self):
        p = self.pair
        fd = os.open(self.keyfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, os.urandom(32).hex().encode())
        os.close(fd)
        try:
            _cli("load", "encrypted-tunnel", p.dev_a, "--netns", p.ns_a, "--key-file", self.keyfile,
                 "--xdp-mode", "skb", "--peer", p.addr_b, "--suite", "chacha20-poly1305")
            _cli("load", "encrypted-tunnel", p.dev_b, "--netns", p.ns_b, "--xdp-mode", "skb")
            _cli("tunnel", "add-peer", p.addr_a, "--key-file", self.keyfile, "--suite", "chacha20-poly1305")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        if pins.is_loaded("encrypted-tunnel"):
            _cli("unload", "encrypted-tunnel")
        os.unlink(self.keyfile)


def trixie_wireguard_go() -> str:
    """Debian 13's wireguard-go (scripts/fetch-wireguard-go); RuntimeError
    saying why when it cannot be had."""
    res = subprocess.run([str(ROOT / "scripts" / "fetch-wireguard-go"), str(ROOT / "build" / "wireguard-go-trixie")],
                         capture_output=True, text=True, timeout=300)
    if res.returncode:
        raise RuntimeError(f"scripts/fetch-wireguard-go failed: {res.stderr.strip()[-300:]}")
    return res.stdout.strip().splitlines()[-1]


def _ratios(rows: dict, ours: str, theirs: str) -> dict:
    a, b = rows.get(ours), rows.get(theirs)
    if not a or not b or "skipped" in a or "skipped" in b:
        return {"name": f"ratio: {ours} / {theirs}", "skipped": "a column is missing"}
    return {"name": f"ratio: {ours} / {theirs}",
            "tcp_x": round(a["tcp_mbit_s"] / b["tcp_mbit_s"], 2) if b["tcp_mbit_s"] else None,
            "udp_x": round(a["udp_mbit_s"] / b["udp_mbit_s"], 2) if b["udp_mbit_s"] else None,
            "ping_x": round(a["ping_rtt_us"] / b["ping_rtt_us"], 2) if b["ping_rtt_us"] else None,
            "targets": "tcp_x >= 1.5, udp_x >= 2, ping_x <= 0.5"}


def live(echo) -> list[dict]:
    if not shutil.which("iperf3") or not shutil.which("ping"):
        return [{"name": "live wireguard benchmark", "skipped": "needs iperf3 and ping (scripts/setup)"}]
    if pins.is_loaded("encrypted-tunnel"):
        return [{"name": "live wireguard benchmark", "skipped": "encrypted-tunnel is loaded here"}]
    cols: dict[str, dict] = {}

    def column(label: str, ctx, dst: str):
        try:
            with ctx:
                time.sleep(0.5)
                cols[label] = measure(pair, dst, label, echo)
        except (RuntimeError, OSError, subprocess.CalledProcessError, ValueError) as e:
            cols[label] = {"name": f"live: {label}", "skipped": str(e)[:300]}
            echo(f"  {label}: skipped ({e})")

    with VethPair("cbwgbench", subnet="10.215.0") as pair:
        cols["plain veth"] = measure(pair, pair.addr_b, "plain veth", echo)
        column("wireguard-go (Debian 12)", WireguardGo(pair), WireguardGo.ADDR[1])
        try:
            column("wireguard-go (Debian 13)", WireguardGo(pair, trixie_wireguard_go()), WireguardGo.ADDR[1])
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            cols["wireguard-go (Debian 13)"] = {"name": "live: wireguard-go (Debian 13)", "skipped": str(e)}
        column("encrypted-tunnel chacha20-poly1305", _Tunnel(pair, str(ROOT / "build" / ".bench-tunnel.key")),
               pair.addr_b)
        column("wireguard (BPF)", _BpfWireguard(pair), WG_INNER[1])
    rows = [dict(r, name=r.get("name", f"live: {k}")) for k, r in cols.items()]
    rows += [_ratios(cols, "wireguard (BPF)", "wireguard-go (Debian 12)"),
             _ratios(cols, "wireguard (BPF)", "wireguard-go (Debian 13)")]
    for r in rows[-2:]:
        echo(f"  {r}")
    return rows


BENCH_NAME = "wireguard"
BENCHMARKS = [per_packet, live]
