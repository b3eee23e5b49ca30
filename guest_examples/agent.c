/*
 * agent -- a durable agent loop over the golemish host API.
 *
 * Each round: ask a (fake) LLM endpoint for the next action, sleep durably,
 * wait on a promise for a human's approval, then pay through a payment
 * endpoint. The runtime records every step, so killing the process anywhere
 * and resuming never pays twice: a payment cut off in flight is re-sent with
 * the same Idempotency-Key, and a recorded one is never sent again.
 *
 * The endpoint base URL comes from the environment, fixed when the worker is
 * created: `golemish invoke agent/a run 3 --env AGENT_URL=http://127.0.0.1:8000`.
 * Guests reach nothing by default: deploy with `--allow-http 127.0.0.1:8000`.
 * AGENT_SLEEP_MS sets the sleep between rounds (default 3000 ms).
 *
 * Smaller exports exercise one host call each, for tests.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "golemish.h"

static const char *base_url(void) {
    const char *url = getenv("AGENT_URL");
    return url ? url : "http://127.0.0.1:8000";
}

/* One HTTP call to base_url()+path; returns the status (or -error) and keeps the body. */
static int32_t call(const char *method, const char *path, const char *body, char **out_body) {
    char url[512];
    snprintf(url, sizeof url, "%s%s", base_url(), path);
    golemish_http_request_t req = {
        .method = method, .method_len = (uint32_t)strlen(method),
        .url = url, .url_len = (uint32_t)strlen(url),
        .headers = "Content-Type: text/plain\n", .headers_len = 25,
        .body = (const uint8_t *)body, .body_len = body ? (uint32_t)strlen(body) : 0,
        .timeout_ms = 5000,
    };
    golemish_http_response_t resp = {0};
    int32_t err = golemish_http_request(&req, &resp);
    if (err != GOLEMISH_OK) {
        printf("%s %s failed: error %d\n", method, path, err);
        fflush(stdout);
        return -err;
    }
    free(resp.headers);
    if (out_body) {
        *out_body = malloc(resp.body_len + 1);
        memcpy(*out_body, resp.body, resp.body_len);
        (*out_body)[resp.body_len] = 0;
    }
    free(resp.body);
    return (int32_t)resp.status;
}

GOLEMISH_EXPORT("fetch") int32_t fetch(int32_t n) {
    char path[64], *body = NULL;
    snprintf(path, sizeof path, "/item?n=%d", n);
    int32_t status = call("GET", path, NULL, &body);
    if (body) {
        printf("fetched %d: %s\n", n, body);
        fflush(stdout);
        free(body);
    }
    return status;
}

GOLEMISH_EXPORT("fetch_url") int32_t fetch_url(int32_t port) {
    /* A URL outside loopback, to test the allow-list: 10.255.255.1 is never reached. */
    char url[64];
    snprintf(url, sizeof url, "http://10.255.255.1:%d/", port);
    golemish_http_request_t req = {.method = "GET", .method_len = 3,
                                   .url = url, .url_len = (uint32_t)strlen(url)};
    golemish_http_response_t resp = {0};
    return golemish_http_request(&req, &resp);
}

GOLEMISH_EXPORT("pay") int32_t pay(int32_t cents) {
    char body[32];
    snprintf(body, sizeof body, "%d", cents);
    int32_t status = call("POST", "/pay", body, NULL);
    printf("paid %d cents: status %d\n", cents, status);
    fflush(stdout);
    return status;
}

GOLEMISH_EXPORT("retrying_pay") int32_t retrying_pay(int32_t cents) {
    golemish_set_retry_policy(4, 10, 100);
    return pay(cents);
}

GOLEMISH_EXPORT("nap") int64_t nap(int64_t ms) {
    golemish_sleep_ms(ms);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int32_t await_approval(const char *what) {
    char id[128];
    int32_t n = golemish_promise_create(id, sizeof id);
    if (n < 0) return -1;
    printf("awaiting approval for %s: %.*s\n", what, n, id);
    fflush(stdout);
    golemish_bytes_t data = {0};
    if (golemish_promise_await(id, (uint32_t)n, &data) != GOLEMISH_OK) return -1;
    int32_t yes = data.len >= 3 && (memcmp(data.ptr, "yes", 3) == 0 ||
                                    memcmp(data.ptr, "app", 3) == 0);
    printf("approval for %s: %.*s\n", what, (int)data.len, (const char *)data.ptr);
    fflush(stdout);
    free(data.ptr);
    return yes;
}

GOLEMISH_EXPORT("approval") int32_t approval(void) { return await_approval("this"); }

GOLEMISH_EXPORT("delegate") int64_t delegate(int64_t n) {
    int64_t result = -1;
    const char *w = "counter/shared", *f = "add";
    int32_t err = golemish_invoke(w, (uint32_t)strlen(w), f, (uint32_t)strlen(f), &n, 1,
                                  &result, 1);
    return err == GOLEMISH_OK ? result : -(int64_t)err;
}

GOLEMISH_EXPORT("key") int32_t key(void) {
    char buf[40];
    int32_t n = golemish_idempotency_key(buf, sizeof buf);
    printf("key %.*s at oplog index %lld\n", n, buf, (long long)golemish_oplog_index());
    fflush(stdout);
    return n;
}

/* Two payments that must go together: a crash between them re-runs both (each with
 * the key of its own, fresh oplog position, so the sink dedups nothing: the region
 * is for work that is safe to repeat as a whole). */
GOLEMISH_EXPORT("atomic_fetch") int32_t atomic_fetch(int32_t n) {
    int64_t region = golemish_atomic_begin();
    int32_t a = fetch(n), b = fetch(n + 1);
    golemish_atomic_end(region);
    return a + b;
}

static int64_t paid_total;

/* The agent loop: returns the total paid so far. */
GOLEMISH_EXPORT("run") int64_t run(int32_t rounds) {
    const char *s = getenv("AGENT_SLEEP_MS");
    int64_t sleep_ms = s ? atoll(s) : 3000;
    for (int32_t r = 1; r <= rounds; r++) {
        char path[64], *action = NULL;
        snprintf(path, sizeof path, "/next-action?round=%d", r);
        if (call("GET", path, NULL, &action) != 200 || !action) return -1;
        printf("round %d: the model says \"%s\"\n", r, action);
        fflush(stdout);
        int32_t cents = 0;
        if (sscanf(action, "pay %d", &cents) == 1 && cents > 0) {
            golemish_sleep_ms(sleep_ms);
            if (await_approval(action) == 1 && pay(cents) == 200) paid_total += cents;
        }
        free(action);
    }
    printf("done: paid %lld cents in all\n", (long long)paid_total);
    fflush(stdout);
    return paid_total;
}

/* A typed call to a worker whose component has a WIT interface (guest_examples/cart). */
GOLEMISH_EXPORT("shop") int32_t shop(int32_t qty) {
    char call[128];
    snprintf(call, sizeof call, "add-item({sku: \"widget\", qty: %d, price-cents: 250})", qty);
    const char *w = "cart/shared";
    golemish_bytes_t out = {0};
    int32_t err = golemish_invoke_wave(w, (uint32_t)strlen(w), call, (uint32_t)strlen(call), &out);
    if (err != GOLEMISH_OK) return -err;
    printf("cart/shared answered %.*s\n", (int)out.len, (const char *)out.ptr);
    fflush(stdout);
    int32_t items = atoi((const char *)out.ptr);
    free(out.ptr);
    return items;
}
