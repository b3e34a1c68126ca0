"""cryptbpf: cryptography in the kernel's packet path, as BPF programs."""

__version__ = "0.1.0"
