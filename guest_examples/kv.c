/*
 * kv -- a memory-heavy key-value store guest for golemish.
 *
 * Used by the snapshot benchmarks and the equivalence tests: it can hold tens
 * to hundreds of MiB of values, produce a chosen fraction of dirty memory
 * (`touch`), and summarise its whole state in one number (`checksum`).
 *
 * Keys are integers in [0, KEY_LIMIT). Value contents are never passed in:
 * they are generated from a splitmix64 stream whose seed is derived from
 * (key, len, per-key version) -- so `put` makes no host calls and two
 * instances fed the same calls end up with identical memory contents -- or,
 * for `put_random`, from 8 bytes of getentropy (one random_get), so replay
 * only reproduces the state if that host call is replayed from the oplog.
 *
 * Memory layout. zig's wasm malloc rounds every request (plus a 16-byte
 * header) up to a power of two, so storing each value in its own malloc'd
 * buffer would cost up to twice the data size. Instead values are split into
 * 4 KiB blocks carved from 1 MiB slabs that this file grows itself with
 * memory.grow (zig's allocator takes whatever memory.grow hands back and
 * never assumes the memory after its own regions is free, so the two can
 * share linear memory). Slabs are 64 KiB aligned, so every block is exactly
 * one 4 KiB-aligned page: memory use is about the data size, and `touch`
 * dirties exactly the pages it means to. Only the last partial block of a
 * value (len % 4 KiB bytes, or the whole of a small value) comes from malloc.
 *
 * The key index is two-level: a static directory of pointers to index pages,
 * each page being one 4 KiB block of 256 entries, allocated on first use and
 * never freed (entries keep their version counter after `del`).
 *
 * Running out of linear memory (memory.grow or malloc failing) traps; the
 * runtime rolls the worker back to its state before the invocation.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "golemish.h"

#define KEY_LIMIT 1000000

#define BLOCK_SIZE 4096u            /* one data block == one host page */
#define WASM_PAGE 65536u
#define SLAB_PAGES 16u              /* memory.grow step: 1 MiB */
#define SLAB_BLOCKS (SLAB_PAGES * WASM_PAGE / BLOCK_SIZE)

#define FILL_VALUE_SIZE (64u * 1024) /* fill() stores values of this size */

/* ---- 4 KiB block allocator ------------------------------------------- */

static uint8_t *slab_next;    /* next never-used block in the current slab */
static uint32_t slab_left;    /* never-used blocks left in the current slab */
static void *free_blocks;     /* freed blocks, chained through their first word */

static void *block_alloc(void) {
    if (free_blocks) {
        void *b = free_blocks;
        free_blocks = *(void **)b;
        return b;
    }
    if (slab_left == 0) {
        size_t old_pages = __builtin_wasm_memory_grow(0, SLAB_PAGES);
        if (old_pages == (size_t)-1)
            __builtin_trap(); /* out of linear memory */
        slab_next = (uint8_t *)(old_pages * WASM_PAGE);
        slab_left = SLAB_BLOCKS;
    }
    void *b = slab_next;
    slab_next += BLOCK_SIZE;
    slab_left--;
    return b;
}

static void block_free(void *b) {
    *(void **)b = free_blocks;
    free_blocks = b;
}

/* ---- key index ---------------------------------------------------------- */

/* A value of `len` bytes is stored as nseg(len) segments: len / 4 KiB full
 * blocks, then (if len % 4 KiB != 0) a malloc'd tail of the remaining bytes. */
typedef struct {
    uint8_t **segs;   /* segment pointers; NULL when absent or len == 0 */
    uint32_t len;     /* value length in bytes */
    uint32_t version; /* number of puts ever made to this key (kept on del) */
    uint32_t present; /* 1 if the key currently holds a value */
} entry_t;            /* 16 bytes on wasm32: 256 entries per index page */

#define ENTRIES_PER_PAGE (BLOCK_SIZE / sizeof(entry_t))
#define DIR_SIZE ((KEY_LIMIT + ENTRIES_PER_PAGE - 1) / ENTRIES_PER_PAGE)

_Static_assert(sizeof(entry_t) == 16, "entry_t must pack 256 to a block");

static entry_t *directory[DIR_SIZE];
static int32_t key_count;   /* keys currently present */
static int64_t value_bytes; /* sum of their lengths */
static int32_t fill_cursor; /* where fill() resumes looking for free keys */

static int key_ok(int32_t key) { return key >= 0 && key < KEY_LIMIT; }

/* The entry for `key`, or NULL if its index page does not exist yet and
 * `create` is 0. */
static entry_t *lookup(int32_t key, int create) {
    entry_t **page = &directory[key / ENTRIES_PER_PAGE];
    if (!*page) {
        if (!create)
            return NULL;
        *page = block_alloc();
        memset(*page, 0, BLOCK_SIZE); /* recycled blocks hold old data */
    }
    return &(*page)[key % ENTRIES_PER_PAGE];
}

static uint32_t nseg(uint32_t len) { return (len + BLOCK_SIZE - 1) / BLOCK_SIZE; }

