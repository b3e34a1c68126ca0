"""TC (clsact) and XDP attachment. Every attach returns a plain record that
is enough to undo it later, from another process (see `lifecycle`)."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import socket
import struct
from dataclasses import asdict, dataclass
from typing import Optional

from ._ffi import capture_log, check_int, ffi, lib
from ..errors import BpfError, CryptbpfError

TC_POINTS = {"ingress": lib.BPF_TC_INGRESS, "egress": lib.BPF_TC_EGRESS}
XDP_MODES = {"auto": 0, "skb": 1 << 1, "drv": 1 << 2, "hw": 1 << 3}
XDP_MODE_HELP = {"auto": "default: what works for the device and the program",
                 "skb": "generic", "drv": "native, in the driver", "hw": "offloaded to the NIC"}
XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0

# Drivers whose native XDP has a cost the user does not see at load time
# (../shared/KERNEL_NOTES.md): `auto` takes generic (skb) mode there, an
# explicit `drv` gets a warning. "tx": frames a program answers with XDP_TX
# are lost; "peer": attaching changes another device.
NATIVE_XDP_COSTS = {
    "veth": {"tx": "XDP_TX answers are dropped unless the peer end has an XDP program of its own",
             "peer": "the peer end's offload features (TSO, GSO) change while it is attached"},
}


def ifindex(device: str) -> int:
    try:
        return socket.if_nametoindex(device)
    except OSError:
        raise BpfError(f"device {device}", 19, "no such network interface") from None


def check_xdp_mode(mode: str) -> str:
    if mode not in XDP_MODES:
        raise CryptbpfError(f"unknown XDP mode {mode!r}; modes: "
                            + ", ".join(f"{m} ({h})" for m, h in XDP_MODE_HELP.items()))
    return mode


_SIOCETHTOOL = 0x8946
_ETHTOOL_GDRVINFO = 0x3
_DRVINFO_SIZE = 196     # struct ethtool_drvinfo


def driver(device: str) -> Optional[str]:
    """The device's driver as `ethtool -i` says it ("veth", "virtio_net",
    "mlx5_core"), from ETHTOOL_GDRVINFO in this thread's namespace; None
    when the device does not say (lo)."""
    info = ctypes.create_string_buffer(struct.pack("I", _ETHTOOL_GDRVINFO), _DRVINFO_SIZE)
    ifr = struct.pack("16sP", device.encode()[:15], ctypes.addressof(info))
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            fcntl.ioctl(s.fileno(), _SIOCETHTOOL, ifr)
    except OSError:
        return None
    return info.raw[4:36].split(b"\0")[0].decode(errors="replace") or None


def xdp_plan(device: str, requested: str, answers_with_tx: bool) -> tuple[str, Optional[str]]:
    """The mode to ask the kernel for and a warning for a requested mode
    with a known cost on this device (or None). `auto` avoids native mode
    where the driver's native XDP has a cost (NATIVE_XDP_COSTS) and leaves
    the choice to the kernel elsewhere (native if the driver has it,
    generic otherwise)."""
    check_xdp_mode(requested)
    drv = driver(device)
    costs = NATIVE_XDP_COSTS.get(drv or "")
    if not costs:
        return requested, None
    if requested == "auto":
        return "skb", None
    if requested == "drv":
        why = ([costs["tx"]] if answers_with_tx and "tx" in costs else []) + \
              ([costs["peer"]] if "peer" in costs else [])
        return requested, (f"native XDP on {drv} ({device}): {'; '.join(why)} "
                           f"(--xdp-mode auto uses skb here)")
    return requested, None


@dataclass
class TcAttachment:
    ifindex: int
    point: str        # "ingress" | "egress"
    handle: int
    priority: int
    created_clsact: bool

    def to_dict(self):
        return {"kind": "tc", **asdict(self)}


@dataclass
class XdpAttachment:
    ifindex: int
    mode: str                         # what the kernel reports: skb, drv, hw
    prog_id: int
    requested: Optional[str] = None   # what the load asked for (auto, skb, ...)

    def to_dict(self):
        return {"kind": "xdp", **asdict(self)}


@dataclass
class LinkAttachment:
    """A BPF link made by bpf_program__attach() (the attach point is the
    program's SEC(), e.g. tp_btf/...), pinned so it outlives the process;
    removing the pin detaches it."""
    program: str
    section: str
    pin: str

    def to_dict(self):
        return {"kind": "link", **asdict(self)}


def _hook(idx: int, point: str):
    hook = ffi.new("struct bpf_tc_hook *")
    hook.sz = ffi.sizeof("struct bpf_tc_hook")
    hook.ifindex = idx
    hook.attach_point = TC_POINTS[point]
    return hook


def tc_attach(prog_fd: int, idx: int, point: str) -> TcAttachment:
    """Attach a direct-action classifier to the clsact qdisc of `idx`,
    creating the qdisc if there is none (remembered for detach)."""
    hook = _hook(idx, point)
    rc = lib.bpf_tc_hook_create(hook)
    if rc not in (0, -17):  # -EEXIST: someone already has a clsact qdisc
        check_int(rc, f"create clsact qdisc on ifindex {idx}")
    opts = ffi.new("struct bpf_tc_opts *")
    opts.sz = ffi.sizeof("struct bpf_tc_opts")
    opts.prog_fd = prog_fd
    # handle/priority 0: the kernel picks free ones and libbpf reports them.
    check_int(lib.bpf_tc_attach(hook, opts), f"attach TC {point} on ifindex {idx}")
    return TcAttachment(idx, point, opts.handle, opts.priority, rc == 0)


def tc_detach(att: TcAttachment) -> None:
    hook = _hook(att.ifindex, att.point)
    opts = ffi.new("struct bpf_tc_opts *")
    opts.sz = ffi.sizeof("struct bpf_tc_opts")
    opts.handle, opts.priority = att.handle, att.priority
    rc = lib.bpf_tc_detach(hook, opts)
    if rc not in (0, -2, -19):  # already gone (filter or device)
        check_int(rc, f"detach TC {att.point} on ifindex {att.ifindex}")


def tc_has_filters(idx: int) -> bool:
    """True if any filter remains on the device's clsact qdisc."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        for parent in (0xFFFFFFF2, 0xFFFFFFF3):  # clsact ingress / egress
            try:
                if ipr.get_filters(index=idx, parent=parent):
                    return True
            except Exception:  # device or qdisc gone
                continue
    return False


def tc_has_clsact(idx: int) -> bool:
    """True if the device has a clsact qdisc (before a load creates one)."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        try:
            return any(q.get_attr("TCA_KIND") == "clsact" for q in ipr.get_qdiscs(index=idx))
        except Exception:  # device gone
            return False


def tc_filters_of(idx: int, prog_ids: set[int]) -> list[TcAttachment]:
    """The TC filters on the device's clsact qdisc that run one of
    `prog_ids` (found by bpf_tc_query), as records tc_detach takes: what
    a load that died between attaching and recording left behind."""
    from pyroute2 import IPRoute

    found = []
    with IPRoute() as ipr:
        for point, parent in (("ingress", 0xFFFFFFF2), ("egress", 0xFFFFFFF3)):
            try:
                filters = ipr.get_filters(index=idx, parent=parent)
            except Exception:  # device or qdisc gone
                continue
            for f in filters:
                if not f["handle"]:
                    continue  # the per-priority chain head, not a filter
                opts = ffi.new("struct bpf_tc_opts *")
                opts.sz = ffi.sizeof("struct bpf_tc_opts")
                opts.handle, opts.priority = f["handle"], f["info"] >> 16
                if lib.bpf_tc_query(_hook(idx, point), opts) == 0 and opts.prog_id in prog_ids:
                    found.append(TcAttachment(idx, point, opts.handle, opts.priority, False))
    return found


def xdp_of(idx: int, prog_ids: set[int]) -> list[XdpAttachment]:
    """The XDP attachments of the device that run one of `prog_ids`."""
    return [XdpAttachment(idx, mode, pid) for mode, pid in xdp_programs(idx).items()
            if pid in prog_ids]


def tc_remove_clsact(idx: int) -> None:
    hook = _hook(idx, "ingress")
    hook.attach_point = lib.BPF_TC_INGRESS | lib.BPF_TC_EGRESS  # = delete qdisc
    rc = lib.bpf_tc_hook_destroy(hook)
    if rc not in (0, -2, -19, -22):
        check_int(rc, f"remove clsact qdisc on ifindex {idx}")


def xdp_attach(prog_fd: int, prog_id: int, idx: int, mode: str = "auto",
               device: Optional[str] = None, requested: Optional[str] = None) -> XdpAttachment:
    """Attach in `mode` ("auto": the kernel's choice, native where the
    driver has it). The record holds the mode the kernel reports."""
    flags = XDP_MODES[check_xdp_mode(mode)] | XDP_FLAGS_UPDATE_IF_NOEXIST
    with capture_log() as log:
        rc = lib.bpf_xdp_attach(idx, prog_fd, flags, ffi.NULL)
    if rc < 0:
        raise _attach_error(idx, device, mode, -rc, log)
    return XdpAttachment(idx, xdp_attached_mode(idx, prog_id) or mode, prog_id,
                         requested or mode)


def _attach_error(idx: int, device: Optional[str], mode: str, err: int, log: list) -> BpfError:
    """Why the kernel refused: the program already there (by id, read
    back) when that is the reason (EEXIST, EBUSY), else the kernel's own
    message, else the errno's text."""
    where = f"attach XDP ({mode}) on " + (f"{device} (ifindex {idx})" if device else f"ifindex {idx}")
    there = xdp_programs(idx) if err in (errno.EEXIST, errno.EBUSY) else {}
    if there:
        return BpfError(where, err, "; ".join(
            f"{_prog_name(pid)} (prog id {pid}) is attached there in {m} mode" for m, pid in there.items()))
    kmsg = [l.split("Kernel error message:", 1)[1].strip() for l in log if "Kernel error message:" in l]
    return BpfError(where, err, kmsg[-1] if kmsg else "")


def _prog_name(prog_id: int) -> str:
    """'program NAME', or 'a program' when it cannot be opened."""
    fd = lib.bpf_prog_get_fd_by_id(prog_id)
    if fd < 0:
        return "a program"
    try:
        from .program import prog_info
        return f"program {ffi.string(prog_info(fd).name).decode(errors='replace')}"
    except BpfError:
        return "a program"
    finally:
        os.close(fd)


def xdp_attached_id(idx: int, mode: str = "auto") -> int:
    pid = ffi.new("__u32 *")
    rc = lib.bpf_xdp_query_id(idx, XDP_MODES[mode], pid)
    return pid[0] if rc == 0 else 0


def xdp_programs(idx: int) -> dict[str, int]:
    """{mode: prog id} of the XDP programs attached to the device now."""
    out = {}
    for mode in ("skb", "drv", "hw"):
        pid = xdp_attached_id(idx, mode)
        if pid:
            out[mode] = pid
    return out


def xdp_attached_mode(idx: int, prog_id: int) -> Optional[str]:
    """The mode in which prog_id is attached to the device (bpf_xdp_query)."""
    for mode, pid in xdp_programs(idx).items():
        if pid == prog_id:
            return mode
    return None


def xdp_detach(att: XdpAttachment) -> None:
    """Detach only if the program there is still ours."""
    if xdp_attached_id(att.ifindex, att.mode) != att.prog_id:
        return
    rc = lib.bpf_xdp_detach(att.ifindex, XDP_MODES[att.mode], ffi.NULL)
    if rc not in (0, -19):
        check_int(rc, f"detach XDP on ifindex {att.ifindex}")


def link_attach(prog, pin: str) -> LinkAttachment:
    """Attach `prog` (a Program of a loaded BpfObject) where its SEC() says
    and pin the link at `pin`. The link fd is closed afterwards: for BPF
    links (tracing, raw_tp, perf-event links) that leaves the pinned link
    attached; a legacy attachment that is not a BPF link cannot be pinned,
    and is detached again."""
    if prog._handle is None:
        raise BpfError(f"attach {prog.name}", 22, "needs the loaded object, not a pin")
    link = lib.bpf_program__attach(prog._handle)
    if link == ffi.NULL:
        raise BpfError(f"attach {prog.name} ({prog.section})", ffi.errno or 22)
    try:
        os.makedirs(os.path.dirname(pin), exist_ok=True)
        check_int(lib.bpf_link__pin(link, pin.encode()), f"pin link of {prog.name} at {pin}")
    finally:
        lib.bpf_link__destroy(link)
    return LinkAttachment(prog.name, prog.section, pin)


def link_detach(att: LinkAttachment) -> None:
    """Unpinning drops the last reference: the kernel detaches the link."""
    try:
        os.unlink(att.pin)
    except FileNotFoundError:
        pass


def from_dict(d: dict):
    d = dict(d)
    kind = d.pop("kind")
    if kind == "link":
        return LinkAttachment(**d)
    return TcAttachment(**d) if kind == "tc" else XdpAttachment(**d)
