"""Load a program onto a device (attach + pin + record), unload it (undo all
of that), and report status. Shared by the CLI and the tests."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import Any, Callable

from .bpf import attach, kernel, pins
from . import netns as netns_mod
from .errors import CryptbpfError
from .bpf.object import BpfObject
from .bpf.program import Program
from .paths import bpf_object
from .programs.base import ProgramSpec


# Crash-safety test hook: with CRYPTBPF_CRASH_AT=STEP (or STEP#N, the Nth
# time) in the environment, load/unload SIGKILL their own process when they
# reach STEP (LOAD_STEPS / UNLOAD_STEPS), so tests/test_crash_safety.py can
# show that the next load, unload or status repairs what was left.
# Unset (always, outside that test): one dictionary lookup per step.
CRASH_ENV = "CRYPTBPF_CRASH_AT"
LOAD_STEPS = ("intent-recorded", "object-loaded", "pinned", "device-prepared",
              "attached", "hook-recorded", "recorded")
UNLOAD_STEPS = ("unload-recorded", "detached", "settings-restored", "unpinned")
_steps_seen: dict[str, int] = {}


def _step(name: str) -> None:
    want = os.environ.get(CRASH_ENV)
    if not want:
        return
    _steps_seen[name] = _steps_seen.get(name, 0) + 1
    if want in (name, f"{name}#{_steps_seen[name]}"):
        os.kill(os.getpid(), signal.SIGKILL)


def require_privileges() -> None:
    if not kernel.privileged():
        raise CryptbpfError("needs root (CAP_BPF or CAP_SYS_ADMIN, and CAP_NET_ADMIN): try sudo")


def check_runnable(spec: ProgramSpec) -> None:
    missing = kernel.missing(spec.requires)
    if missing:
        raise CryptbpfError(f"{spec.name} cannot run on Linux {kernel.release()}: "
                            f"missing {kernel.describe(missing)}")


# Load-record key of programs that attach to the kernel, not to a device
# (every hook is a "link": tracepoints, LSM, ...).
DEVICELESS_KEY = "kernel"


def device_less(spec: ProgramSpec) -> bool:
    return bool(spec.hooks) and all(h.point == "link" for h in spec.hooks)


def device_key(device: str | None, netns: str | None) -> str:
    if device is None:
        return DEVICELESS_KEY
    return f"{netns}/{device}" if netns else device


def caller_netns(netns: str | None) -> str | None:
    """`--netns NS`, or the namespace this process runs in when that is a
    named one (`ip netns exec NS cryptbpf ...`): both record the same device
    key, so either form can unload what the other loaded."""
    return netns or netns_mod.current_name()


def _ns(recorded: str | None) -> str | None:
    """Where a recorded device lives: its namespace, or init's (a switch
    only when this process runs elsewhere, under `ip netns exec`)."""
    if recorded or netns_mod.current_name() is None:
        return recorded
    return netns_mod.INIT_NETNS


def _check_device(spec: ProgramSpec, device: str | None, netns: str | None) -> None:
    if device_less(spec):
        if device is not None or netns:
            raise CryptbpfError(f"{spec.name} attaches to the kernel, not to a device: "
                                f"load it without DEVICE/--netns")
    elif device is None:
        raise CryptbpfError(f"{spec.name} attaches to a network device: give DEVICE")
    elif any(h.point == "link" for h in spec.hooks):
        raise CryptbpfError(f"{spec.name} mixes device and device-less hooks: not supported")


def load(spec: ProgramSpec, device: str | None, knobs: dict[str, int] | None = None,
         key: bytes | None = None, xdp_mode: str = "auto",
         netns: str | None = None,
         options: dict[str, list[str]] | None = None,
         warn: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Attach `spec`'s programs to `device` (in `netns`), or where their
    SEC() says when every hook is a "link" (device None), pin everything and
    record it. The first load creates the instance (knobs, key, options);
    later loads attach the same pinned instance to more devices and refuse
    those. Every value is checked before anything is loaded; on failure,
    whatever this call did is undone. `xdp_mode` "auto" picks the mode that
    works for the device and the program (attach.xdp_plan); a requested
    mode with a known cost there is loaded with a one-line warning, given
    to `warn` (default: stderr)."""
    require_privileges()
    check_runnable(spec)
    pins.pin_root(mount=True)  # before any work: bpffs missing or out of reach
    if device is not None:
        netns = caller_netns(netns)
    _check_device(spec, device, netns)
    attach.check_xdp_mode(xdp_mode)
    spec.check_knobs(knobs or {})
    options = options or {}
    unknown = set(options) - set(spec.options)
    if unknown:
        raise CryptbpfError(f"{spec.name} has no option {', '.join('--' + u for u in sorted(unknown))}; "
                            f"options: {', '.join('--' + o for o in spec.options) or 'none'}")
    spec.check_options(options)
    dkey = device_key(device, netns)
    recovered = recover(spec)
    if recovered:
        (warn or _warn)(f"an interrupted load or unload of {spec.name} on {', '.join(recovered)} was undone")
    state = pins.read_state(spec.name)
    if dkey in state["devices"]:
        raise CryptbpfError(f"{spec.name} is already loaded on {dkey}")
    fresh = not state["devices"]
    if fresh and spec.key_sizes and key is None:
        raise CryptbpfError(f"{spec.name} needs a key (--key-file)")
    if not fresh and (knobs or key):
        raise CryptbpfError(f"{spec.name} is already loaded (on {', '.join(state['devices'])}); "
                            "settings and key of that load apply: attach without --set/--key-file")
    if not fresh and options:
        raise CryptbpfError(_options_refused(spec, list(state["devices"]), options))
    requested, warning = xdp_mode, None
    if device is not None and any(h.point == "xdp" for h in spec.hooks):
        with netns_mod.inside(netns):
            xdp_mode, warning = attach.xdp_plan(device, requested, spec.xdp_tx)
    if fresh:
        state = {"program": spec.name, "object": str(bpf_object(spec.object)),
                 "loaded_at": pins.now(), "knobs": knobs or {}, "devices": {}}
    # Write-ahead record: the entry exists, marked pending, before anything
    # is made, and every hook is recorded as soon as it is attached. A load
    # killed halfway leaves a pending entry that recover() undoes (hooks it
    # had no time to record are found by their program ids).
    entry: dict[str, Any] = {"device": device, "netns": netns, "hooks": [],
                             "device_settings": None, "pending": True}
    if device is not None:
        with netns_mod.inside(netns):
            entry["clsact_existed"] = attach.tc_has_clsact(attach.ifindex(device))
    state["devices"][dkey] = entry
    pins.write_state(spec.name, state)
    _step("intent-recorded")
    done: list = []
    try:
        with _instance(spec, fresh, knobs, key, options) as handle:
            if device is None:  # device-less: always a fresh load (one key)
                links = pins.pin_dir(spec.name) / "links"
                for hook in spec.hooks:
                    done.append(attach.link_attach(handle.program(hook.program),
                                                   str(links / hook.program)))
                    _record_hook(spec.name, state, entry, done[-1])
            else:
                with netns_mod.inside(netns):
                    idx = attach.ifindex(device)
                    entry["device_settings"] = spec.prepare_device(idx, device, options)
                    pins.write_state(spec.name, state)
                    _step("device-prepared")
                    for hook in spec.hooks:
                        done.append(_attach_hook(handle.program(hook.program), hook, idx,
                                                 xdp_mode, device, requested))
                        _record_hook(spec.name, state, entry, done[-1])
        del entry["pending"]
        pins.write_state(spec.name, state)
        _step("recorded")
        if warning:
            (warn or _warn)(warning)
        return state
    except BaseException:
        with netns_mod.inside(netns):
            _undo(done)
            if entry["device_settings"] is not None:
                spec.restore_device(attach.ifindex(device), device, entry["device_settings"])
        del state["devices"][dkey]
        if fresh:
            pins.remove_pins(spec.name)
            pins.remove_state(spec.name)
        else:
            pins.write_state(spec.name, state)
        raise


