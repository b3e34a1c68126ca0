"""Known-answer tests of the in-kernel crypto: `cryptbpf kat FILE.json`.

Reads the Wycheproof JSON format (algorithm, testGroups[].type/tests[] with
tcId, comment, flags, result = valid | invalid | acceptable) and runs every
vector through the BPF implementation with BPF_PROG_TEST_RUN. Runners are
registered per (group type, algorithm) by `runner()`.

Semantics: a `valid` vector must produce exactly the expected output; an
`invalid` one must be rejected (or, for a one-way operation, must not match);
an `acceptable` one may go either way and is reported as such.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .bpf import kernel
from .crypto.aes_cbc import AES_FEATURES as BPF_CRYPTO_FEATURES, install_aes_key
from .errors import CryptbpfError
from .bpf.headers import Layout
from .bpf.object import BpfObject
from .paths import bpf_object
from .bpf.program import MAX_TEST_PACKET, PROG_TYPE_SCHED_CLS

# A local-experimental ethertype: the kernel does not parse what follows.
ETH = bytes(12) + b"\x88\xb5"
MAX_DATA = MAX_TEST_PACKET[PROG_TYPE_SCHED_CLS] - len(ETH) - 64


class Unsupported(Exception):
    """This vector cannot run here (size, parameter); counted as skipped."""


class KatObject:
    """crypto_kat.bpf.o, loaded, with helpers to feed it packets and keys."""

    # bpf_crypto's AES entry points: left unloaded where the kernel lacks
    # what they need (e.g. Linux 6.1), so the pure-BPF primitives still load.
    AES_PROGRAMS = ("kat_aes_setup", "kat_aes_cbc_encrypt", "kat_aes_cbc_decrypt",
                    "bench_aes_cbc_encrypt")
    AES_FEATURES = ("syscall_prog", "kptr", *BPF_CRYPTO_FEATURES)

    def __init__(self):
        self.obj = BpfObject.open(str(bpf_object("crypto_kat")))
        self.has_aes = not kernel.missing(list(self.AES_FEATURES))
        if not self.has_aes:
            for prog in self.AES_PROGRAMS:
                self.obj.set_autoload(prog, False)
        t0 = time.perf_counter()
        self.obj.load()
        self.load_ms = (time.perf_counter() - t0) * 1e3
        self.layout = Layout("crypto_kat")
        self._aes_key: bytes | None = None
        self._ecdsa: EcdsaKat | None = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.obj.close()
        if self._ecdsa is not None:
            self._ecdsa.close()

    @property
    def ecdsa(self) -> "EcdsaKat":
        if self._ecdsa is None:
            self._ecdsa = EcdsaKat()
        return self._ecdsa

    @staticmethod
    def frame(payload: bytes) -> bytes:
        if len(payload) > MAX_DATA:
            raise Unsupported(f"{len(payload)} bytes exceed a test packet")
        return ETH + payload

    def run(self, prog: str, payload: bytes) -> tuple[int, bytes]:
        res = self.obj.program(prog).test_run(data=self.frame(payload))
        return res.retval, res.data[len(ETH):]

    # ---- the global argument block (struct kat_io) ----
    def io(self, **fields) -> None:
        self.obj.set_global("kat_io", self.layout.pack("struct kat_io", **fields))

    def result(self) -> dict:
        return self.layout.unpack("struct kat_io", self.obj.get_global("kat_io"))

    def call(self, entry: str, msg: bytes, source: str, **fields) -> dict:
        """Run `<entry>_skb` (msg in the packet) or `<entry>_mem` (msg in
        the kat_msg global, map memory) with kat_io = fields."""
        if source == "mem":
            if len(msg) > self.layout.const("KAT_MAX_MSG"):
                raise Unsupported(f"{len(msg)} bytes exceed kat_msg")
            self.io(len=len(msg), **fields)
            self.obj.set_global("kat_msg", msg)
            self.obj.program(f"{entry}_mem").test_run()
        else:
            self.io(**fields)
            self.run(f"{entry}_skb", msg)
        return self.result()

    def digest(self, alg: int, msg: bytes, source: str = "skb") -> bytes:
        r = self.call("kat_sha", msg, source, alg=alg)
        if r["rc"]:
            raise CryptbpfError(f"kat_sha failed: {r['rc']}")
        return r["out"][:{256: 32, 384: 48, 512: 64}[alg]]

    def hmac(self, alg: int, key: bytes, msg: bytes, source: str = "skb") -> bytes:
        r = self.call("kat_hmac", msg, source, alg=alg, key=self._hmac_key(key), key_len=len(key))
        if r["rc"]:
            raise CryptbpfError(f"kat_hmac failed: {r['rc']}")
        return r["out"][:alg // 8]

    def hmac_verify(self, alg: int, key: bytes, msg: bytes, tag: bytes, source: str = "skb") -> bool:
        if not tag:
            return False
        r = self.call("kat_hmac", msg, source, alg=alg, key=self._hmac_key(key), key_len=len(key),
                      tag=tag[:64], tag_len=len(tag))
        if r["rc"] < 0:
            raise CryptbpfError(f"kat_hmac failed: {r['rc']}")
        return r["rc"] == self.layout.const("KAT_OK")

    def _aead_args(self, key: bytes, nonce: bytes, aad: bytes) -> dict:
        if len(key) != 32:
            raise Unsupported(f"{len(key) * 8}-bit ChaCha20 key")
        if len(nonce) != 12:
            raise Unsupported(f"{len(nonce) * 8}-bit nonce (RFC 8439 uses 96)")
        if len(aad) > self.layout.const("KAT_AAD_MAX"):
            raise Unsupported(f"{len(aad)}-byte AAD (kat_io holds {self.layout.const('KAT_AAD_MAX')})")
        return {"key": key, "nonce": nonce, "aad": aad, "aad_len": len(aad)}

    def seal(self, key: bytes, nonce: bytes, aad: bytes, msg: bytes, source: str = "skb") -> bytes:
        """ChaCha20-Poly1305 in BPF: returns ciphertext || tag."""
        args = self._aead_args(key, nonce, aad)
        if source == "mem":
            r = self.call("kat_aead_seal", msg, "mem", **args)
            ct = self.obj.get_global("kat_msg")[:len(msg)] + r["out"][:16]
        else:
            self.io(**args)
            _, ct = self.run("kat_aead_seal_skb", msg)
            r = self.result()
        if r["rc"]:
            raise CryptbpfError(f"seal failed: {r['rc']}")
        return ct

    def open(self, key: bytes, nonce: bytes, aad: bytes, ct_tag: bytes, source: str = "skb") -> bytes | None:
        """Plaintext, or None when the kernel rejected the tag."""
        args = self._aead_args(key, nonce, aad)
        if len(ct_tag) < 16:
            return None
        ct, tag = ct_tag[:-16], ct_tag[-16:]
        if source == "mem":
            r = self.call("kat_aead_open", ct, "mem", tag=tag, **args)
            out = self.obj.get_global("kat_msg")[:len(ct)]
        else:
            self.io(**args)
            _, out = self.run("kat_aead_open_skb", ct_tag)
            r = self.result()
        if r["rc"] < 0:
            raise CryptbpfError(f"open failed: {r['rc']}")
        return out if r["rc"] == self.layout.const("KAT_OK") else None

    def _hmac_key(self, key: bytes) -> bytes:
        if len(key) > 128:
            raise Unsupported(f"{len(key)}-byte HMAC key (kat_io holds 128)")
        return key

    def aes_key(self, key: bytes) -> None:
        if key == self._aes_key:
            return
        # a key AES cannot take is named as such on every kernel, before
        # asking whether this one has AES at all
        if len(key) not in (16, 24, 32):
            raise Unsupported(f"{len(key)}-byte key: AES takes 16, 24 or 32 bytes")
        if not self.has_aes:
            raise Unsupported("kernel lacks " + kernel.describe(kernel.missing(list(self.AES_FEATURES))))
        try:
            install_aes_key(self.obj, "kat_aes_setup", key)
        except CryptbpfError as e:
            # The kernel decides which key sizes bpf_crypto's cbc(aes) takes
            # (6.18 here: all three); report its answer, not a guess.
            raise Unsupported(f"AES-{len(key) * 8}: bpf_crypto on this kernel refused the key ({e})") from None
        self._aes_key = key

    def load_report(self) -> dict:
        return {"name": "crypto_kat object", "load_ms": round(self.load_ms, 1),
                "verified_insns": {n: p.verified_insns for n, p in self.obj.programs.items()}}


class EcdsaKat:
    """ecdsa_kat.bpf.o: P-256 keys registered in its key map (validated and
    tabled by p256.py), messages hashed and verified in the kernel."""

    def __init__(self):
        from .crypto import p256
        self.p256 = p256
        self.obj = BpfObject.open(str(bpf_object("ecdsa_kat")))
        self.obj.load()
        self._ids: dict[bytes, int] = {}
        self._slots = self.obj.map("p256_keys").max_entries

    def close(self):
        self.obj.close()

    def register(self, public_key: bytes) -> int:
        """Key id of a 65-byte public key; raises p256.InvalidKey. The map
        holds few keys: the oldest registration is evicted when full."""
        if public_key in self._ids:
            return self._ids[public_key]
        kid = len(self._ids) % self._slots + 1
        for pk, old in list(self._ids.items()):
            if old == kid:
                del self._ids[pk]
        k, v = self.p256.key_map_entry(kid, public_key)
        self.obj.map("p256_keys").update(k, v)
        self._ids[public_key] = kid
        return kid

    def verify(self, key_id: int, msg: bytes, sig: bytes) -> int:
        """p256.VERIFY_* of SHA-256(msg) and a P1363 signature, all in BPF."""
        body = key_id.to_bytes(4, "little") + len(sig).to_bytes(4, "little") + (sig + bytes(64))[:64]
        res = self.obj.program("verify_msg_tc").test_run(data=KatObject.frame(body + msg))
        if res.retval == 99:
            raise CryptbpfError("verify_msg_tc: packet or hash error")
        return res.retval - 100

    # verify_der_tc's answer when der_ecdsa_sig() (pki-validator's decoder
    # of certificate signatures) rejects the signature's encoding
    DER_REJECTED = 98
    DER_MAX_INPUT = 2047    # der.bpf.h: longer input is refused unread

    def verify_der(self, key_id: int, msg: bytes, sig: bytes) -> int | None:
        """p256.VERIFY_* of SHA-256(msg) and a DER signature, decoded and
        verified in BPF; None when the kernel's strict-DER decoder rejected
        the encoding. A signature over DER_MAX_INPUT bytes (more than a
        test packet may hold) is sent as its length alone: the kernel
        refuses that length before reading any signature byte."""
        head = key_id.to_bytes(4, "little") + len(sig).to_bytes(4, "little")
        body = head + (sig + msg if len(sig) <= self.DER_MAX_INPUT else b"")
        res = self.obj.program("verify_der_tc").test_run(data=KatObject.frame(body))
        if res.retval == self.DER_REJECTED:
            return None
        if res.retval == 99:
            raise CryptbpfError("verify_der_tc: packet or hash error")
        return res.retval - 100


@dataclass
class FileResult:
    path: str
    algorithm: str
    run: int = 0
    passed: int = 0
    failed: list[int] = field(default_factory=list)
    acceptable: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    error: str | None = None    # why the file counts as failed although no tcId did

    def to_dict(self):
        return self.__dict__


Runner = Callable[[KatObject, dict, dict], bool]
_RUNNERS: dict[tuple[str, str], Runner] = {}


def runner(group_type: str, *algorithms: str):
    """Register `fn(kat, group, test) -> bool` (True = behaved as `valid`)."""
    def deco(fn):
        for a in algorithms:
            _RUNNERS[(group_type, a)] = fn
        return fn
    return deco


def _hex(t: dict, k: str) -> bytes:
    return bytes.fromhex(t.get(k, ""))


@runner("IndCpaTest", "AES-CBC-PKCS5")
def _aes_cbc(kat: KatObject, group: dict, t: dict) -> bool:
    """Valid: encrypt(msg) == ct and decrypt(ct) == msg. Otherwise: the
    decryption must be rejected (bad padding)."""
    key, iv, msg, ct = (_hex(t, k) for k in ("key", "iv", "msg", "ct"))
    if len(iv) != 16:
        raise Unsupported(f"{len(iv) * 8}-bit IV")
    kat.aes_key(key)
    rc, out = kat.run("kat_aes_cbc_decrypt", iv + ct)
    if rc < 0:
        raise CryptbpfError(f"kat_aes_cbc_decrypt failed: errno {-rc}")
    if rc != 0 or out[16:] != msg:
        return False
    rc, out = kat.run("kat_aes_cbc_encrypt", iv + msg)
    return rc == 0 and out[16:] == ct


_HASH_ALGS = {"SHA-256": 256, "SHA-384": 384, "SHA-512": 512}


@runner("HashTest", *_HASH_ALGS)
def _hash(kat: KatObject, group: dict, t: dict) -> bool:
    """cryptbpf's hash format: msg -> digest (both hex). `group["alg"]` is
    set from the file's algorithm by run_file."""
    return kat.digest(group["_alg"], _hex(t, "msg")) == _hex(t, "digest")


