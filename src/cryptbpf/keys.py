"""Key material: read from 0600 files or drawn from the kernel's CSPRNG.
Keys are never logged, printed or stored in BPF source or state records."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import CryptbpfError


def read_key_file(path: str | os.PathLike, sizes: tuple[int, ...]) -> bytes:
    """Raw key bytes from `path`, which must be private to its owner (no
    group/other permissions) and hold exactly one of `sizes` bytes (raw)
    or that many bytes hex-encoded."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise CryptbpfError(f"key file {p} does not exist") from None
    if not stat.S_ISREG(st.st_mode):
        raise CryptbpfError(f"key file {p} is not a regular file")
    if st.st_mode & 0o077:
        raise CryptbpfError(
            f"key file {p} is readable by others (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"run: chmod 600 {p}")
    data = p.read_bytes()
    if len(data) not in sizes:
        try:
            data = bytes.fromhex(data.decode().strip())
        except (UnicodeDecodeError, ValueError):
            pass
    if len(data) not in sizes:
        want = " or ".join(str(s) for s in sizes)
        raise CryptbpfError(f"key file {p} must hold {want} bytes (raw or hex)")
    return data


def write_key_file(path: str | os.PathLike, key: bytes) -> None:
    """Create `path` with mode 0600 (refusing to overwrite) holding `key`."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)


def random_key(size: int) -> bytes:
    return os.urandom(size)  # getrandom(2): the kernel's CSPRNG
