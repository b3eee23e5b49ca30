/*
 * echo -- implements echo.wit by hand against the Component Model's Canonical ABI.
 *
 * Every export returns its argument unchanged. The host lowers a value into this
 * guest's memory and flat parameters, the C code rebuilds it field by field in
 * its own structs (whose layout must equal the ABI's: checked by the static
 * asserts), and the host lifts it back. A host that disagrees with the ABI (an
 * offset, a discriminant size, a flattening join) gets a different value back.
 *
 * Rules followed (CanonicalABI.md, export direction):
 *  - Strings and lists the host passes were allocated with our cabi_realloc and
 *    are owned by us from then on.
 *  - More than 16 flat parameters arrive as one pointer to the parameters stored
 *    as a tuple (echo-many); we own that block too and free it.
 *  - A result that flattens to more than one value is returned by pointer to a
 *    static return area holding the stored result. After lifting it the host
 *    calls cabi_post_<export> with that pointer, which frees what it points to.
 *  - Zero-length allocations return a dangling, aligned non-null pointer (the
 *    alignment itself) that is never freed.
 *
 * `live-allocs` counts allocations handed to or made for the host, so tests can
 * check that post-return functions free everything.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* We define cabi_realloc ourselves (it counts allocations), not golemish.h's. */
#define GOLEMISH_NO_REALLOC
#include "golemish.h"

typedef struct { uint8_t *ptr; uint32_t len; } str_t;       /* string */
typedef struct { str_t *ptr; uint32_t len; } str_list_t;    /* list<string> */
typedef struct { uint32_t *ptr; uint32_t len; } u32_list_t; /* list<u32> */
typedef struct { uint8_t *ptr; uint32_t len; } bytes_t;     /* list<u8> */
typedef struct { int32_t x, y; } point_t;
typedef struct { point_t *ptr; uint32_t len; } point_list_t;
typedef struct { str_t name; str_list_t tags; double weight; uint8_t active; } item_t;
typedef struct {
    uint8_t tag; /* 0 circle, 1 rect, 2 label, 3 nothing */
    union { float circle; point_t rect; str_t label; } val;
} shape_t;
typedef struct { uint8_t is_some; uint32_t val; } opt_u32_t;
typedef struct { uint8_t is_some; str_t val; } opt_str_t;
typedef struct { uint8_t is_some; opt_str_t val; } opt_opt_str_t;
typedef struct { uint8_t is_err; union { str_t ok; uint32_t err; } val; } res_str_u32_t;
typedef struct { uint8_t a; str_t b; double c; } tuple_t;
typedef struct { str_t a; uint64_t b; } pair_t;
typedef struct {
    uint8_t a; int16_t b; uint32_t c; int64_t d; float e; double f; uint32_t g; uint8_t h;
    str_t i; bytes_t j; uint64_t k; int8_t l; uint16_t m; int32_t n; float o;
} many_t;
typedef struct { uint8_t is_err; union { str_list_t ok; item_t err; } val; } res_nested_t;
typedef struct { uint8_t is_some; res_nested_t val; } nested_t;

/* The ABI's sizes and offsets (runtime/typed/cabi.py computes the same numbers). */
_Static_assert(sizeof(item_t) == 32 && offsetof(item_t, weight) == 16, "item");
_Static_assert(sizeof(shape_t) == 12 && offsetof(shape_t, val) == 4, "shape");
_Static_assert(sizeof(opt_opt_str_t) == 16, "option<option<string>>");
_Static_assert(sizeof(res_str_u32_t) == 12, "result<string, u32>");
_Static_assert(sizeof(tuple_t) == 24 && offsetof(tuple_t, c) == 16, "tuple");
_Static_assert(sizeof(pair_t) == 16, "pair");
_Static_assert(sizeof(many_t) == 80 && offsetof(many_t, i) == 40 && offsetof(many_t, o) == 72,
               "many");
