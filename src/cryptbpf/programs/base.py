"""What a program module declares about itself: a ProgramSpec.

The lifecycle (load/attach/pin/unload/status) and the CLI are generic; a
module only says which object it is, where its programs hook in, what it
needs from the kernel, which knobs and keys it takes, and how to read its
statistics. Override the methods for anything more.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from ..errors import CryptbpfError
from ..bpf.headers import Layout


@dataclass(frozen=True)
class Hook:
    program: str   # BPF program name in the object
    point: str     # "tc-ingress" | "tc-egress" | "xdp" | "link" (where the
                   # program's SEC() says, e.g. a tracepoint; takes no device)


@dataclass
class ProgramSpec:
    name: str                       # CLI name, e.g. "aes-roundtrip"
    object: str                     # bpf/<object>.bpf.c
    summary: str
    hooks: list[Hook]
    requires: list[str] = field(default_factory=list)   # kernel.FEATURES names
    # parts that need more than `requires`: {"what": [features]}; without
    # them the program loads and runs, that part is refused (doctor says so)
    optional: dict[str, list[str]] = field(default_factory=dict)
    knobs: dict[str, str] = field(default_factory=dict) # .rodata global -> help
    # every knob's accepted values, lowest and highest: within its C type
    # and its meaning (ports 1-65535); checked before anything is loaded
    knob_ranges: dict[str, tuple[int, int]] = field(default_factory=dict)
    key_sizes: tuple[int, ...] = ()                     # () = takes no key
    header: str = ""                # shared header with the stats struct
    stats_map: str = "stats"
    stats_type: str = ""            # e.g. "struct aes_roundtrip_stats"
    cli: Optional[Any] = None       # a click.Group (programs._cli.group()): `cryptbpf <name> ...`
    # the short names users know, e.g. {"tunnel": cli} gives `cryptbpf
    # tunnel ...` (the same commands as `cryptbpf encrypted-tunnel ...`);
    # another group is a command set of its own ({"sign": sign_cli})
    commands: dict[str, Any] = field(default_factory=dict)
    # extra `cryptbpf load` options, name -> help: `--peer 10.0.0.2` arrives
    # in setup()/prepare_device() as options["peer"] == ["10.0.0.2"]
    # (repeatable, strings; the spec validates them)
    options: dict[str, str] = field(default_factory=dict)
    # for programs whose key `cryptbpf keys install` cannot replace (they
    # change keys their own way): what to do instead, said when it is tried
    rekey_hint: str = ""
    # option -> the command that changes it on a loaded program (a second
    # load refuses options and points there); none: unload and load again
    option_commands: dict[str, str] = field(default_factory=dict)
    # the XDP program answers with XDP_TX (challenges, replies): `--xdp-mode
    # auto` then avoids native mode where the driver loses those frames (veth)
    xdp_tx: bool = False

    # ---- hooks the lifecycle calls; override as needed ----
    def check_knobs(self, knobs: dict[str, int]) -> None:
        """Before anything is loaded: names and ranges of --set knobs."""
        unknown = set(knobs) - set(self.knobs)
        if unknown:
            raise CryptbpfError(f"{self.name} has no setting {', '.join(sorted(unknown))}; "
                                f"settings: {', '.join(self.knobs) or 'none'}")
        for k, v in knobs.items():
            lo, hi = self.knob_ranges[k]
            if not lo <= v <= hi:
                raise CryptbpfError(f"--set {k}: {v} out of range {lo}-{hi}")

    def check_options(self, options: dict[str, list[str]]) -> None:
        """Before anything is loaded, first load or not: every value of the
        program's options that can be checked without the kernel."""

    def configure(self, obj, knobs: dict[str, int]) -> None:
        """Before load: set .rodata knobs."""
        for k, v in knobs.items():
            obj.set_global(k, v)

    def install_key(self, handle, key: bytes) -> None:
        """After load (object or pins): hand the key to the kernel."""
        raise NotImplementedError(f"{self.name} takes no key")

    def setup(self, handle, key: Optional[bytes], options: dict[str, list[str]]) -> None:
        """After the first load, before attaching: keys, initial map
        contents. Raise CryptbpfError on bad options; the load is undone."""
        if key is not None:
            self.install_key(handle, key)

    def prepare_device(self, ifindex: int, device: str,
                       options: dict[str, list[str]]) -> dict[str, Any]:
        """Before attaching to a device (inside its namespace): change device
        settings the program needs (offloads, MTU). Returns what
        restore_device needs to put them back (JSON-serialisable); it is
        kept in the load record."""
        return {}

    def restore_device(self, ifindex: int, device: str, saved: dict[str, Any]) -> None:
        """On unload (or a failed load): undo prepare_device."""

    def stats(self, handle) -> dict[str, int]:
        """Counters summed over CPUs, decoded with the shared header."""
        if not self.stats_type:
            return {}
        layout = Layout(self.header)
        m = handle.map(self.stats_map)
        vals = m.lookup_percpu(0) if m.percpu else [m.lookup(0)]
        total: dict[str, int] = {}
        for raw in vals or []:
            for k, v in layout.unpack(self.stats_type, raw).items():
                total[k] = total.get(k, 0) + v
        return total

    def status(self, handle) -> dict[str, Any]:
        """Everything `cryptbpf status` shows for this program (no secrets)."""
        return {"stats": self.stats(handle)}
