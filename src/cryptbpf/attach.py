"""TC (clsact) and XDP attachment. Every attach returns a plain record that
is enough to undo it later, from another process (see `lifecycle`)."""

from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass

from ._ffi import check_int, ffi, lib
from .errors import BpfError

TC_POINTS = {"ingress": lib.BPF_TC_INGRESS, "egress": lib.BPF_TC_EGRESS}
XDP_MODES = {"auto": 0, "skb": 1 << 1, "drv": 1 << 2, "hw": 1 << 3}
XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0


def ifindex(device: str) -> int:
    try:
        return socket.if_nametoindex(device)
    except OSError:
        raise BpfError(f"device {device}", 19, "no such network interface") from None


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
    mode: str
    prog_id: int

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


def tc_remove_clsact(idx: int) -> None:
    hook = _hook(idx, "ingress")
    hook.attach_point = lib.BPF_TC_INGRESS | lib.BPF_TC_EGRESS  # = delete qdisc
    rc = lib.bpf_tc_hook_destroy(hook)
    if rc not in (0, -2, -19, -22):
        check_int(rc, f"remove clsact qdisc on ifindex {idx}")


def xdp_attach(prog_fd: int, prog_id: int, idx: int, mode: str = "auto") -> XdpAttachment:
    flags = XDP_MODES[mode] | XDP_FLAGS_UPDATE_IF_NOEXIST
    check_int(lib.bpf_xdp_attach(idx, prog_fd, flags, ffi.NULL),
              f"attach XDP ({mode}) on ifindex {idx} (is another XDP program attached?)")
    return XdpAttachment(idx, mode, prog_id)


def xdp_attached_id(idx: int, mode: str = "auto") -> int:
    pid = ffi.new("__u32 *")
    rc = lib.bpf_xdp_query_id(idx, XDP_MODES[mode], pid)
    return pid[0] if rc == 0 else 0


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
