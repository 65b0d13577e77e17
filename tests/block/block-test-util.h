/* SPDX-License-Identifier: MIT */
/* Helpers shared by the block tests. */
#ifndef BLOCK_TEST_UTIL_H
#define BLOCK_TEST_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "vmmkit/block.h"

/* A temporary file of @size bytes filled with a position-dependent pattern
 * (byte i = (i * 7 + 3) & 0xff), or zeroes with @zero.  Returns its path
 * (g_free), deleted by tmpfile_remove. */
static inline char *tmpfile_make(int64_t size, bool zero)
{
    char *path = g_strdup_printf("%s/vmmkit-block-XXXXXX", g_get_tmp_dir());
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    char buf[65536];
    for (int64_t off = 0; off < size; off += (int64_t)sizeof(buf)) {
        size_t len = (size_t)MIN((int64_t)sizeof(buf), size - off);
        for (size_t i = 0; i < len; i++) {
            buf[i] = zero ? 0 : (char)(((off + (int64_t)i) * 7 + 3) & 0xff);
        }
        assert_int_equal(pwrite(fd, buf, len, off), (ssize_t)len);
    }
    close(fd);
    return path;
}

static inline unsigned char pattern_byte(int64_t off)
{
    return (unsigned char)((off * 7 + 3) & 0xff);
}

static inline void tmpfile_remove(char *path)
{
    unlink(path);
    g_free(path);
}

/* Open and expect failure whose message contains @needle; returns the
 * GError code. */
static inline int open_expect_error(const char *opts, const char *needle)
{
    GError *err = NULL;
    VmmBlockNode *n = vmm_block_open(opts, 0, &err);
    if (n || !err || !strstr(err->message, needle)) {
        print_error("open '%s': got %s, want an error containing '%s'\n", opts,
                    err ? err->message : "success", needle);
        fail();
    }
    int code = err->code;
    g_error_free(err);
    return code;
}

static inline VmmBlockNode *open_ok(const char *opts)
{
    GError *err = NULL;
    VmmBlockNode *n = vmm_block_open(opts, 0, &err);
    if (!n) {
        print_error("open '%s': %s\n", opts, err ? err->message : "?");
        fail();
    }
    return n;
}

/* Run @fn(@opaque) in a new coroutine in @ctx (any context, from the main
 * loop) and wait for it. */
typedef struct CoRun {
    void (*fn)(void *);
    void *opaque;
    bool done;
} CoRun;

/* A BlockBackend opened from a printf-style option string; fails the test
 * with GError's message when it cannot be opened. */
static inline VmmBlockBackend *blk_open(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
static inline VmmBlockBackend *blk_open(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *opts = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    GError *err = NULL;
    VmmBlockBackend *blk = vmm_blk_new_open(opts, 0, &err);
    if (!blk) {
        print_error("open '%s': %s\n", opts, err->message);
        fail();
    }
    return blk;
}

static void co_run_entry(void *opaque)
{
    CoRun *r = opaque;
    r->fn(r->opaque);
    __atomic_store_n(&r->done, true, __ATOMIC_RELEASE);
    vmm_aio_wait_kick();
}

static inline void co_run_in(VmmAioContext *ctx, void (*fn)(void *), void *opaque)
{
    CoRun r = { fn, opaque, false };
    int err = 0;
    VmmCoroutine *co = vmm_coroutine_create(co_run_entry, &r, &err);
    assert_non_null(co);
    vmm_aio_co_enter(ctx, co);
    VMM_AIO_WAIT_WHILE(ctx, !__atomic_load_n(&r.done, __ATOMIC_ACQUIRE));
}

#endif