def _record_hook(name: str, state: dict, entry: dict, att) -> None:
    _step("attached")
    entry["hooks"].append(att.to_dict())
    pins.write_state(name, state)
    _step("hook-recorded")


def _prog_ids(name: str) -> set[int]:
    """Ids of the programs pinned for `name` (none when not pinned)."""
    d = pins.pin_dir(name) / "progs"
    ids = set()
    for p in (d.iterdir() if d.is_dir() else ()):
        try:
            prog = Program.from_pin(str(p))
        except CryptbpfError:
            continue
        try:
            ids.add(prog.id)
        finally:
            prog.close()
    return ids


def interrupted(state: dict) -> list[str]:
    """Device keys of loads that were killed before they finished."""
    return [k for k, e in state["devices"].items() if e.get("pending")]


def recover(spec_or_name) -> list[str]:
    """Undo every interrupted load of a program (see load()): its recorded
    hooks, any hook it attached but had no time to record, its device
    settings; then the pins and record when nothing else is loaded.
    Returns the device keys repaired."""
    name = getattr(spec_or_name, "name", spec_or_name)
    state = pins.read_state(name)
    if not pins.is_loaded(name):
        return []
    keys = interrupted(state)
    if not keys and state["devices"]:
        return []
    ids = _prog_ids(name)
    _detach_entries(name, [state["devices"].pop(k) for k in keys], ids)
    if state["devices"]:
        pins.write_state(name, state)
    else:   # nothing attached anywhere: also a load killed before its record
        pins.remove_pins(name)
        pins.remove_state(name)
    return keys