static uint32_t seg_len(uint32_t len, uint32_t i) {
    uint32_t rest = len - i * BLOCK_SIZE;
    return rest < BLOCK_SIZE ? rest : BLOCK_SIZE;
}

/* The present entry with the smallest key >= *key (stored back in *key), or
 * NULL if there is none. Walks keys in ascending order:
 *     for (uint32_t key = 0; (e = next_present(&key)); key++) ...        */
static entry_t *next_present(uint32_t *key) {
    uint32_t k = *key;
    while (k < DIR_SIZE * ENTRIES_PER_PAGE) {
        entry_t *page = directory[k / ENTRIES_PER_PAGE];
        if (!page) { /* skip the whole missing index page */
            k = (k / ENTRIES_PER_PAGE + 1) * ENTRIES_PER_PAGE;
            continue;
        }
        if (page[k % ENTRIES_PER_PAGE].present) {
            *key = k;
            return &page[k % ENTRIES_PER_PAGE];
        }
        k++;
    }
    return NULL;
}

/* Allocate storage for a `len`-byte value (contents undefined). */
static void value_alloc(entry_t *e, uint32_t len) {
    uint32_t n = nseg(len);
    e->len = len;
    e->segs = NULL;
    if (n == 0)
        return;
    e->segs = malloc(n * sizeof *e->segs);
    if (!e->segs)
        __builtin_trap();
    for (uint32_t i = 0; i < n; i++) {
        uint32_t sl = seg_len(len, i);
        e->segs[i] = sl == BLOCK_SIZE ? block_alloc() : malloc(sl);
        if (!e->segs[i])
            __builtin_trap();
    }
}

static void value_free(entry_t *e) {
    uint32_t n = nseg(e->len);
    for (uint32_t i = 0; i < n; i++) {
        if (seg_len(e->len, i) == BLOCK_SIZE)
            block_free(e->segs[i]);
        else
            free(e->segs[i]);
    }
    free(e->segs);
    e->segs = NULL;
    e->len = 0;
}

/* ---- content generation and hashing ------------------------------------ */

/* splitmix64: a fast, well-mixed 64-bit generator (state += golden ratio,
 * then a finaliser). mix64 is the finaliser alone, used to derive seeds. */
static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t splitmix_next(uint64_t *state) {
    return mix64(*state += 0x9e3779b97f4a7c15ULL);
}

static uint64_t put_seed(uint32_t key, uint32_t len, uint32_t version) {
    return mix64(mix64(((uint64_t)key << 32) | len) ^ version);
}

/* Fill the value with the splitmix64 stream from `seed`, 8 little-endian
 * bytes per step. The stream runs on across segments, so the contents depend
 * only on (seed, len), not on how the value is split up. */
static void value_generate(entry_t *e, uint64_t seed) {
    uint64_t state = seed;
    uint32_t n = nseg(e->len);
    for (uint32_t i = 0; i < n; i++) {
        uint8_t *p = e->segs[i];
        uint32_t sl = seg_len(e->len, i), j = 0;
        for (; j + 8 <= sl; j += 8) {
            uint64_t r = splitmix_next(&state);
            memcpy(p + j, &r, 8);
        }
        if (j < sl) { /* only the last segment can end mid-word */
            uint64_t r = splitmix_next(&state);
            memcpy(p + j, &r, sl - j);
        }
    }
}

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

static uint64_t fnv_bytes(uint64_t h, const uint8_t *p, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= FNV_PRIME;
    }
    return h;
}

/* FNV-1a over the little-endian bytes of a u32. */
static uint64_t fnv_u32(uint64_t h, uint32_t v) {
    uint8_t b[4] = {v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, v >> 24};
    return fnv_bytes(h, b, 4);
}

static uint64_t value_hash(uint64_t h, const entry_t *e) {
    uint32_t n = nseg(e->len);
    for (uint32_t i = 0; i < n; i++)
        h = fnv_bytes(h, e->segs[i], seg_len(e->len, i));
    return h;
}

/* ---- store operations ---------------------------------------------------- */

/* Replace (or create) the value of `key` with `len` bytes generated from
 * put_seed(key, len, new version) or from `random_seed`. The old value is
 * released first, so rewriting a key with a same-sized value reuses its
 * blocks and does not grow memory. */
static void store(int32_t key, uint32_t len, int use_random, uint64_t random_seed) {
    entry_t *e = lookup(key, 1);
    if (e->present) {
        value_bytes -= e->len;
        value_free(e);
    } else {
        key_count++;
        e->present = 1;
    }
    e->version++;
    value_alloc(e, len);
    value_generate(e, use_random ? random_seed : put_seed(key, len, e->version));
    value_bytes += len;
}

/* put(key, len): store `len` deterministic bytes under `key`. Returns the
 * number of keys, or -1 (and changes nothing) for a key outside
 * [0, 1000000) or a negative len. */
GOLEMISH_EXPORT("put")
int32_t kv_put(int32_t key, int32_t len) {
    if (!key_ok(key) || len < 0)
        return -1;
    store(key, (uint32_t)len, 0, 0);
    return key_count;
}

