"""The libbpf binding and the loader, program-independent: the cffi build
and binding (`_build_libbpf`, `_ffi`, the compiled `_libbpf`), objects and
their programs and maps (`object`, `program`, `maps`, `ringbuf`), hooks
(`attach`), pins and bpffs (`pins`, `bpffs`), BTF and shared headers
(`btf`, `headers`, `elf_features`) and the kernel's feature probes
(`kernel`).

Nothing here knows about a particular program, the CLI or the lifecycle:
tests/test_architecture.py checks that it imports none of them."""
