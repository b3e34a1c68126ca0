# cryptbpf build: BPF objects, the Python package, tests, benchmarks, demo.
#   make            compile every bpf/*.bpf.c into build/bpf/*.bpf.o
#   make vmlinux    regenerate vmlinux.h from the running kernel's BTF
#   make test       install what is missing, build, run the test suite
#   make demo       install what is missing, build, run the demo
#   make bench      run the benchmarks, write build/bench.json + bench.md
#   make fuzz SECONDS=N [PROGRAMS="zkp_filter ..."]
#                   differential fuzzing, N seconds per program (tests/fuzz/)
#   make vm-test KERNEL=/boot/vmlinuz-6.1.0-NN-amd64 (or KERNEL=6.1, 6.12)
#                   the test suite in a virtme-ng guest on that kernel
#   make compat     host + 6.1 and 6.12 guest runs -> docs/kernel_compat.md, README
#   V=1             show full commands

CLANG    ?= clang-19
BPFTOOL  ?= bpftool
PYTHON   ?= .venv/bin/python
BUILD    := build/bpf
ARCH     := $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')

BPF_SRCS := $(wildcard bpf/*.bpf.c)
BPF_OBJS := $(patsubst bpf/%.bpf.c,$(BUILD)/%.bpf.o,$(BPF_SRCS))
# test fixtures (tests/bpf/*.bpf.c), like the kernel selftests' progs/
TEST_BUILD := build/tests
TEST_SRCS := $(wildcard tests/bpf/*.bpf.c)
TEST_OBJS := $(patsubst tests/bpf/%.bpf.c,$(TEST_BUILD)/%.bpf.o,$(TEST_SRCS))

# -mcpu=v3 (32-bit ALU ops and jumps, Linux 5.1+): ~15% faster pure-BPF ChaCha20.
BPF_CFLAGS := -target bpf -mcpu=v3 -O2 -g -Wall -Werror -D__TARGET_ARCH_$(ARCH) \
	      -I. -Ibpf/include -MMD -MP

ifeq ($(V),1)
Q :=
msg :=
else
Q := @
msg = @printf '  %-8s %s\n' "$(1)" "$(2)";
endif

.DELETE_ON_ERROR:
.PHONY: all bpf vmlinux root setup test demo bench fuzz clean
.PHONY: vm-test compat

all: bpf

bpf: $(BPF_OBJS) $(TEST_OBJS)

$(BUILD)/%.bpf.o: bpf/%.bpf.c | $(BUILD)
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -c $< -o $@

# verifier_reject must compile (it is the verifier, not clang, that refuses it)
$(TEST_BUILD)/%.bpf.o: tests/bpf/%.bpf.c | $(TEST_BUILD)
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(BUILD) $(TEST_BUILD):
	$(Q)mkdir -p $@

vmlinux:
	$(call msg,GEN,vmlinux.h)
	$(Q)$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > vmlinux.h.tmp
	$(Q)mv vmlinux.h.tmp vmlinux.h

# test, demo, bench and the installs need root (BPF, namespaces, apt): say
# so once, up front, whether or not the machine has sudo.
root:
	@[ "$$(id -u)" -eq 0 ] || { echo "make $(or $(MAKECMDGOALS),all): needs root (BPF programs, network namespaces, apt): run it as root, or with sudo" >&2; exit 1; }

# Installs the toolchain (apt) and the package into .venv (pip); idempotent.
setup: root
	$(Q)./scripts/setup

test: setup bpf
	$(Q)$(PYTHON) -m pytest $(PYTEST_ARGS)

demo: setup bpf
	$(Q).venv/bin/cryptbpf demo

bench: setup bpf
	$(Q).venv/bin/cryptbpf bench --out build/bench

# Differential fuzzing: every disagreement is printed with its frame.
SECONDS ?= 10
fuzz: setup bpf
	$(Q)$(PYTHON) tests/fuzz/run.py --seconds $(SECONDS) $(PROGRAMS)

# The suite inside a virtme-ng guest booted with KERNEL (scripts/vm-test
# installs qemu and virtme-ng; TCG when KVM does not work here).
KERNEL ?= 6.1
# make compat: the host, then a guest per kernel, then the tables
COMPAT_KERNELS ?= 6.1 6.12
vm-test: setup bpf
	$(Q)./scripts/vm-test $(KERNEL) $(PYTEST_ARGS)

# Compatibility table: results of the host run and the guest run.
compat: setup bpf
	$(Q)$(PYTHON) -m pytest -q -p no:cacheprovider --results-json=build/results/host.json $(PYTEST_ARGS) || true
	$(Q)for k in $(COMPAT_KERNELS); do ./scripts/vm-test $$k $(PYTEST_ARGS) || true; done
	$(Q)$(PYTHON) scripts/compat-table --update docs/kernel_compat.md build/vm/*/summary.json build/results/host.json
	$(Q)$(PYTHON) scripts/compat-table --brief --update README.md build/vm/*/summary.json build/results/host.json
	@echo "  GEN      docs/kernel_compat.md README.md"

clean:
	rm -rf build

-include $(BPF_OBJS:.o=.d) $(TEST_OBJS:.o=.d)
