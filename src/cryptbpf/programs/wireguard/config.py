"""wg-quick configuration files (wg-quick(8), wg(8) CONFIGURATION FILE
FORMAT): one [Interface], any number of [Peer]s, `Key = value` lines,
`#` comments, keys case-insensitive, list values comma-separated and
repeatable. Every error is one line naming the file line.

Supported: [Interface] PrivateKey, ListenPort, Address, MTU; [Peer]
PublicKey, PresharedKey, AllowedIPs, Endpoint (IPv4:port, [IPv6]:port,
hostname:port, resolved here as `wg setconf` does), PersistentKeepalive.
wg-quick's other keys (DNS, Table, PostUp, ...) are refused by name rather
than ignored: the daemon would not do what they ask.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import CryptbpfError
from ...keys import refuse_if_readable_by_others
from .noise import key_from_base64

DEFAULT_MTU = 1420
NAME_RE = re.compile(r"^[a-zA-Z0-9_=+.-]{1,15}$")
UNSUPPORTED = {"dns", "table", "preup", "postup", "predown", "postdown", "saveconfig", "fwmark"}


@dataclass
class PeerConfig:
    public_key: bytes
    preshared_key: bytes | None = None
    allowed_ips: list = field(default_factory=list)
    endpoint: tuple[str, int] | None = None
    persistent_keepalive: int = 0


@dataclass
class InterfaceConfig:
    name: str
    private_key: bytes
    listen_port: int | None = None
    addresses: list = field(default_factory=list)     # ipaddress.ip_interface
    mtu: int = DEFAULT_MTU
    peers: list[PeerConfig] = field(default_factory=list)


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise CryptbpfError(f"interface name {name!r} is not 1-15 characters of a-z A-Z 0-9 _=+.-")
    return name


def _items(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _port(value: str) -> int:
    if not value.isdigit() or not 0 <= int(value) <= 65535:
        raise ValueError(f"{value!r} is not a port (0-65535)")
    return int(value)


def parse_endpoint(value: str) -> tuple[str, int]:
    """host:port or [IPv6]:port -> (address, port), names resolved."""
    m = re.match(r"^\[([^\]]+)\]:(\d+)$", value) or re.match(r"^([^:\[\]]+):(\d+)$", value)
    if not m:
        raise ValueError(f"{value!r} is not HOST:PORT or [IPv6]:PORT")
    host, port = m.group(1), _port(m.group(2))
    if port == 0:
        raise ValueError(f"{value!r}: port 0")
    try:
        return str(ipaddress.ip_address(host)), port
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as e:
        raise ValueError(f"cannot resolve {host!r} ({e.strerror})") from None
    infos.sort(key=lambda i: i[0] != socket.AF_INET)     # IPv4 first, as wg does
    return infos[0][4][0], port


def _interface_key(cfg: dict, key: str, value: str) -> None:
    if key == "privatekey":
        cfg["private_key"] = key_from_base64(value)
    elif key == "listenport":
        cfg["listen_port"] = _port(value)
    elif key == "address":
        cfg.setdefault("addresses", []).extend(ipaddress.ip_interface(a) for a in _items(value))
    elif key == "mtu":
        if not value.isdigit() or not 576 <= int(value) <= 65535:
            raise ValueError(f"MTU {value!r} is not 576-65535")
        cfg["mtu"] = int(value)
    else:
        raise KeyError(key)


def _peer_key(peer: dict, key: str, value: str) -> None:
    if key == "publickey":
        peer["public_key"] = key_from_base64(value)
    elif key == "presharedkey":
        peer["preshared_key"] = key_from_base64(value)
    elif key == "allowedips":
        peer.setdefault("allowed_ips", []).extend(ipaddress.ip_network(a, strict=False)
                                                  for a in _items(value))
    elif key == "endpoint":
        peer["endpoint"] = parse_endpoint(value)
    elif key == "persistentkeepalive":
        if value.lower() == "off":
            value = "0"
        if not value.isdigit() or int(value) > 65535:
            raise ValueError(f"{value!r} is not off or 1-65535 seconds")
        peer["persistent_keepalive"] = int(value)
    else:
        raise KeyError(key)


def parse(text: str, name: str) -> InterfaceConfig:
    """The configuration of interface `name` from wg-quick text."""
    check_name(name)
    iface: dict | None = None
    peers: list[tuple[int, dict]] = []
    section = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{name}: line {lineno}"
        if line.startswith("["):
            section = line.lower()
            if section == "[interface]":
                if iface is not None:
                    raise CryptbpfError(f"{where}: a second [Interface]")
                iface = {}
            elif section == "[peer]":
                peers.append((lineno, {}))
            else:
                raise CryptbpfError(f"{where}: unknown section {line}")
            continue
        key, eq, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not key:
            raise CryptbpfError(f"{where}: expected Key = value")
        if section is None:
            raise CryptbpfError(f"{where}: {key} outside a section")
        if key.lower() in UNSUPPORTED:
            raise CryptbpfError(f"{where}: {key} is not supported by cryptbpf wg")
        try:
            if section == "[interface]":
                _interface_key(iface, key.lower(), value)
            else:
                _peer_key(peers[-1][1], key.lower(), value)
        except KeyError:
            raise CryptbpfError(f"{where}: unknown key {key} in {section[1:-1].title()}") from None
        except (ValueError, CryptbpfError) as e:
            raise CryptbpfError(f"{where}: {key}: {e}") from None
    if iface is None:
        raise CryptbpfError(f"{name}: no [Interface] section")
    if "private_key" not in iface:
        raise CryptbpfError(f"{name}: [Interface] has no PrivateKey")
    out = InterfaceConfig(name=name, **iface)
    seen = set()
    for lineno, p in peers:
        if "public_key" not in p:
            raise CryptbpfError(f"{name}: line {lineno}: [Peer] has no PublicKey")
        if p["public_key"] in seen:
            raise CryptbpfError(f"{name}: line {lineno}: a second [Peer] with the same PublicKey")
        seen.add(p["public_key"])
        out.peers.append(PeerConfig(**p))
    return out


def load(path: str | os.PathLike) -> InterfaceConfig:
    """A configuration file (it holds a private key: mode 0600 or
    stricter, as key files); the interface is named after the file."""
    p = Path(path)
    try:
        st = p.stat()
        text = p.read_text()
    except OSError as e:
        raise CryptbpfError(f"cannot read {p}: {e.strerror}") from None
    refuse_if_readable_by_others(p, st, "config file (it holds a private key)")
    return parse(text, p.name.removesuffix(".conf"))
