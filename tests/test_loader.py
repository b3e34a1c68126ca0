"""The loader against a fixture object: globals, maps, test runs, ring
buffers, verifier errors, pinning, XDP/TC attach."""

from __future__ import annotations

import errno
import os

import pytest

from cryptbpf.bpf import attach
from cryptbpf.bpf._ffi import lib
from cryptbpf.errors import BpfError, VerifierError
from cryptbpf.bpf.maps import Map
from cryptbpf.netns import inside
from cryptbpf.bpf.object import BpfObject
from cryptbpf.bpf.ringbuf import RingBuffer

from conftest import TEST_OBJ_DIR, require_root

FIXTURE = str(TEST_OBJ_DIR / "loader_test.bpf.o")
ETH = b"\x02" * 12 + b"\x08\x00"
XDP_DROP, XDP_PASS = 1, 2


def test_open_missing_object_is_a_clear_error():
    with pytest.raises(BpfError) as e:
        BpfObject.open("/nonexistent/x.bpf.o")
    assert e.value.errno == errno.ENOENT
    assert "not found" in str(e.value)


def test_globals_before_load_read_and_write():
    with BpfObject.open(FIXTURE) as obj:
        assert set(obj.globals()) >= {"knob", "data_var", "hits"}
        assert obj.get_global_int("knob") == 7
        obj.set_global("knob", 9)
        assert obj.get_global_int("knob") == 9
        assert obj.get_global_int("data_var") == 0x1234
        with pytest.raises(KeyError):
            obj.get_global("nope")


def test_rodata_is_read_only_after_load(load_object):
    obj = load_object(FIXTURE, knob=3)
    assert obj.get_global_int("knob") == 3
    with pytest.raises(BpfError, match="read-only after load"):
        obj.set_global("knob", 4)


def test_bss_is_live_after_load(load_object):
    obj = load_object(FIXTURE)
    assert obj.get_global_int("hits") == 0
    obj.program("xdp_echo").test_run(data=ETH + b"x" * 50, repeat=5)
    assert obj.get_global_int("hits") == 5
    obj.set_global("hits", 100)  # userspace writes are seen by the kernel
    obj.program("xdp_echo").test_run(data=ETH + b"x" * 50)
    assert obj.get_global_int("hits") == 101


def test_hash_map_crud_and_iteration(load_object):
    m = load_object(FIXTURE).map("table")
    assert m.lookup(1) is None
    for k in range(10):
        m.update(k, k * k)
    assert int.from_bytes(m.lookup(7), "little") == 49
    assert sorted(int.from_bytes(k, "little") for k in m.keys()) == list(range(10))
    assert m.delete(3) is True and m.delete(3) is False
    assert len(dict(m.items())) == 9
    with pytest.raises(ValueError, match="must be 4 bytes"):
        m.update(b"\x00", 1)


def test_percpu_values_one_per_cpu(load_object):
    obj = load_object(FIXTURE)
    obj.program("xdp_echo").test_run(data=ETH + b"x" * 20, repeat=10)
    m = obj.map("percpu")
    vals = m.lookup_percpu(0)
    assert len(vals) == m.ncpus == lib.libbpf_num_possible_cpus() >= 1
    assert m.sum_percpu_u64(0) == [10]
    with pytest.raises(TypeError):
        m.lookup(0)


def test_xdp_test_run_verdict_and_data(load_object):
    prog = load_object(FIXTURE).program("xdp_echo")
    assert prog.test_run(data=ETH + b"payload").retval == XDP_PASS
    assert prog.test_run(data=b"\xdd" + ETH[1:]).retval == XDP_DROP
    res = prog.test_run(data=ETH + b"abc", repeat=1000)
    assert res.data == ETH + b"abc" and res.duration_ns > 0


def test_tc_test_run_modifies_packet(load_object):
    prog = load_object(FIXTURE, knob=5).program("tc_mark")
    res = prog.test_run(data=ETH + b"\x00" * 40)
    assert res.retval == 5
    assert res.data[14] == 0xAB and res.data[15:] == b"\x00" * 39


def test_syscall_program_ctx_round_trip(load_object):
    prog = load_object(FIXTURE).program("syscall_double")
    res = prog.test_run(ctx=(21).to_bytes(4, "little") + bytes(4))
    assert int.from_bytes(res.ctx[4:8], "little") == 42 + 0x1234


