/*
 * mixer -- internal non-determinism around outside effects, for commit tests.
 *
 * `mix(rounds, reads)` does, per round, `reads` clock and random reads (entries
 * that wait in memory for a commit), then one POST /pay?round=R to SINK_URL (an
 * effect: a commit point), and after the last round `reads` more reads. Every
 * value read is folded into `state`, so a recovered worker whose replay took
 * other values than the recorded ones would differ in memory.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "golemish.h"

static uint64_t state = 0xcbf29ce484222325ULL;
static int64_t paid;

static void fold(uint64_t v) { state = (state ^ v) * 0x100000001b3ULL; }

static void reads(int32_t n) {
    for (int32_t i = 0; i < n; i++) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        fold((uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec);
        uint64_t r;
        if (getentropy(&r, sizeof r) != 0)
            __builtin_trap();
        fold(r);
    }
}

static int32_t pay(int32_t round) {
    const char *base = getenv("SINK_URL");
    char url[256], body[32];
    snprintf(url, sizeof url, "%s/pay", base ? base : "http://127.0.0.1:9");
    snprintf(body, sizeof body, "round %d", round);
    golemish_http_request_t req = {
        .method = "POST", .method_len = 4, .url = url, .url_len = (uint32_t)strlen(url),
        .body = (const uint8_t *)body, .body_len = (uint32_t)strlen(body),
        .timeout_ms = 5000,
    };
    golemish_http_response_t resp = {0};
    if (golemish_http_request(&req, &resp) != GOLEMISH_OK)
        return -1;
    free(resp.headers);
    free(resp.body);
    return (int32_t)resp.status;
}

GOLEMISH_EXPORT("mix") int64_t mix(int32_t rounds, int32_t n) {
    for (int32_t r = 1; r <= rounds; r++) {
        reads(n);
        if (pay(r) == 200)
            paid++;
    }
    reads(n);
    return (int64_t)(state >> 1);
}

GOLEMISH_EXPORT("paid") int64_t paid_count(void) { return paid; }
