"""The handshake daemon's pieces without the kernel: noise.py against an
independent implementation of the paper's section 5.4 written here (plain
hashlib/hmac/cryptography/pycryptodome calls, message fields packed with
struct, nothing imported from noise.py but its public key helpers), mac1,
tampered and replayed initiations, cookie replies, the rate limiter,
wg-quick config parsing, the timers on a fake clock, and two Devices
shaking hands over loopback with recording data planes."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import socket
import struct
import time

import pytest
from Crypto.Cipher import ChaCha20_Poly1305
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from cryptbpf.errors import CryptbpfError
from cryptbpf.programs.wireguard import config, cookie, device, noise, ratelimiter, timers
from cryptbpf.programs.wireguard.dataplane import PeerState


# ---------------------------------------------------------------- the paper, independently

def h(*p):
    return hashlib.blake2s(b"".join(p)).digest()


def hm(k, d):
    return hmac.new(k, d, hashlib.blake2s).digest()


def kdf(k, d, n):
    t0, out, t = hm(k, d), [], b""
    for i in range(1, n + 1):
        t = hm(t0, t + bytes([i]))
        out.append(t)
    return out


def dh(priv, pub):
    return X25519PrivateKey.from_private_bytes(priv).exchange(X25519PublicKey.from_public_bytes(pub))


def pub(priv):
    return X25519PrivateKey.from_private_bytes(priv).public_key().public_bytes_raw()


def seal(k, p, a):
    return ChaCha20Poly1305(k).encrypt(bytes(12), p, a)


def unseal(k, c, a):
    return ChaCha20Poly1305(k).decrypt(bytes(12), c, a)


def mac(k, d):
    return hashlib.blake2s(d, key=k, digest_size=16).digest()


CK0 = h(b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s")
H0 = h(CK0, b"WireGuard v1 zx2c4 Jason@zx2c4.com")


def with_mac1(msg, responder_pub):
    return msg + mac(h(b"mac1----", responder_pub), msg) + bytes(16)


class Indep:
    """One side of a handshake, as the paper writes it."""

    def __init__(self, priv, peer_pub, psk=bytes(32)):
        self.s, self.S, self.peer, self.psk = priv, pub(priv), peer_pub, psk

    def initiation(self, idx, timestamp):
        self.e = X25519PrivateKey.generate().private_bytes_raw()
        E = pub(self.e)
        hh = h(h(H0, self.peer), E)
        ck = kdf(CK0, E, 1)[0]
        ck, k = kdf(ck, dh(self.e, self.peer), 2)
        st = seal(k, self.S, hh)
        hh = h(hh, st)
        ck, k = kdf(ck, dh(self.s, self.peer), 2)
        ts = seal(k, timestamp, hh)
        self.h, self.ck, self.idx = h(hh, ts), ck, idx
        return with_mac1(struct.pack("<II", 1, idx) + E + st + ts, self.peer)

    def consume_response(self, msg):
        t, sidx, ridx = struct.unpack_from("<III", msg)
        assert t == 2 and ridx == self.idx and len(msg) == 92
        Er, empty = msg[12:44], msg[44:60]
        assert msg[60:76] == mac(h(b"mac1----", self.S), msg[:60])
        hh = h(self.h, Er)
        ck = kdf(self.ck, Er, 1)[0]
        ck = kdf(ck, dh(self.e, Er), 1)[0]
        ck = kdf(ck, dh(self.s, Er), 1)[0]
        ck, tau, k = kdf(ck, self.psk, 3)
        hh = h(hh, tau)
        unseal(k, empty, hh)
        send, recv = kdf(ck, b"", 2)
        return sidx, send, recv

    def respond(self, msg, idx):
        t, sidx = struct.unpack_from("<II", msg)
        assert t == 1 and len(msg) == 148
        assert msg[116:132] == mac(h(b"mac1----", self.S), msg[:116])
        Ei, st, ts = msg[8:40], msg[40:88], msg[88:116]
        hh = h(h(H0, self.S), Ei)
        ck = kdf(CK0, Ei, 1)[0]
        ck, k = kdf(ck, dh(self.s, Ei), 2)
        assert unseal(k, st, hh) == self.peer
        hh = h(hh, st)
        ck, k = kdf(ck, dh(self.s, self.peer), 2)
        self.timestamp = unseal(k, ts, hh)
        hh = h(hh, ts)
        e = X25519PrivateKey.generate().private_bytes_raw()
        Er = pub(e)
        hh = h(hh, Er)
        ck = kdf(ck, Er, 1)[0]
        ck = kdf(ck, dh(e, Ei), 1)[0]
        ck = kdf(ck, dh(e, self.peer), 1)[0]
        ck, tau, k = kdf(ck, self.psk, 3)
        hh = h(hh, tau)
        empty = seal(k, b"", hh)
        recv, send = kdf(ck, b"", 2)
        return with_mac1(struct.pack("<III", 2, idx, sidx) + Er + empty, self.peer), send, recv


def ours(priv, peer_pub, psk=None):
    me = noise.StaticIdentity(priv)
    return me, noise.Handshake(me, peer_pub, psk), cookie.CookieGenerator(peer_pub, lambda: 0.0)


@pytest.mark.parametrize("psk", [None, b"\x42" * 32], ids=["no-psk", "psk"])
def test_our_initiation_their_response_same_transport_keys(psk):
    a, b = noise.generate_private_key(), noise.generate_private_key()
    _, hs, gen = ours(a, noise.public_key(b), psk)
    them = Indep(b, noise.public_key(a), psk or bytes(32))
    m1 = gen.add_macs(hs.create_initiation(0x1234))
    assert len(m1) == 148
    m2, their_send, their_recv = them.respond(m1, 0x5678)
    assert them.timestamp[:8] > b"\x40\x00\x00\x00"        # TAI64N: 2^62 + seconds
    hs.consume_response(m2)
    s = hs.begin_session()
    assert (s.initiator, s.local_index, s.remote_index) == (True, 0x1234, 0x5678)
    assert (s.send_key, s.recv_key) == (their_recv, their_send)
    assert hs.state == noise.HandshakeState.HandshakeZeroed


@pytest.mark.parametrize("psk", [None, b"\x17" * 32], ids=["no-psk", "psk"])
def test_their_initiation_our_response_same_transport_keys(psk):
    a, b = noise.generate_private_key(), noise.generate_private_key()
    me, hs, gen = ours(b, noise.public_key(a), psk)
    them = Indep(a, noise.public_key(b), psk or bytes(32))
    m1 = them.initiation(77, noise.tai64n())
    assert cookie.CookieChecker(me.public_key, lambda: 0.0).check_mac1(m1)
    ini = noise.open_initiation(me, m1)
    assert ini.remote_static == noise.public_key(a)
    noise.consume_initiation(hs, ini, m1, now=0.0, handshake_initiation_rate=0.02)
    m2 = gen.add_macs(hs.create_response(99))
    sidx, send, recv = them.consume_response(m2)
    s = hs.begin_session()
    assert (s.initiator, s.local_index, s.remote_index, sidx) == (False, 99, 77, 99)
    assert (s.send_key, s.recv_key) == (recv, send)


def test_mac1_is_checked():
    a, b = noise.generate_private_key(), noise.generate_private_key()
    them = Indep(a, noise.public_key(b))
    checker = cookie.CookieChecker(noise.public_key(b), lambda: 0.0)
    m1 = them.initiation(1, noise.tai64n())
    assert checker.check_mac1(m1)
    for i in (0, 50, 116, 131):
        bad = bytearray(m1)
        bad[i] ^= 1
        assert not checker.check_mac1(bytes(bad)), i
    # mac1 is keyed with the responder's public key: another's does not pass
    assert not cookie.CookieChecker(noise.public_key(a), lambda: 0.0).check_mac1(m1)


def test_tampered_replayed_and_flooding_initiations_are_refused():
    a, b = noise.generate_private_key(), noise.generate_private_key()
    me, hs, _ = ours(b, noise.public_key(a))
    them = Indep(a, noise.public_key(b))
    m1 = them.initiation(5, noise.tai64n(time.time()))
    for off in (10, 60, 100):           # ephemeral, static, timestamp
        bad = bytearray(m1)
        bad[off] ^= 0x80
        with pytest.raises(noise.HandshakeError):
            noise.consume_initiation(hs, noise.open_initiation(me, bytes(bad)), bytes(bad), 0.0, 0.02)
    noise.consume_initiation(hs, noise.open_initiation(me, m1), m1, 10.0, 0.02)
    with pytest.raises(noise.HandshakeError, match="replayed"):
        noise.consume_initiation(hs, noise.open_initiation(me, m1), m1, 20.0, 0.02)
    older = them.initiation(6, noise.tai64n(time.time() - 60))
    with pytest.raises(noise.HandshakeError, match="replayed"):
        noise.consume_initiation(hs, noise.open_initiation(me, older), older, 30.0, 0.02)
    newer = them.initiation(7, noise.tai64n(time.time() + 60))
    noise.consume_initiation(hs, noise.open_initiation(me, newer), newer, 30.0, 0.02)
    newest = them.initiation(8, noise.tai64n(time.time() + 120))
    with pytest.raises(noise.HandshakeError, match="flood"):
        noise.consume_initiation(hs, noise.open_initiation(me, newest), newest, 30.01, 0.02)
    noise.consume_initiation(hs, noise.open_initiation(me, newest), newest, 30.1, 0.02)


def test_cookie_reply_round_trip_checked_independently():
    a, b = noise.generate_private_key(), noise.generate_private_key()
    now = [100.0]
    checker = cookie.CookieChecker(noise.public_key(b), lambda: now[0])
    _, hs, gen = ours(a, noise.public_key(b))
    gen.clock = lambda: now[0]
    m1 = gen.add_macs(hs.create_initiation(3))
    src = ("192.0.2.7", 40000)
    assert m1[132:] == bytes(16) and not checker.check_mac2(m1, src)
    reply = checker.create_reply(m1, 3, src)
    assert len(reply) == 64 and struct.unpack_from("<II", reply) == (3, 3)
    # decrypted here with pycryptodome: XChaCha20-Poly1305, key HASH("cookie--" || responder),
    # AAD the mac1 of the message answered
    x = ChaCha20_Poly1305.new(key=h(b"cookie--", noise.public_key(b)), nonce=reply[8:32])
    x.update(m1[116:132])
    the_cookie = x.decrypt_and_verify(reply[32:48], reply[48:64])
    gen.consume_reply(reply)
    m1b = gen.add_macs(hs.create_initiation(4))
    assert m1b[132:] == mac(the_cookie, m1b[:132])
    assert checker.check_mac2(m1b, src) and checker.check_mac1(m1b)
    assert not checker.check_mac2(m1b, ("192.0.2.8", 40000))      # bound to the source
    assert not checker.check_mac2(m1b, ("192.0.2.7", 40001))
    with pytest.raises(noise.HandshakeError):       # a second reply to the same message
        gen.consume_reply(reply)
    now[0] += timers.COOKIE_REFRESH_TIME + 1        # the cookie and the secret go stale
    assert gen.add_macs(hs.create_initiation(5))[132:] == bytes(16)


def test_rate_limiter_as_wireguard_go():
    rl = ratelimiter.Ratelimiter()
    t = 50.0
    assert [rl.allow("10.0.0.1", t) for _ in range(6)] == [True] * 5 + [False]
    assert rl.allow("10.0.0.2", t)                  # per source
    assert not rl.allow("10.0.0.1", t + 0.01)
    assert rl.allow("10.0.0.1", t + 0.06)           # 1/20 s refills one
    assert rl.allow("fd00::1", t)


# ---------------------------------------------------------------- config

K1, K2, K3 = (noise.key_to_base64(noise.generate_private_key()) for _ in range(3))


def test_config_parses_wg_quick_files():
    cfg = config.parse(f"""
