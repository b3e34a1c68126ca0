"""wireguard: a WireGuard-compatible data plane in BPF (transport data
messages sealed and opened in TC, cryptokey routing, replay window); the
handshake daemon drives it through dataplane.DataPlane.

Everything this program has in userspace; the modules are named as in
every program package (see cryptbpf.programs), plus dataplane (the
daemon/data-plane boundary) and netdev (the veth pair)."""
