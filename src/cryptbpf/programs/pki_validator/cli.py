"""`cryptbpf pki-validator ...` (also `cryptbpf pki ...`): trust anchors,
revocation, the client's connect and a demo CA."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import click

from ...errors import CryptbpfError
from ...netns import inside
from ...ports import udp_port
from . import control as admin, der
from .._cli import PATH, argument, examples as _examples, group, json_option, netns_option, pinned
from .control import NAME


cli = group(help="X.509 chain access control (pki-validator).")


@cli.command("trust", epilog=_examples("sudo cryptbpf pki trust root.pem"))
@argument("cert_file", type=PATH, metavar="FILE", help="PEM/DER CA certificate(s) to trust.")
def trust_cmd(cert_file: Path):
    """Register CA certificates as trust anchors."""
    with pinned(NAME) as h:
        for c in der.load_certs(cert_file):
            e = admin.trust(h, c)
            click.echo(f"trusted {c.subject.rfc4514_string()} (key slot {e['key_id']}, "
                       f"path length {'any' if e['path_len'] == 255 else e['path_len']})")


@cli.command("untrust", epilog=_examples("sudo cryptbpf pki untrust root.pem"))
@argument("cert_file", type=PATH, metavar="FILE", help="PEM/DER CA certificate(s) to remove.")
def untrust_cmd(cert_file: Path):
    """Remove trust anchors; clients authorized under them lose access at once."""
    with pinned(NAME) as h:
        for c in der.load_certs(cert_file):
            ok = admin.untrust(h, c)
            click.echo(f"{'removed' if ok else 'was not trusted:'} {c.subject.rfc4514_string()}")


@cli.command("revoke", epilog=_examples(
    "sudo cryptbpf pki revoke --serial 0x1f2e3d --issuer intermediate.pem",
    "sudo cryptbpf pki revoke --crl intermediate.crl --issuer intermediate.pem"))
@click.option("--serial", multiple=True, metavar="N", help="Serial number (decimal or 0x hex), repeatable.")
@click.option("--issuer", type=PATH, metavar="FILE", help="The issuing CA's certificate.")
@click.option("--crl", type=PATH, metavar="FILE", help="A CRL (PEM or DER); every serial it lists.")
def revoke_cmd(serial: tuple[str, ...], issuer: Optional[Path], crl: Optional[Path]):
    """Revoke certificates by (issuer, serial); effective immediately,
    including for clients already authorized."""
    if not serial and not crl:
        raise CryptbpfError("give --serial (with --issuer) or --crl")
    ca = der.load_certs(issuer)[0] if issuer else None
    with pinned(NAME) as h:
        n = 0
        if serial:
            if ca is None:
                raise CryptbpfError("--serial needs --issuer CA.pem (serials are unique per issuer)")
            try:
                nums = [int(s, 0) for s in serial]
            except ValueError:
                raise CryptbpfError(f"serials must be integers (decimal or 0x hex): {serial}") from None
            n += admin.revoke(h, der.cert_fields(ca).subject_hash, nums)
        if crl:
            n += admin.revoke_crl(h, admin.load_crl(crl), ca)
        click.echo(f"revoked {n} serial(s); {admin.revoked_count(h)} revoked in total")


@cli.command("connect", epilog=_examples(
    "cryptbpf pki connect 10.0.0.1 7443 --cert leaf.pem --chain chain.pem --key leaf.key",
    "sudo cryptbpf pki connect 10.0.0.1 --cert leaf.pem --key leaf.key --netns blue"))
@argument("host", metavar="HOST", help="The server (IPv4 address or name).")
@argument("port", type=int, default=7443, metavar="[PORT]", help="The server's control port.")
@click.option("--cert", type=PATH, required=True, metavar="FILE", help="Leaf certificate (PEM/DER).")
@click.option("--chain", type=PATH, metavar="FILE", help="Intermediate CA certificates (PEM), any order.")
@click.option("--trust", type=PATH, multiple=True, metavar="FILE",
              help="The server's trust anchor(s): the chain stops at them (repeatable).")
@click.option("--key", type=PATH, required=True, metavar="FILE", help="Leaf private key (PEM, mode 0600).")
@click.option("--timeout", type=float, default=2.0, metavar="SECONDS", help="Seconds to wait for each answer.")
@netns_option("Network namespace to connect from.")
def connect_cmd(host: str, port: int, cert: Path, chain: Optional[Path], trust: tuple[Path, ...],
                key: Path, timeout: float, netns: Optional[str]):
    """Authenticate this host to a pki-validator server (the peer side).
    The CA certificates sent are a path from the leaf to a trust anchor,
    built from --chain (see `cryptbpf pki verify`)."""
    import datetime as dt
    from .client import Peer, build_path, der_of, load_key
    port = udp_port(port)
    leaf = der.load_certs(cert)[0]
    anchors = [c for f in trust for c in der.load_certs(f)]
    cas = build_path(leaf, der.load_certs(chain) if chain else [], anchors)
    if cas is None:
        raise CryptbpfError("no path from the leaf to a --trust anchor in --chain")
    k = load_key(key)
    with inside(netns), Peer(host, port, timeout) as p:
        until = p.authenticate([der_of(c) for c in cas], der_of(leaf), k)
    t = dt.datetime.fromtimestamp(until, dt.timezone.utc)
    click.echo(f"authorized by {host} until {t.isoformat()} ({len(cas)} CA certificate(s) + leaf)")


@cli.command("verify", epilog=_examples(
    "sudo cryptbpf pki verify leaf.pem --chain chain.pem --trust root.pem",
    "sudo cryptbpf pki verify leaf.pem --chain chain.pem --trust root.pem --at 2027-01-01T00:00:00Z --json"))
@argument("leaf_file", type=PATH, metavar="LEAF", help="The client's certificate (PEM/DER).")
@click.option("--chain", type=PATH, metavar="FILE", help="Intermediate CA certificates (PEM), any order.")
@click.option("--trust", type=PATH, multiple=True, required=True, metavar="FILE",
              help="Trust anchor(s) (PEM/DER, repeatable), as `pki trust` takes them.")
@click.option("--at", "at", metavar="TIME", help="Validation time: ISO 8601 (UTC if no offset) or Unix "
              "seconds; default now.")
@json_option()
def verify_cmd(leaf_file: Path, chain: Optional[Path], trust: tuple[Path, ...], at: Optional[str],
               as_json: bool):
    """Check a chain offline with the kernel's own code: the pki-validator
    object runs each certificate through BPF_PROG_TEST_RUN at TIME and
    reports the counter it bumps. Exit 0 if accepted, 2 if rejected."""
    from .verify import parse_time, verify
    from ... import lifecycle
    lifecycle.require_privileges()
    leaf = der.load_certs(leaf_file)[0]
    anchors = [c for f in trust for c in der.load_certs(f)]
    v = verify(leaf, der.load_certs(chain) if chain else [], anchors,
               parse_time(at) if at is not None else None)
    if as_json:
        click.echo(json.dumps(v.to_dict(), indent=2))
    else:
        click.echo(f"at {v.at_utc}, {len(v.anchors)} trust anchor(s)"
                   + ("" if v.path_complete else "; no path to an anchor in --chain"))
        for st in v.steps:
            click.echo(f"  {st.role:<4}  {st.subject}  serial {st.serial}: "
                       f"{'accepted' if st.result == 'cert_ok' else 'rejected'} ({st.result})")
        click.echo(f"{'accepted' if v.accepted else 'rejected'} ({v.reason})")
    if not v.accepted:
        sys.exit(2)


@cli.command("status", epilog=_examples("sudo cryptbpf pki status", "sudo cryptbpf pki status --json"))
@json_option()
def status_cmd(as_json: bool):
    """Counters by reason, anchors, revocations, authorized clients."""
    with pinned(NAME) as h:
        from .spec import SPEC
        data = SPEC.status(h)
        data["anchors"] = admin.anchors(h)
        data["authorized"] = admin.authorized(h)
        data["crl_refused_issuers"] = admin.crl_invalid(h)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for k, v in data["stats"].items():
        click.echo(f"{k:<16} {v}")
    click.echo(f"protected ports  {', '.join(map(str, data['protected_ports'])) or 'none'}")
    click.echo(f"trust anchors    {len(data['anchors'])}")
    click.echo(f"revoked serials  {data['revoked_serials']}")
    if data["crl_refused_issuers"]:
        click.echo(f"issuers refused  {data['crl_refused_issuers']} (CRL refused: their certificates fail closed)")
    for a in data["authorized"]:
        click.echo(f"authorized       {a['client']} until {a['until_utc']} (chain of {a['chain']})")


@cli.command("deauth", epilog=_examples("sudo cryptbpf pki deauth 10.0.0.2"))
@argument("addr", metavar="ADDR", help="The client's IPv4 address.")
def deauth_cmd(addr: str):
    """Withdraw one client's authorization."""
    with pinned(NAME) as h:
        click.echo(f"{addr}: {'deauthorized' if admin.deauthorize(h, addr) else 'was not authorized'}")


