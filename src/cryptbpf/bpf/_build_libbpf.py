"""cffi build script for cryptbpf.bpf._libbpf (API mode, like pyca/cryptography).

API mode compiles a small C extension against the system's <bpf/libbpf.h>, so
the C compiler checks every declaration below -- struct layouts such as
bpf_test_run_opts or bpf_tc_opts included -- against the libbpf actually
installed. Structs are declared with `...;` so cffi takes their real size and
field offsets from the compiler instead of trusting this file.
"""

from cffi import FFI

CDEF = r"""
typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef int __s32;

struct bpf_object;
struct bpf_program;
struct bpf_map;
struct bpf_link;
struct btf;
struct ring_buffer;
struct btf_ext;

/* ---- errors and logging ---- */
int libbpf_strerror(int err, char *buf, size_t size);
int libbpf_num_possible_cpus(void);
extern "Python" void _cryptbpf_log(int level, const char *msg);
void cryptbpf_install_print(void);

/* ---- objects ---- */
struct bpf_object_open_opts {
    size_t sz;
    const char *object_name;
    ...;
};
struct bpf_object *bpf_object__open_file(const char *path,
                                         const struct bpf_object_open_opts *opts);
int bpf_object__load(struct bpf_object *obj);
void bpf_object__close(struct bpf_object *obj);
const char *bpf_object__name(const struct bpf_object *obj);
struct btf *bpf_object__btf(const struct bpf_object *obj);
struct bpf_program *bpf_object__next_program(const struct bpf_object *obj,
                                             struct bpf_program *prog);
struct bpf_map *bpf_object__next_map(const struct bpf_object *obj,
                                     const struct bpf_map *map);

/* ---- programs ---- */
const char *bpf_program__name(const struct bpf_program *prog);
const char *bpf_program__section_name(const struct bpf_program *prog);
int bpf_program__fd(const struct bpf_program *prog);
int bpf_program__type(const struct bpf_program *prog);
int bpf_program__set_autoload(struct bpf_program *prog, bool autoload);
int bpf_program__pin(struct bpf_program *prog, const char *path);
int bpf_program__unpin(struct bpf_program *prog, const char *path);
struct bpf_link *bpf_program__attach_xdp(const struct bpf_program *prog,
                                         int ifindex);
struct bpf_link *bpf_program__attach(const struct bpf_program *prog);

/* ---- links ---- */
int bpf_link__pin(struct bpf_link *link, const char *path);
int bpf_link__destroy(struct bpf_link *link);
int bpf_link__fd(const struct bpf_link *link);

/* ---- maps ---- */
const char *bpf_map__name(const struct bpf_map *map);
int bpf_map__fd(const struct bpf_map *map);
int bpf_map__type(const struct bpf_map *map);
__u32 bpf_map__key_size(const struct bpf_map *map);
__u32 bpf_map__value_size(const struct bpf_map *map);
__u32 bpf_map__max_entries(const struct bpf_map *map);
__u32 bpf_map__btf_value_type_id(const struct bpf_map *map);
__u32 bpf_map__btf_key_type_id(const struct bpf_map *map);
bool bpf_map__is_internal(const struct bpf_map *map);
const void *bpf_map__initial_value(struct bpf_map *map, size_t *psize);
int bpf_map__set_max_entries(struct bpf_map *map, __u32 max_entries);
int bpf_map__pin(struct bpf_map *map, const char *path);
int bpf_map__unpin(struct bpf_map *map, const char *path);

/* ---- raw syscall wrappers (bpf/bpf.h) ---- */
int bpf_map_lookup_elem(int fd, const void *key, void *value);
int bpf_map_update_elem(int fd, const void *key, const void *value, __u64 flags);
int bpf_map_delete_elem(int fd, const void *key);
int bpf_map_get_next_key(int fd, const void *key, void *next_key);
int bpf_obj_get(const char *pathname);
int bpf_obj_pin(int fd, const char *pathname);

struct bpf_prog_info {
    __u32 type;
    __u32 id;
    __u8  tag[8];
    __u32 verified_insns;
    __u64 run_time_ns;
    __u64 run_cnt;
    char name[16];
    ...;
};
struct bpf_map_info {
    __u32 type;
    __u32 id;
    __u32 key_size;
    __u32 value_size;
    __u32 max_entries;
    __u32 map_flags;
    char  name[16];
    __u32 btf_id;
    __u32 btf_key_type_id;
    __u32 btf_value_type_id;
    ...;
};
int bpf_obj_get_info_by_fd(int bpf_fd, void *info, __u32 *info_len);
int bpf_prog_get_fd_by_id(__u32 id);

struct bpf_test_run_opts {
    size_t sz;
    const void *data_in;
    void *data_out;
    __u32 data_size_in;
    __u32 data_size_out;
    const void *ctx_in;
    void *ctx_out;
    __u32 ctx_size_in;
    __u32 ctx_size_out;
    __u32 retval;
    int repeat;
    __u32 duration;
    __u32 flags;
    __u32 cpu;
    __u32 batch_size;
    ...;
};
int bpf_prog_test_run_opts(int prog_fd, struct bpf_test_run_opts *opts);

/* ---- TC (clsact) and XDP ---- */
enum bpf_tc_attach_point {
    BPF_TC_INGRESS = 1,
    BPF_TC_EGRESS = 2,
    BPF_TC_CUSTOM = 4,
};
struct bpf_tc_hook {
    size_t sz;
    int ifindex;
    enum bpf_tc_attach_point attach_point;
    __u32 parent;
    ...;
};
struct bpf_tc_opts {
    size_t sz;
    int prog_fd;
    __u32 flags;
    __u32 prog_id;
    __u32 handle;
    __u32 priority;
    ...;
};
int bpf_tc_hook_create(struct bpf_tc_hook *hook);
int bpf_tc_hook_destroy(struct bpf_tc_hook *hook);
int bpf_tc_attach(const struct bpf_tc_hook *hook, struct bpf_tc_opts *opts);
int bpf_tc_detach(const struct bpf_tc_hook *hook, const struct bpf_tc_opts *opts);
int bpf_tc_query(const struct bpf_tc_hook *hook, struct bpf_tc_opts *opts);
int bpf_xdp_attach(int ifindex, int prog_fd, __u32 flags, const void *opts);
int bpf_xdp_detach(int ifindex, __u32 flags, const void *opts);
int bpf_xdp_query_id(int ifindex, int flags, __u32 *prog_id);

/* ---- BTF (for globals and layout checks) ---- */
struct btf_type {
    __u32 name_off;
    __u32 info;
    union {
        __u32 size;
        __u32 type;
    };
};
struct btf_var_secinfo {
    __u32 type;
    __u32 offset;
    __u32 size;
};
struct btf_member {
    __u32 name_off;
    __u32 type;
    __u32 offset;
};
struct btf *btf__parse(const char *path, struct btf_ext **btf_ext);
struct btf *btf__load_vmlinux_btf(void);
void btf__free(struct btf *btf);
__s32 btf__find_by_name_kind(const struct btf *btf, const char *type_name,
                             __u32 kind);
const struct btf_type *btf__type_by_id(const struct btf *btf, __u32 id);
const char *btf__name_by_offset(const struct btf *btf, __u32 offset);
long long btf__resolve_size(const struct btf *btf, __u32 type_id);
int btf__resolve_type(const struct btf *btf, __u32 type_id);
__u32 btf__type_cnt(const struct btf *btf);
__u16 btf_kind(const struct btf_type *t);
__u16 btf_vlen(const struct btf_type *t);
struct btf_var_secinfo *btf_var_secinfos(const struct btf_type *t);
struct btf_member *btf_members(const struct btf_type *t);
bool btf_kflag(const struct btf_type *t);
__u32 btf_member_bit_offset(const struct btf_type *t, __u32 member_idx);

#define BTF_KIND_STRUCT 4
#define BTF_KIND_UNION 5
#define BTF_KIND_VAR 14
#define BTF_KIND_DATASEC 15
#define BTF_KIND_FUNC 12

/* ---- ring buffers ---- */
extern "Python" int _cryptbpf_ringbuf_sample(void *ctx, void *data, size_t size);
struct ring_buffer *cryptbpf_ring_buffer_new(int map_fd, void *ctx);
int ring_buffer__add(struct ring_buffer *rb, int map_fd, void *sample_cb, void *ctx);
int ring_buffer__poll(struct ring_buffer *rb, int timeout_ms);
int ring_buffer__consume(struct ring_buffer *rb);
int ring_buffer__epoll_fd(const struct ring_buffer *rb);
void ring_buffer__free(struct ring_buffer *rb);

/* ---- feature probes (libbpf_probe.c) ---- */
int libbpf_probe_bpf_prog_type(int prog_type, const void *opts);
int libbpf_probe_bpf_map_type(int map_type, const void *opts);
int libbpf_probe_bpf_helper(int prog_type, int helper_id, const void *opts);

/* ---- libbpf version ---- */
__u32 libbpf_major_version(void);
__u32 libbpf_minor_version(void);
"""

