"""pki-validator: X.509 certificate-chain access control in XDP.

Clients authenticate on a UDP control port with real X.509 v3 certificates
(ECDSA P-256 / SHA-256), verified in the kernel up to a trust anchor, plus a
proof of possession of the leaf key; their IPv4 address may then reach the
protected ports until the configured lifetime or the chain's notAfter.
Wire format and maps: bpf/include/pki_validator.h; design, limits and
numbers: docs/pki_validator.md. The administrator's operations live in
cryptbpf.programs.pki_validator.control, the client in cryptbpf.programs.pki_validator.client."""

from __future__ import annotations

from ...ports import udp_port
from . import control as admin, der, profile
from ..base import Hook, ProgramSpec
from .control import DEFAULT_LIFETIME, NAME, _lifetime
from .cli import cli


class PkiValidator(ProgramSpec):
    def check_options(self, options) -> None:
        for p in options.get("protect", []):
            udp_port(p, "--protect")
        _lifetime(options)
        for f in options.get("trust", []):
            for c in der.load_certs(f):
                profile.check_anchor(c)

    def setup(self, handle, key, options) -> None:
        admin.install_challenge_key(handle)
        admin.publish_clock(handle)
        admin.set_lifetime(handle, _lifetime(options))
        ctrl = handle.get_global_int("ctrl_port") if hasattr(handle, "get_global_int") else None
        for p in options.get("protect", []):
            admin.protect(handle, p, ctrl)
        for f in options.get("trust", []):
            for c in der.load_certs(f):
                admin.trust(handle, c)

    def stats(self, handle) -> dict[str, int]:
        return admin.stats(handle)

    def status(self, handle) -> dict:
        cfg = admin.config(handle)
        return {"stats": admin.stats(handle),
                "protected_ports": admin.protected(handle),
                "anchors": len(admin.anchors(handle)),
                "revoked_serials": admin.revoked_count(handle),
                "authorized_clients": len(admin.authorized(handle)),
                "lifetime_s": cfg["lifetime_s"],
                "tai_offset_s": cfg["tai_offset_ns"] // 1_000_000_000}


SPEC = PkiValidator(
    name=NAME,
    object="pki_validator",
    summary="X.509 (ECDSA P-256) certificate-chain access control for ports, in XDP",
    hooks=[Hook("pki_xdp", "xdp")],
    requires=["xdp", "bpf_loop", "xdp_load_bytes", "syscall_prog", "btf", "kptr", "dynptr_mem"],
    knobs={"ctrl_port": "UDP port of the authentication exchange (default 7443)"},
    knob_ranges={"ctrl_port": (1, 65535)},
    header="pki_validator",
    stats_type="struct pki_validator_stats",
    cli=cli,
    commands={"pki": cli},
    options={"protect": "port whose TCP/UDP traffic needs an authorization (repeatable)",
             "trust": "CA certificate file to trust (repeatable)",
             "lifetime": f"authorization lifetime in seconds (default {DEFAULT_LIFETIME}; "
                         "never past the chain's notAfter)"},
    option_commands={"protect": "cryptbpf pki protect PORT", "trust": "cryptbpf pki trust CA.pem"},
    xdp_tx=True,
)
