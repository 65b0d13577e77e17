/* SPDX-License-Identifier: MIT */
/*
 * The null driver: no storage.  Reads leave the buffer alone, or fill it
 * with zeroes or a byte pattern; writes, flushes and discards succeed.
 * Optional latency per request (a coroutine sleep).  Options:
 *   size=1G  latency-ns=0  read-zeroes=off  read-pattern=<byte>
 */
#include <errno.h>

#include "block/block-int.h"

typedef struct NullState {
    int64_t latency_ns;
    int pattern;              /* -1: leave the buffer alone */
} NullState;

static const BlockOptDesc null_opts[] = {
    { "size", BLOCK_OPT_SIZE, "device length (default 1G)" },
    { "latency-ns", BLOCK_OPT_INT, "delay of each request" },
    { "read-zeroes", BLOCK_OPT_BOOL, "reads return zeroes" },
    { "read-pattern", BLOCK_OPT_INT, "reads return this byte (0-255)" },
    { NULL, 0, NULL },
};

static int null_open(VmmBlockNode *n, BlockOpts *o, int flags, GError **errp)
{
    NullState *s = n->opaque;
    uint64_t size;
    bool zeroes;
    int64_t pattern;
    (void)flags;

    if (!block_opts_take_size(o, "size", 1ull << 30, &size, errp) ||
        !block_opts_take_int(o, "latency-ns", 0, &s->latency_ns, errp) ||
        !block_opts_take_bool(o, "read-zeroes", false, &zeroes, errp) ||
        !block_opts_take_int(o, "read-pattern", -1, &pattern, errp)) {
        return -EINVAL;
    }
    if (s->latency_ns < 0) {
        g_set_error(errp, BLOCK_ERR_DOMAIN, EINVAL, "Option 'latency-ns' must be >= 0");
        return -EINVAL;
    }
    if (pattern < -1 || pattern > 255) {
        g_set_error(errp, BLOCK_ERR_DOMAIN, EINVAL,
                    "Option 'read-pattern' must be a byte (0-255), not %" PRId64, pattern);
        return -EINVAL;
    }
    if (zeroes && pattern > 0) {
        g_set_error(errp, BLOCK_ERR_DOMAIN, EINVAL,
                    "Options 'read-zeroes' and 'read-pattern' conflict");
        return -EINVAL;
    }
    s->pattern = zeroes ? 0 : (int)pattern;
    n->total_bytes = (int64_t)size;
    return 0;
}

static void coroutine_fn null_delay(NullState *s)
{
    if (s->latency_ns) {
        vmm_co_sleep_ns(NULL, s->latency_ns);
    }
}

static int coroutine_fn null_co_preadv(VmmBlockNode *n, int64_t offset, int64_t bytes,
                                       const struct iovec *iov, int iovcnt, int flags)
{
    NullState *s = n->opaque;
    (void)offset;
    (void)flags;
    if (s->pattern >= 0) {
        block_iov_memset(iov, iovcnt, s->pattern, bytes);
    }
    null_delay(s);
    return 0;
}

static int coroutine_fn null_co_pwritev(VmmBlockNode *n, int64_t offset, int64_t bytes,
                                        const struct iovec *iov, int iovcnt, int flags)
{
    (void)offset, (void)bytes, (void)iov, (void)iovcnt, (void)flags;
    null_delay(n->opaque);
    return 0;
}

static int coroutine_fn null_co_flush(VmmBlockNode *n)
{
    null_delay(n->opaque);
    return 0;
}

static int coroutine_fn null_co_pdiscard(VmmBlockNode *n, int64_t offset, int64_t bytes)
{
    (void)offset, (void)bytes;
    null_delay(n->opaque);
    return 0;
}

static int coroutine_fn null_co_pwrite_zeroes(VmmBlockNode *n, int64_t offset,
                                              int64_t bytes, int flags)
{
    (void)offset, (void)bytes, (void)flags;
    null_delay(n->opaque);
    return 0;
}

const BlockDriver block_driver_null = {
    .name = "null",
    .instance_size = sizeof(NullState),
    .opts = null_opts,
    .open = null_open,
    .co_preadv = null_co_preadv,
    .co_pwritev = null_co_pwritev,
    .co_flush = null_co_flush,
    .co_pdiscard = null_co_pdiscard,
    .co_pwrite_zeroes = null_co_pwrite_zeroes,
};
