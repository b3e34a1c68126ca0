/* SPDX-License-Identifier: GPL-2.0 */
/* Shared (BPF + Python): aes_roundtrip's wire format and statistics.
 *
 * Wire format: an ordinary IPv4/UDP datagram to the configured port whose
 * payload is
 *     iv[16] || data
 * On egress the program PKCS#7-pads `data` and encrypts it in place with
 * AES-CBC under the installed key and `iv` (the IV is sent in clear, as CBC
 * requires); on ingress it decrypts, checks and strips the padding. IP total
 * length, IP checksum and UDP length are fixed up; the UDP checksum is set to
 * 0 (legal for IPv4). The sender chooses the IV: this program demonstrates
 * the bpf_crypto path, it is not a secure channel (see encrypted_tunnel). */
#pragma once

#define AES_RT_IV_LEN 16

struct aes_roundtrip_stats {
	__u64 encrypted;    /* datagrams encrypted (egress) */
	__u64 decrypted;    /* datagrams decrypted (ingress) */
	__u64 bad_padding;  /* dropped: padding invalid after decryption */
	__u64 malformed;    /* dropped: too short / not block aligned */
	__u64 no_key;       /* dropped: no key installed */
	__u64 errors;       /* dropped: a helper or bpf_crypto call failed */
	__u64 unsupported;  /* dropped: a datagram to the port that cannot be transformed
	                     * in place (IPv6, first fragment, Ethernet padding, UDP length
	                     * short of the IP payload), or more VLAN tags / IPv6 extension
	                     * headers than walked */
};