@runner("MacTest", "HMACSHA256", "HMACSHA512")
def _hmac(kat: KatObject, group: dict, t: dict) -> bool:
    """Valid: the (possibly truncated) MAC equals `tag` and verifies;
    invalid: the tag must not verify."""
    alg = group["_alg"]
    key, msg, tag = _hex(t, "key"), _hex(t, "msg"), _hex(t, "tag")
    tag_len = group.get("tagSize", alg) // 8
    if tag_len < 10:
        raise Unsupported("tags under 80 bits are refused by policy (RFC 2104 section 5)")
    mac = kat.hmac(alg, key, msg)
    matches = mac[:tag_len] == tag
    verified = len(tag) == tag_len and kat.hmac_verify(alg, key, msg, tag)
    if matches != verified:
        raise CryptbpfError(f"tcId {t['tcId']}: compute and verify disagree")
    return matches and verified


@runner("AeadTest", "CHACHA20-POLY1305")
def _chacha20_poly1305(kat: KatObject, group: dict, t: dict) -> bool:
    """Valid: seal gives exactly ct || tag and open gives msg back.
    Invalid: open must reject (and release no plaintext)."""
    key, iv, aad, msg = (_hex(t, k) for k in ("key", "iv", "aad", "msg"))
    ct_tag = _hex(t, "ct") + _hex(t, "tag")
    if len(iv) != 12 or len(key) != 32:
        # the BPF API only takes 96-bit nonces and 256-bit keys: such a
        # vector cannot even be submitted, which is a rejection
        return False
    opened = kat.open(key, iv, aad, ct_tag)
    if opened is None:
        return False
    return opened == msg and kat.seal(key, iv, aad, msg) == ct_tag


