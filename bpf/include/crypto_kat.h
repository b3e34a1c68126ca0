/* SPDX-License-Identifier: GPL-2.0 */
/* Shared (BPF + Python): verdicts and key slots of crypto_kat.bpf.c. */
#pragma once

#define KAT_OK  0   /* operation done / tag valid */
#define KAT_BAD 1   /* input rejected: bad tag, bad padding */

#define KAT_AES_SLOT_CBC 0
