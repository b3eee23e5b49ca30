/*
 * journal -- a guest that makes many host calls per invocation.
 *
 * `append` makes exactly two host calls per record (clock_time_get and
 * random_get) and `clocks` makes one per iteration, which is what the
 * durable-vs-ephemeral benchmark measures: the cost of recording (and
 * replaying) host calls, not of guest computation.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "golemish.h"

typedef struct {
    int64_t t;  /* CLOCK_MONOTONIC in ns */
    uint64_t r; /* 8 random bytes */
} record_t;

static record_t *records;
static int64_t record_count;
static int64_t record_cap;

static int64_t monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* one clock_time_get */
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

/* 64-bit FNV-1a over the little-endian bytes of v. */
static uint64_t fnv_u64(uint64_t h, uint64_t v) {
    for (int i = 0; i < 8; i++) {
        h ^= (v >> (8 * i)) & 0xff;
        h *= FNV_PRIME;
    }
    return h;
}

/* Recomputed from the heap rather than kept as a running value, so the result
 * also checks that the whole record list survived snapshot/restore intact. */
GOLEMISH_EXPORT("checksum")
int64_t checksum(void) {
    uint64_t h = FNV_OFFSET;
    for (int64_t i = 0; i < record_count; i++) {
        h = fnv_u64(h, (uint64_t)records[i].t);
        h = fnv_u64(h, records[i].r);
    }
    return (int64_t)h;
}

GOLEMISH_EXPORT("append")
int64_t append(int32_t n) {
    for (int32_t i = 0; i < n; i++) {
        if (record_count == record_cap) {
            int64_t cap = record_cap ? record_cap * 2 : 16;
            record_t *grown = realloc(records, (size_t)cap * sizeof *grown);
            if (!grown)
                __builtin_trap();
            records = grown;
            record_cap = cap;
        }
        record_t *rec = &records[record_count];
        rec->t = monotonic_ns();
        /* wasi-libc's getentropy is a single random_get for <= 256 bytes. */
        if (getentropy(&rec->r, sizeof rec->r) != 0)
            __builtin_trap();
        record_count++;
    }
    return checksum();
}

GOLEMISH_EXPORT("count")
int64_t count(void) { return record_count; }

/* n clock reads, no state change; summing keeps every call observable. */
GOLEMISH_EXPORT("clocks")
int64_t clocks(int32_t n) {
    uint64_t sum = 0;
    for (int32_t i = 0; i < n; i++)
        sum += (uint64_t)monotonic_ns();
    return (int64_t)sum;
}

GOLEMISH_EXPORT("log")
int32_t log_lines(int32_t n) {
    for (int32_t i = 0; i < n; i++)
        printf("journal line %d\n", (int)i);
    fflush(stdout);
    return n;
}
