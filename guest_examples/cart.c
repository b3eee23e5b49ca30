/*
 * cart -- a shopping cart implementing cart.wit by hand against the Canonical ABI.
 *
 * WIT function                                        core export (params) -> results
 * --------------------------------------------------  --------------------------------------
 * add-item(item: item) -> u32                         add-item (i32 sku_ptr, i32 sku_len,
 *                                                               i32 qty, i64 price) -> i32
 * remove-item(sku: string) -> bool                    remove-item (i32 ptr, i32 len) -> i32
 * items() -> list<item>                               items () -> i32 (-> {ptr, len})
 *                                                     cabi_post_items (i32)
 * total() -> u64                                      total () -> i64
 * find(sku: string) -> option<item>                   find (i32 ptr, i32 len) -> i32
 *                                                       (-> {u8 is_some; item @8})
 * checkout(coupon: option<string>)                    checkout (i32 is_some, i32 ptr, i32 len)
 *   -> result<u64, string>                              -> i32 (-> {u8 is_err; u64 | string @8})
 *                                                     cabi_post_checkout (i32)
 * (allocator for the host)                            cabi_realloc (i32, i32, i32, i32) -> i32
 *
 * `item` is stored as {string sku @0, u32 qty @8, u64 price-cents @16}: 24 bytes,
 * aligned to 8 -- the same as cart_item_t below.
 *
 * Ownership: strings the host passes were allocated with cabi_realloc and are ours;
 * add-item keeps the sku it is given, the other functions free their arguments.
 * Results that flatten to more than one value are returned through a static return
 * area. items() hands out fresh copies, freed by cabi_post_items once the host has
 * read them; find() returns the cart's own sku string (nothing to free), which is
 * safe because the host reads the result before the next call can change the cart.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define GOLEMISH_NO_REALLOC /* ours is below: it handles the ABI's zero-size case */
#include "golemish.h"

typedef struct { uint8_t *ptr; uint32_t len; } str_t;
typedef struct { str_t sku; uint32_t qty; uint64_t price_cents; } cart_item_t;
typedef struct { cart_item_t *ptr; uint32_t len; } item_list_t;
typedef struct { uint8_t is_some; cart_item_t item; } opt_item_t;
typedef struct { uint8_t is_err; union { uint64_t ok; str_t err; } val; } checkout_result_t;

_Static_assert(sizeof(cart_item_t) == 24 && offsetof(cart_item_t, price_cents) == 16, "item");
_Static_assert(sizeof(opt_item_t) == 32 && offsetof(opt_item_t, item) == 8, "option<item>");
_Static_assert(sizeof(checkout_result_t) == 16, "result<u64, string>");

GOLEMISH_EXPORT("cabi_realloc")
void *cabi_realloc(void *old, size_t old_size, size_t align, size_t new_size) {
    if (new_size == 0) {
        if (old_size)
            free(old);
        return (void *)align; /* an aligned, never-dereferenced pointer */
    }
    void *p = realloc(old_size ? old : NULL, new_size);
    if (!p)
        abort();
    return p;
}

static void free_str(str_t s) {
    if (s.len)
        free(s.ptr);
}

static str_t copy_str(const uint8_t *ptr, uint32_t len) {
    if (!len)
        return (str_t){(uint8_t *)1, 0};
    uint8_t *p = malloc(len);
    if (!p)
        abort();
    memcpy(p, ptr, len);
    return (str_t){p, len};
}

/* The cart: items in the order they were first added. */
static cart_item_t *cart;
static uint32_t cart_len, cart_cap;

static int32_t find_index(const uint8_t *sku, uint32_t len) {
    for (uint32_t i = 0; i < cart_len; i++)
        if (cart[i].sku.len == len && memcmp(cart[i].sku.ptr, sku, len) == 0)
            return (int32_t)i;
    return -1;
}

GOLEMISH_EXPORT("add-item")
int32_t add_item(uint8_t *sku, uint32_t sku_len, uint32_t qty, uint64_t price_cents) {
    int32_t i = find_index(sku, sku_len);
    if (i >= 0) {
        cart[i].qty += qty;
        cart[i].price_cents = price_cents;
        free_str((str_t){sku, sku_len});
        return (int32_t)cart_len;
    }
    if (cart_len == cart_cap) {
        uint32_t cap = cart_cap ? cart_cap * 2 : 4;
        cart_item_t *grown = realloc(cart, cap * sizeof *grown);
        if (!grown)
            abort();
        cart = grown;
        cart_cap = cap;
    }
    cart[cart_len++] = (cart_item_t){{sku, sku_len}, qty, price_cents}; /* keeps the sku */
    return (int32_t)cart_len;
}

