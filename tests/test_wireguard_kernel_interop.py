"""The BPF data plane and our handshake daemon against the KERNEL's
WireGuard (wg0 made by `ip link add ... type wireguard`, configured with
`wg`), in two namespaces joined by veth (tests/wg_peers.py).

This host's 6.18 has no WireGuard module: skipped here, with the reason.
Debian's 6.1 and 6.12 ship it (`wireguard.ko`), and in their guests
(`make vm-test`) it must work: a kernel that has the module and cannot
make the link fails the test rather than skipping it.

Proven: the handshake initiated by either side, pings up to the MTU both
ways, IPv4 and IPv6 inner over IPv4 and IPv6 outer, a TCP transfer whose
sha256 matches, and the kernel's `wg show` reporting the handshake."""

from __future__ import annotations

import glob
import os
import shutil

import pytest

from conftest import require_feature, require_root
from wg_peers import MTU, OUR4, OUR6, PEER4, PEER6, Setup, ping, sh, tcp_transfer_intact, wait_for

pytest.importorskip("cryptbpf.programs.wireguard.device",
                    reason="the handshake daemon (wg-handshake) is not in this tree")


def _kernel_has_wireguard() -> bool:
    release = os.uname().release
    return (os.path.isdir("/sys/module/wireguard")
            or bool(glob.glob(f"/lib/modules/{release}/kernel/drivers/net/wireguard/wireguard.ko*")))


@pytest.fixture(params=[4, 6], ids=["outer4", "outer6"])
def wg(request, tmp_path):
    require_root()
    require_feature("bpf_loop")
    if not shutil.which("wg"):
        pytest.skip("needs wireguard-tools (Debian package)")
    if not _kernel_has_wireguard():
        pytest.skip(f"Linux {os.uname().release} has no WireGuard module (CONFIG_WIREGUARD)")
    s = Setup(tmp_path, request.param, kind="kernel")
    try:
        yield s
    finally:
        s.close()


def test_kernel_initiates_pings_up_to_the_mtu_both_families(wg):
    v = wg.veth
    assert wait_for(lambda: ping(v.ns_a, OUR4), 15, "a handshake initiated by the kernel")
    for size in (0, 100, 1000, MTU - 28):
        assert ping(v.ns_a, OUR4, size), f"kernel -> us, {size} B"
        assert ping(v.ns_b, PEER4, size), f"us -> kernel, {size} B"
    for size in (0, 1000, MTU - 48):
        assert ping(v.ns_a, OUR6, size), f"kernel -> us (IPv6), {size} B"
        assert ping(v.ns_b, PEER6, size), f"us -> kernel (IPv6), {size} B"
    st = wg.dp.stats(1)
    assert st["auth_failed"] == 0 and st["replayed"] == 0
    peer = wg.peer_dump()
    assert peer["latest_handshake"] > 0 and peer["rx"] > 0 and peer["tx"] > 0


def test_we_initiate_and_tcp_arrives_intact(wg):
    v = wg.veth
    # the first packets find no keypair: dropped in BPF, the daemon initiates
    sh(v.ns_b, "ping", "-c", "5", "-i", "0.3", "-W", "1", PEER4, check=False)
    assert wait_for(lambda: ping(v.ns_b, PEER4), 15, "a session we initiated")
    assert wg.dp.stats(1)["no_key"] >= 1
    assert tcp_transfer_intact(v.ns_a, v.ns_b, PEER4, size=2 << 20)
    assert wg.dp.stats(1)["auth_failed"] == 0
    assert wg.peer_dump()["latest_handshake"] > 0