SOURCE = r"""
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>

static void _cryptbpf_log(int level, const char *msg);

/* libbpf hands its print callback a va_list, which Python cannot consume:
 * format it here and pass the finished line to Python. A verifier log
 * arrives as ONE message of up to megabytes, its error at the end, so a
 * message too long for the stack buffer is formatted again into the heap
 * rather than truncated. */
static int cryptbpf_print(enum libbpf_print_level level, const char *fmt,
                          va_list args)
{
    char buf[4096], *big;
    va_list again;
    int n;

    va_copy(again, args);
    n = vsnprintf(buf, sizeof(buf), fmt, args);
    if (n >= (int)sizeof(buf) && (big = malloc((size_t)n + 1))) {
        vsnprintf(big, (size_t)n + 1, fmt, again);
        _cryptbpf_log((int)level, big);
        free(big);
    } else {
        _cryptbpf_log((int)level, buf);
    }
    va_end(again);
    return 0;
}

static void cryptbpf_install_print(void)
{
    libbpf_set_print(cryptbpf_print);
}

static int _cryptbpf_ringbuf_sample(void *ctx, void *data, size_t size);

static struct ring_buffer *cryptbpf_ring_buffer_new(int map_fd, void *ctx)
{
    return ring_buffer__new(map_fd, _cryptbpf_ringbuf_sample, ctx, NULL);
}
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "cryptbpf.bpf._libbpf",
    SOURCE,
    libraries=["bpf"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