@runner("EcdsaP1363Verify", "ECDSA")
def _ecdsa_p1363(kat: KatObject, group: dict, t: dict) -> bool:
    """msg is hashed with SHA-256 and verified in the kernel; a public key
    that fails validation at registration rejects every signature."""
    kid = _ecdsa_key(kat, group)
    if kid is None:
        return False
    return kat.ecdsa.verify(kid, _hex(t, "msg"), _hex(t, "sig")) == kat.ecdsa.p256.VERIFY_OK


def _ecdsa_key(kat: KatObject, group: dict) -> int | None:
    """The group's secp256r1 key registered in ecdsa_kat (None if it fails
    validation); Unsupported for another curve or hash."""
    pk = group.get("publicKey", {})
    if pk.get("curve") != "secp256r1" or group.get("sha") != "SHA-256":
        raise Unsupported(f"curve {pk.get('curve')} with {group.get('sha')}: only secp256r1/SHA-256")
    e = kat.ecdsa
    try:
        return e.register(bytes.fromhex(pk["uncompressed"]))
    except e.p256.InvalidKey:
        return None


@runner("EcdsaVerify", "ECDSA")
def _ecdsa_der(kat: KatObject, group: dict, t: dict) -> bool:
    """As EcdsaP1363Verify, but sig is DER: decoded in the kernel by the
    strict decoder pki-validator uses for certificate signatures, so every
    BER variant (and any other malformed encoding) is a rejection."""
    kid = _ecdsa_key(kat, group)
    if kid is None:
        return False
    return kat.ecdsa.verify_der(kid, _hex(t, "msg"), _hex(t, "sig")) == kat.ecdsa.p256.VERIFY_OK


