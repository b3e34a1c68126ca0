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
import time
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


def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def _addr16(addr: str) -> tuple[int, bytes]:
    a = ipaddress.ip_address(addr)
    return a.version, a.packed.ljust(16, b"\0")


class Maps:
    """The instance's maps and programs: `handle` is a loaded BpfObject or
    a pins.Pinned. Everything here works without devices (the tests drive
    it through BPF_PROG_TEST_RUN)."""

    def __init__(self, handle):
        self.h = handle

    def configure(self, listen_port: int, pair_ifindex: int, wg_mac: bytes, pair_mac: bytes,
                  mtu: int) -> None:
        cfg = L.pack("struct wg_config", pair_ifindex=pair_ifindex, listen_port=_be16(listen_port),
                     wg_mac=wg_mac, pair_mac=pair_mac, mtu=mtu)
        self.h.map("wg_config_map").update(0, cfg)

    def add_peer(self, peer_id: int) -> None:
        _check_peer(peer_id)
        self._set_slots(peer_id, {"current": KEY_NONE, "previous": KEY_NONE, "next": KEY_NONE,
                                  "configured": 1})

    def allow(self, peer_id: int, net: IPNetwork) -> None:
        self.h.map(f"allowed_v{net.version}").update(_lpm_key(net), _u32(peer_id))

    def disallow(self, net: IPNetwork) -> None:
        self.h.map(f"allowed_v{net.version}").delete(_lpm_key(net))

    def set_endpoint(self, peer_id: int, addr: str, port: int, ifindex: int, local: str) -> None:
        fam, packed = _addr16(addr)
        ep = L.new("struct wg_endpoint", family=fam, port=_be16(port), ifindex=ifindex)
        L.ffi.memmove(ep.addr.a, packed, 16)
        L.ffi.memmove(ep.local.a, _addr16(local)[1], 16)
        m = self.h.map("endpoints")
        m.update(peer_id, bytes(L.ffi.buffer(ep)).ljust(m.value_size, b"\0"), BPF_F_LOCK)

    def endpoint(self, peer_id: int) -> Endpoint | None:
        e = L.unpack("struct wg_endpoint", self.h.map("endpoints").lookup(peer_id))
        if e["family"] not in (4, 6):
            return None
        raw = e["addr"]["a"][:4 if e["family"] == 4 else 16]
        return str(ipaddress.ip_address(raw)), socket.ntohs(e["port"])

    def forget_peer(self, peer_id: int) -> None:
        """Keypairs wiped, slots, endpoint, counters and event time cleared."""
        for idx, kp in list(self.keypairs()):
            if kp["peer_id"] == peer_id:
                self.wipe(idx)
        for name in ("peer_keys", "endpoints"):
            m = self.h.map(name)
            m.update(peer_id, b"\0" * m.value_size, BPF_F_LOCK)
        st = self.h.map("stats")
        st.update(peer_id, b"\0" * st.value_size)
        self.h.map("event_times").update(peer_id, b"\0" * 8)

    # ---- keypairs ----
    def install_keypair(self, peer_id: int, local_index: int, remote_index: int,
                        send_key: bytes, recv_key: bytes, initiator: bool) -> None:
        """DataPlane.install_keypair; keypairs that fall out of every slot
        are wiped (WireGuard frees them)."""
        _check_peer(peer_id)
        slots = self.slots(peer_id)
        if not slots["configured"]:
            raise CryptbpfError(f"peer {peer_id} is not configured")
        if local_index == KEY_NONE:
            raise CryptbpfError("local index 0 is reserved (no keypair)")
        m = self.h.map("keypairs")
        # created now: the data plane refuses it REJECT_AFTER_TIME later
        kp = L.pack("struct wg_keypair", peer_id=peer_id, remote_index=remote_index,
                    send_key=send_key, recv_key=recv_key, created_ns=time.monotonic_ns())
        # a fresh element: its counter and replay window start at zero
        m.update(local_index, kp.ljust(m.value_size, b"\0"), BPF_NOEXIST)
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
                self.wipe(idx)

    def expire_keypair(self, local_index: int) -> None:
        kp = self.keypair(local_index)
        if kp is None:
            return
        slots = self.slots(kp["peer_id"])
        for s in ("current", "previous", "next"):
            if slots[s] == local_index:
                slots[s] = KEY_NONE
        self._set_slots(kp["peer_id"], slots)
        self.wipe(local_index)

    def slots(self, peer_id: int) -> dict:
        return L.unpack("struct wg_peer_keys", self.h.map("peer_keys").lookup(peer_id))

    def _set_slots(self, peer_id: int, slots: dict) -> None:
        m = self.h.map("peer_keys")
        m.update(peer_id, L.pack("struct wg_peer_keys", **slots).ljust(m.value_size, b"\0"), BPF_F_LOCK)

    def keypair(self, idx: int) -> dict | None:
        raw = self.h.map("keypairs").lookup(idx)
        return L.unpack("struct wg_keypair", raw) if raw else None

    def _set_keypair_u64(self, idx: int, field: str, value: int) -> None:
        m = self.h.map("keypairs")
        raw = bytearray(m.lookup(idx))
        off = dict((n, o) for n, o, _ in L.fields("struct wg_keypair"))[field]
        raw[off:off + 8] = struct.pack("<Q", value)
        m.update(idx, bytes(raw), 2)

    def set_send_counter(self, idx: int, counter: int) -> None:
        """For tests of REJECT_AFTER_MESSAGES: the keypair's next counter."""
        self._set_keypair_u64(idx, "send_counter", counter)

    def set_created(self, idx: int, created_ns: int) -> None:
        """For tests of REJECT_AFTER_TIME: when the keypair was made
        (CLOCK_MONOTONIC ns)."""
        self._set_keypair_u64(idx, "created_ns", created_ns)

    def keypairs(self):
        for k in list(self.h.map("keypairs").keys()):
            idx = int.from_bytes(k, "little")
            kp = self.keypair(idx)
            if kp:
                yield idx, kp

    def wipe(self, idx: int) -> None:
        """Overwrite the keys, then remove the keypair."""
        m = self.h.map("keypairs")
        if m.lookup(idx) is None:
            return
        m.update(idx, b"\0" * m.value_size, 2)      # BPF_EXIST
        m.delete(idx)

    # ---- state ----
    def stats(self, peer_id: int) -> dict[str, int]:
        """The peer's counters (row NO_PEER_ROW: what belongs to no peer);
        sums over CPUs, times the latest."""
        out = dict.fromkeys(STATS_FIELDS, 0)
        for raw in self.h.map("stats").lookup_percpu(peer_id) or []:
            row = L.unpack("struct wg_stats", raw)
            for f in STATS_FIELDS:
                out[f] = max(out[f], row[f]) if f in _TIME_FIELDS else out[f] + row[f]
        return out

    def peer_state(self, peer_id: int) -> PeerState:
        _check_peer(peer_id)
        st, slots = self.stats(peer_id), self.slots(peer_id)
        kp = self.keypair(slots["current"]) if slots["current"] != KEY_NONE else None
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
        r = self.h.program("wg_keepalive").test_run(data=frame)
        return r.data[14:14 + wire.MIN_LEN] if r.retval == 0 else None


