"""Userspace crypto helpers more than one program (or kat) uses: the P-256
tables the pure-BPF ECDSA verifier takes (`p256`), P-256 key pair files
(`p256_keys`), and the hand-over of an AES key to a program's bpf_crypto
setup program (`aes_cbc`). Each program's own crypto lives in its package."""
