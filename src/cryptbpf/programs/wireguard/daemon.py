"""`cryptbpf wg up/down/show`: the handshake daemon as a background
process, like wg-quick with a userspace implementation.

`up(config)` starts `cryptbpf wg up CONFIG --foreground` in a new session
and returns once the interface is up (the child says so, or why not,
through a pipe). The child runs device.Device until SIGTERM/SIGINT and
keeps, under /run/cryptbpf/wg/ (per interface and network namespace):

    <instance>.pid    its pid
    <instance>.json   what `wg show` shows (public keys, endpoints,
                      allowed ips, latest handshake, transfer), rewritten
                      every STATUS_INTERVAL seconds; no private key
    <instance>.log    its stderr

`down(name)` stops it (SIGTERM; the daemon undoes its data plane) and
removes what is left, also after a SIGKILL: the data plane's record
(dataplane.cleanup) and these files.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from ... import netns as netns_mod
from ...errors import CryptbpfError
from ...paths import STATE_ROOT
from . import config as config_mod
from . import dataplane

STATUS_INTERVAL = 1.0
UP_TIMEOUT = 30.0
DOWN_TIMEOUT = 10.0
READY_FD_ENV = "CRYPTBPF_WG_READY_FD"


def state_dir() -> Path:
    return STATE_ROOT / "wg"


def instance(name: str) -> str:
    """wg0, or NS-wg0 for an interface in named namespace NS."""
    ns = netns_mod.current_name()
    return f"{ns}-{name}" if ns else name


def _path(name: str, suffix: str) -> Path:
    return state_dir() / f"{instance(name)}.{suffix}"


def _tidy() -> None:
    """Remove the state directories once empty (as pins.remove_state)."""
    for d in (state_dir(), STATE_ROOT):
        try:
            d.rmdir()
        except OSError:
            pass        # not empty, or not there


def _alive(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"cryptbpf" in cmdline and b"wg" in cmdline


def daemon_pid(name: str) -> int | None:
    """The pid of the running daemon of `name` here, None if none runs."""
    try:
        pid = int(_path(name, "pid").read_text())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def names() -> list[str]:
    """Interfaces with a running daemon in this namespace."""
    ns = netns_mod.current_name()
    out = []
    for p in sorted(state_dir().glob("*.json")) if state_dir().is_dir() else []:
        try:
            st = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if st.get("netns") == ns and _alive(st.get("pid", 0)):
            out.append(st["interface"])
    return out


def status(name: str) -> dict:
    """The running daemon's `wg show` view of `name`."""
    try:
        st = json.loads(_path(name, "json").read_text())
    except (OSError, ValueError):
        raise CryptbpfError(f"{name} is not up (no cryptbpf wg daemon for it here)") from None
    if not _alive(st.get("pid", 0)):
        raise CryptbpfError(f"{name}: its daemon died; run: cryptbpf wg down {name}")
    return st


# ---------------------------------------------------------------- up

def up(config_path: str, netns: str | None = None) -> str:
    """Start the daemon for `config_path`; returns the interface name once
    it is up. Errors (the child's too) are one CryptbpfError line."""
    cfg = config_mod.load(config_path)       # refuse a bad file before forking
    from ...lifecycle import require_privileges
    require_privileges()
    if daemon_pid(cfg.name):
        raise CryptbpfError(f"{cfg.name} is up already (pid {daemon_pid(cfg.name)})")
    from ...bpf import pins
    from .bpf_dataplane import instance_name
    if _path(cfg.name, "pid").exists() or _path(cfg.name, "json").exists() or \
            pins.is_loaded(instance_name(cfg.name, netns_mod.current_name())):
        raise CryptbpfError(f"{cfg.name}: left by a daemon that died; run: cryptbpf wg down {cfg.name}")
    state_dir().mkdir(parents=True, exist_ok=True, mode=0o700)
    rfd, wfd = os.pipe()
    log = open(_path(cfg.name, "log"), "ab")
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cryptbpf.cli", "wg", "up", "--foreground", str(Path(config_path).resolve()),
             *(["--netns", netns] if netns else [])],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, pass_fds=(wfd,), start_new_session=True,
            env={**os.environ, READY_FD_ENV: str(wfd)})
    finally:
        os.close(wfd)
        log.close()
    answer = b""
    try:
        end = time.monotonic() + UP_TIMEOUT
        while (left := end - time.monotonic()) > 0:
            if not select.select([rfd], [], [], left)[0]:
                break
            chunk = os.read(rfd, 4096)
            if not chunk:
                break
            answer += chunk
    finally:
        os.close(rfd)
    text = answer.decode(errors="replace").strip()
    if text != "up":
        if proc.poll() is None:
            proc.terminate()
        proc.wait(DOWN_TIMEOUT)
        if proc.returncode is not None and proc.returncode != 0 and text:
            _path(cfg.name, "log").unlink(missing_ok=True)     # the message says it all
            _tidy()
        raise CryptbpfError(text or f"{cfg.name}: the daemon did not come up within {UP_TIMEOUT:.0f} s "
                                    f"(exit status {proc.returncode}); "
                                    f"see {_path(cfg.name, 'log')}")
    return cfg.name


