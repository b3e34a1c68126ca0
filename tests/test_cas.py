"""cryptbpf.programs.content_verifier.client without the kernel: chunking, the manifest tree, reassembly
in any order, the receiver's own checks and its memory bound."""

from __future__ import annotations

import hashlib
import os
import random

import pytest

from cryptbpf.programs.content_verifier import client as cas
from cryptbpf.errors import CryptbpfError

CHUNK = cas.chunk_size_for_mtu(1500)
PER = cas.fanout(CHUNK)


def receive_all(enc: cas.Encoded, order, root=None) -> cas.Tree:
    tree = cas.Tree(root if root is not None else enc.root)
    for cid in order:
        c = cas.parse_datagram(enc.chunks[cid].datagram())
        tree.add(c.id, c.content)
    return tree


@pytest.mark.parametrize("n", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, CHUNK * PER, CHUNK * PER + 1,
                               CHUNK * PER * PER + 5])
def test_round_trip_in_any_order(n):
    data = os.urandom(n)
    enc = cas.encode(data, CHUNK)
    order = list(enc.order)
    random.Random(n).shuffle(order)
    tree = receive_all(enc, order)
    assert tree.complete and tree.assemble() == data
    assert all(len(enc.chunks[i].datagram()) <= 1500 - 48 for i in enc.order)
    assert sum(1 for c in enc.chunks.values() if c.type == cas.DATA) == -(-n // CHUNK)


def test_ids_are_sha256_and_the_root_names_the_file():
    data = os.urandom(CHUNK * 2 + 10)
    enc = cas.encode(data, CHUNK)
    for cid, c in enc.chunks.items():
        assert cid == hashlib.sha256(c.content).digest()
    root = cas.Manifest.parse(enc.chunks[enc.root].content)
    assert root.size == len(data) and root.level == 0
    assert root.ids == [hashlib.sha256(data[i:i + CHUNK]).digest() for i in range(0, len(data), CHUNK)]
    assert enc.chunks[enc.root].flags == cas.F_ROOT
    assert cas.encode(data, CHUNK).root == enc.root   # deterministic
    assert cas.encode(data[:-1] + b"x", CHUNK).root != enc.root


def test_repeated_chunks_are_sent_once():
    block = os.urandom(CHUNK)
    data = block * 10 + b"tail"
    enc = cas.encode(data, CHUNK)
    assert len(enc.order) == 3   # root, one distinct block, the tail
    assert receive_all(enc, enc.order).assemble() == data


def test_missing_chunks_are_reported():
    enc = cas.encode(os.urandom(CHUNK * 5), CHUNK)
    lost = enc.order[3]
    tree = receive_all(enc, [i for i in enc.order if i != lost])
    assert not tree.complete and tree.missing() == [lost]
    with pytest.raises(CryptbpfError, match="1 chunk"):
        tree.assemble()


@pytest.mark.parametrize("mutate,why", [
    (lambda d: d[:10], "truncated header"),
    (lambda d: d[:39], "truncated header"),
    (lambda d: b"\x00" + d[1:], "bad header"),
    (lambda d: d[:2] + b"\x02" + d[3:], "bad header"),
    (lambda d: d[:-1], "bad length"),
    (lambda d: d + b"x", "bad length"),
    (lambda d: d[:-1] + bytes([d[-1] ^ 1]), "does not hash"),
])
def test_receiver_rejects_what_xdp_drops(mutate, why):
    d = cas.Chunk.of(cas.DATA, os.urandom(300)).datagram()
    with pytest.raises(ValueError, match=why):
        cas.parse_datagram(mutate(d))


def test_a_forged_manifest_is_refused():
    bad = cas.Chunk.of(cas.MANIFEST_T, cas.MANIFEST.pack(size=5, count=2, level=0) + bytes(32))
    tree = cas.Tree()
    tree.add(bad.id, bad.content)
    with pytest.raises(CryptbpfError, match="malformed"):
        tree.set_root(bad.id)


def test_a_manifest_whose_size_lies_is_refused():
    data = os.urandom(100)
    chunk = cas.Chunk.of(cas.DATA, data)
    root = cas.Chunk.of(cas.MANIFEST_T, cas.Manifest(101, 0, [chunk.id]).content())
    tree = cas.Tree(root.id)
    tree.add(root.id, root.content)
    tree.add(chunk.id, chunk.content)
    with pytest.raises(CryptbpfError, match="says 101 bytes"):
        tree.assemble()


def test_foreign_valid_chunks_cannot_grow_memory():
    enc = cas.encode(os.urandom(CHUNK * 3), CHUNK)
    tree = cas.Tree(enc.root, max_early=10)
    junk = [cas.Chunk.of(cas.DATA, os.urandom(50)) for _ in range(50)]
    results = [tree.add(j.id, j.content) for j in junk]
    assert results.count("new") == 10 and results.count("unwanted") == 40
    for cid in enc.order:   # the real file still gets through
        assert tree.add(cid, enc.chunks[cid].content) == "new"
    assert tree.complete and len(tree.store) == 10 + len(enc.order)


def test_wire_structs_come_from_the_header():
    assert cas.HDR.size == 40 and cas.MANIFEST.size == 16 and cas.WANT.size == 8
    d = cas.Chunk.of(cas.DATA, b"abc").datagram()
    assert d[:8] == bytes.fromhex("ca5c01010000 0003".replace(" ", ""))
    assert d[8:40] == hashlib.sha256(b"abc").digest()


def test_mtu_limits():
    assert CHUNK == 1500 - 48 - 40
    with pytest.raises(CryptbpfError, match="too small"):
        cas.chunk_size_for_mtu(150)
