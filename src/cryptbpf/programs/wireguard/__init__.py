"""wireguard: WireGuard-compatible interfaces; the transport data plane in
BPF (bpf/wireguard.bpf.c: bpf_dataplane, netdev, wire, bench) behind the
daemon/data-plane boundary (dataplane). The handshake daemon's modules and
SPEC come with the wg-handshake work."""