# a comment
[Interface]
PrivateKey = {K1}
ListenPort = 51820
Address = 10.0.0.1/24, fd00::1/64
address = 10.1.0.1/32   # repeated, any case
MTU = 1380

[Peer]
PublicKey = {K2}
PresharedKey = {K3}
AllowedIPs = 10.0.0.2/32, fd00::/64
AllowedIPs = 192.168.0.0/16
Endpoint = 192.0.2.1:51820
PersistentKeepalive = 25

[Peer]
PublicKey = {K3}
AllowedIPs = 0.0.0.0/0
Endpoint = [2001:db8::1]:4500
PersistentKeepalive = off
[Peer]
PublicKey = {K1}
Endpoint = localhost:7
""", "wg0")
    assert cfg.name == "wg0" and cfg.listen_port == 51820 and cfg.mtu == 1380
    assert cfg.private_key == noise.key_from_base64(K1)
    assert [str(a) for a in cfg.addresses] == ["10.0.0.1/24", "fd00::1/64", "10.1.0.1/32"]
    p1, p2, p3 = cfg.peers
    assert p1.public_key == noise.key_from_base64(K2) and p1.preshared_key == noise.key_from_base64(K3)
    assert [str(n) for n in p1.allowed_ips] == ["10.0.0.2/32", "fd00::/64", "192.168.0.0/16"]
    assert p1.endpoint == ("192.0.2.1", 51820) and p1.persistent_keepalive == 25
    assert p2.endpoint == ("2001:db8::1", 4500) and p2.persistent_keepalive == 0
    assert p2.preshared_key is None and p3.endpoint in (("127.0.0.1", 7), ("::1", 7))
    assert config.parse(f"[Interface]\nPrivateKey={K1}\n", "x").mtu == 1420


@pytest.mark.parametrize("text,message", [
    ("[Interface]\nPrivateKey = {K1}\nListenPort = 70000\n", "line 3: ListenPort"),
    ("[Interface]\nPrivateKey = no!pe\n", "line 2: PrivateKey: a key must be base64"),
    ("[Interface]\nPrivateKey = {K1}\n[Peer]\nPublicKey = {K2}\nEndpoint = 1.2.3.4\n", "line 5: Endpoint"),
    ("[Interface]\nPrivateKey = {K1}\n[Peer]\nAllowedIPs = 10.0.0.0/8\n", "line 3: [Peer] has no PublicKey"),
    ("[Interface]\nPrivateKey = {K1}\n[Peer]\nPublicKey = {K2}\nAllowedIPs = 10.0.0.300/8\n",
     "line 5: AllowedIPs"),
    ("[Interface]\nPrivateKey = {K1}\nDNS = 1.1.1.1\n", "line 3: DNS is not supported"),
    ("[Interface]\nPrivateKey = {K1}\nFoo = 1\n", "line 3: unknown key Foo"),
    ("[Interface]\nPrivateKey = {K1}\n[Tunnel]\n", "line 3: unknown section"),
    ("[Interface]\nPrivateKey = {K1}\njust words\n", "line 3: expected Key = value"),
    ("PrivateKey = {K1}\n", "line 1: PrivateKey outside a section"),
    ("[Interface]\nListenPort = 1\n", "has no PrivateKey"),
    ("[Peer]\nPublicKey = {K2}\n", "no [Interface]"),
    ("[Interface]\nPrivateKey = {K1}\nMTU = 100\n", "line 3: MTU"),
    ("[Interface]\nPrivateKey = {K1}\n[Peer]\nPublicKey = {K2}\nPersistentKeepalive = often\n",
     "line 5: PersistentKeepalive"),
    ("[Interface]\nPrivateKey = {K1}\n[Peer]\nPublicKey = {K2}\n[Peer]\nPublicKey = {K2}\n",
     "line 5: a second [Peer] with the same PublicKey"),
])
def test_config_errors_are_one_line_naming_the_line(text, message):
    with pytest.raises(CryptbpfError) as e:
        config.parse(text.format(K1=K1, K2=K2), "wg0")
    msg = str(e.value)
    assert message in msg and "\n" not in msg and msg.startswith("wg0: ")
    assert K1 not in msg and K2 not in msg


def test_config_file_must_be_private(tmp_path):
    p = tmp_path / "wg7.conf"
    p.write_text(f"[Interface]\nPrivateKey = {K1}\n")
    p.chmod(0o644)
    with pytest.raises(CryptbpfError, match="chmod 600"):
        config.load(p)
    p.chmod(0o600)
    assert config.load(p).name == "wg7"
    with pytest.raises(CryptbpfError, match="interface name"):
        config.parse("", "a-name-much-too-long")


# ---------------------------------------------------------------- timers (fake clock)

def ps(**kw):
    base = dict(rx_bytes=0, tx_bytes=0, last_rx_ns=0, last_tx_ns=0, last_data_tx_ns=0,
                last_data_rx_ns=0, send_counter=0, current_index=0, endpoint=None)
    base.update({k: int(v * 1e9) if k.endswith("_ns") else v for k, v in kw.items()})
    return PeerState(**base)


def test_timers_retransmit_then_give_up():
    t = timers.Timers(jitter=lambda: 0.2)
    t.initiation_sent(0.0, retry=False)
    assert t.tick(5.0, ps()) == []
    assert t.tick(5.2, ps()) == [timers.RETRY_INITIATION]
    now, retries = 5.2, 0
    while True:
        acts = t.tick(now, ps())
        if timers.GIVE_UP in acts:
            break
        if timers.RETRY_INITIATION in acts:
            retries += 1
            t.initiation_sent(now, retry=True)
        now += 0.1
    assert timers.REKEY_ATTEMPT_TIME - 6 <= now <= timers.REKEY_ATTEMPT_TIME + 6
    assert retries == timers.MAX_TIMER_HANDSHAKES - 1 or retries == timers.MAX_TIMER_HANDSHAKES
    assert not t.handshaking and t.tick(now + 100, ps()) == []


def test_timers_a_response_stops_the_retransmissions():
    t = timers.Timers(jitter=lambda: 0.0)
    t.initiation_sent(0.0, retry=False)
    t.session_derived(1.0, 11, initiator=True)
    assert t.tick(30.0, ps(current_index=11)) == []
    assert not t.can_initiate(4.0) and t.can_initiate(5.0)


def test_timers_rekey_after_time_and_messages():
    t = timers.Timers()
    t.session_derived(0.0, 11, initiator=True)
    # stale keys, but nothing sent: no handshake
    assert t.tick(130.0, ps(current_index=11)) == []
    assert t.tick(131.0, ps(current_index=11, last_data_tx_ns=130.5, last_tx_ns=130.5,
                            last_rx_ns=130.6)) == [timers.SEND_INITIATION]
    # a responder's keypair is not rekeyed by age on the sending side...
    r = timers.Timers()
    r.session_derived(0.0, 12, initiator=False)
    assert r.tick(131.0, ps(current_index=12, last_data_tx_ns=130.5, last_tx_ns=130.5,
                            last_rx_ns=130.6)) == []
    # ...but by messages, like the initiator's
    assert r.tick(132.0, ps(current_index=12, last_data_tx_ns=131.5, last_tx_ns=131.5, last_rx_ns=131.6,
                            send_counter=timers.REKEY_AFTER_MESSAGES + 1)) == [timers.SEND_INITIATION]


def test_timers_initiator_rekeys_on_receive_before_reject_after_time():
    t = timers.Timers()
    t.session_derived(0.0, 11, initiator=True)
    late = timers.REJECT_AFTER_TIME - timers.KEEPALIVE_TIMEOUT - timers.REKEY_TIMEOUT + 1
    st = ps(current_index=11, last_data_rx_ns=late - 0.5, last_rx_ns=late - 0.5, last_tx_ns=late - 0.4)
    assert t.tick(late, st) == [timers.SEND_INITIATION]
    assert t.tick(late + 0.1, st) == []          # once


def test_timers_expire_keypairs_at_reject_after_time():
    t = timers.Timers()
    t.session_derived(0.0, 11, initiator=True)
    t.session_derived(100.0, 12, initiator=False)
    assert t.tick(179.9, ps(current_index=12)) == []
    assert t.tick(180.0, ps(current_index=12)) == [(timers.EXPIRE, 11)]
    assert t.tick(280.0, ps(current_index=12)) == [(timers.EXPIRE, 12)]
    assert t.keypairs == {}


def test_timers_passive_keepalive_and_new_handshake_when_unanswered():
    t = timers.Timers()
    t.session_derived(0.0, 11, initiator=False)
    got = ps(current_index=11, last_data_rx_ns=1.0, last_rx_ns=1.0)
    assert t.tick(10.9, got) == []
    assert t.tick(11.0, got) == [timers.SEND_KEEPALIVE]
    t.keepalive_sent(11.0)
    assert t.tick(12.0, got) == [] and t.tick(40.0, got) == []
    # we sent data at 50 and heard nothing: a new handshake after 15 s
    sent = ps(current_index=11, last_data_rx_ns=1.0, last_rx_ns=1.0, last_data_tx_ns=50.0, last_tx_ns=50.0)
    assert t.tick(64.9, sent) == []
    assert t.tick(65.0, sent) == [timers.SEND_INITIATION]
    assert t.tick(80.0, sent) == []


def test_timers_persistent_keepalive():
    t = timers.Timers(persistent_keepalive=25)
    t.session_derived(0.0, 11, initiator=True)
    assert t.tick(24.0, ps(current_index=11)) == []
    assert t.tick(25.0, ps(current_index=11)) == [timers.SEND_KEEPALIVE]
    t.keepalive_sent(25.0)
    assert t.tick(30.0, ps(current_index=11, last_tx_ns=25.0)) == []
    assert t.tick(50.0, ps(current_index=11, last_tx_ns=25.0)) == [timers.SEND_KEEPALIVE]


# ---------------------------------------------------------------- two Devices over loopback

class RecordingDataPlane:
    """DataPlane stand-in: records what the daemon asks."""

    def __init__(self):
        self.keypairs, self.peers, self.expired = {}, {}, []
        self.rfd, self.wfd = socket.socketpair()

    def set_peer(self, peer_id, public_key, endpoint, allowed_ips):
        self.peers[peer_id] = endpoint

    def remove_peer(self, peer_id):
        self.peers.pop(peer_id)

    def install_keypair(self, peer_id, local_index, remote_index, send_key, recv_key, initiator):
        self.keypairs[local_index] = (peer_id, remote_index, send_key, recv_key, initiator)

    def expire_keypair(self, local_index):
        self.expired.append(local_index)

    def peer_state(self, peer_id):
        cur = [i for i, k in self.keypairs.items() if k[0] == peer_id and k[4]]
        return ps(current_index=cur[-1] if cur else 0)

    def keepalive(self, peer_id):
        return None if not self.peer_state(peer_id).current_index else b"\x04" + bytes(31)

    def events(self):
        return []

    def fileno(self):
        return self.rfd.fileno()

    def close(self):
        self.rfd.close()
        self.wfd.close()


@contextlib.contextmanager
def _pair(psk=None):
    """Two Devices on loopback ports, peers of each other, with recording
    data planes: (a, b, a's data plane, b's); both closed afterwards."""
    port_a, port_b = _free_port(), _free_port()
    ka, kb = noise.generate_private_key(), noise.generate_private_key()
    B = noise.key_to_base64
    extra = f"PresharedKey = {B(psk)}\n" if psk else ""

    def conf(priv, port, peer, peer_port):
        return (f"[Interface]\nPrivateKey = {B(priv)}\nListenPort = {port}\n[Peer]\n"
                f"PublicKey = {B(noise.public_key(peer))}\n{extra}AllowedIPs = 10.0.0.0/24\n"
                f"Endpoint = 127.0.0.1:{peer_port}\n")
    dps = {}

    def make(name):
        return lambda cfg, port: dps.setdefault(name, RecordingDataPlane())
    a = device.Device(config.parse(conf(ka, port_a, kb, port_b), "a"), make("a"))
    try:
        b = device.Device(config.parse(conf(kb, port_b, ka, port_a), "b"), make("b"))
        try:
            yield a, b, dps["a"], dps["b"]
        finally:
            b.close()
    finally:
        a.close()


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("psk", [None, b"\x99" * 32], ids=["no-psk", "psk"])
def test_two_devices_shake_hands_over_loopback(psk):
    with _pair(psk) as (a, b, da, db):
        assert a.peers[1].send_initiation()
        for _ in range(5):
            b.step(0.2)
            a.step(0.2)
        ((ia, ka),) = da.keypairs.items()
        ((ib, kb),) = db.keypairs.items()
        assert ka[4] is True and kb[4] is False                 # a initiated, b responded
        assert ka[1] == ib and kb[1] == ia                      # each other's indices
        assert ka[2] == kb[3] and ka[3] == kb[2]                # same transport keys
        assert a.peers[1].last_handshake_unix > 0 and b.peers[1].last_handshake_unix > 0
        st = b.status()["peers"][0]
        assert st["endpoint"] == f"127.0.0.1:{a.listen_port}" and st["transfer_rx"] == 148
        assert st["transfer_tx"] == 92


def test_a_device_under_load_answers_with_a_cookie_then_accepts_mac2():
    with _pair() as (a, b, da, db):
        b.under_load_threshold = 0      # every message puts it under load
        a.peers[1].send_initiation()
        b.step(0.5)                     # no mac2: a cookie reply, no response
        assert db.keypairs == {}
        a.step(0.5)
        assert a.peers[1].cookies.cookie
        a.peers[1].send_initiation(retry=True)      # now with mac2
        b.step(0.5)
        a.step(0.5)
        assert len(db.keypairs) == 1 and len(da.keypairs) == 1
        assert b.counters["cookie_replies_sent"] == 1 and a.counters["cookie_replies_taken"] == 1


def test_a_device_ignores_garbage_and_bad_mac1():
    with _pair() as (a, b, da, db):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for msg in (b"", b"\x01", b"\x01" + bytes(147), b"\x02" + bytes(91), b"\x03" + bytes(63),
                    b"\x01\x01\x00\x00" + bytes(144)):
            s.sendto(msg, ("127.0.0.1", b.listen_port))
        s.close()
        b.step(0.3)
        assert db.keypairs == {} and b.status()["peers"][0]["transfer_rx"] == 0
        assert (b.counters["malformed"], b.counters["mac1_invalid"], b.counters["unknown_peer"]) == (3, 2, 1)


def test_a_device_on_a_fake_clock_retransmits_gives_up_and_expires():
    """The timers through Device.step: nobody answers the initiations (the
    peer's port is a plain socket), then a session expires."""
    now = [1000.0]
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.setblocking(False)
    B = noise.key_to_base64
    text = (f"[Interface]\nPrivateKey = {B(noise.generate_private_key())}\n[Peer]\n"
            f"PublicKey = {B(noise.public_key(noise.generate_private_key()))}\n"
            f"Endpoint = 127.0.0.1:{listener.getsockname()[1]}\n")
    dp = RecordingDataPlane()
    dev = device.Device(config.parse(text, "f"), lambda cfg, port: dp, clock=lambda: now[0])

    def initiations():
        n = 0
        while True:
            try:
                msg = listener.recv(2048)
            except BlockingIOError:
                return n
            assert len(msg) == 148 and msg[0] == 1
            n += 1
    try:
        peer = dev.peers[1]
        peer.timers.jitter = lambda: 0.1
        assert peer.send_initiation() and initiations() == 1
        assert not peer.send_initiation()           # within REKEY_TIMEOUT: not again
        seen, t0 = 1, now[0]
        for i in range(1, int((timers.REKEY_ATTEMPT_TIME + 10) * 10)):
            now[0] = t0 + i / 10
            dev.step(0)
            seen += initiations()
        # one every REKEY_TIMEOUT + jitter until REKEY_ATTEMPT_TIME, then none
        assert seen == int(timers.REKEY_ATTEMPT_TIME // (timers.REKEY_TIMEOUT + 0.1)) + 1
        assert not peer.timers.handshaking and dev._indices == {}
        # a session (as if a response had come) expires at REJECT_AFTER_TIME
        peer.timers.session_derived(now[0], 4242, initiator=True)
        dp.install_keypair(1, 4242, 1, bytes(32), bytes(32), True)
        now[0] += timers.REJECT_AFTER_TIME - 0.5
        dev.step(0)
        assert dp.expired == []
        now[0] += 0.5
        dev.step(0)
        assert dp.expired == [4242]
    finally:
        dev.close()
        listener.close()


# ---------------------------------------------------------------- key commands

def test_genkey_pubkey_genpsk_as_wg():
    from conftest import run_cli
    import base64
    import shutil
    import subprocess
    priv = run_cli("wg", "genkey", check=True).stdout.strip()
    raw = base64.b64decode(priv)
    assert len(raw) == 32 and raw[0] & 7 == 0 and raw[31] & 0xC0 == 0x40      # clamped
    pub_ = run_cli("wg", "pubkey", input=priv + "\n", check=True).stdout.strip()
    assert base64.b64decode(pub_) == pub(raw)
    if shutil.which("wg"):
        assert subprocess.run(["wg", "pubkey"], input=priv, capture_output=True, text=True).stdout.strip() == pub_
    assert len(base64.b64decode(run_cli("wg", "genpsk", check=True).stdout)) == 32
    bad = run_cli("wg", "pubkey", input="not a key\n")
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.startswith("cryptbpf: pubkey: stdin: ") and bad.stderr.count("\n") == 1


def test_roaming_flood_and_rate_limit_at_the_device():
    """Handled messages from chosen sources: the endpoint follows the last
    authenticated initiation; under load, with valid mac2, one source gets
    wireguard-go's burst of 5 then 20/s."""
    now = [500.0]
    with _pair() as (a, b, da, db):
        b.clock = b.checker.clock = lambda: now[0]
        b.peers[1].clock = lambda: now[0]
        hs_a, gen_a = a.peers[1].handshake, a.peers[1].cookies

        def initiation(ts):
            return gen_a.add_macs(hs_a.create_initiation(1 + int(ts), noise.tai64n(ts)))
        b.handle(initiation(1e9), ("127.0.0.5", 999))
        assert db.peers[1] == ("127.0.0.5", 999) and len(db.keypairs) == 1
        b.handle(initiation(1e9 + 1), ("127.0.0.6", 1000))      # within 20 ms: a flood, refused
        assert db.peers[1] == ("127.0.0.5", 999) and b.counters["refused"] == 1
        now[0] += 1
        b.handle(initiation(1e9 + 2), ("127.0.0.6", 1000))
        assert db.peers[1] == ("127.0.0.6", 1000) and len(db.keypairs) == 2
        # under load: a cookie for 127.0.0.6, then back-to-back initiations with mac2
        b.under_load_threshold = 0
        src = ("127.0.0.6", 1000)
        m = initiation(1e9 + 3)
        reply = b.checker.create_reply(m, hs_a.local_index, src)
        gen_a.consume_reply(reply)
        for i in range(8):
            now[0] += 0.001
            b.handle(initiation(1e9 + 10 + i), src)
        assert b.counters["ratelimited"] == 3                    # 8 = a burst of 5 + 3 refused
        now[0] += 1.0
        b.handle(initiation(1e9 + 30), src)
        assert b.counters["ratelimited"] == 3


def test_persistent_keepalive_starts_a_handshake_at_up():
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(2)
    B = noise.key_to_base64
    text = (f"[Interface]\nPrivateKey = {B(noise.generate_private_key())}\n[Peer]\n"
            f"PublicKey = {B(noise.public_key(noise.generate_private_key()))}\n"
            f"Endpoint = 127.0.0.1:{listener.getsockname()[1]}\nPersistentKeepalive = 25\n")
    dev = device.Device(config.parse(text, "k"), lambda cfg, port: RecordingDataPlane())
    try:
        msg = listener.recv(2048)
        assert len(msg) == 148 and msg[0] == 1
    finally:
        dev.close()
        listener.close()


def test_request_handshake_initiates_in_the_loop_and_keeps_rekey_timeout():
    """Device.request_handshake (any thread) is served by the loop with
    Peer.send_initiation: at once when allowed, else held until
    REKEY_TIMEOUT after the last initiation has passed (fake clock)."""
    now = [1000.0]
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.setblocking(False)
    B = noise.key_to_base64
    text = (f"[Interface]\nPrivateKey = {B(noise.generate_private_key())}\n[Peer]\n"
            f"PublicKey = {B(noise.public_key(noise.generate_private_key()))}\n"
            f"Endpoint = 127.0.0.1:{listener.getsockname()[1]}\n")
    dev = device.Device(config.parse(text, "r"), lambda cfg, port: RecordingDataPlane(),
                        clock=lambda: now[0])

    def initiations():
        n = 0
        while True:
            try:
                listener.recv(2048)
            except BlockingIOError:
                return n
            n += 1
    try:
        dev.peers[1].timers.jitter = lambda: 10.0       # no retransmission within this test
        dev.request_handshake(1)
        dev.request_handshake(99)                       # no such peer: dropped
        dev.step(0)
        assert initiations() == 1
        dev.request_handshake(1)
        now[0] += timers.REKEY_TIMEOUT / 2
        dev.step(0)
        assert initiations() == 0                       # within REKEY_TIMEOUT: held
        now[0] += timers.REKEY_TIMEOUT / 2
        dev.step(0)
        assert initiations() == 1
        dev.step(0)
        assert initiations() == 0                       # served once
    finally:
        dev.close()
        listener.close()