_ALG_BITS = {"HMACSHA256": 256, "HMACSHA512": 512, **_HASH_ALGS}


def load_file(path: str | Path) -> dict:
    """A vector file's JSON, checked to have the Wycheproof shape (an
    object; testGroups a list of objects whose tests are objects with a
    tcId). CryptbpfError naming the file and what is wrong with it."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise CryptbpfError(f"{p}: cannot read: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CryptbpfError(f"{p}: not a vector file: not UTF-8 text (byte 0x{raw[e.start]:02x} "
                            f"at offset {e.start}); expected Wycheproof-format JSON") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise CryptbpfError(f"{p}: not a vector file: not JSON ({e.msg} at line {e.lineno} "
                            f"column {e.colno}); expected Wycheproof-format JSON") from None
    if not isinstance(data, dict):
        raise CryptbpfError(f"{p}: not a vector file: the JSON is a {type(data).__name__}, "
                            "not an object with algorithm and testGroups")
    if not isinstance(data.get("algorithm", ""), str):
        raise CryptbpfError(f"{p}: algorithm must be a string")
    groups = data.get("testGroups", [])
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise CryptbpfError(f"{p}: testGroups must be a list of objects")
    for i, g in enumerate(groups):
        if not isinstance(g.get("type", ""), str):
            raise CryptbpfError(f"{p}: testGroups[{i}].type must be a string")
        tests = g.get("tests", [])
        if not isinstance(tests, list) or not all(isinstance(t, dict) and "tcId" in t for t in tests):
            raise CryptbpfError(f"{p}: testGroups[{i}].tests must be a list of objects with a tcId")
    return data


def _why_nothing_ran(data: dict, res: FileResult) -> str:
    groups = data.get("testGroups", [])
    if not groups:
        return "no vector ran: the file has no testGroups"
    if not res.skipped:
        return "no vector ran: its testGroups hold no tests"
    reasons = sorted({s["why"] for s in res.skipped})
    return f"no vector ran: all {len(res.skipped)} skipped ({'; '.join(reasons[:3])}" + \
        ("; ..." if len(reasons) > 3 else "") + ")"


def run_file(kat: KatObject, path: str | Path, data: dict | None = None) -> FileResult:
    """Run one file's vectors. A file from which no vector ran is a
    failure too (`error` says why): a known-answer run that checked
    nothing must not pass."""
    data = load_file(path) if data is None else data
    res = FileResult(str(path), str(data.get("algorithm", "?")))
    for group in data.get("testGroups", []):
        fn = _RUNNERS.get((group.get("type"), data.get("algorithm")))
        group["_alg"] = _ALG_BITS.get(data.get("algorithm", ""))
        for t in group.get("tests", []):
            if fn is None:
                res.skipped.append({"tcId": t["tcId"], "why": f"no runner for {group.get('type')}/{data.get('algorithm')}"})
                continue
            try:
                behaved_valid = fn(kat, group, t)
            except Unsupported as e:
                res.skipped.append({"tcId": t["tcId"], "why": str(e)})
                continue
            except (ValueError, TypeError, KeyError, AttributeError) as e:
                raise CryptbpfError(f"{path}: tcId {t['tcId']}: malformed vector "
                                    f"({type(e).__name__}: {e})") from None
            res.run += 1
            expect = t.get("result", "valid")
            if expect == "acceptable":
                res.passed += 1
                res.acceptable.append({"tcId": t["tcId"], "accepted": behaved_valid})
            elif behaved_valid == (expect == "valid"):
                res.passed += 1
            else:
                res.failed.append(t["tcId"])
    if res.run == 0:
        res.error = _why_nothing_ran(data, res)
    return res


def run_files(paths: list[Path]) -> list[FileResult]:
    """Every file is read and checked before the BPF object is loaded, so
    a bad file is reported at once, by name."""
    loaded = [(p, load_file(p)) for p in paths]
    with KatObject() as kat:
        return [run_file(kat, p, data) for p, data in loaded]


def require_vectors_ran(results: list[FileResult]) -> None:
    """CryptbpfError naming each file from which no vector ran, and why
    (`cryptbpf kat` exits 1 on it, as on a failed vector)."""
    bad = [f"{r.path}: {r.error}" for r in results if r.error]
    if bad:
        raise CryptbpfError("; ".join(bad))
