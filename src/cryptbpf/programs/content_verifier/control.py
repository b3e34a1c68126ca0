"""content-verifier's control plane: the allowlist of content ids and its
enforcement, through the maps of a loaded instance."""

from __future__ import annotations

from typing import Optional

from ...errors import CryptbpfError
from ...bpf.headers import Layout
from ...bpf.maps import BPF_NOEXIST


LAYOUT = Layout("content_verifier")
NAME = "content-verifier"


# ---------------------------------------------------------------- allowlist

def allow(handle, ids: list) -> int:
    """Add ids to the allowlist (existing entries keep their hit counts);
    returns how many were new."""
    m, new = handle.map("allowlist"), 0
    zero = LAYOUT.pack("struct cas_allow_entry", hits=0)
    for i in ids:
        try:
            m.update(i, zero, BPF_NOEXIST)
            new += 1
        except CryptbpfError as e:
            if getattr(e, "errno", None) != 17:   # EEXIST: already allowed
                raise
    return new


def deny(handle, ids: Optional[list] = None) -> int:
    """Remove ids (all of them with None); returns how many were removed."""
    m = handle.map("allowlist")
    return sum(m.delete(i) for i in (list(m.keys()) if ids is None else ids))


def allowlist(handle) -> dict:
    """id -> hits."""
    return {k: LAYOUT.unpack("struct cas_allow_entry", v)["hits"]
            for k, v in handle.map("allowlist").items()}


def set_enforce(handle, on: bool) -> None:
    handle.map("cas_config").update(0, LAYOUT.pack("struct cas_config", enforce_allowlist=int(on)))


def enforced(handle) -> bool:
    raw = handle.map("cas_config").lookup(0)
    return bool(LAYOUT.unpack("struct cas_config", raw)["enforce_allowlist"])
