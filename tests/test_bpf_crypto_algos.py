"""Which algorithms bpf_crypto can reach on the running kernel
(docs/kernel_compat.md, "ChaCha20 through bpf_crypto").

bpf_crypto's only type, "skcipher", allocates with crypto_alloc_lskcipher():
it finds algorithms registered as lskciphers (cbc/ecb templates over the
"aes" cipher), not the skcipher drivers (chacha20-generic, chacha20-simd,
cbc-aes-aesni). bpf/crypto_probe.bpf.c asks bpf_crypto_ctx_create()
for a name and reports the errno; each test records it in junit.xml
(property "errno") and the drivers /proc/crypto then lists."""

from __future__ import annotations

import errno
import pytest

from conftest import require_feature
from cryptbpf.crypto.kernel_ciphers import bpf_crypto_driver, primitive_paths, proc_crypto


def _probe(load_object, algo: str, key_len: int) -> int:
    obj = load_object("crypto_probe")
    obj.set_global("probe_algo", algo.encode())
    obj.set_global("probe_key_len", key_len)
    ret = obj.program("crypto_probe").test_run().retval
    assert ret == obj.get_global_int("probe_err", signed=True)
    return ret


def _drivers(name: str) -> str:
    return ", ".join(f"{e.get('driver')} ({e.get('type')}, {e.get('priority')})"
                     for e in proc_crypto(name)) or "none"


def _record(request, name: str, value) -> None:
    """A junit.xml property (record_property warns under junit_family xunit2,
    the properties are written all the same)."""
    request.node.user_properties.append((name, value))


def test_cbc_aes_allocates(load_object, request):
    """The probe itself works: cbc(aes) is what cryptbpf's AES code uses."""
    require_feature("bpf_crypto")
    err = _probe(load_object, "cbc(aes)", 16)
    _record(request, "errno", err)
    _record(request, "proc_crypto_cbc_aes", _drivers("cbc(aes)"))
    assert err == 0, f"bpf_crypto_ctx_create(cbc(aes)) = {err}"
    # the context it made is a lskcipher instance of the cbc template
    assert any(e.get("type") == "lskcipher" for e in proc_crypto("cbc(aes)")), _drivers("cbc(aes)")


def test_chacha20_is_not_reachable(load_object, request):
    """chacha20 is registered as an skcipher only (crypto/chacha_generic.c,
    arch/x86/crypto/chacha_glue.c: crypto_register_skciphers). In
    bpf_crypto_ctx_create() (kernel/bpf/crypto.c) the type's has_algo()
    check, crypto_has_skcipher(), accepts skciphers and lskciphers alike, so:
    no chacha20 at all (the 6.18 host) -> -EOPNOTSUPP; a chacha20 skcipher
    (Debian's 6.12 with chacha_generic/chacha_x86_64) -> has_algo passes and
    crypto_alloc_lskcipher() finds no lskcipher -> -ENOENT. If this fails
    with 0, a kernel registered a chacha20 lskcipher: update
    docs/kernel_compat.md."""
    require_feature("bpf_crypto")
    err = _probe(load_object, "chacha20", 32)
    _record(request, "errno", err)
    _record(request, "proc_crypto_chacha20", _drivers("chacha20"))
    want = -errno.ENOENT if proc_crypto("chacha20") else -errno.EOPNOTSUPP
    assert err == want, f"bpf_crypto_ctx_create(chacha20) = {err}; drivers: {_drivers('chacha20')}"


@pytest.mark.parametrize("algo,key_len", [("ecb(aes)", 32), ("ctr(aes)", 16), ("xchacha20", 32)])
def test_other_names(load_object, request, algo, key_len):
    """What else the lskcipher lookup finds (recorded, and pinned to what the
    sources say: ecb yes; ctr and xchacha20 are skcipher-only, and fail with
    an errno that depends on which skciphers exist, as for chacha20)."""
    require_feature("bpf_crypto")
    err = _probe(load_object, algo, key_len)
    _record(request, "errno", err)
    if algo == "ecb(aes)":
        assert err == 0, f"bpf_crypto_ctx_create({algo}) = {err}"
    else:
        assert err < 0, f"bpf_crypto_ctx_create({algo}) = {err}: now reachable, update the docs"


def test_doctor_names_what_runs(load_object):
    """doctor (and the bench's metadata) name the lskcipher bpf_crypto got for
    cbc(aes), and say why ChaCha20 is pure BPF, from the probe's errno."""
    require_feature("bpf_crypto")
    assert _probe(load_object, "cbc(aes)", 32) == 0
    driver = bpf_crypto_driver("cbc(aes)")
    assert driver and driver.startswith("cbc("), proc_crypto("cbc(aes)")
    paths = primitive_paths()
    assert paths["aes-cbc"].endswith(f"cbc(aes) = {driver}")
    err = _probe(load_object, "chacha20", 32)
    assert err < 0
    assert paths["chacha20-poly1305"].startswith("pure BPF (bpf_crypto_ctx_create(chacha20) = -E")
    assert ("skcipher only" in paths["chacha20-poly1305"]) == bool(proc_crypto("chacha20"))
