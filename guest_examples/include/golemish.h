/*
 * golemish.h -- the golemish host API for guests.
 *
 * Guests are wasm32-wasi reactor modules: they are instantiated once, then the
 * runtime calls their exported functions, one invocation at a time. WASI
 * (wasi_snapshot_preview1) covers clocks, randomness and stdio; this header
 * adds durable calls with outside effects. Every call here is recorded in the
 * worker's oplog: after a crash it is answered from the oplog, not run again.
 *
 * Calls return GOLEMISH_OK (0) or a GOLEMISH_ERR_* code. Buffers the host fills
 * with data of unknown size (HTTP bodies, promise payloads) are allocated
 * through the guest's `cabi_realloc` export (defined below) and must be
 * released with free().
 *
 * Only this file is needed: it carries no runtime internals.
 */
#ifndef GOLEMISH_H
#define GOLEMISH_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/* Export a function from the module under the given name, e.g.
 *     GOLEMISH_EXPORT("add") int64_t add(int64_t n) { ... }
 * Exports must use core wasm types only: int32_t, int64_t, float, double. */
#define GOLEMISH_EXPORT(name) __attribute__((export_name(name)))

#define GOLEMISH_IMPORT(name) __attribute__((import_module("golemish"), import_name(name)))

enum {
    GOLEMISH_OK = 0,
    GOLEMISH_ERR_REFUSED = 1, /* the host is not on an HTTP allow-list */
    GOLEMISH_ERR_NETWORK = 2, /* no response: connection failed or timed out (after retries) */
    GOLEMISH_ERR_INVALID = 3, /* a bad argument (pointer outside memory, bad UTF-8, ...) */
    GOLEMISH_ERR_UNKNOWN = 4, /* no such promise, worker or function */
    GOLEMISH_ERR_FAILED = 5,  /* the other worker's invocation failed */
    GOLEMISH_ERR_NOMEM = 6,   /* cabi_realloc returned NULL */
};

/* ---- HTTP ---------------------------------------------------------------- */

typedef struct {
    const char *method;   uint32_t method_len;   /* "GET", "POST", ... */
    const char *url;      uint32_t url_len;      /* http:// or https:// */
    const char *headers;  uint32_t headers_len;  /* "Name: value\n" lines */
    const uint8_t *body;  uint32_t body_len;
    uint32_t timeout_ms;                         /* 0: 30 s */
} golemish_http_request_t;

typedef struct {
    uint32_t status;
    char *headers;  uint32_t headers_len;        /* "Name: value\n" lines; free() */
    uint8_t *body;  uint32_t body_len;           /* free() */
} golemish_http_response_t;

/* Send a request and wait for the response. The host adds an Idempotency-Key
 * header derived from the worker and the oplog position: if the process dies
 * while the request is in flight, recovery sends it again with the same key,
 * so a server that honours the header sees one effect. A response that was
 * recorded is never requested again. Guests reach nothing by default, loopback
 * included: the host must be on an allow-list (`golemish deploy --allow-http`,
 * `golemish component config`, `golemish worker config --allow-http`), or the
 * call returns GOLEMISH_ERR_REFUSED. A malformed method, URL, port, header name
 * or a header value that is not printable ASCII returns GOLEMISH_ERR_INVALID.
 * The host sets the Host header itself. */
GOLEMISH_IMPORT("http_request")
int32_t golemish_http_request(const golemish_http_request_t *req, golemish_http_response_t *resp);

/* Retry failing HTTP calls (no response, or status >= 500): up to `attempts`
 * tries in all, waiting min_delay_ms, then twice as long each time, at most
 * max_delay_ms. Only the final outcome is recorded. The default is 1 attempt. */
GOLEMISH_IMPORT("set_retry_policy")
int32_t golemish_set_retry_policy(int32_t attempts, int32_t min_delay_ms, int32_t max_delay_ms);

/* ---- time ---------------------------------------------------------------- */

/* Sleep durably: the wake-up time is recorded, so after a restart the worker
 * sleeps only what is left. A sleep longer than a few seconds suspends the
 * worker (nothing is held in memory; the process may exit); it continues when
 * `golemish worker resume` (or the next command touching it) finds it due. */
GOLEMISH_IMPORT("sleep_ms")
int32_t golemish_sleep_ms(int64_t ms);

/* ---- promises ------------------------------------------------------------- */