def parse_event(raw: bytes) -> NeedHandshake | None:
    ev = L.unpack("struct wg_event", raw)
    return NeedHandshake(ev["peer_id"]) if ev["type"] == C("WG_EVENT_NEED_HANDSHAKE") else None


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
                                f"crash: clean up with bpf_dataplane.cleanup({name!r}, {ns!r}))")
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
            self.maps = Maps(self._obj)
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
        self.maps.configure(self.listen_port, pair["ifindex"], _mac(wg["address"]), _mac(pair["address"]),
                            wg["mtu"])

    def _attach(self, dev: str, prog: str) -> None:
        att = attach.tc_attach(self._obj.program(prog).fd, attach.ifindex(dev), "ingress")
        key = lifecycle.device_key(dev, self.ns)
        self._state["devices"][key] = {"device": dev, "netns": self.ns, "hooks": [att.to_dict()],
                                       "device_settings": None}
        pins.write_state(self.instance, self._state)

    # ---- DataPlane ----
    def set_peer(self, peer_id: int, public_key: bytes, endpoint: Endpoint | None,
                 allowed_ips: Iterable[IPNetwork]) -> None:
        _check_peer(peer_id)
        new = {ipaddress.ip_network(n) for n in allowed_ips}
        old = self._peers.get(peer_id, {}).get("allowed", set())
        if peer_id not in self._peers:
            self.maps.add_peer(peer_id)
        self._peers[peer_id] = {"public_key": public_key, "allowed": new}
        with netns.inside(self.ns):
            if endpoint is not None:
                ifindex, local = netdev.route_to(endpoint[0])
                self.maps.set_endpoint(peer_id, endpoint[0], endpoint[1], ifindex, local)
            for net in old - new:
                self.maps.disallow(net)
                netdev.route_cmd(net, self.name, "del")
            for net in new:
                self.maps.allow(peer_id, net)
                if net.prefixlen:       # a default route: wg-quick's policy routing (the daemon's)
                    netdev.route_cmd(net, self.name, "replace")

    def remove_peer(self, peer_id: int) -> None:
        _check_peer(peer_id)
        info = self._peers.pop(peer_id, None)
        with netns.inside(self.ns):
            for net in (info or {}).get("allowed", ()):
                self.maps.disallow(net)
                netdev.route_cmd(net, self.name, "del")
        self.maps.forget_peer(peer_id)

    def install_keypair(self, peer_id: int, local_index: int, remote_index: int,
                        send_key: bytes, recv_key: bytes, initiator: bool) -> None:
        self.maps.install_keypair(peer_id, local_index, remote_index, send_key, recv_key, initiator)

    def expire_keypair(self, local_index: int) -> None:
        self.maps.expire_keypair(local_index)

    def peer_state(self, peer_id: int) -> PeerState:
        return self.maps.peer_state(peer_id)

    def keepalive(self, peer_id: int) -> bytes | None:
        return self.maps.keepalive(peer_id)

    def stats(self, peer_id: int) -> dict[str, int]:
        return self.maps.stats(peer_id)

    def _on_event(self, raw: bytes) -> None:
        ev = parse_event(raw)
        if ev:
            self._events.append(ev)

    def events(self) -> list[NeedHandshake]:
        if self._rb is not None:
            self._rb.consume()
        out, self._events = self._events, []
        return out

    def fileno(self) -> int:
        if self._rb is None:
            raise CryptbpfError(f"{self.name}: the data plane is closed")
        return self._rb.fileno()

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


def underlay_devices() -> list[str]:
    """Where messages to the listen port can arrive, in this namespace:
    every device but loopback and the wireguard pairs (wg0 and wg0-p
    carry inner traffic)."""
    out = []
    for dev in netdev.devices():
        kind = dev.get("linkinfo", {}).get("info_kind")
        if dev["ifname"] == "lo" or (kind == "veth" and _is_wireguard_pair(dev["ifname"])):
            continue
        out.append(dev["ifname"])
    return out


def _is_wireguard_pair(ifname: str) -> bool:
    here = lifecycle.caller_netns(None)
    for inst in pins.loaded_names():
        rec = pins.read_state(inst).get("wireguard")
        if rec and rec.get("netns") == here and ifname in (rec.get("device"), rec.get("pair")):
            return True
    return False


def cleanup(name: str, ns: str | None = None) -> bool:
    """Undo what a data plane for `name` made, from its record: TC filters
    (and a clsact qdisc the data plane created), pins, the veth pair with
    its routes. Also after a crash; False when nothing was left."""
    ns = lifecycle.caller_netns(ns)
    inst = instance_name(name, ns)
    if not pins.is_loaded(inst):
        return False
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
    return True
