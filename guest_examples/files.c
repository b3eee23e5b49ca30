/*
 * files -- a guest with files: a read-only one the component carries and a log in
 * the worker's durable directory, kept open between invocations.
 *
 *   golemish deploy files.wasm --file greeting.txt:/etc/files/greeting.txt:ro \
 *                              --file seed.txt:/data/seed.txt
 */
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>

#include "golemish.h"

static FILE *log_file;

/* Sum of the bytes of /etc/files/greeting.txt (read-only), or -1 if it cannot be read. */
GOLEMISH_EXPORT("greeting_sum")
int64_t greeting_sum(void) {
    FILE *f = fopen("/etc/files/greeting.txt", "r");
    if (!f)
        return -1;
    int64_t sum = 0;
    int c;
    while ((c = fgetc(f)) != EOF)
        sum += c;
    fclose(f);
    return sum;
}

/* 1 if opening the read-only file for writing is refused, else 0. */
GOLEMISH_EXPORT("write_refused")
int32_t write_refused(void) {
    FILE *f = fopen("/etc/files/greeting.txt", "w");
    if (f) {
        fclose(f);
        return 0;
    }
    return 1;
}

/* Appends n bytes to /data/log.txt through a descriptor that stays open between
 * invocations; returns the position after the write. */
GOLEMISH_EXPORT("log")
int64_t log_bytes(int32_t n) {
    if (!log_file)
        log_file = fopen("/data/log.txt", "a+");
    if (!log_file)
        return -1;
    for (int32_t i = 0; i < n; i++)
        fputc('a' + i % 26, log_file);
    fflush(log_file);
    return (int64_t)ftell(log_file);
}

/* Size of a file in /data: 0 seed.txt, 1 log.txt; -1 if it does not exist. */
GOLEMISH_EXPORT("data_size")
int64_t data_size(int32_t which) {
    struct stat st;
    if (stat(which ? "/data/log.txt" : "/data/seed.txt", &st) != 0)
        return -1;
    return (int64_t)st.st_size;
}

/* Appends one byte to /data/seed.txt (a writable file the component carried). */
GOLEMISH_EXPORT("touch_seed")
int64_t touch_seed(void) {
    FILE *f = fopen("/data/seed.txt", "a");
    if (!f)
        return -1;
    fputc('!', f);
    fclose(f);
    return data_size(0);
}
