/*
 * bank v4 -- the account with a new memory layout (see bank_v1.c).
 *
 * The state moved to the heap and the balance is kept in cents, so no memory
 * snapshot and no replay of v1-v3's history could rebuild it: the worker
 * crosses over with a manual update. golemish_load reads what v1-v3's
 * golemish_save wrote (balance and ops, two little-endian int64).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "golemish.h"

typedef struct {
    char tag[8];
    int64_t last_ns;
    int64_t cents;
    int64_t ops;
} account_t;

static account_t *acct;

static account_t *get(void) {
    if (!acct) {
        acct = calloc(1, sizeof *acct);
        if (!acct)
            __builtin_trap();
        memcpy(acct->tag, "bank-v4", 8);
    }
    return acct;
}

static void stamp(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    get()->last_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    get()->ops++;
}

GOLEMISH_EXPORT("deposit") int64_t deposit(int64_t n) {
    get()->cents += n * 100;
    stamp();
    return get()->cents / 100;
}

GOLEMISH_EXPORT("withdraw") int64_t withdraw(int64_t n) {
    if (n * 100 > get()->cents)
        return -1;
    get()->cents -= n * 100;
    stamp();
    return get()->cents / 100;
}

GOLEMISH_EXPORT("balance") int64_t get_balance(void) { return get()->cents / 100; }
GOLEMISH_EXPORT("ops") int64_t get_ops(void) { return get()->ops; }
GOLEMISH_EXPORT("version") int32_t version(void) { return 4; }

GOLEMISH_EXPORT("golemish_load") int32_t golemish_load(uint8_t *data, uint32_t len) {
    int64_t v[2];
    if (len != sizeof v) {
        free(data);
        return 1; /* not a state this version knows */
    }
    memcpy(v, data, sizeof v);
    free(data);
    get()->cents = v[0] * 100;
    get()->ops = v[1];
    return GOLEMISH_OK;
}