@cli.command("protect", epilog=_examples("sudo cryptbpf pki protect 22"))
@argument("port", type=int, metavar="PORT", help="TCP/UDP destination port.")
@click.option("--remove", is_flag=True, help="Unprotect instead.")
def protect_cmd(port: int, remove: bool):
    """Require an authorization for a TCP/UDP destination port (or --remove it)."""
    with pinned(NAME) as h:
        if remove:
            admin.unprotect(h, port)
        else:
            admin.protect(h, port, h.get_global_int("ctrl_port"))
        click.echo(f"protected ports: {', '.join(map(str, admin.protected(h))) or 'none'}")


@cli.command("clock", epilog=_examples("sudo cryptbpf pki clock"))
def clock_cmd():
    """Re-publish the TAI-UTC offset (after a leap second; clock steps need nothing)."""
    with pinned(NAME) as h:
        off = admin.publish_clock(h)
    click.echo(f"TAI - UTC = {off // 1_000_000_000} s published")


@cli.command("demo-ca", epilog=_examples("cryptbpf pki demo-ca ./pki"))
@argument("directory", type=PATH, metavar="DIRECTORY", help="Where to write the files.")
def demo_ca_cmd(directory: Path):
    """Issue a demo root, intermediate and leaves (ECDSA P-256) into DIRECTORY."""
    from .ca import demo_ca
    files = demo_ca(directory)
    for n, p in files.items():
        click.echo(f"wrote {p}")
    click.echo(f"server: sudo cryptbpf pki trust {files['root.pem']}\n"
               f"client: cryptbpf pki connect SERVER 7443 --cert {files['leaf.pem']} "
               f"--chain {files['chain.pem']} --key {files['leaf.key']}")
