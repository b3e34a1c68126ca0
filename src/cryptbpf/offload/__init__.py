"""crypto_offload's userspace: the wire protocol (`protocol`), the control
plane over the pinned maps (`control`), the daemon that answers what XDP
passes up (`daemon`) and the peer: one-shot requests and a load generator
(`client`). The XDP side is bpf/crypto_offload.bpf.c; the formats are
defined once, in bpf/include/crypto_offload.h."""