def _detach_entries(name: str, entries: list[dict], prog_ids: set[int]) -> None:
    """Detach everywhere first, then restore device settings (last load
    first): one device's hooks can pin another's settings (XDP on a veth
    fixes its peer's GSO features until it is detached). A pending entry is
    also swept for hooks of `prog_ids` it never recorded."""
    from . import programs
    spec = programs.discover().get(name)
    for entry in entries:
        try:
            with netns_mod.inside(_ns(entry["netns"])):
                hooks = [attach.from_dict(a) for a in entry["hooks"]]
                if entry.get("pending") and entry["device"] is not None:
                    idx = attach.ifindex(entry["device"])
                    hooks += attach.tc_filters_of(idx, prog_ids) + attach.xdp_of(idx, prog_ids)
                _undo(hooks)
                if entry.get("pending") and entry["device"] is not None \
                        and not entry.get("clsact_existed", True):
                    idx = attach.ifindex(entry["device"])
                    if attach.tc_has_clsact(idx) and not attach.tc_has_filters(idx):
                        attach.tc_remove_clsact(idx)
        except CryptbpfError:
            pass  # the namespace or device is gone, and with it every hook on it
    _step("detached")
    for entry in reversed(entries):
        if not (spec and entry.get("device_settings")):
            continue
        try:
            with netns_mod.inside(_ns(entry["netns"])):
                spec.restore_device(attach.ifindex(entry["device"]), entry["device"],
                                    entry["device_settings"])
        except CryptbpfError:
            pass
    _step("settings-restored")


@contextlib.contextmanager
def _instance(spec: ProgramSpec, fresh: bool, knobs, key, options):
    """A loaded+pinned object for a first load, the pins for later ones."""
    if not fresh:
        with pins.Pinned(spec.name) as h:
            yield h
        return
    with BpfObject.open(str(bpf_object(spec.object))) as obj:
        spec.configure(obj, knobs or {})
        obj.load()
        spec.setup(obj, key, options)
        _step("object-loaded")
        pins.pin_object(spec.name, obj)
        _step("pinned")
        yield obj


def _warn(message: str) -> None:
    print(f"cryptbpf: warning: {message}", file=sys.stderr)


def _options_refused(spec: ProgramSpec, devices: list[str], options: dict[str, list[str]]) -> str:
    given = sorted(options)
    how = sorted({f"`{spec.option_commands[o]}`" for o in given if o in spec.option_commands})
    fixed = [o for o in given if o not in spec.option_commands]
    change = (f"change them with {', '.join(how)}" if how else "") + \
        ("; " if how and fixed else "") + \
        (f"{', '.join('--' + o.replace('_', '-') for o in fixed)}: unload and load again" if fixed else "")
    return (f"{spec.name} is already loaded (on {', '.join(devices)}) and the options of that "
            f"load apply: attach without {'/'.join('--' + o.replace('_', '-') for o in given)}; "
            f"{change}")