_Static_assert(sizeof(nested_t) == 48 && offsetof(nested_t, val) == 8, "nested");

/* -- memory ------------------------------------------------------------------ */

static int32_t live; /* allocations owned on behalf of the host */

static void *gm_alloc(size_t n) {
    void *p = malloc(n);
    if (!p)
        abort();
    live++;
    return p;
}

/* Free a block of `n` bytes; zero-sized "allocations" were never real. */
static void gm_free(void *p, size_t n) {
    if (n) {
        free(p);
        live--;
    }
}

GOLEMISH_EXPORT("cabi_realloc")
void *cabi_realloc(void *old, size_t old_size, size_t align, size_t new_size) {
    void *p;
    if (new_size == 0) {
        gm_free(old, old_size);
        return (void *)align;
    }
    if (old_size) {
        p = realloc(old, new_size);
        if (!p)
            abort();
    } else {
        p = gm_alloc(new_size);
    }
    if ((uintptr_t)p % align) /* malloc aligns to 8 at least; the ABI never asks more */
        abort();
    return p;
}

GOLEMISH_EXPORT("live-allocs")
int32_t live_allocs(void) { return live; }

static void free_str(str_t s) { gm_free(s.ptr, s.len); }

static void free_str_list(str_list_t l) {
    for (uint32_t i = 0; i < l.len; i++)
        free_str(l.ptr[i]);
    gm_free(l.ptr, l.len * sizeof(str_t));
}

static void free_item(item_t *it) {
    free_str(it->name);
    free_str_list(it->tags);
}

/* -- scalars: one flat value in, one out ------------------------------------- */

GOLEMISH_EXPORT("ping") void ping(void) {}
GOLEMISH_EXPORT("echo-bool") int32_t echo_bool(int32_t x) { return x != 0; }
GOLEMISH_EXPORT("echo-u8") int32_t echo_u8(int32_t x) { return (uint8_t)x; }
GOLEMISH_EXPORT("echo-s8") int32_t echo_s8(int32_t x) { return (int8_t)x; }
GOLEMISH_EXPORT("echo-u16") int32_t echo_u16(int32_t x) { return (uint16_t)x; }
GOLEMISH_EXPORT("echo-s16") int32_t echo_s16(int32_t x) { return (int16_t)x; }
GOLEMISH_EXPORT("echo-u32") int32_t echo_u32(int32_t x) { return x; }
GOLEMISH_EXPORT("echo-s32") int32_t echo_s32(int32_t x) { return x; }
GOLEMISH_EXPORT("echo-u64") int64_t echo_u64(int64_t x) { return x; }
GOLEMISH_EXPORT("echo-s64") int64_t echo_s64(int64_t x) { return x; }
GOLEMISH_EXPORT("echo-f32") float echo_f32(float x) { return x; }
GOLEMISH_EXPORT("echo-f64") double echo_f64(double x) { return x; }
GOLEMISH_EXPORT("echo-char") int32_t echo_char(int32_t x) { return x; }
GOLEMISH_EXPORT("echo-enum") int32_t echo_enum(int32_t x) { return x; }
GOLEMISH_EXPORT("echo-flags") int32_t echo_flags(int32_t x) { return x & 0x7; }
GOLEMISH_EXPORT("echo-wide-flags") int32_t echo_wide_flags(int32_t x) { return x & 0xfffff; }

/* -- strings and lists: (ptr, len) in, pointer to a stored (ptr, len) out ------- */

static str_t ret_str;
GOLEMISH_EXPORT("echo-string")
str_t *echo_string(uint8_t *ptr, uint32_t len) {
    ret_str = (str_t){ptr, len};
    return &ret_str;
}
GOLEMISH_EXPORT("cabi_post_echo-string")
void post_echo_string(str_t *r) { free_str(*r); }

