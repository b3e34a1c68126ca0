#include "hosted.h"
#include <stdio.h>
#include <string.h>
#include "p256_field.bpf.h"
static void rd(struct p256_fe *a, const char *hex) { /* 64 hex chars big-endian */
	for (int i = 0; i < 8; i++) { unsigned x; sscanf(hex + (7 - i) * 8, "%8x", &x); a->v[i] = x; }
}
static void pr(const struct p256_fe *a) { for (int i = 7; i >= 0; i--) printf("%08x", a->v[i]); printf("\n"); }
int main(void) {
	char op[16], ha[80], hb[80];
	struct p256_fe a, b, r;
	struct p256_wide w;
	while (scanf("%15s %64s %64s", op, ha, hb) == 3) {
		rd(&a, ha); rd(&b, hb);
		if (!strcmp(op, "add")) p256_fe_add(&r, &a, &b);
		else if (!strcmp(op, "sub")) p256_fe_sub(&r, &a, &b);
		else if (!strcmp(op, "mul")) p256_fe_mul(&r, &a, &b, &w);
		else if (!strcmp(op, "sqr")) p256_fe_sqr(&r, &a, &w);
		else if (!strcmp(op, "mulk")) p256_fe_mulk(&r, &a, b.v[0] & 0xffff);
		pr(&r);
	}
}