def _attach_hook(prog, hook, idx: int, xdp_mode: str, device: str, requested: str):
    if hook.point.startswith("tc-"):
        return attach.tc_attach(prog.fd, idx, hook.point[3:])
    if hook.point == "xdp":
        return attach.xdp_attach(prog.fd, prog.id, idx, xdp_mode, device, requested)
    raise CryptbpfError(f"unknown hook point {hook.point}")


def _undo(attachments: list) -> None:
    clsact_created = set()
    for a in attachments:
        if isinstance(a, attach.TcAttachment):
            attach.tc_detach(a)
            if a.created_clsact:
                clsact_created.add(a.ifindex)
        elif isinstance(a, attach.LinkAttachment):
            attach.link_detach(a)
        else:
            attach.xdp_detach(a)
    for idx in clsact_created:
        if not attach.tc_has_filters(idx):
            attach.tc_remove_clsact(idx)


def unload(name: str, device: str | None = None, netns: str | None = None) -> list[str]:
    """Detach from `device` (or every device); when nothing is attached any
    more, remove the pins and the record. Returns the devices detached."""
    require_privileges()
    if not pins.is_loaded(name):
        raise CryptbpfError(f"{name} is not loaded")
    state = pins.read_state(name)
    if device:
        netns = caller_netns(netns)
    keys = [device_key(device, netns)] if device else list(state["devices"])
    for k in keys:
        if k not in state["devices"]:
            raise CryptbpfError(f"{name} is not loaded on {k} "
                                f"(loaded on: {', '.join(state['devices']) or 'nothing'})")
    for k in keys:  # a killed unload leaves them marked, for status and recover()
        state["devices"][k]["pending"] = state["devices"][k].get("pending") or "unload"
    pins.write_state(name, state)
    _step("unload-recorded")
    entries = [state["devices"].pop(k) for k in keys]
    _detach_entries(name, entries, _prog_ids(name))
    if state["devices"]:
        pins.write_state(name, state)
    else:
        pins.remove_pins(name)
        _step("unpinned")
        pins.remove_state(name)
    return keys


def status(specs: dict[str, ProgramSpec]) -> list[dict[str, Any]]:
    """Per loaded program: its devices (device key -> hook objects, see
    _describe), object file, and what its spec's status() reports (numbers
    as numbers, lists as lists: `cryptbpf status --json` prints this as it
    is and builds its text view from it)."""
    out = []
    for name in pins.loaded_names():
        state = pins.read_state(name)
        entry: dict[str, Any] = {"program": name, "devices": {}, "object": state.get("object")}
        for dev, d in state["devices"].items():
            entry["devices"][dev] = [_describe(a) for a in d["hooks"]]
        if interrupted(state) or not state["devices"]:
            # killed halfway through a load (or before its record): the
            # next load or unload of the program repairs it
            entry["interrupted"] = interrupted(state) or ["(no device recorded)"]
            entry["repair"] = f"cryptbpf unload {name}"
        spec = specs.get(name)
        if spec and pins.pin_dir(name).exists():
            try:
                with pins.Pinned(name) as h:
                    entry.update(spec.status(h))
            except Exception as exc:  # report, don't fail the whole listing
                entry["error"] = str(exc)
        out.append(entry)
    return out


# what status shows of a hook record, per kind (the rest is bookkeeping)
_HOOK_FIELDS = {"tc": ("point", "handle", "priority"),
                "xdp": ("mode", "requested", "prog_id"),
                "link": ("section", "program", "pin")}


def _describe(a: dict) -> dict[str, Any]:
    """A hook as an object: {"kind": "tc", "point": "ingress", "handle": 1,
    "priority": 1}, {"kind": "xdp", "mode": "drv", "requested": "auto",
    "prog_id": 42} (the mode the kernel reports and the one asked for) or
    {"kind": "link", "section": ..., "program": ..., "pin": ...}."""
    return {"kind": a["kind"], **{k: a[k] for k in _HOOK_FIELDS.get(a["kind"], ()) if k in a}}

