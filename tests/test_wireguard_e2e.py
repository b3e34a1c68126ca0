"""`cryptbpf wg up/show/down` as users run them (the real CLI, with
--netns) in one namespace, against wireguard-go configured with `wg` in
another, joined by veth: pings of IPv4 and IPv6 inner packets, a TCP
transfer whose sha256 matches, `wg show` (text and dump) reporting the
handshake and the transfer, `wg down` leaving no link, pin or /run state,
and `wg down` after the daemon was SIGKILLed doing the same; two
interfaces up in one namespace at once (two data planes on one underlay),
`wg down` of either leaving the other working. Also the
daemon's cookie reply taken by wireguard-go (Device with the BPF data
plane, as in test_wireguard_dataplane_interop)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from cryptbpf import netns
from cryptbpf.bpf import pins
from cryptbpf.netns import VethPair
from cryptbpf.paths import STATE_ROOT
from cryptbpf.programs.wireguard import noise

from conftest import require_feature, require_root
from wg_peers import tcp_transfer_intact

pytestmark = [pytest.mark.host_only]

GO_PORT, OUR_PORT = 51830, 51831
GO4, OUR4 = "10.98.0.1", "10.98.0.2"
GO6, OUR6 = "fd98::1", "fd98::2"
B64 = noise.key_to_base64


def sh(ns: str, *cmd: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, **kw)
    if check and res.returncode:
        raise AssertionError(f"{' '.join(cmd)}: {res.stdout}{res.stderr}")
    return res


def wg_cli(ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """The real CLI, from the host's namespaces with --netns (as every
    cryptbpf command: `ip netns exec` would hide bpffs)."""
    res = subprocess.run([sys.executable, "-m", "cryptbpf.cli", "wg", *args, "--netns", ns],
                         capture_output=True, text=True, timeout=60)
    if check and res.returncode:
        raise AssertionError(f"wg {' '.join(args)}: {res.stdout}{res.stderr}")
    return res


def ping(ns: str, dst: str, size: int = 56) -> bool:
    return sh(ns, "ping", "-c", "1", "-W", "3", "-s", str(size), dst, check=False).returncode == 0


class Pair:
    def __init__(self, tmp):
        tag = f"wge{os.getpid() % 100000}"
        self.veth = v = VethPair(tag, subnet=f"10.214.{os.getpid() % 250}").create()
        self.go_dev = f"wgg{os.getpid() % 100000}"
        self.name = f"wgc{os.getpid() % 10000}"
        try:
            ours, go_priv = noise.generate_private_key(), noise.generate_private_key()
            self.our_pub, self.go_pub = B64(noise.public_key(ours)), B64(noise.public_key(go_priv))
            self.our_priv = B64(ours)
            key = tmp / "go.key"
            key.write_text(B64(go_priv))
            key.chmod(0o600)
            env = dict(os.environ, WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD="1")
            subprocess.run(["ip", "netns", "exec", v.ns_a, "wireguard-go", self.go_dev], env=env,
                           check=True, capture_output=True)
            sh(v.ns_a, "wg", "set", self.go_dev, "private-key", str(key), "listen-port", str(GO_PORT),
               "peer", self.our_pub, "allowed-ips", f"{OUR4}/32,{OUR6}/128",
               "endpoint", f"{v.addr_b}:{OUR_PORT}")
            sh(v.ns_a, "ip", "link", "set", self.go_dev, "mtu", "1420", "up")
            sh(v.ns_a, "ip", "addr", "add", f"{GO4}/24", "dev", self.go_dev)
            sh(v.ns_a, "ip", "addr", "add", f"{GO6}/64", "dev", self.go_dev, "nodad")
            self.conf = tmp / f"{self.name}.conf"
            self.conf.write_text(f"[Interface]\nPrivateKey = {B64(ours)}\nListenPort = {OUR_PORT}\n"
                                 f"Address = {OUR4}/24, {OUR6}/64\n\n"
                                 f"[Peer]\nPublicKey = {self.go_pub}\n"
                                 f"AllowedIPs = {GO4}/32, {GO6}/128\nEndpoint = {v.addr_a}:{GO_PORT}\n")
            self.conf.chmod(0o600)
        except BaseException:
            self.close()
            raise

    def leftovers(self) -> list[str]:
        """What a daemon of ours may leave: links, pins, /run state."""
        out = []
        links = sh(self.veth.ns_b, "ip", "-o", "link", "show").stdout
        out += [f"link {self.name}" for line in links.splitlines() if f" {self.name}" in line]
        inst = f"wireguard-{self.veth.ns_b}-{self.name}"
        if pins.is_loaded(inst):
            out.append(f"pins/record {inst}")
        wg_dir = STATE_ROOT / "wg"
        if wg_dir.is_dir():
            out += [str(p) for p in wg_dir.glob(f"{self.veth.ns_b}-{self.name}.*")]
        return out

    def close(self):
        wg_cli(self.veth.ns_b, "down", self.name, check=False)
        sh(self.veth.ns_a, "ip", "link", "del", self.go_dev, check=False)
        self.veth.close()


@pytest.fixture
def pair(tmp_path):
    require_root()
    require_feature("bpf_loop")
    if not shutil.which("wireguard-go") or not shutil.which("wg"):
        pytest.skip("needs wireguard-go and wireguard-tools (Debian packages)")
    p = Pair(tmp_path)
    try:
        yield p
    finally:
        p.close()


def test_up_ping_transfer_show_down(pair):
    v = pair.veth
    res = wg_cli(v.ns_b, "up", str(pair.conf))
    assert res.stdout.startswith(f"{pair.name}: up (pid ") and res.stderr == ""
    # we initiate (NeedHandshake from BPF), then both directions, both families
    deadline = time.monotonic() + 10
    while not ping(v.ns_b, GO4) and time.monotonic() < deadline:
        pass
    assert ping(v.ns_b, GO4) and ping(v.ns_a, OUR4, 1000)
    assert ping(v.ns_b, GO6) and ping(v.ns_a, OUR6, 1000)

    assert tcp_transfer_intact(v.ns_a, v.ns_b, GO4, size=4 << 20, port=5202)

    time.sleep(1.2)             # the daemon's status is rewritten every second
    text = wg_cli(v.ns_b, "show", pair.name).stdout
    assert f"interface: {pair.name}" in text and f"peer: {pair.go_pub}" in text
    assert f"endpoint: {v.addr_a}:{GO_PORT}" in text and "latest handshake: " in text
    assert "private key: (hidden)" in text and "MiB sent" in text
    dump = wg_cli(v.ns_b, "show", pair.name, "dump").stdout.splitlines()
    iface, peer = dump[0].split("\t"), dump[1].split("\t")
    assert iface == ["(hidden)", pair.our_pub, str(OUR_PORT), "off"]
    assert peer[0] == pair.go_pub and peer[2] == f"{v.addr_a}:{GO_PORT}"
    assert peer[3] == f"{GO4}/32,{GO6}/128" and abs(int(peer[4]) - time.time()) < 30
    assert int(peer[6]) > 4 << 20 and int(peer[5]) > 0 and peer[7] == "off"
    assert wg_cli(v.ns_b, "show", "all", "dump").stdout.splitlines()[0].startswith(pair.name + "\t")
    raw = wg_cli(v.ns_b, "show", pair.name, "--json").stdout
    doc = json.loads(raw)
    assert [i["name"] for i in doc["interfaces"]] == [pair.name]
    iface = doc["interfaces"][0]
    assert iface["public_key"] == pair.our_pub and iface["listen_port"] == OUR_PORT
    assert set(iface) == {"name", "public_key", "listen_port", "peers"}
    (peer,) = iface["peers"]
    assert peer["public_key"] == pair.go_pub and peer["endpoint"] == f"{v.addr_a}:{GO_PORT}"
    assert peer["allowed_ips"] == [f"{GO4}/32", f"{GO6}/128"] and peer["persistent_keepalive"] == 0
    assert abs(peer["latest_handshake"] - time.time()) < 30
    assert peer["transfer_tx"] > 4 << 20 and peer["transfer_rx"] > 0
    assert "private" not in raw and "preshared" not in raw
    # the private key is in no output and no state file
    state = [p.read_text() for p in (STATE_ROOT / "wg").glob(f"{v.ns_b}-{pair.name}.*")]
    assert len(state) >= 2 and not any(pair.our_priv in x for x in [text, *dump, raw, *state])
    go = sh(v.ns_a, "wg", "show", pair.go_dev, "dump").stdout.splitlines()[1].split("\t")
    assert int(go[4]) > 0 and int(go[5]) >= 4 << 20       # wireguard-go saw the handshake and the data

    # a second `up` of the same interface is one line, nothing changed
    again = wg_cli(v.ns_b, "up", str(pair.conf), check=False)
    assert again.returncode == 1 and again.stderr.startswith("cryptbpf: ") and "up already" in again.stderr

    res = wg_cli(v.ns_b, "down", pair.name)
    assert "stopped daemon" in res.stdout
    assert pair.leftovers() == []
    assert not ping(v.ns_b, GO4)
    gone = wg_cli(v.ns_b, "down", pair.name, check=False)
    assert gone.returncode == 1 and "is not up" in gone.stderr


def test_down_after_sigkill_cleans_up(pair):
    v = pair.veth
    wg_cli(v.ns_b, "up", str(pair.conf))
    pid = int((STATE_ROOT / "wg" / f"{v.ns_b}-{pair.name}.pid").read_text())
    assert ping(v.ns_a, OUR4)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pair.leftovers()                     # the kill left everything in place
    dead = wg_cli(v.ns_b, "show", pair.name, check=False)
    assert dead.returncode == 1 and "its daemon died" in dead.stderr
    assert wg_cli(v.ns_b, "show").stdout == ""
    again = wg_cli(v.ns_b, "up", str(pair.conf), check=False)
    assert again.returncode == 1 and f"cryptbpf wg down {pair.name}" in again.stderr
    res = wg_cli(v.ns_b, "down", str(pair.conf))      # by its file this time
    assert "removed the data plane left behind" in res.stdout
    assert pair.leftovers() == []


def test_up_refuses_a_readable_config_in_one_line(pair):
    pair.conf.chmod(0o644)
    res = wg_cli(pair.veth.ns_b, "up", str(pair.conf), check=False)
    assert res.returncode == 1 and res.stderr.count("\n") == 1 and "chmod 600" in res.stderr
    assert "Traceback" not in res.stderr and "PrivateKey" not in res.stderr
    assert pair.leftovers() == []


def test_wireguard_go_takes_our_cookie_when_we_are_under_load(tmp_path):
    """cookie.py against wireguard-go: our Device under load answers its
    initiation with a cookie reply (XChaCha20-Poly1305); wireguard-go's
    next initiation carries the mac2 that cookie gives, and is accepted."""
    require_root()
    require_feature("bpf_loop")
    if not shutil.which("wireguard-go") or not shutil.which("wg"):
        pytest.skip("needs wireguard-go and wireguard-tools (Debian packages)")
    import test_wireguard_dataplane_interop as interop
    s = interop.Setup(tmp_path, 4)
    try:
        s.dev.under_load_threshold = 0          # every handshake message: under load
        deadline = time.monotonic() + 20        # wireguard-go retries after REKEY_TIMEOUT (5 s)
        while not ping(s.veth.ns_a, interop.OUR4) and time.monotonic() < deadline:
            pass
        assert ping(s.veth.ns_a, interop.OUR4)
        assert s.dev.counters["cookie_replies_sent"] >= 1 and s.dev.counters["refused"] == 0
        assert s.dp.peer_state(1).current_index != 0
    finally:
        s.close()


def test_a_daemon_that_cannot_start_says_why_in_one_line(pair):
    """The error happens in the background child (the port is taken): `up`
    prints it as its own one line, and nothing is left behind."""
    with netns.inside(pair.veth.ns_b):
        taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("0.0.0.0", OUR_PORT))
    try:
        res = wg_cli(pair.veth.ns_b, "up", str(pair.conf), check=False)
    finally:
        taken.close()
    assert res.returncode == 1 and res.stdout == "" and res.stderr.count("\n") == 1
    assert res.stderr.startswith(f"cryptbpf: {pair.name}: cannot bind UDP port {OUR_PORT}")
    assert pair.leftovers() == []


def _tc_filters(ns: str, dev: str) -> list[str]:
    out = sh(ns, "tc", "filter", "show", "dev", dev, "ingress").stdout
    return [line for line in out.splitlines() if " handle " in line and "wg_open" in line]


def test_two_interfaces_in_one_namespace_and_down_of_one_leaves_the_other(pair, tmp_path):
    """Two `wg up` interfaces in namespace B (different ports, different
    wireguard-go peers in namespace A), both data planes on B's one veth:
    each wg_open passes what is not to its port to the next filter, so
    both pass traffic at once; `wg down` of either leaves the other's TC
    filter, pins and traffic intact."""
    v = pair.veth
    go2, name2 = f"wgh{os.getpid() % 100000}", f"wgd{os.getpid() % 10000}"
    go2_port, our2_port = GO_PORT + 2, OUR_PORT + 2
    ours2, go2_priv = noise.generate_private_key(), noise.generate_private_key()
    key = tmp_path / "go2.key"
    key.write_text(B64(go2_priv))
    key.chmod(0o600)
    conf2 = tmp_path / f"{name2}.conf"
    conf2.write_text(f"[Interface]\nPrivateKey = {B64(ours2)}\nListenPort = {our2_port}\n"
                     f"Address = 10.99.0.2/24, fd99::2/64\n\n"
                     f"[Peer]\nPublicKey = {B64(noise.public_key(go2_priv))}\n"
                     f"AllowedIPs = 10.99.0.1/32, fd99::1/128\nEndpoint = {v.addr_a}:{go2_port}\n")
    conf2.chmod(0o600)
    env = dict(os.environ, WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD="1")
    subprocess.run(["ip", "netns", "exec", v.ns_a, "wireguard-go", go2], env=env, check=True,
                   capture_output=True)
    inst1, inst2 = f"wireguard-{v.ns_b}-{pair.name}", f"wireguard-{v.ns_b}-{name2}"
    try:
        sh(v.ns_a, "wg", "set", go2, "private-key", str(key), "listen-port", str(go2_port),
           "peer", B64(noise.public_key(ours2)), "allowed-ips", "10.99.0.2/32,fd99::2/128",
           "endpoint", f"{v.addr_b}:{our2_port}")
        sh(v.ns_a, "ip", "link", "set", go2, "mtu", "1420", "up")
        sh(v.ns_a, "ip", "addr", "add", "10.99.0.1/24", "dev", go2)
        sh(v.ns_a, "ip", "addr", "add", "fd99::1/64", "dev", go2, "nodad")
        wg_cli(v.ns_b, "up", str(pair.conf))
        wg_cli(v.ns_b, "up", str(conf2))
        assert len(_tc_filters(v.ns_b, v.dev_b)) == 2       # the second attach replaced nothing
        # both ways on both: the first attached (its filter runs second) and the second
        for _ in range(20):
            if ping(v.ns_a, OUR4) and ping(v.ns_a, "10.99.0.2"):
                break
        assert ping(v.ns_a, OUR4, 1000) and ping(v.ns_b, GO4, 1000)
        assert ping(v.ns_a, "10.99.0.2", 1000) and ping(v.ns_b, "10.99.0.1", 1000)
        assert ping(v.ns_b, GO6) and ping(v.ns_b, "fd99::1")
        names = wg_cli(v.ns_b, "show", "all", "dump").stdout
        assert f"{pair.name}\t" in names and f"{name2}\t" in names
        raw = wg_cli(v.ns_b, "show", "--json").stdout
        doc = {i["name"]: i for i in json.loads(raw)["interfaces"]}
        assert sorted(doc) == sorted([pair.name, name2])
        assert doc[name2]["listen_port"] == our2_port and doc[pair.name]["listen_port"] == OUR_PORT
        assert doc[name2]["peers"][0]["public_key"] == B64(noise.public_key(go2_priv))
        assert B64(ours2) not in raw and pair.our_priv not in raw

        wg_cli(v.ns_b, "down", pair.name)       # the first: the second keeps its filter, pins, traffic
        assert pair.leftovers() == [] and pins.is_loaded(inst2) and not pins.is_loaded(inst1)
        assert len(_tc_filters(v.ns_b, v.dev_b)) == 1
        assert ping(v.ns_a, "10.99.0.2", 1000) and ping(v.ns_b, "fd99::1", 1000)
        assert not ping(v.ns_b, GO4)

        wg_cli(v.ns_b, "up", str(pair.conf))    # and the other order: down the second
        assert len(_tc_filters(v.ns_b, v.dev_b)) == 2
        wg_cli(v.ns_b, "down", name2)
        assert not pins.is_loaded(inst2) and pins.is_loaded(inst1)
        assert len(_tc_filters(v.ns_b, v.dev_b)) == 1
        for _ in range(20):
            if ping(v.ns_b, GO4):
                break
        assert ping(v.ns_b, GO4, 1000) and ping(v.ns_a, OUR6, 1000)
        assert not ping(v.ns_b, "10.99.0.1")
    finally:
        wg_cli(v.ns_b, "down", name2, check=False)
        sh(v.ns_a, "ip", "link", "del", go2, check=False)
