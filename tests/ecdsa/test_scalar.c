#include "hosted.h"
#include <stdio.h>
#include <string.h>
#include "p256_scalar.bpf.h"
static void rd(struct p256_fe *a, const char *hex) {
	for (int i = 0; i < 8; i++) { unsigned x; sscanf(hex + (7 - i) * 8, "%8x", &x); a->v[i] = x; }
}
static void pr(const struct p256_fe *a) { for (int i = 7; i >= 0; i--) printf("%08x", a->v[i]); }
int main(void) {
	char op[16], ha[80], hb[80];
	struct p256_fe a, b, r;
	struct p256_wide w;
	struct p256_inv st;
	while (scanf("%15s %64s %64s", op, ha, hb) == 3) {
		rd(&a, ha); rd(&b, hb);
		if (!strcmp(op, "mont")) { p256_sc_mont(&r, &a, &b, &w); pr(&r); printf(" 0\n"); }
		else if (!strcmp(op, "inv")) {
			p256_inv_init(&st, &a);
			int n = 0;
			while (!p256_sc_inv_step(&st) && n < 5000) n++;
			pr(&st.x1); printf(" %d\n", n);
		}
	}
}