/* put_random(key, len): like put, but the contents come from a splitmix64
 * stream seeded with 8 bytes of getentropy -- exactly one random_get call
 * (none when the arguments are invalid). */
GOLEMISH_EXPORT("put_random")
int32_t kv_put_random(int32_t key, int32_t len) {
    if (!key_ok(key) || len < 0)
        return -1;
    uint64_t seed;
    if (getentropy(&seed, sizeof seed) != 0) /* one random_get of 8 bytes */
        __builtin_trap();
    store(key, (uint32_t)len, 1, seed);
    return key_count;
}

/* get(key): FNV-1a 64 of the value's bytes, or -1 if the key is absent. */
GOLEMISH_EXPORT("get")
int64_t kv_get(int32_t key) {
    if (!key_ok(key))
        return -1;
    entry_t *e = lookup(key, 0);
    if (!e || !e->present)
        return -1;
    return (int64_t)value_hash(FNV_OFFSET, e);
}

/* del(key): remove the value; returns 1 if there was one, else 0. The key's
 * version counter survives, so a later put writes different contents. */
GOLEMISH_EXPORT("del")
int32_t kv_del(int32_t key) {
    if (!key_ok(key))
        return 0;
    entry_t *e = lookup(key, 0);
    if (!e || !e->present)
        return 0;
    value_bytes -= e->len;
    value_free(e);
    e->present = 0;
    key_count--;
    return 1;
}

/* fill(mib): add mib * 16 values of 64 KiB (deterministic contents, as put)
 * under the lowest keys not currently present, searching upward from where
 * the previous fill stopped. Returns the number of keys. */
GOLEMISH_EXPORT("fill")
int32_t kv_fill(int32_t mib) {
    int64_t values = (int64_t)mib * ((1 << 20) / FILL_VALUE_SIZE);
    for (int64_t v = 0; v < values; v++) {
        for (;;) {
            if (fill_cursor >= KEY_LIMIT)
                __builtin_trap(); /* no free keys left (not reachable in 4 GiB) */
            entry_t *e = lookup(fill_cursor, 0);
            if (!e || !e->present)
                break;
            fill_cursor++;
        }
        store(fill_cursor++, FILL_VALUE_SIZE, 0, 0);
    }
    return key_count;
}

static uint32_t touch_phase; /* rotates which chunks successive touches hit */
static uint32_t touch_calls; /* rotates the byte offset within a chunk */

/* touch(permille): modify permille/1000 of the stored value chunks, where a
 * chunk is one segment (a 4 KiB block, or a value's shorter malloc'd tail),
 * walking all values in key order. The selection is spread evenly
 * (Bresenham-style: chunk i is hit when floor((phase + (i+1)*permille)/1000)
 * steps up), and each call advances the phase by permille, which shifts the
 * selection by one chunk -- e.g. touch(10) hits every 100th chunk, a
 * different set each call for 100 calls. In each hit chunk, 8 bytes (fewer if
 * the chunk is shorter) at a rotating offset are XORed with a nonzero
 * constant, so the contents really change. Returns the chunks touched. */
GOLEMISH_EXPORT("touch")
int32_t kv_touch(int32_t permille) {
    if (permille <= 0)
        return 0;
    if (permille > 1000)
        permille = 1000;
    uint32_t acc = touch_phase, touched = 0;
    uint32_t offset = touch_calls * 8;
    entry_t *e;
    for (uint32_t key = 0; (e = next_present(&key)); key++) {
        uint32_t n = nseg(e->len);
        for (uint32_t i = 0; i < n; i++) {
            acc += (uint32_t)permille;
            if (acc < 1000)
                continue;
            acc -= 1000;
            uint8_t *p = e->segs[i];
            uint32_t sl = seg_len(e->len, i);
            uint32_t w = sl < 8 ? sl : 8;
            for (uint32_t j = 0; j < w; j++)
                p[(offset + j) % sl] ^= 0xa5;
            touched++;
        }
    }
    touch_phase = (touch_phase + (uint32_t)permille) % 1000;
    touch_calls++;
    return (int32_t)touched;
}

GOLEMISH_EXPORT("count")
int32_t kv_count(void) { return key_count; }

GOLEMISH_EXPORT("bytes")
int64_t kv_bytes(void) { return value_bytes; }

/* checksum(): FNV-1a 64 over every present key in ascending order, feeding
 * key (u32 LE), len (u32 LE), then the value bytes. Recomputed from memory on
 * each call, so it also verifies that a snapshot/restore kept every byte. */
GOLEMISH_EXPORT("checksum")
int64_t kv_checksum(void) {
    uint64_t h = FNV_OFFSET;
    entry_t *e;
    for (uint32_t key = 0; (e = next_present(&key)); key++) {
        h = fnv_u32(h, key);
        h = fnv_u32(h, e->len);
        h = value_hash(h, e);
    }
    return (int64_t)h;
}

/* mem_pages(): current linear memory size in 64 KiB wasm pages. */
GOLEMISH_EXPORT("mem_pages")
int32_t kv_mem_pages(void) { return (int32_t)__builtin_wasm_memory_size(0); }