def _tell(fd: int | None, text: str) -> None:
    if fd is not None:
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)


def run_foreground(config_path: str, make_dataplane=dataplane.open_dataplane) -> None:
    """The daemon itself (`wg up --foreground`): until SIGTERM/SIGINT."""
    from .device import Device
    fd = int(os.environ.pop(READY_FD_ENV)) if READY_FD_ENV in os.environ else None
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    try:
        cfg = config_mod.load(config_path)
        state_dir().mkdir(parents=True, exist_ok=True, mode=0o700)
        dev = Device(cfg, make_dataplane)
    except CryptbpfError as e:
        _tell(fd, str(e))
        raise
    except Exception as e:  # noqa: BLE001 - told to the parent, then raised
        _tell(fd, f"{type(e).__name__}: {e}")
        raise
    pid_path, status_path = _path(cfg.name, "pid"), _path(cfg.name, "json")
    try:
        pid_path.write_text(str(os.getpid()))
        _write_status(dev, status_path)
        _tell(fd, "up")
        fd = None
        next_status = time.monotonic() + STATUS_INTERVAL
        while not stop:
            dev.step()
            if time.monotonic() >= next_status:
                _write_status(dev, status_path)
                next_status = time.monotonic() + STATUS_INTERVAL
    finally:
        _tell(fd, f"{cfg.name}: the daemon stopped while starting")
        dev.close()
        for p in (pid_path, status_path):
            p.unlink(missing_ok=True)
        _tidy()


def _write_status(dev, path: Path) -> None:
    st = dev.status()
    st["netns"] = netns_mod.current_name()
    st["pid"] = os.getpid()
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(st, f)
    os.replace(tmp, path)


# ---------------------------------------------------------------- down

def interface_name(name_or_config: str) -> str:
    """`wg0` or `/etc/wireguard/wg0.conf` -> wg0."""
    p = Path(name_or_config)
    if p.suffix == ".conf" or p.is_file():
        return config_mod.check_name(p.name.removesuffix(".conf"))
    return config_mod.check_name(name_or_config)


def down(name_or_config: str) -> list[str]:
    """Stop `name`'s daemon and undo everything; what was done, in words."""
    from ...lifecycle import require_privileges
    require_privileges()
    name = interface_name(name_or_config)
    done = []
    pid = daemon_pid(name)
    if pid:
        os.kill(pid, signal.SIGTERM)
        end = time.monotonic() + DOWN_TIMEOUT
        while _alive(pid) and time.monotonic() < end:
            time.sleep(0.05)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
            done.append(f"killed daemon {pid} (it did not stop within {DOWN_TIMEOUT:.0f} s)")
        else:
            done.append(f"stopped daemon {pid}")
    if dataplane.cleanup(name):
        done.append("removed the data plane left behind")
    for suffix in ("pid", "json", "tmp", "log"):
        p = _path(name, suffix)
        if p.exists():
            p.unlink()
            if suffix == "pid" and not pid:
                done.append("removed the record of a dead daemon")
    _tidy()
    if not done:
        raise CryptbpfError(f"{name} is not up")
    return done
