/*
 * counter -- a small stateful guest for golemish.
 *
 * State lives in two places on purpose: a plain global (`total`, in the data
 * segment) and a malloc'd, realloc-grown history array (on the heap), so that
 * snapshots and replay are exercised for both kinds of linear memory.
 *
 * Each `add` also reads the realtime clock and the random source, so replaying
 * a worker only reproduces the same checksum if those host calls are replayed
 * from the oplog rather than re-executed.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "golemish.h"

typedef struct {
    int64_t n;         /* the amount added */
    int64_t timestamp; /* CLOCK_REALTIME in ns at the time of the add */
    uint32_t random;   /* a random value drawn for the add */
} entry_t;

static int64_t total;
static entry_t *history;
static int32_t history_count;
static int32_t history_cap;

static int64_t realtime_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts); /* one clock_time_get */
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void push_entry(int64_t n) {
    if (history_count == history_cap) {
        int32_t cap = history_cap ? history_cap * 2 : 4;
        entry_t *grown = realloc(history, (size_t)cap * sizeof *grown);
        if (!grown)
            __builtin_trap();
        history = grown;
        history_cap = cap;
    }
    entry_t *e = &history[history_count++];
    e->n = n;
    e->timestamp = realtime_ns();
    if (getentropy(&e->random, sizeof e->random) != 0) /* one random_get */
        __builtin_trap();
}

/* Shared by add and add_then_trap: mutate state, then report on stdout. */
static int64_t do_add(int64_t n) {
    total += n;
    push_entry(n);
    printf("add %lld -> total %lld (entry %d)\n", (long long)n, (long long)total,
           (int)history_count);
    fflush(stdout); /* the line must reach fd_write within this invocation */
    return total;
}

/* 64-bit FNV-1a, fed field by field (little-endian bytes) rather than over the
 * raw structs, so padding bytes never influence the result. */
#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

static uint64_t fnv_bytes(uint64_t h, uint64_t v, int nbytes) {
    for (int i = 0; i < nbytes; i++) {
        h ^= (v >> (8 * i)) & 0xff;
        h *= FNV_PRIME;
    }
    return h;
}

GOLEMISH_EXPORT("add")
int64_t add(int64_t n) { return do_add(n); }

GOLEMISH_EXPORT("get")
int64_t get(void) { return total; }

GOLEMISH_EXPORT("history_len")
int32_t history_len(void) { return history_count; }

GOLEMISH_EXPORT("checksum")
int64_t checksum(void) {
    uint64_t h = FNV_OFFSET;
    for (int32_t i = 0; i < history_count; i++) {
        h = fnv_bytes(h, (uint64_t)history[i].n, 8);
        h = fnv_bytes(h, (uint64_t)history[i].timestamp, 8);
        h = fnv_bytes(h, history[i].random, 4);
    }
    h = fnv_bytes(h, (uint64_t)total, 8);
    return (int64_t)h;
}

GOLEMISH_EXPORT("now")
int64_t now(void) { return realtime_ns(); }

GOLEMISH_EXPORT("roll")
int64_t roll(void) {
    uint64_t r;
    if (getentropy(&r, sizeof r) != 0) /* one random_get of 8 bytes */
        __builtin_trap();
    return (int64_t)r;
}

/* Mutates state and writes output, then traps: the runtime must roll the
 * worker back to its state from before this invocation. */
GOLEMISH_EXPORT("add_then_trap")
int64_t add_then_trap(int64_t n) {
    do_add(n);
    __builtin_trap();
}

/* Chunks are chained through their first word and anchored in a global, so
 * the allocations stay reachable and the compiler cannot drop them. */
static void *hogged;

/* zig's wasm malloc adds a small header and rounds large allocations up to a
 * power of two, so malloc(1 MiB) would take 2 MiB of linear memory. Asking
 * for slightly less makes each chunk cost exactly 1 MiB (16 wasm pages). */
#define HOG_CHUNK ((1u << 20) - 64)

GOLEMISH_EXPORT("hog")
int32_t hog(int32_t mib) {
    int32_t got = 0;
    while (got < mib) {
        void **p = malloc(HOG_CHUNK);
        if (!p) /* memory.grow was refused: report how far we got */
            break;
        memset(p, 0xab, HOG_CHUNK); /* touch every page */
        *p = hogged;
        hogged = p;
        got++;
    }
    return got;
}

/* Never returns; the volatile counter keeps the loop from being optimised
 * away (an empty infinite loop is undefined behaviour in C). */
GOLEMISH_EXPORT("spin")
int32_t spin(void) {
    volatile uint64_t counter = 0;
    for (;;)
        counter++;
}

GOLEMISH_EXPORT("f64_scale")
double f64_scale(double x, float y) { return x * y; }
