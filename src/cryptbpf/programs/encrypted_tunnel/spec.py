"""encrypted-tunnel: authenticated, replay-protected IPv4 host-to-host
encryption in TC, early drops in XDP. Docs: docs/encrypted_tunnel.md.

    cryptbpf load encrypted-tunnel DEV --peer ADDR --key-file F [--suite S]
    cryptbpf tunnel peers|add-peer|remove-peer|rekey|stats"""

from __future__ import annotations

from typing import Any, Optional

from ...bpf import pins
from ...errors import CryptbpfError
from . import control, device as devmod, wire
from ..base import Hook, ProgramSpec
from .control import DEFAULT_SUITE, NAME, parse_suite
from .cli import app


class EncryptedTunnel(ProgramSpec):
    _pending: Optional[tuple[bytes, list[str], int, Optional[str]]] = None

    def check_options(self, options):
        for p in options.get("peer", []) + options.get("local", []):
            control.addr_key(p)
        for s in options.get("suite", []):
            parse_suite(s)

    def setup(self, handle, key, options):
        """Validate the options; peers are installed in prepare_device,
        which runs inside the device's namespace where the route to each
        peer (and so our local address) is known."""
        peers = options.get("peer", [])
        if not peers:
            raise CryptbpfError(f"{self.name} needs at least one --peer ADDR")
        for p in peers:
            control.addr_key(p)
        suite = parse_suite((options.get("suite") or [DEFAULT_SUITE])[-1])
        control.check_suite_supported(suite)     # before anything is loaded
        local = (options.get("local") or [None])[-1]
        self._pending = (key, peers, suite, local)

    def prepare_device(self, ifindex, device, options):
        saved: dict[str, Any] = {"offloads": {}, "gso_max_segs": None, "routes": []}
        pending, self._pending = self._pending, None
        if not pending and (options.get("peer") or options.get("suite") or options.get("local")):
            raise CryptbpfError(f"{self.name} is already loaded: add peers on this device with "
                                "`cryptbpf tunnel add-peer ADDR --key-file F`")
        try:
            saved["offloads"] = devmod.offloads_off(device)
            saved["gso_max_segs"] = devmod.set_gso_max_segs(device, 1)
            if pending:     # first load: the instance's peers
                key, peers, suite, local = pending
                with pins.Pinned(self.name) as h:
                    for peer in peers:
                        rec = devmod.add_peer_route(peer, device, wire.OVERHEAD[suite], local)
                        saved["routes"].append(rec)
                        control.add_peer(h, peer, local or rec["local"], key, suite)
        except BaseException:
            self.restore_device(ifindex, device, saved)
            raise
        return saved

    def restore_device(self, ifindex, device, saved):
        for rec in reversed(saved.get("routes", [])):
            devmod.remove_peer_route(rec, device)
        if saved.get("gso_max_segs") is not None:
            devmod.set_gso_max_segs(device, saved["gso_max_segs"])
        devmod.restore_offloads(device, saved.get("offloads", {}))

    def stats(self, handle) -> dict[str, int]:
        total: dict[str, int] = {}
        for row in range(control.STATS_ROWS):
            for k, v in control.peer_stats(handle, row).items():
                total[k] = total.get(k, 0) + v
        return total

    def status(self, handle) -> dict[str, Any]:
        return {"stats": self.stats(handle), "peers": control.describe(handle)}


SPEC = EncryptedTunnel(
    name=NAME,
    object="encrypted_tunnel",
    summary="authenticated, replay-protected IPv4 encryption between hosts (TC + XDP)",
    hooks=[Hook("tunnel_xdp", "xdp"), Hook("tunnel_ingress", "tc-ingress"),
           Hook("tunnel_egress", "tc-egress")],
    requires=["tc_bpf", "xdp", "syscall_prog", "bpf_loop", "kptr", "dynptr_mem"],
    optional={f"the {wire.SUITE_NAMES[s]} suite": feats
              for s, feats in control.SUITE_REQUIRES.items() if feats},
    key_sizes=(32,),
    header="encrypted_tunnel",
    stats_type="struct tunnel_stats",
    cli=app,
    commands={"tunnel": app},
    rekey_hint="its keys come from each peer's shared secret: `cryptbpf tunnel rekey --key-file F` "
               "(on both hosts) moves to the next key id, under a new secret if F holds one; "
               "`cryptbpf tunnel add-peer ADDR --key-file F` adds a peer with its own secret",
    options={"peer": "peer IPv4 address (repeatable; required)",
             "suite": f"{' or '.join(wire.SUITES)} (default {DEFAULT_SUITE})",
             "local": "our address towards the peers (default: the route's source address)"},
    option_commands={"peer": "cryptbpf tunnel add-peer ADDR --key-file F",
                     "suite": "cryptbpf tunnel add-peer ADDR --key-file F --suite S",
                     "local": "cryptbpf tunnel add-peer ADDR --key-file F --local ADDR"},
)
