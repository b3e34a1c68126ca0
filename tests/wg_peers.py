"""A real WireGuard peer in one network namespace and our daemon with the
BPF data plane in another, joined by veth: the setup of the interop tests
(tests/test_wireguard_*interop.py), built around either peer:

  "go"      wireguard-go (Debian's wireguard-go), configured with `wg`
  "kernel"  the kernel's WireGuard (`ip link add ... type wireguard`),
            configured with `wg`: needs a kernel with the module (Debian's
            6.1 and 6.12 guests; this host's 6.18 has none)

Namespace A holds the peer, namespace B our `device.Device` running in a
thread with a `BpfDataPlane`."""

from __future__ import annotations

import os
import subprocess
import threading
import time

from cryptbpf import netns
from cryptbpf.netns import VethPair

PEER_PORT, OUR_PORT = 51820, 51821
PEER4, OUR4 = "10.97.0.1", "10.97.0.2"
PEER6, OUR6 = "fd97::1", "fd97::2"
UNDER6 = ("fd96::1", "fd96::2")
MTU = 1420


def sh(ns: str, *cmd: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, **kw)
    if check and res.returncode:
        raise AssertionError(f"{' '.join(cmd)}: {res.stdout}{res.stderr}")
    return res


def wait_for(cond, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def ping(ns: str, dst: str, size: int = 56, count: int = 1) -> bool:
    return sh(ns, "ping", "-c", str(count), "-i", "0.2", "-W", "3", "-s", str(size), "-M", "do", dst,
              check=False).returncode == 0


def _create_peer_device(kind: str, ns: str, dev: str) -> None:
    if kind == "go":
        env = dict(os.environ, WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD="1")
        subprocess.run(["ip", "netns", "exec", ns, "wireguard-go", dev], env=env,
                       check=True, capture_output=True)
    else:
        sh(ns, "ip", "link", "add", dev, "type", "wireguard")


class Setup:
    def __init__(self, tmp, outer: int, kind: str = "go"):
        from cryptbpf.programs.wireguard import device, noise
        from cryptbpf.programs.wireguard.bpf_dataplane import BpfDataPlane
        from cryptbpf.programs.wireguard.config import parse

        b64 = noise.key_to_base64
        tag = f"wgi{os.getpid() % 100000}"
        self.veth = v = VethPair(tag, subnet=f"10.213.{os.getpid() % 250}").create()
        self.peer_dev = f"wgo{os.getpid() % 100000}"
        self.dev = self.stop = self.thread = self.dp = None
        try:
            for ns, dev, a in ((v.ns_a, v.dev_a, UNDER6[0]), (v.ns_b, v.dev_b, UNDER6[1])):
                netns.ip("addr", "add", f"{a}/64", "dev", dev, "nodad", netns=ns)
            peer_addr, our_addr = (v.addr_a, v.addr_b) if outer == 4 else UNDER6
            fmt = (lambda a, p: f"{a}:{p}") if outer == 4 else (lambda a, p: f"[{a}]:{p}")
            ours, peer_priv = noise.generate_private_key(), noise.generate_private_key()
            key = tmp / "peer.key"
            key.write_text(b64(peer_priv))
            key.chmod(0o600)
            _create_peer_device(kind, v.ns_a, self.peer_dev)
            sh(v.ns_a, "wg", "set", self.peer_dev, "private-key", str(key), "listen-port", str(PEER_PORT),
               "peer", b64(noise.public_key(ours)), "allowed-ips", f"{OUR4}/32,{OUR6}/128",
               "endpoint", fmt(our_addr, OUR_PORT))
            sh(v.ns_a, "ip", "link", "set", self.peer_dev, "mtu", str(MTU), "up")
            sh(v.ns_a, "ip", "addr", "add", f"{PEER4}/24", "dev", self.peer_dev)
            sh(v.ns_a, "ip", "addr", "add", f"{PEER6}/64", "dev", self.peer_dev, "nodad")
            text = (f"[Interface]\nPrivateKey = {b64(ours)}\nListenPort = {OUR_PORT}\n"
                    f"Address = {OUR4}/24, {OUR6}/64\nMTU = {MTU}\n"
                    f"[Peer]\nPublicKey = {b64(noise.public_key(peer_priv))}\n"
                    f"AllowedIPs = {PEER4}/32, {PEER6}/128\nEndpoint = {fmt(peer_addr, PEER_PORT)}\n")

            def bpf(cfg, port):
                self.dp = BpfDataPlane(cfg.name, port, [v.dev_b], mtu=cfg.mtu,
                                       addresses=[str(a) for a in cfg.addresses], ns=v.ns_b)
                return self.dp

            with netns.inside(v.ns_b):
                self.dev = device.Device(parse(text, f"wgb{os.getpid() % 10000}"), bpf)
            self.stop = threading.Event()
            self.thread = threading.Thread(target=self.dev.run, args=(self.stop.is_set,), daemon=True)
            self.thread.start()
        except BaseException:
            self.close()
            raise

    def peer_dump(self) -> dict:
        """The peer's view of us, from `wg show DEV dump`."""
        line = sh(self.veth.ns_a, "wg", "show", self.peer_dev, "dump").stdout.splitlines()[1].split("\t")
        return {"endpoint": line[2], "latest_handshake": int(line[4]), "rx": int(line[5]),
                "tx": int(line[6])}

    def close(self):
        if self.thread:
            self.stop.set()
            self.thread.join()
        if self.dev:
            self.dev.close()
        sh(self.veth.ns_a, "ip", "link", "del", self.peer_dev, check=False)
        self.veth.close()


def tcp_transfer_intact(server_ns: str, client_ns: str, addr: str, size: int = 8 << 20,
                        port: int = 5201, more=None, limit: int = 1 << 30) -> bool:
    """`size` random bytes over TCP from client_ns to addr (in server_ns):
    True if the sha256 of what arrived is that of what was sent. With
    `more`, the sending goes on (up to `limit` bytes) while more() is true."""
    import hashlib
    import socket

    data = os.urandom(size)
    sent = hashlib.sha256(data)
    got = hashlib.sha256()
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    with netns.inside(server_ns):
        srv = socket.socket(family)
    srv.bind((addr, port))
    srv.listen(1)
    srv.settimeout(30)

    def serve():
        c, _ = srv.accept()
        c.settimeout(30)
        while b := c.recv(1 << 16):
            got.update(b)
        c.close()

    t = threading.Thread(target=serve)
    t.start()
    try:
        with netns.inside(client_ns):
            cli = socket.create_connection((addr, port), timeout=30)
        cli.sendall(data)
        total = size
        while more is not None and more() and total < limit:
            chunk = os.urandom(1 << 18)
            sent.update(chunk)
            cli.sendall(chunk)
            total += len(chunk)
        cli.close()
        t.join(60)
    finally:
        srv.close()
    return got.hexdigest() == sent.hexdigest()
