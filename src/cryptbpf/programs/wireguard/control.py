"""BpfDataPlane: the DataPlane (dataplane.py) of one WireGuard interface,
in BPF (bpf/wireguard.bpf.c), driven through its maps.

One instance per interface: its own object, pinned under
<pin root>/wireguard-<name>/ and recorded in the lifecycle's format
(/run/cryptbpf/wireguard-<name>.json, so `cryptbpf status` lists it), plus
what the lifecycle does not know: the veth pair (netdev.py). close()
undoes everything; after a crash, `cleanup(name)` does the same from the
record.

Map layouts come from bpf/include/wireguard.h (wire.LAYOUT); the BPF side
appends its replay window and locks to some values (struct *_slot in the
program), which userspace writes as zeros.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from typing import Iterable

from ... import lifecycle, netns
from ...bpf import attach, pins
from ...bpf.maps import BPF_NOEXIST
from ...bpf.object import BpfObject
from ...bpf.ringbuf import RingBuffer
from ...errors import CryptbpfError
from ...paths import bpf_object
from . import netdev, wire
from .dataplane import Endpoint, IPNetwork, NeedHandshake, PeerState

L = wire.LAYOUT
C = L.const
MAX_PEERS = C("WG_MAX_PEERS")
NO_PEER_ROW = C("WG_NO_PEER_ROW")
KEY_NONE = C("WG_KEY_NONE")
BPF_F_LOCK = 4
OBJECT = "wireguard"
STATS_FIELDS = [f for f, _, _ in L.fields("struct wg_stats")]
_TIME_FIELDS = {f for f in STATS_FIELDS if f.endswith("_ns")}


def instance_name(name: str, ns: str | None) -> str:
    """wireguard-wg0, or wireguard-NS-wg0 for an interface in namespace NS."""
    return f"wireguard-{ns}-{name}" if ns else f"wireguard-{name}"


def _be16(port: int) -> int:
    """A __be16 field's value as cffi stores it (native order)."""
    return struct.unpack("=H", struct.pack("!H", port))[0]


def _u32(v: int) -> bytes:
    return struct.pack("<I", v)


def _lpm_key(net: IPNetwork) -> bytes:
    ctype = "struct wg_lpm_v4" if net.version == 4 else "struct wg_lpm_v6"
    return L.pack(ctype, prefixlen=net.prefixlen, addr=net.network_address.packed)


def _check_peer(peer_id: int) -> None:
    if not 0 <= peer_id < MAX_PEERS:
        raise CryptbpfError(f"peer id {peer_id} out of range (0..{MAX_PEERS - 1})")


def _addr16(addr: str) -> tuple[int, bytes]:
    a = ipaddress.ip_address(addr)
    return a.version, a.packed.ljust(16, b"\0")