/* Create a promise that something outside completes with
 * `golemish promise complete ID DATA`. Writes its id (at most 128 bytes, not
 * NUL-terminated) to buf and returns the length, or -GOLEMISH_ERR_INVALID. */
GOLEMISH_IMPORT("promise_create")
int32_t golemish_promise_create(char *buf, uint32_t cap);

typedef struct { uint8_t *ptr; uint32_t len; } golemish_bytes_t;

/* Wait for the promise's data (free() it). Until the promise is completed the
 * worker is suspended: `golemish invoke` returns "suspended, awaiting promise",
 * and the invocation finishes in the command that completes the promise. */
GOLEMISH_IMPORT("promise_await")
int32_t golemish_promise_await(const char *id, uint32_t id_len, golemish_bytes_t *out);

/* ---- other workers ---------------------------------------------------------- */

/* Invoke `function` on worker "component/name" (created on first use) with
 * numeric arguments, exactly once: the call carries an idempotency key derived
 * from this worker and the oplog position, and the result is recorded here.
 * Integers travel as int64; f32/f64 values as their IEEE-754 bit patterns. */
GOLEMISH_IMPORT("invoke")
int32_t golemish_invoke(const char *worker, uint32_t worker_len,
                        const char *function, uint32_t function_len,
                        const int64_t *args, uint32_t nargs,
                        int64_t *results, uint32_t nresults);

/* Invoke a typed function (the callee's component has a WIT interface), exactly
 * once, with a WAVE call such as `add-item({sku: "apple", qty: 2, price-cents: 5})`.
 * The result's WAVE text goes to *result (free() it; empty if no result). */
GOLEMISH_IMPORT("invoke_wave")
int32_t golemish_invoke_wave(const char *worker, uint32_t worker_len,
                             const char *call, uint32_t call_len, golemish_bytes_t *result);

/* ---- small calls ---------------------------------------------------------------- */

/* A fresh idempotency key (32 hex characters, recorded) to hand to third
 * parties; cap must be at least 32. Returns the length. */
GOLEMISH_IMPORT("idempotency_key")
int32_t golemish_idempotency_key(char *buf, uint32_t cap);

/* The worker's current oplog index (the same on replay). */
GOLEMISH_IMPORT("oplog_index")
int64_t golemish_oplog_index(void);

/* Atomic regions: if the process dies between begin and end, recovery runs the
 * whole region again instead of continuing in its middle. Regions nest; the
 * outermost open one is re-run. */
GOLEMISH_IMPORT("atomic_begin")
int64_t golemish_atomic_begin(void);
GOLEMISH_IMPORT("atomic_end")
int32_t golemish_atomic_end(int64_t region);

/* ---- manual updates ---------------------------------------------------------------- */

/* `golemish worker update W --to V --mode manual` carries a worker's state from one
 * component version to another whose memory layout differs. The running (old)
 * version exports golemish_save, the target (new) version exports golemish_load:
 *
 *   GOLEMISH_EXPORT("golemish_save") const golemish_saved_t *golemish_save(void);
 *       Returns a pointer to {ptr, len}: the bytes that describe the state. The host
 *       copies them out at once; the old instance is thrown away afterwards.
 *   GOLEMISH_EXPORT("golemish_load") int32_t golemish_load(uint8_t *data, uint32_t len);
 *       Called on a fresh instance of the new version (after _initialize) with the
 *       saved bytes in a buffer the host allocated through cabi_realloc: the guest
 *       owns it (free() it). Returns GOLEMISH_OK, or anything else to refuse.
 *
 * The saved bytes are recorded in the oplog's update entry, so recovery after the
 * update rebuilds the worker by loading them again. Both functions must therefore
 * be deterministic: no clock, random or other recorded host call (the update is
 * refused if they make one). Either failing leaves the worker on its old version. */
typedef struct {
    const uint8_t *ptr;
    uint32_t len;
} golemish_saved_t;

/* ---- the allocator the host uses to hand over results ------------------------------ */

#ifndef GOLEMISH_NO_REALLOC
/* The Component Model's allocation hook, backed by realloc. Weak, so a module
 * may define its own (as wit-bindgen glue does). */
__attribute__((weak, export_name("cabi_realloc")))
void *cabi_realloc(void *ptr, size_t old_size, size_t align, size_t new_size) {
    (void)old_size;
    (void)align; /* malloc's alignment (16) covers every core type */
    return new_size ? realloc(ptr, new_size) : (free(ptr), (void *)0);
}
#endif

#endif /* GOLEMISH_H */