static u32_list_t ret_u32s;
GOLEMISH_EXPORT("echo-list-u32")
u32_list_t *echo_list_u32(uint32_t *ptr, uint32_t len) {
    ret_u32s = (u32_list_t){ptr, len};
    return &ret_u32s;
}
GOLEMISH_EXPORT("cabi_post_echo-list-u32")
void post_echo_list_u32(u32_list_t *r) { gm_free(r->ptr, r->len * 4); }

/* Returns a fresh copy, so the strings are read and rewritten by the guest. */
static str_list_t ret_strs;
GOLEMISH_EXPORT("echo-list-string")
str_list_t *echo_list_string(str_t *ptr, uint32_t len) {
    str_t *copy = len ? gm_alloc(len * sizeof(str_t)) : (str_t *)4;
    for (uint32_t i = 0; i < len; i++) {
        uint8_t *s = ptr[i].len ? gm_alloc(ptr[i].len) : (uint8_t *)1;
        memcpy(s, ptr[i].ptr, ptr[i].len);
        copy[i] = (str_t){s, ptr[i].len};
    }
    free_str_list((str_list_t){ptr, len});
    ret_strs = (str_list_t){copy, len};
    return &ret_strs;
}
GOLEMISH_EXPORT("cabi_post_echo-list-string")
void post_echo_list_string(str_list_t *r) { free_str_list(*r); }

static point_list_t ret_points;
GOLEMISH_EXPORT("echo-list-point")
point_list_t *echo_list_point(point_t *ptr, uint32_t len) {
    ret_points = (point_list_t){ptr, len};
    return &ret_points;
}
GOLEMISH_EXPORT("cabi_post_echo-list-point")
void post_echo_list_point(point_list_t *r) { gm_free(r->ptr, r->len * sizeof(point_t)); }

/* -- records, variants, options, results, tuples ------------------------------ */

static point_t ret_point;
GOLEMISH_EXPORT("echo-point")
point_t *echo_point(int32_t x, int32_t y) {
    ret_point = (point_t){x, y};
    return &ret_point;
}

static item_t ret_item;
GOLEMISH_EXPORT("echo-record")
item_t *echo_record(uint8_t *name, uint32_t name_len, str_t *tags, uint32_t ntags,
                    double weight, int32_t active) {
    ret_item = (item_t){{name, name_len}, {tags, ntags}, weight, active != 0};
    return &ret_item;
}
GOLEMISH_EXPORT("cabi_post_echo-record")
void post_echo_record(item_t *r) { free_item(r); }

/* shape flattens to (discriminant, i32, i32): circle's f32 travels as its bits. */
static shape_t ret_shape;
GOLEMISH_EXPORT("echo-variant")
shape_t *echo_variant(int32_t tag, int32_t a, int32_t b) {
    ret_shape = (shape_t){.tag = (uint8_t)tag};
    switch (tag) {
    case 0: memcpy(&ret_shape.val.circle, &a, 4); break;
    case 1: ret_shape.val.rect = (point_t){a, b}; break;
    case 2: ret_shape.val.label = (str_t){(uint8_t *)(uintptr_t)a, (uint32_t)b}; break;
    default: break;
    }
    return &ret_shape;
}
GOLEMISH_EXPORT("cabi_post_echo-variant")
void post_echo_variant(shape_t *r) {
    if (r->tag == 2)
        free_str(r->val.label);
}

static opt_u32_t ret_opt;
GOLEMISH_EXPORT("echo-option")
opt_u32_t *echo_option(int32_t is_some, uint32_t val) {
    ret_opt = (opt_u32_t){(uint8_t)is_some, is_some ? val : 0};
    return &ret_opt;
}

static opt_opt_str_t ret_opt_opt;
GOLEMISH_EXPORT("echo-option-option")
opt_opt_str_t *echo_option_option(int32_t outer, int32_t inner, uint8_t *ptr, uint32_t len) {
    ret_opt_opt = (opt_opt_str_t){0};
    ret_opt_opt.is_some = (uint8_t)outer;
    if (outer) {
        ret_opt_opt.val.is_some = (uint8_t)inner;
        if (inner)
            ret_opt_opt.val.val = (str_t){ptr, len};
    }
    return &ret_opt_opt;
}
GOLEMISH_EXPORT("cabi_post_echo-option-option")
void post_echo_option_option(opt_opt_str_t *r) {
    if (r->is_some && r->val.is_some)
        free_str(r->val.val);
}

