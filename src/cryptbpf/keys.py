"""Key material: read from 0600 files or drawn from the kernel's CSPRNG.
Keys are never logged, printed or stored in BPF source or state records."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import CryptbpfError


def refuse_if_readable_by_others(p: Path, st: os.stat_result, what: str = "key file") -> None:
    """A file holding a secret must be private to its owner (no group or
    other permission bits): key files, PEM private keys, wg-quick configs."""
    if st.st_mode & 0o077:
        raise CryptbpfError(
            f"{what} {p} is readable by others (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"run: chmod 600 {p}")


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
    refuse_if_readable_by_others(p, st)
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


# What `keys new` may write: every key or secret a program or peer takes is
# in this range (tunnel 32, encrypted-logger 32, aes-roundtrip 16 or 32,
# zkp secrets 16..64, offload HMAC 16..64 and AEAD 32; held by a test).
MIN_KEY_SIZE = 16
MAX_KEY_SIZE = 64


def write_key_file(path: str | os.PathLike, key: bytes) -> None:
    """Create `path` with mode 0600 (refusing to overwrite: FileExistsError)
    holding `key`. A file that could not be written whole is removed."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise
    except OSError as e:
        raise CryptbpfError(f"cannot create key file {path}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(key)
    except BaseException as e:
        os.unlink(path)
        if isinstance(e, OSError):
            raise CryptbpfError(f"cannot write key file {path}: {e.strerror}; nothing left behind") from None
        raise


def random_key(size: int) -> bytes:
    """`size` bytes from the kernel's CSPRNG (getrandom(2)); size must be
    one a program or peer takes (MIN_KEY_SIZE..MAX_KEY_SIZE)."""
    if not MIN_KEY_SIZE <= size <= MAX_KEY_SIZE:
        raise CryptbpfError(f"key size {size} out of range: keys are {MIN_KEY_SIZE}..{MAX_KEY_SIZE} "
                            "bytes (32 for the tunnel and the logger, 16 or 32 for aes-roundtrip, "
                            "up to 64 for zkp secrets and offload HMAC keys)")
    return os.urandom(size)