class BpfDataPlane:
    """WireGuard's data plane for interface `name` (created here) in
    namespace `ns`, receiving on the `underlay` devices at `listen_port`."""

    def __init__(self, name: str, listen_port: int, underlay: Iterable[str], mtu: int = 1420,
                 addresses: Iterable[str] = (), ns: str | None = None):
        lifecycle.require_privileges()
        ns = lifecycle.caller_netns(ns)
        self.name, self.listen_port, self.ns = name, listen_port, ns
        self.instance = instance_name(name, ns)
        if pins.is_loaded(self.instance):
            raise CryptbpfError(f"{name}: a data plane is recorded already (running, or left by a "
                                f"crash: clean up with control.cleanup({name!r}, {ns!r}))")
        pins.pin_root(mount=True)
        self._obj: BpfObject | None = None
        self._obj = BpfObject.open(str(bpf_object(OBJECT)))
        self._peers: dict[int, dict] = {}
        self._events: list[NeedHandshake] = []
        self._rb: RingBuffer | None = None
        self._state = {"program": self.instance, "object": str(bpf_object(OBJECT)),
                       "loaded_at": pins.now(), "knobs": {}, "devices": {},
                       "wireguard": {"device": name, "netns": ns}}
        try:
            self._obj.load()
            pins.pin_object(self.instance, self._obj)
            pins.write_state(self.instance, self._state)
            with netns.inside(ns):
                self.pair = netdev.create_pair(name, mtu)
                self._state["wireguard"]["pair"] = self.pair
                pins.write_state(self.instance, self._state)
                for a in addresses:
                    netdev.add_address(name, a)
                self._configure()
                self._attach(self.pair, "wg_seal")
                for dev in underlay:
                    self._attach(dev, "wg_open")
            self._rb = RingBuffer(self._obj.map("events"), self._on_event)
        except BaseException:
            self.close()
            raise

    # ---- setup ----
    def _configure(self) -> None:
        wg, pair = netdev.link(self.name), netdev.link(self.pair)
        cfg = L.pack("struct wg_config", pair_ifindex=pair["ifindex"],
                     listen_port=_be16(self.listen_port),
                     wg_mac=bytes.fromhex(wg["address"].replace(":", "")),
                     pair_mac=bytes.fromhex(pair["address"].replace(":", "")))
        self._obj.map("wg_config_map").update(0, cfg)

    def _attach(self, dev: str, prog: str) -> None:
        att = attach.tc_attach(self._obj.program(prog).fd, attach.ifindex(dev), "ingress")
        key = lifecycle.device_key(dev, self.ns)
        self._state["devices"][key] = {"device": dev, "netns": self.ns, "hooks": [att.to_dict()],
                                       "device_settings": None}
        pins.write_state(self.instance, self._state)

    # ---- peers ----
    def set_peer(self, peer_id: int, public_key: bytes, endpoint: Endpoint | None,
                 allowed_ips: Iterable[IPNetwork]) -> None:
        _check_peer(peer_id)
        new = {ipaddress.ip_network(n) for n in allowed_ips}
        old = self._peers.get(peer_id, {}).get("allowed", set())
        keys = self._obj.map("peer_keys")
        if peer_id not in self._peers:
            keys.update(peer_id, L.pack("struct wg_peer_keys", configured=1).ljust(keys.value_size, b"\0"))
        self._peers[peer_id] = {"public_key": public_key, "allowed": new}
        if endpoint is not None:
            self.set_endpoint(peer_id, endpoint)
        with netns.inside(self.ns):
            for net in old - new:
                self._obj.map(f"allowed_v{net.version}").delete(_lpm_key(net))
                netdev.route_cmd(net, self.name, "del")
            for net in new:
                self._obj.map(f"allowed_v{net.version}").update(_lpm_key(net), _u32(peer_id))
                if net.prefixlen:       # a default route: wg-quick's policy routing (the daemon's)
                    netdev.route_cmd(net, self.name, "replace")

    def set_endpoint(self, peer_id: int, endpoint: Endpoint) -> None:
        addr, port = endpoint
        fam, packed = _addr16(addr)
        with netns.inside(self.ns):
            ifindex, local = netdev.route_to(addr)
        ep = L.new("struct wg_endpoint", family=fam, port=_be16(port), ifindex=ifindex)
        L.ffi.memmove(ep.addr.a, packed, 16)
        L.ffi.memmove(ep.local.a, _addr16(local)[1], 16)
        ep = bytes(L.ffi.buffer(ep))
        m = self._obj.map("endpoints")
        m.update(peer_id, ep.ljust(m.value_size, b"\0"), BPF_F_LOCK)

    def remove_peer(self, peer_id: int) -> None:
        _check_peer(peer_id)
        info = self._peers.pop(peer_id, None)
        for idx, kp in list(self._keypairs()):
            if kp["peer_id"] == peer_id:
                self._wipe(idx)
        with netns.inside(self.ns):
            for net in (info or {}).get("allowed", ()):
                self._obj.map(f"allowed_v{net.version}").delete(_lpm_key(net))
                netdev.route_cmd(net, self.name, "del")
        for name in ("peer_keys", "endpoints"):
            m = self._obj.map(name)
            m.update(peer_id, b"\0" * m.value_size, BPF_F_LOCK)
        st = self._obj.map("stats")
        st.update(peer_id, b"\0" * st.value_size)
        self._obj.map("event_times").update(peer_id, b"\0" * 8)

    # ---- keypairs ----
    def install_keypair(self, peer_id: int, local_index: int, remote_index: int,
                        send_key: bytes, recv_key: bytes, initiator: bool) -> None:
        _check_peer(peer_id)
        if peer_id not in self._peers:
            raise CryptbpfError(f"peer {peer_id} is not configured")
        if local_index == KEY_NONE:
            raise CryptbpfError("local index 0 is reserved (no keypair)")
        m = self._obj.map("keypairs")
        kp = L.pack("struct wg_keypair", peer_id=peer_id, remote_index=remote_index,
                    send_key=send_key, recv_key=recv_key)
        # a fresh element: its counter and replay window start at zero
        m.update(local_index, kp.ljust(m.value_size, b"\0"), BPF_NOEXIST)
        slots = self._slots(peer_id)
        if initiator:       # WireGuard: previous <- next or current, current <- new
            retired = [slots["previous"]]
            if slots["next"] != KEY_NONE:
                retired.append(slots["current"])
                slots["previous"] = slots["next"]
            else:
                slots["previous"] = slots["current"]
            slots.update(current=local_index, next=KEY_NONE)
        else:               # the responder's: held as next until the peer uses it
            retired = [slots["next"]]
            slots["next"] = local_index
        self._set_slots(peer_id, slots)
        for idx in retired:
            if idx != KEY_NONE and idx not in (slots["current"], slots["previous"], slots["next"]):
                self._wipe(idx)

    def expire_keypair(self, local_index: int) -> None:
        kp = self._keypair(local_index)
        if kp is None:
            return
        slots = self._slots(kp["peer_id"])
        for s in ("current", "previous", "next"):
            if slots[s] == local_index:
                slots[s] = KEY_NONE
        self._set_slots(kp["peer_id"], slots)
        self._wipe(local_index)

    def _slots(self, peer_id: int) -> dict:
        raw = self._obj.map("peer_keys").lookup(peer_id)
        return L.unpack("struct wg_peer_keys", raw)

    def _set_slots(self, peer_id: int, slots: dict) -> None:
        m = self._obj.map("peer_keys")
        m.update(peer_id, L.pack("struct wg_peer_keys", **slots).ljust(m.value_size, b"\0"), BPF_F_LOCK)

    def _keypair(self, idx: int) -> dict | None:
        raw = self._obj.map("keypairs").lookup(idx)
        return L.unpack("struct wg_keypair", raw) if raw else None

    def _keypairs(self):
        for k in list(self._obj.map("keypairs").keys()):
            kp = self._keypair(int.from_bytes(k, "little"))
            if kp:
                yield int.from_bytes(k, "little"), kp

    def _wipe(self, idx: int) -> None:
        """Overwrite the keys, then remove the keypair."""
        m = self._obj.map("keypairs")
        try:
            m.update(idx, b"\0" * m.value_size, 2)      # BPF_EXIST
        except CryptbpfError:
            return
        m.delete(idx)

    # ---- state ----
    def stats(self, peer_id: int) -> dict[str, int]:
        """The peer's counters (row NO_PEER_ROW: what belongs to no peer);
        sums over CPUs, times the latest."""
        out = dict.fromkeys(STATS_FIELDS, 0)
        for raw in self._obj.map("stats").lookup_percpu(peer_id) or []:
            row = L.unpack("struct wg_stats", raw)
            for f in STATS_FIELDS:
                out[f] = max(out[f], row[f]) if f in _TIME_FIELDS else out[f] + row[f]
        return out

    def endpoint(self, peer_id: int) -> Endpoint | None:
        e = L.unpack("struct wg_endpoint", self._obj.map("endpoints").lookup(peer_id))
        if e["family"] not in (4, 6):
            return None
        raw = e["addr"]["a"][:4 if e["family"] == 4 else 16]
        return str(ipaddress.ip_address(raw)), socket.ntohs(e["port"])

    def peer_state(self, peer_id: int) -> PeerState:
        _check_peer(peer_id)
        st, slots = self.stats(peer_id), self._slots(peer_id)
        kp = self._keypair(slots["current"]) if slots["current"] != KEY_NONE else None
        return PeerState(rx_bytes=st["rx_bytes"], tx_bytes=st["tx_bytes"],
                         last_rx_ns=st["last_rx_ns"], last_tx_ns=st["last_tx_ns"],
                         last_data_tx_ns=st["last_data_tx_ns"], last_data_rx_ns=st["last_data_rx_ns"],
                         send_counter=kp["send_counter"] if kp else 0,
                         current_index=slots["current"] if kp else 0,
                         endpoint=self.endpoint(peer_id))

    def keepalive(self, peer_id: int) -> bytes | None:
        """Sealed by wg_keepalive through BPF_PROG_TEST_RUN, so the counter
        is taken from the keypair the data plane sends with."""
        _check_peer(peer_id)
        frame = b"\0" * 14 + _u32(peer_id) + b"\0" * (wire.MIN_LEN - 4)
        r = self._obj.program("wg_keepalive").test_run(data=frame)
        return r.data[14:14 + wire.MIN_LEN] if r.retval == 0 else None

    # ---- events ----
    def _on_event(self, raw: bytes) -> None:
        ev = L.unpack("struct wg_event", raw)
        if ev["type"] == C("WG_EVENT_NEED_HANDSHAKE"):
            self._events.append(NeedHandshake(ev["peer_id"]))

    def events(self) -> list[NeedHandshake]:
        if self._rb is not None:
            self._rb.consume()
        out, self._events = self._events, []
        return out

    def fileno(self) -> int:
        if self._rb is None:
            raise CryptbpfError(f"{self.name}: the data plane is closed")
        return self._rb.fileno()

    def map(self, name: str):
        return self._obj.map(name)

    def program(self, name: str):
        return self._obj.program(name)

    # ---- teardown ----
    def close(self) -> None:
        if self._rb is not None:
            self._rb.close()
            self._rb = None
        if self._obj is not None:
            cleanup(self.name, self.ns)
            self._obj.close()
            self._obj = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def cleanup(name: str, ns: str | None = None) -> None:
    """Undo what a data plane for `name` made, from its record: TC filters
    (and a clsact qdisc the data plane created), pins, the veth pair with
    its routes. Also after a crash; a no-op when nothing is left."""
    ns = lifecycle.caller_netns(ns)
    inst = instance_name(name, ns)
    if not pins.is_loaded(inst):
        return
    rec = pins.read_state(inst).get("wireguard", {})
    if pins.read_state(inst)["devices"]:
        lifecycle.unload(inst)
    if rec.get("pair"):         # made by the data plane (never a device it found)
        try:
            with netns.inside(ns):
                netdev.delete(name)
        except CryptbpfError:
            pass        # the namespace is gone, and the devices with it
    pins.remove_pins(inst)
    pins.remove_state(inst)
