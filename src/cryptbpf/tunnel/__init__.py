"""encrypted_tunnel's userspace: the wire format and a pure-Python peer
(`wire`), key installation and rekeying through the maps (`control`), and
the device settings the tunnel needs while loaded (`device`)."""
