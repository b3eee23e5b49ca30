/*
 * golemish.h -- the golemish host API for guests.
 *
 * Guests are wasm32-wasi reactor modules: they are instantiated once, then the
 * runtime calls their exported functions, one invocation at a time. Everything
 * a guest needs from the outside world goes through WASI
 * (wasi_snapshot_preview1), which golemish records in its oplog so the worker
 * can be replayed deterministically after a crash.
 *
 * This header will declare golemish-specific host functions; for now it only
 * provides the export helper.
 */
#ifndef GOLEMISH_H
#define GOLEMISH_H

/* Export a function from the module under the given name, e.g.
 *     GOLEMISH_EXPORT("add") int64_t add(int64_t n) { ... }
 * Exports must use core wasm types only: int32_t, int64_t, float, double. */
#define GOLEMISH_EXPORT(name) __attribute__((export_name(name)))

#endif /* GOLEMISH_H */