static res_str_u32_t ret_res;
GOLEMISH_EXPORT("echo-result")
res_str_u32_t *echo_result(int32_t is_err, int32_t a, int32_t b) {
    ret_res = (res_str_u32_t){.is_err = (uint8_t)is_err};
    if (is_err)
        ret_res.val.err = (uint32_t)a;
    else
        ret_res.val.ok = (str_t){(uint8_t *)(uintptr_t)a, (uint32_t)b};
    return &ret_res;
}
GOLEMISH_EXPORT("cabi_post_echo-result")
void post_echo_result(res_str_u32_t *r) {
    if (!r->is_err)
        free_str(r->val.ok);
}

static tuple_t ret_tuple;
GOLEMISH_EXPORT("echo-tuple")
tuple_t *echo_tuple(int32_t a, uint8_t *ptr, uint32_t len, double c) {
    ret_tuple = (tuple_t){(uint8_t)a, {ptr, len}, c};
    return &ret_tuple;
}
GOLEMISH_EXPORT("cabi_post_echo-tuple")
void post_echo_tuple(tuple_t *r) { free_str(r->b); }

static pair_t ret_pair;
GOLEMISH_EXPORT("echo-pair")
pair_t *echo_pair(uint8_t *ptr, uint32_t len, uint64_t b) {
    ret_pair = (pair_t){{ptr, len}, b};
    return &ret_pair;
}
GOLEMISH_EXPORT("cabi_post_echo-pair")
void post_echo_pair(pair_t *r) { free_str(r->a); }

/* 17 flat parameters: the host stored them as a tuple and passes its address. The
 * result record `many` has the same fields, so it has the same layout. */
static many_t ret_many;
GOLEMISH_EXPORT("echo-many")
many_t *echo_many(many_t *args) {
    ret_many = (many_t){args->a, args->b, args->c, args->d, args->e, args->f, args->g,
                        args->h != 0, args->i, args->j, args->k, args->l, args->m, args->n,
                        args->o};
    gm_free(args, sizeof *args);
    return &ret_many;
}
GOLEMISH_EXPORT("cabi_post_echo-many")
void post_echo_many(many_t *r) {
    free_str(r->i);
    gm_free(r->j.ptr, r->j.len);
}

/* option<result<list<string>, item>> flattens to
 * (some?, err?, i32, i32, i32, i32, f64, i32): the list uses the first two slots,
 * the item all six. */
static nested_t ret_nested;
GOLEMISH_EXPORT("echo-nested")
nested_t *echo_nested(int32_t is_some, int32_t is_err, int32_t s0, int32_t s1, int32_t s2,
                      int32_t s3, double weight, int32_t active) {
    ret_nested = (nested_t){.is_some = (uint8_t)is_some};
    if (is_some) {
        ret_nested.val.is_err = (uint8_t)is_err;
        if (is_err)
            ret_nested.val.val.err = (item_t){{(uint8_t *)(uintptr_t)s0, (uint32_t)s1},
                                              {(str_t *)(uintptr_t)s2, (uint32_t)s3},
                                              weight, active != 0};
        else
            ret_nested.val.val.ok = (str_list_t){(str_t *)(uintptr_t)s0, (uint32_t)s1};
    }
    return &ret_nested;
}
GOLEMISH_EXPORT("cabi_post_echo-nested")
void post_echo_nested(nested_t *r) {
    if (!r->is_some)
        return;
    if (r->val.is_err)
        free_item(&r->val.val.err);
    else
        free_str_list(r->val.val.ok);
}
