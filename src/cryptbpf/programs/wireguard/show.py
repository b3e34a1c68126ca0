"""`cryptbpf wg show` output, as wg(8) prints it: the text form and the
tab-separated dump; and --json, the same fields structured. Input: the daemon's status (daemon.status()). Private
and preshared keys are never printed: "(hidden)" where wg would print them
(in the dump too), "(none)" for no preshared key."""

from __future__ import annotations


def _ago(seconds: int) -> str:
    if seconds <= 0:
        return "Now"
    parts = []
    for unit, size in (("year", 365 * 86400), ("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        n, seconds = divmod(seconds, size)
        if n:
            parts.append(f"{n} {unit}{'s' if n != 1 else ''}")
    return ", ".join(parts) + " ago"


def _bytes(n: int) -> str:
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


def text(statuses: list[dict], now: float) -> list[str]:
    out: list[str] = []
    for st in statuses:
        if out:
            out.append("")
        out += [f"interface: {st['interface']}", f"  public key: {st['public_key']}",
                "  private key: (hidden)", f"  listening port: {st['listen_port']}"]
        for p in st["peers"]:
            out += ["", f"peer: {p['public_key']}"]
            if p["preshared_key"]:
                out.append("  preshared key: (hidden)")
            if p["endpoint"]:
                out.append(f"  endpoint: {p['endpoint']}")
            out.append(f"  allowed ips: {', '.join(p['allowed_ips']) or '(none)'}")
            if p["latest_handshake"]:
                out.append(f"  latest handshake: {_ago(int(now) - p['latest_handshake'])}")
            if p["transfer_rx"] or p["transfer_tx"]:
                out.append(f"  transfer: {_bytes(p['transfer_rx'])} received, {_bytes(p['transfer_tx'])} sent")
            if p["persistent_keepalive"]:
                out.append(f"  persistent keepalive: every {p['persistent_keepalive']} seconds")
    return out


def dump(statuses: list[dict], prefix: bool) -> list[str]:
    out = []
    for st in statuses:
        pre = [st["interface"]] if prefix else []
        out.append("\t".join(pre + ["(hidden)", st["public_key"], str(st["listen_port"]), "off"]))
        for p in st["peers"]:
            out.append("\t".join(pre + [
                p["public_key"], "(hidden)" if p["preshared_key"] else "(none)", p["endpoint"] or "(none)",
                ",".join(p["allowed_ips"]) or "(none)", str(p["latest_handshake"]), str(p["transfer_rx"]),
                str(p["transfer_tx"]), str(p["persistent_keepalive"] or "off")]))
    return out


_PEER_FIELDS = ("public_key", "endpoint", "allowed_ips", "latest_handshake", "transfer_rx", "transfer_tx",
                "persistent_keepalive")


def json_doc(statuses: list[dict]) -> dict:
    """{"interfaces": [...]} for --json: the fields named here and no
    others (a key the status may gain later is not passed on unseen), no
    private or preshared key. latest_handshake in unix seconds (0 =
    never), persistent_keepalive in seconds (0 = off)."""
    return {"interfaces": [
        {"name": st["interface"], "public_key": st["public_key"], "listen_port": st["listen_port"],
         "peers": [{f: p[f] for f in _PEER_FIELDS} for p in st["peers"]]}
        for st in statuses]}
