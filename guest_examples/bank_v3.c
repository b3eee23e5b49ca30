/*
 * bank v3 -- the third of four versions of one account, for `golemish worker update`.
 *
 * v1 has a bug: withdraw lets the balance go below zero. v2 fixes it without
 * changing what any past (non-overdrawing) input did, so an auto update replays.
 * v3 pays a bonus on deposits: replaying old history on it diverges. v4 keeps the
 * balance in cents in a new layout and takes v1-v3's state through golemish_load.
 * Each operation reads the clock, so replay must answer it from the oplog.
 */
#include <stdint.h>
#include <time.h>

#include "golemish.h"

static int64_t balance;
static int64_t ops;
static int64_t last_ns;

static void stamp(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    last_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    ops++;
}

GOLEMISH_EXPORT("deposit") int64_t deposit(int64_t n) {
    balance += n + n / 100; /* a 1% bonus: old deposits now give other results */
    stamp();
    return balance;
}

GOLEMISH_EXPORT("withdraw") int64_t withdraw(int64_t n) {
    balance -= n; /* the bug: no check against the balance */
    stamp();
    return balance;
}

GOLEMISH_EXPORT("balance") int64_t get_balance(void) { return balance; }
GOLEMISH_EXPORT("ops") int64_t get_ops(void) { return ops; }
GOLEMISH_EXPORT("version") int32_t version(void) { return 3; }

/* The saved form shared by v1-v3: balance and ops as two little-endian int64. */
static int64_t saved[2];
static golemish_saved_t out;

GOLEMISH_EXPORT("golemish_save") const golemish_saved_t *golemish_save(void) {
    saved[0] = balance;
    saved[1] = ops;
    out.ptr = (const uint8_t *)saved;
    out.len = sizeof saved;
    return &out;
}
