"""Live measurements between two namespaces joined by veth, shared by the
programs' benchmarks: iperf3 TCP and UDP throughput and ping latency over
one path (`measure`), and wireguard-go on TUN as the reference
(`WireguardGo`). Both ends run on this machine's CPUs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import time

from ..netns import VethPair

LIVE_SECONDS = 3


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


def measure(pair: VethPair, dst: str, label: str, echo) -> dict:
    row = {"name": f"live: {label}", "tcp_mbit_s": _iperf(pair, dst, False)["mbit_s"]}
    u = _iperf(pair, dst, True)
    row.update({"udp_mbit_s": u["mbit_s"], "udp_lost_pct": u["lost_pct"], "ping_rtt_us": round(_ping(pair, dst))})
    echo(f"  {row}")
    return row



class WireguardGo:
    """wireguard-go on TUN in each namespace, over the same veth (`binary`:
    which wireguard-go; Debian 12's on PATH by default)."""
    ADDR = ("10.213.0.1", "10.213.0.2")

    def __init__(self, pair, binary: str = "wireguard-go"):
        self.pair, self.procs, self.binary = pair, [], binary

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
            self.procs.append(subprocess.Popen(["ip", "netns", "exec", ns, self.binary, "-f", ifname],
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


