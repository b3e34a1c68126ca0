"""The BPF filesystem that holds cryptbpf's pins, found or mounted.

A fresh machine has nothing mounted on /sys/fs/bpf. Like bpftool and
cilium/ebpf, cryptbpf mounts it in the caller's mount namespace when it is
missing there, with one exception: under `ip netns exec NS` (the caller's
network namespace has a name in /run/netns), iproute2 has remounted /sys in
a mount namespace of its own that dies with the command, so a bpffs mounted
there would take every pin with it. There cryptbpf uses the bpffs of init's
mount namespace through /proc/1/root, so `ip netns exec NS cryptbpf ...` and
`cryptbpf ... --netns NS` see the same pins; where /proc/1 cannot be read
(a sandbox that hides its init), it refuses with a line that says to use
`--netns NS`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from ..errors import CryptbpfError
from ..netns import current_name

INIT_ROOT = Path("/proc/1/root")


def _mountinfo(pid: str) -> list[tuple[str, str]] | None:
    """(mount point, fs type) of every mount seen by process `pid`; None
    when its mount table cannot be read."""
    try:
        text = Path(f"/proc/{pid}/mountinfo").read_text()
    except OSError:
        return None
    out = []
    for line in text.splitlines():
        fields = line.split()
        sep = fields.index("-")
        # mount points escape blanks as \040
        out.append((fields[4].replace("\\040", " "), fields[sep + 1]))
    return out


def is_mounted(mount_point: Path, pid: str = "self") -> bool | None:
    """True if the topmost mount on `mount_point` (as `pid` sees it) is
    bpffs; None if `pid`'s mount table is out of reach."""
    mounts = _mountinfo(pid)
    if mounts is None:
        return None
    fstype = None
    for point, fs in mounts:
        if point == str(mount_point):
            fstype = fs  # later lines are mounted on top of earlier ones
    return fstype == "bpf"


def _readable(path: Path) -> bool:
    try:
        next(path.iterdir(), None)
        return True
    except OSError:
        return False


def locate(mount_point: Path) -> tuple[Path | None, str]:
    """Where the bpffs for `mount_point` is reachable from here, without
    mounting anything: (path, or None when it is not mounted; what was
    found). Raises under `ip netns exec` when init's bpffs is out of reach."""
    if is_mounted(mount_point):
        return mount_point, f"mounted at {mount_point}"
    netns = current_name()
    if netns is None:
        return None, f"not mounted at {mount_point}"
    host = is_mounted(mount_point, "1") if _readable(INIT_ROOT) else None
    if host is None:
        raise CryptbpfError(f"bpffs is not visible inside `ip netns exec {netns}` (it remounts /sys) "
                            f"and init's mount namespace is out of reach here: run cryptbpf from "
                            f"the host's namespace with --netns {netns}")
    if host:
        path = INIT_ROOT / mount_point.relative_to("/")
        return path, f"mounted at {mount_point} in init's mount namespace (used through {path})"
    return None, f"not mounted at {mount_point}, here or in init's mount namespace"


def ensure(mount_point: Path) -> Path:
    """The directory of the bpffs for `mount_point` as seen from here,
    mounting it where it belongs (see the module doc) if it is missing."""
    found, _ = locate(mount_point)
    if found is not None:
        return found
    if current_name() is None:
        _mount([], mount_point)
        return mount_point
    # nsenter: setns(CLONE_NEWNS) is refused to a multi-threaded process
    _mount(["nsenter", "--target", "1", "--mount", "--"], mount_point)
    return INIT_ROOT / mount_point.relative_to("/")


def _mount(prefix: list[str], mount_point: Path) -> None:
    cmd = prefix + ["mount", "-t", "bpf", "bpf", str(mount_point)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True)
    except FileNotFoundError as e:
        raise CryptbpfError(f"bpffs is not mounted at {mount_point} and {e.filename} "
                            "is missing to mount it") from None
    if res.returncode:
        raise CryptbpfError(f"bpffs is not mounted at {mount_point} and mounting it failed: "
                            f"{res.stderr.strip() or 'exit status ' + str(res.returncode)}")
