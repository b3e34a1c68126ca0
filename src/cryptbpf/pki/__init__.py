"""Userspace side of pki_validator: exact DER pieces of certificates and
CRLs (der), the administrator's operations on a loaded instance (admin), the
client of the authentication exchange (peer) and a demo CA (ca)."""
