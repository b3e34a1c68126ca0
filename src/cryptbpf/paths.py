"""Where cryptbpf finds its compiled objects, shared headers and pins."""

from __future__ import annotations

import os
from pathlib import Path

# src/cryptbpf/paths.py -> repository root (editable install, the supported one)
ROOT = Path(os.environ.get("CRYPTBPF_ROOT", Path(__file__).resolve().parents[2]))
PIN_ROOT = Path(os.environ.get("CRYPTBPF_PIN_ROOT", "/sys/fs/bpf/cryptbpf"))
STATE_ROOT = Path(os.environ.get("CRYPTBPF_STATE_ROOT", "/run/cryptbpf"))


def include_dir() -> Path:
    return ROOT / "bpf" / "include"


def object_dir() -> Path:
    return Path(os.environ.get("CRYPTBPF_BPF_DIR", ROOT / "build" / "bpf"))


def bpf_object(name: str) -> Path:
    """Path of the compiled `bpf/<name>.bpf.c`."""
    return object_dir() / f"{name}.bpf.o"
