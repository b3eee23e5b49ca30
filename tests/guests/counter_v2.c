/*
 * counter, rebuilt with one more export (a compatible update). `golemish
 * test-replay` must accept it for histories of the real counter: every recorded
 * call is asked again, in the same order, with the same results.
 */
#include "../../guest_examples/counter.c"

GOLEMISH_EXPORT("add_twice")
int64_t add_twice(int64_t n) {
    do_add(n);
    return do_add(n);
}
