"""Key material stays out of reach of `cryptbpf map` and out of scratch
memory, for every program that holds a secret (keys, verifiers, HMAC pad
states, or MACs derived from them)."""

from __future__ import annotations

import os

import pytest

from cryptbpf.cli import may_hold_secrets
from cryptbpf.bpf.object import BpfObject
from cryptbpf.paths import bpf_object

from conftest import require_feature

# Maps whose contents are a key, a key's pad states, or (scratch) the
# intermediate HMAC state and expected MACs of the last packet.
SECRET_MAPS = {
    "zkp_filter": ["zkp_server_key", "zkp_keys", "zkp_scratch"],
    "crypto_ratelimit": ["pow_server_key", "pow_scratch"],
    "pki_validator": ["chal_key", "scratch"],
    "crypto_offload": ["offload_keys", "key_scratch", "offload_scratch"],
    "signed_auth": ["sa_scratch"],
    "content_verifier": ["scratch"],
}
# Maps an operator must be able to dump (counters, configuration).
PUBLIC_MAPS = {
    "zkp_filter": ["stats", "authorized", "protected_ports"],
    "crypto_ratelimit": ["stats", "buckets", "pow_config"],
    "pki_validator": ["stats", "revoked", "anchors"],
    "crypto_offload": ["offload_stats", "offload_config"],
    "signed_auth": ["stats", "sa_ports"],   # key_stats is refused too ("key")
    "content_verifier": ["stats", "allowlist"],
}


@pytest.mark.parametrize("prog", sorted(SECRET_MAPS))
def test_map_dump_refuses_secret_maps(prog):
    with BpfObject.open(str(bpf_object(prog))) as obj:
        names = set(obj.map_names())
    for m in SECRET_MAPS[prog]:
        assert m in names, (prog, m)          # the list names real maps
        assert may_hold_secrets(m), (prog, m)
    for m in PUBLIC_MAPS[prog]:
        assert m in names, (prog, m)
        assert not may_hold_secrets(m), (prog, m)


def _install_zkp(obj):
    from cryptbpf.programs.zkp_filter import control as zf
    zf.install_server_key(obj, os.urandom(32))
    zf.install_verifier(obj, 7, os.urandom(32))
    return "zkp_scratch"


def _install_ratelimit(obj):
    from cryptbpf.programs.crypto_ratelimit import control as cr
    cr.install_server_key(obj, os.urandom(32))
    return "pow_scratch"


def _install_pki(obj):
    from cryptbpf.programs.pki_validator import control as admin
    admin.install_challenge_key(obj)
    return "scratch"


@pytest.mark.parametrize("prog,install", [("zkp_filter", _install_zkp),
                                          ("crypto_ratelimit", _install_ratelimit),
                                          ("pki_validator", _install_pki)])
def test_key_install_leaves_no_key_state_in_scratch(load_object, prog, install):
    """Installing a challenge key or verifier keeps its pad states in the key
    map only: the per-CPU scratch the SYSCALL program worked in is all zero
    afterwards (the HMAC context's chaining value held the inner pad state)."""
    from cryptbpf.programs import get
    for f in get(prog).requires:
        require_feature(f)
    obj = load_object(prog)
    scratch = install(obj)
    for cpu, value in enumerate(obj.map(scratch).lookup_percpu(0)):
        assert value == bytes(len(value)), (prog, cpu)