GOLEMISH_EXPORT("remove-item")
int32_t remove_item(uint8_t *sku, uint32_t sku_len) {
    int32_t i = find_index(sku, sku_len);
    free_str((str_t){sku, sku_len});
    if (i < 0)
        return 0;
    free_str(cart[i].sku);
    memmove(&cart[i], &cart[i + 1], (cart_len - (uint32_t)i - 1) * sizeof *cart);
    cart_len--;
    return 1;
}

static item_list_t ret_items;
GOLEMISH_EXPORT("items")
item_list_t *items(void) {
    cart_item_t *copy = (cart_item_t *)8;
    if (cart_len) {
        copy = malloc(cart_len * sizeof *copy);
        if (!copy)
            abort();
    }
    for (uint32_t i = 0; i < cart_len; i++) {
        copy[i] = cart[i];
        copy[i].sku = copy_str(cart[i].sku.ptr, cart[i].sku.len);
    }
    ret_items = (item_list_t){copy, cart_len};
    return &ret_items;
}

GOLEMISH_EXPORT("cabi_post_items")
void post_items(item_list_t *r) {
    for (uint32_t i = 0; i < r->len; i++)
        free_str(r->ptr[i].sku);
    if (r->len)
        free(r->ptr);
}

static uint64_t cart_total(void) {
    uint64_t sum = 0;
    for (uint32_t i = 0; i < cart_len; i++)
        sum += (uint64_t)cart[i].qty * cart[i].price_cents;
    return sum;
}

GOLEMISH_EXPORT("total")
uint64_t total(void) { return cart_total(); }

static opt_item_t ret_find;
GOLEMISH_EXPORT("find")
opt_item_t *find(uint8_t *sku, uint32_t sku_len) {
    int32_t i = find_index(sku, sku_len);
    free_str((str_t){sku, sku_len});
    ret_find = (opt_item_t){0};
    if (i >= 0) {
        ret_find.is_some = 1;
        ret_find.item = cart[i]; /* borrows the cart's sku string */
    }
    return &ret_find;
}

static checkout_result_t ret_checkout;

static checkout_result_t *checkout_error(const char *prefix, const uint8_t *extra,
                                         uint32_t extra_len) {
    uint32_t plen = (uint32_t)strlen(prefix);
    uint8_t *msg = malloc(plen + extra_len);
    if (!msg)
        abort();
    memcpy(msg, prefix, plen);
    if (extra_len)
        memcpy(msg + plen, extra, extra_len);
    ret_checkout = (checkout_result_t){.is_err = 1, .val.err = {msg, plen + extra_len}};
    return &ret_checkout;
}

static int coupon_is(const uint8_t *p, uint32_t len, const char *name) {
    return len == strlen(name) && memcmp(p, name, len) == 0;
}

GOLEMISH_EXPORT("checkout")
checkout_result_t *checkout(int32_t has_coupon, uint8_t *coupon, uint32_t coupon_len) {
    uint64_t sum = cart_total();
    checkout_result_t *r;
    if (!has_coupon)
        coupon_len = 0;
    if (cart_len == 0) {
        r = checkout_error("cart is empty", NULL, 0);
    } else if (has_coupon && !coupon_is(coupon, coupon_len, "HALF") &&
               !coupon_is(coupon, coupon_len, "TENOFF")) {
        r = checkout_error("unknown coupon: ", coupon, coupon_len);
    } else {
        if (has_coupon)
            sum -= coupon_is(coupon, coupon_len, "HALF") ? sum / 2 : sum / 10;
        for (uint32_t i = 0; i < cart_len; i++)
            free_str(cart[i].sku);
        cart_len = 0;
        ret_checkout = (checkout_result_t){.is_err = 0, .val.ok = sum};
        r = &ret_checkout;
    }
    if (has_coupon)
        free_str((str_t){coupon, coupon_len});
    return r;
}

GOLEMISH_EXPORT("cabi_post_checkout")
void post_checkout(checkout_result_t *r) {
    if (r->is_err)
        free_str(r->val.err);
}
