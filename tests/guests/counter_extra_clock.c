/*
 * counter with one extra clock read in every `add`: a non-deterministic change.
 * Replaying a history of the real counter against it must diverge at the first
 * recorded add, where the oplog holds a random_get and the guest asks for a
 * second clock_time_get.
 */
#include <time.h>

static int clock_gettime_twice(clockid_t id, struct timespec *ts) {
    struct timespec ignored;
    clock_gettime(id, &ignored);
    return clock_gettime(id, ts);
}
#define clock_gettime clock_gettime_twice

#include "../../guest_examples/counter.c"
