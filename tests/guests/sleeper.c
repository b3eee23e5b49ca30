/*
 * sleeper -- waits with nanosleep, which wasi-libc turns into WASI poll_oneoff on
 * a clock (not the golemish sleep): the test kit's virtual clock must skip it too.
 */
#include <stdint.h>
#include <time.h>

#include "golemish.h"

/* Sleeps ms milliseconds; returns the monotonic clock in ms after waking. */
GOLEMISH_EXPORT("snooze")
int64_t snooze(int64_t ms) {
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}
