"""wireguard: WireGuard-compatible interfaces. The transport data plane in
BPF (bpf/wireguard.bpf.c: bpf_dataplane, netdev, wire, bench) behind the
daemon/data-plane boundary (dataplane); the handshake daemon in userspace
(noise, cookie, ratelimiter, timers, peer, device, config, daemon, show)
and its commands (cli: `cryptbpf wg ...`)."""

from .spec import SPEC

__all__ = ["SPEC"]
