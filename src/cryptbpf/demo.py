"""`cryptbpf demo`: aes-roundtrip between two network namespaces.

Step 1 loads the program on host A only: A's TC egress encrypts, so what B's
socket receives is exactly what crossed the wire, and it must equal
pycryptodome's AES-256-CBC of the message. Step 2 loads it on host B too:
B's TC ingress decrypts, and B's socket must receive the original bytes.
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

from Crypto.Cipher import AES
from Crypto.Util.Padding import pad

from . import lifecycle, programs
from .errors import CryptbpfError
from .keys import random_key, write_key_file
from .netns import VethPair, inside

PORT = 4242
MESSAGE = b"attack at dawn -- sent in clear by the app, encrypted by BPF on the wire"


def exchange(pair: VethPair, payload: bytes, port: int = PORT) -> bytes:
    """Send one UDP datagram from A to B; return what B's socket receives."""
    with inside(pair.ns_b):
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.bind((pair.addr_b, port))
        rx.settimeout(3)
    with inside(pair.ns_a):
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with rx, tx:
        tx.sendto(payload, (pair.addr_b, port))
        try:
            return rx.recv(65535)
        except socket.timeout:
            raise CryptbpfError("no datagram arrived at B (dropped?)") from None


def run(echo) -> None:
    spec = programs.get("aes-roundtrip")
    lifecycle.require_privileges()
    lifecycle.check_runnable(spec)
    with tempfile.TemporaryDirectory() as tmp, VethPair("cbdemo") as pair:
        key_path = Path(tmp) / "demo.key"
        write_key_file(key_path, random_key(32))
        key = key_path.read_bytes()
        iv = os.urandom(16)
        expect = AES.new(key, AES.MODE_CBC, iv).encrypt(pad(MESSAGE, 16))
        echo(f"hosts: {pair.ns_a} {pair.addr_a} <-veth-> {pair.ns_b} {pair.addr_b}")
        echo(f"app on A sends {len(MESSAGE)} bytes to B:{PORT}: {MESSAGE[:40]!r}...")
        try:
            lifecycle.load(spec, pair.dev_a, key=key, netns=pair.ns_a)
            echo(f"\n1. loaded {spec.name} on A ({pair.dev_a}): TC egress encrypts "
                 "(key from the kernel CSPRNG, never printed)")
            wire = exchange(pair, iv + MESSAGE)[16:]
            echo(f"   B receives what crossed the wire: {len(wire)} bytes {wire[:24].hex()}...")
            echo(f"   equals pycryptodome AES-256-CBC(key, iv, PKCS#7): {wire == expect}")
            lifecycle.load(spec, pair.dev_b, netns=pair.ns_b)
            echo(f"\n2. loaded {spec.name} on B ({pair.dev_b}) too: TC ingress decrypts")
            got = exchange(pair, iv + MESSAGE)[16:]
            echo(f"   B's socket receives {len(got)} bytes: {got[:40]!r}...")
            echo(f"   byte-exact round trip: {got == MESSAGE}")
            for entry in lifecycle.status(programs.discover()):
                echo(f"\ncounters: {entry.get('stats')}")
            if wire != expect or got != MESSAGE:
                raise CryptbpfError("demo failed: ciphertext or round trip not byte-exact")
        finally:
            lifecycle.unload(spec.name)
            echo(f"unloaded {spec.name}: its TC filters, clsact qdiscs and pins are gone")