def test_test_run_argument_rules(load_object):
    obj = load_object(FIXTURE)
    with pytest.raises(ValueError, match="SYSCALL programs take no packet data"):
        obj.program("syscall_double").test_run(data=ETH, ctx=bytes(8))
    with pytest.raises(ValueError, match="cannot be repeated"):
        obj.program("syscall_double").test_run(ctx=bytes(8), repeat=3)
    with pytest.raises(ValueError, match="at least 14 bytes"):
        obj.program("xdp_echo").test_run(data=b"\x00" * 5)
    with pytest.raises(ValueError, match="limited to"):
        obj.program("tc_mark").test_run(data=ETH + bytes(5000))


def test_ring_buffer_delivers_records(load_object):
    obj = load_object(FIXTURE)
    got = []
    with RingBuffer(obj.map("events"), lambda rec: got.append(int.from_bytes(rec, "little"))) as rb:
        obj.program("xdp_echo").test_run(data=b"\x41" + ETH[1:] + bytes(30))
        obj.program("xdp_echo").test_run(data=b"\x42" + ETH[1:] + bytes(50))
        assert rb.poll(1000) == 2
    assert got == [(44 << 8) | 0x41, (64 << 8) | 0x42]


def test_ring_buffer_callback_errors_propagate(load_object):
    obj = load_object(FIXTURE)

    def boom(rec):
        raise RuntimeError("callback failed")
    with RingBuffer(obj.map("events"), boom) as rb:
        obj.program("xdp_echo").test_run(data=ETH + bytes(10))
        with pytest.raises(RuntimeError, match="callback failed"):
            rb.poll(1000)


def test_verifier_error_carries_the_log(root):
    with BpfObject.open(str(TEST_OBJ_DIR / "verifier_reject.bpf.o")) as obj:
        with pytest.raises(VerifierError) as e:
            obj.load()
    err = e.value
    assert err.errno == errno.EACCES
    assert "invalid" in err.log or "min value is negative" in err.log or "unbounded" in err.log
    assert "verifier log tail" in str(err)
    assert len(str(err).splitlines()) <= VerifierError.TAIL_LINES + 2 < len(err.log.splitlines())


def test_verifier_error_keeps_the_end_of_a_long_log(root):
    """The verifier hands libbpf the whole log as one message; its last
    line (the reason) must survive the print callback's formatting."""
    with BpfObject.open(str(TEST_OBJ_DIR / "verifier_long_log.bpf.o")) as obj:
        with pytest.raises(VerifierError) as e:
            obj.load()
    log = e.value.log
    assert len(log) > 8192
    assert "processed" in log.splitlines()[-1] or "processed" in log[-400:]
    assert "unbounded" in str(e.value) or "invalid" in str(e.value) or "min value" in str(e.value)


def test_pinned_map_reopens(load_object, tmp_path):
    obj = load_object(FIXTURE)
    obj.map("table").update(5, 55)
    # beside this run's pin root (bpffs mounted by the same code `load` uses)
    from cryptbpf.bpf import pins
    path = f"{pins.pin_root(mount=True)}-pin-table"
    from cryptbpf.bpf._ffi import lib
    assert lib.bpf_obj_pin(obj.map("table").fd, path.encode()) == 0
    try:
        with Map.from_pin(path) as m:
            assert m.name == "table" and m.key_size == 4 and m.value_size == 8
            assert int.from_bytes(m.lookup(5), "little") == 55
    finally:
        os.unlink(path)


def test_xdp_and_tc_attach_detach_on_veth(load_object, veth_pair):
    obj = load_object(FIXTURE)
    xdp, tc = obj.program("xdp_echo"), obj.program("tc_mark")
    with inside(veth_pair.ns_a):
        idx = attach.ifindex(veth_pair.dev_a)
        x = attach.xdp_attach(xdp.fd, xdp.id, idx)
        t = attach.tc_attach(tc.fd, idx, "ingress")
        assert attach.xdp_attached_id(idx) == xdp.id
        assert t.created_clsact and attach.tc_has_filters(idx)
        attach.xdp_detach(x)
        attach.tc_detach(t)
        attach.tc_remove_clsact(idx)
        assert attach.xdp_attached_id(idx) == 0
        assert not attach.tc_has_filters(idx)


def test_unknown_device_is_a_clear_error():
    with pytest.raises(BpfError, match="no such network interface"):
        attach.ifindex("nope-does-not-exist0")
