/* SPDX-License-Identifier: MIT */
/*
 * The node request path: bounds checks, in-flight counting, alignment
 * (bounce buffers for reads and buffers, read-modify-write for writes, the
 * latter serialised against overlapping writes), FUA emulation, and the
 * write_zeroes fallback, and splitting at the node's max transfer size.
 * Everything here runs in a coroutine holding the graph read lock.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "block/block-int.h"
#include "util/trace.h"

/* ---- iovec helpers ------------------------------------------------------------- */

size_t block_iov_size(const struct iovec *iov, int iovcnt)
{
    size_t s = 0;
    for (int i = 0; i < iovcnt; i++) {
        s += iov[i].iov_len;
    }
    return s;
}

size_t block_iov_to_buf(const struct iovec *iov, int iovcnt, size_t offset, void *buf,
                        size_t bytes)
{
    size_t done = 0;
    for (int i = 0; i < iovcnt && done < bytes; i++) {
        if (offset >= iov[i].iov_len) {
            offset -= iov[i].iov_len;
            continue;
        }
        size_t len = MIN(iov[i].iov_len - offset, bytes - done);
        memcpy((char *)buf + done, (char *)iov[i].iov_base + offset, len);
        done += len;
        offset = 0;
    }
    return done;
}

size_t block_iov_from_buf(const struct iovec *iov, int iovcnt, size_t offset,
                          const void *buf, size_t bytes)
{
    size_t done = 0;
    for (int i = 0; i < iovcnt && done < bytes; i++) {
        if (offset >= iov[i].iov_len) {
            offset -= iov[i].iov_len;
            continue;
        }
        size_t len = MIN(iov[i].iov_len - offset, bytes - done);
        memcpy((char *)iov[i].iov_base + offset, (const char *)buf + done, len);
        done += len;
        offset = 0;
    }
    return done;
}

void block_iov_memset(const struct iovec *iov, int iovcnt, int c, size_t bytes)
{
    for (int i = 0; i < iovcnt && bytes; i++) {
        size_t len = MIN(iov[i].iov_len, bytes);
        memset(iov[i].iov_base, c, len);
        bytes -= len;
    }
}

/* The part [@skip, @skip + @bytes) of @iov as an iovec array in @dst
 * (@cap entries).  Returns the number of entries it needs; if that is
 * more than @cap, @dst holds only the first @cap. */
int block_iov_slice(const struct iovec *iov, int iovcnt, size_t skip, size_t bytes,
                    struct iovec *dst, int cap)
{
    int n = 0;
    for (int i = 0; i < iovcnt && bytes; i++) {
        if (skip >= iov[i].iov_len) {
            skip -= iov[i].iov_len;
            continue;
        }
        size_t len = MIN(iov[i].iov_len - skip, bytes);
        if (n < cap) {
            dst[n] = (struct iovec){ (char *)iov[i].iov_base + skip, len };
        }
        n++;
        bytes -= len;
        skip = 0;
    }
    return n;
}

static void *bounce_alloc(VmmBlockNode *n, size_t bytes)
{
    size_t align = MAX(n->mem_alignment, (size_t)n->request_alignment);
    align = MAX(align, sizeof(void *));
    void *p = NULL;
    if (posix_memalign(&p, align, bytes ? bytes : align) != 0) {
        return NULL;
    }
    return p;
}

static bool iov_mem_aligned(VmmBlockNode *n, const struct iovec *iov, int iovcnt,
                            int64_t bytes)
{
    size_t a = n->mem_alignment;
    if (a <= 1) {
        return true;
    }
    for (int i = 0; i < iovcnt && bytes > 0; i++) {
        size_t len = MIN(iov[i].iov_len, (size_t)bytes);
        if ((uintptr_t)iov[i].iov_base % a || len % a) {
            return false;
        }
        bytes -= len;
    }
    return true;
}

/* Common checks: 0, or -errno.  @iov may be NULL when @need_iov is false. */
static int check_request(VmmBlockNode *n, int64_t offset, int64_t bytes,
                         const struct iovec *iov, int iovcnt, bool need_iov)
{
    if (offset < 0 || bytes < 0 || bytes > INT64_MAX - offset) {
        return -EINVAL;
    }
    if (offset + bytes > vk_atomic_read(&n->total_bytes)) {
        return -ERANGE;
    }
    if (need_iov && (iovcnt < 0 || (iovcnt > 0 && !iov) ||
                     block_iov_size(iov, iovcnt) < (uint64_t)bytes)) {
        return -EINVAL;
    }
    return 0;
}

/* ---- Serialising overlapping writes around read-modify-write ----------------- */

static bool overlaps(BlockTrackedReq *a, BlockTrackedReq *b)
{
    return a->start < b->end && b->start < a->end;
}

static void coroutine_fn track_begin(VmmBlockNode *n, BlockTrackedReq *me)
{
    vk_mutex_lock(&n->reqs_lock);
    for (;;) {
        BlockTrackedReq *r;
        for (r = n->tracked; r; r = r->next) {
            if ((r->serialising || me->serialising) && overlaps(r, me)) {
                break;
            }
        }
        if (!r) {
            break;
        }
        block_wait_on(&r->waiters, &n->reqs_lock);
        vk_mutex_lock(&n->reqs_lock);
    }
    me->next = n->tracked;
    n->tracked = me;
    vk_mutex_unlock(&n->reqs_lock);
}

static void track_end(VmmBlockNode *n, BlockTrackedReq *me)
{
    vk_mutex_lock(&n->reqs_lock);
    for (BlockTrackedReq **pp = &n->tracked; *pp; pp = &(*pp)->next) {
        if (*pp == me) {
            *pp = me->next;
            break;
        }
    }
    BlockWaiter *w = block_waiters_take(&me->waiters);
    vk_mutex_unlock(&n->reqs_lock);
    block_wake_all(w);
}

/* ---- Reads ------------------------------------------------------------------------ */

static int coroutine_fn read_bounced(VmmBlockNode *n, int64_t offset, int64_t bytes,
                                     const struct iovec *iov, int iovcnt, int flags)
    GRAPH_RDLOCK
{
    uint32_t align = n->request_alignment;
    int64_t start = VMM_ALIGN_DOWN(offset, (int64_t)align);
    int64_t end = VMM_ALIGN_UP(offset + bytes, (int64_t)align);
    void *buf = bounce_alloc(n, end - start);
    if (!buf) {
        return -ENOMEM;
    }
    struct iovec biov = { buf, (size_t)(end - start) };
    int ret = n->drv->co_preadv(n, start, end - start, &biov, 1, flags);
    if (ret == 0) {
        block_iov_from_buf(iov, iovcnt, 0, (char *)buf + (offset - start), bytes);
    }
    free(buf);
    return ret;
}

static int coroutine_fn read_one(VmmBlockNode *n, int64_t offset, int64_t bytes,
                                 const struct iovec *iov, int iovcnt, int flags)
    GRAPH_RDLOCK
{
    uint32_t align = n->request_alignment;
    if (vk_likely((align <= 1 || (VMM_IS_ALIGNED(offset, align) &&
                                   VMM_IS_ALIGNED(bytes, align))) &&
                   iov_mem_aligned(n, iov, iovcnt, bytes))) {
        return n->drv->co_preadv(n, offset, bytes, iov, iovcnt, flags);
    }
    return read_bounced(n, offset, bytes, iov, iovcnt, flags);
}

/* ---- Splitting at the max transfer size ------------------------------------------- */

/* The largest chunk the node takes, or 0: no limit.  Every store of
 * max_transfer goes through block_node_cap_max_transfer() (graph.c), which
 * keeps it a multiple of the alignment; it changes only under drain. */
static int64_t chunk_limit(VmmBlockNode *n)
{
    return vk_atomic_read(&n->max_transfer);
}

/* Length of the chunk at @offset (at most @bytes): chunks after the first
 * start aligned, and each, padded to the alignment, spans at most @limit. */
static int64_t chunk_len(VmmBlockNode *n, int64_t limit, int64_t offset, int64_t bytes)
{
    int64_t start = VMM_ALIGN_DOWN(offset, (int64_t)n->request_alignment);
    return MIN(bytes, start + limit - offset);
}

/* read_one or write_one (callers hold the read lock: split_rw is GRAPH_RDLOCK;
 * clang cannot annotate a function type). */
typedef int coroutine_fn IoOneFn(VmmBlockNode *n, int64_t offset, int64_t bytes,
                                 const struct iovec *iov, int iovcnt, int flags);

#define SLICE_STACK 16

/* Run @fn on each chunk of the request in order; stop at the first error
 * and return it (later chunks are not issued). */
static int coroutine_fn split_rw(VmmBlockNode *n, IoOneFn *fn, int64_t limit,
                                 int64_t offset, int64_t bytes, const struct iovec *iov,
                                 int iovcnt, int flags) GRAPH_RDLOCK
{
    int64_t done = 0;
    int ret = 0;
    while (done < bytes && ret == 0) {
        int64_t len = chunk_len(n, limit, offset + done, bytes - done);
        struct iovec stack[SLICE_STACK];
        struct iovec *v = stack;
        int cnt = block_iov_slice(iov, iovcnt, done, len, stack, SLICE_STACK);
        if (cnt > SLICE_STACK) {
            v = g_new(struct iovec, cnt);
            block_iov_slice(iov, iovcnt, done, len, v, cnt);
        }
        ret = fn(n, offset + done, len, v, cnt, flags);
        if (v != stack) {
            g_free(v);
        }
        done += len;
    }
    return ret;
}

int block_co_preadv(VmmBlockNode *n, int64_t offset, int64_t bytes,
                    const struct iovec *iov, int iovcnt, int flags)
{
    int ret = check_request(n, offset, bytes, iov, iovcnt, true);
    if (ret < 0 || bytes == 0) {
        return ret;
    }
    block_inc_in_flight(n);
    TRACE_PROBE(block_read, n, offset, bytes);
    int64_t limit = chunk_limit(n);
    if (vk_likely(limit == 0 || chunk_len(n, limit, offset, bytes) == bytes)) {
        ret = read_one(n, offset, bytes, iov, iovcnt, flags);
    } else {
        ret = split_rw(n, read_one, limit, offset, bytes, iov, iovcnt, flags);
    }
    TRACE_PROBE(block_read_done, n, offset, ret);
    block_dec_in_flight(n);
    return ret;
}

/* ---- Writes ----------------------------------------------------------------------- */

/* Misaligned write: read the partial head/tail blocks, merge, write. */
static int coroutine_fn write_rmw(VmmBlockNode *n, int64_t offset, int64_t bytes,
                                  const struct iovec *iov, int iovcnt, int flags)
    GRAPH_RDLOCK
{
    int64_t align = n->request_alignment;
    int64_t start = VMM_ALIGN_DOWN(offset, align);
    int64_t end = VMM_ALIGN_UP(offset + bytes, align);
    char *buf = bounce_alloc(n, end - start);
    if (!buf) {
        return -ENOMEM;
    }
    int ret = 0;
    if (start != offset) {
        struct iovec h = { buf, (size_t)align };
        ret = n->drv->co_preadv(n, start, align, &h, 1, 0);
    }
    if (ret == 0 && end != offset + bytes && (end - align > start || start == offset)) {
        struct iovec t = { buf + (end - align - start), (size_t)align };
        ret = n->drv->co_preadv(n, end - align, align, &t, 1, 0);
    }
    if (ret == 0) {
        block_iov_to_buf(iov, iovcnt, 0, buf + (offset - start), bytes);
        struct iovec w = { buf, (size_t)(end - start) };
        ret = n->drv->co_pwritev(n, start, end - start, &w, 1, flags);
    }
    free(buf);
    return ret;
}

static int coroutine_fn write_bounced(VmmBlockNode *n, int64_t offset, int64_t bytes,
                                      const struct iovec *iov, int iovcnt, int flags)
    GRAPH_RDLOCK
{
    void *buf = bounce_alloc(n, bytes);
    if (!buf) {
        return -ENOMEM;
    }
    block_iov_to_buf(iov, iovcnt, 0, buf, bytes);
    struct iovec b = { buf, (size_t)bytes };
    int ret = n->drv->co_pwritev(n, offset, bytes, &b, 1, flags);
    free(buf);
    return ret;
}

/* One chunk of a write (no FUA: the caller flushes once after all). */
static int coroutine_fn write_one(VmmBlockNode *n, int64_t offset, int64_t bytes,
                                  const struct iovec *iov, int iovcnt, int dflags)
    GRAPH_RDLOCK
{
    int ret;
    uint32_t align = n->request_alignment;
    if (vk_likely(align <= 1)) {
        ret = iov_mem_aligned(n, iov, iovcnt, bytes)
            ? n->drv->co_pwritev(n, offset, bytes, iov, iovcnt, dflags)
            : write_bounced(n, offset, bytes, iov, iovcnt, dflags);
    } else {
        BlockTrackedReq me = {
            .start = VMM_ALIGN_DOWN(offset, (int64_t)align),
            .end = VMM_ALIGN_UP(offset + bytes, (int64_t)align),
        };
        me.serialising = me.start != offset || me.end != offset + bytes;
        track_begin(n, &me);
        if (me.serialising) {
            ret = write_rmw(n, offset, bytes, iov, iovcnt, dflags);
        } else if (iov_mem_aligned(n, iov, iovcnt, bytes)) {
            ret = n->drv->co_pwritev(n, offset, bytes, iov, iovcnt, dflags);
        } else {
            ret = write_bounced(n, offset, bytes, iov, iovcnt, dflags);
        }
        track_end(n, &me);
    }
    return ret;
}

int block_co_pwritev(VmmBlockNode *n, int64_t offset, int64_t bytes,
                     const struct iovec *iov, int iovcnt, int flags)
{
    int ret = check_request(n, offset, bytes, iov, iovcnt, true);
    if (ret < 0 || bytes == 0) {
        return ret;
    }
    if (n->read_only) {
        return -EPERM;
    }
    block_inc_in_flight(n);
    TRACE_PROBE(block_write, n, offset, bytes, flags);
    int dflags = flags & ~VMM_REQ_FUA;
    int64_t limit = chunk_limit(n);
    if (vk_likely(limit == 0 || chunk_len(n, limit, offset, bytes) == bytes)) {
        ret = write_one(n, offset, bytes, iov, iovcnt, dflags);
    } else {
        ret = split_rw(n, write_one, limit, offset, bytes, iov, iovcnt, dflags);
    }
    if (ret == 0 && (flags & VMM_REQ_FUA)) {
        ret = n->drv->co_flush ? n->drv->co_flush(n) : 0;
    }
    TRACE_PROBE(block_write_done, n, offset, ret);
    block_dec_in_flight(n);
    return ret;
}

/* ---- Flush, discard, write zeroes ------------------------------------------------ */

int block_co_flush(VmmBlockNode *n)
{
    if (n->read_only || !n->drv->co_flush) {
        return 0;
    }
    block_inc_in_flight(n);
    TRACE_PROBE(block_flush, n);
    int ret = n->drv->co_flush(n);
    TRACE_PROBE(block_flush_done, n, ret);
    block_dec_in_flight(n);
    return ret;
}

int block_co_pdiscard(VmmBlockNode *n, int64_t offset, int64_t bytes)
{
    int ret = check_request(n, offset, bytes, NULL, 0, false);
    if (ret < 0) {
        return ret;
    }
    if (n->read_only) {
        return -EPERM;
    }
    /* Discard is advisory: shrink to whole aligned blocks. */
    int64_t align = n->request_alignment;
    int64_t start = VMM_ALIGN_UP(offset, align);
    int64_t end = VMM_ALIGN_DOWN(offset + bytes, align);
    if (end <= start || !n->drv->co_pdiscard) {
        return 0;
    }
    block_inc_in_flight(n);
    int64_t limit = chunk_limit(n);
    ret = 0;
    for (int64_t off = start; off < end && ret == 0; ) {
        int64_t len = limit ? MIN(end - off, limit) : end - off;
        ret = n->drv->co_pdiscard(n, off, len);
        off += len;
    }
    block_dec_in_flight(n);
    return ret == -ENOTSUP ? 0 : ret;
}

#define ZERO_CHUNK (1 << 20)

static int coroutine_fn zeroes_by_writes(VmmBlockNode *n, int64_t offset, int64_t bytes,
                                         int flags) GRAPH_RDLOCK
{
    size_t chunk = MIN((int64_t)ZERO_CHUNK, bytes);
    void *buf = bounce_alloc(n, chunk);
    if (!buf) {
        return -ENOMEM;
    }
    memset(buf, 0, chunk);
    int ret = 0;
    while (bytes > 0 && ret == 0) {
        int64_t len = MIN((int64_t)chunk, bytes);
        struct iovec v = { buf, (size_t)len };
        ret = block_co_pwritev(n, offset, len, &v, 1, flags & VMM_REQ_FUA);
        offset += len;
        bytes -= len;
    }
    free(buf);
    return ret;
}

/* The driver's write_zeroes in chunks of at most the max transfer size
 * (offset and bytes aligned).  -ENOTSUP on the first chunk falls back to
 * writes for the whole request; on a later one, for the rest. */
static int coroutine_fn zeroes_split(VmmBlockNode *n, int64_t offset, int64_t bytes,
                                     int flags) GRAPH_RDLOCK
{
    int64_t limit = chunk_limit(n);
    int64_t done = 0;
    int ret = 0;
    while (done < bytes && ret == 0) {
        int64_t len = limit ? MIN(bytes - done, limit) : bytes - done;
        ret = n->drv->co_pwrite_zeroes(n, offset + done, len, flags);
        if (ret == -ENOTSUP && done > 0) {
            ret = zeroes_by_writes(n, offset + done, bytes - done, flags);
            break;
        }
        done += len;
    }
    return ret;
}

int block_co_pwrite_zeroes(VmmBlockNode *n, int64_t offset, int64_t bytes, int flags)
{
    int ret = check_request(n, offset, bytes, NULL, 0, false);
    if (ret < 0 || bytes == 0) {
        return ret;
    }
    if (n->read_only) {
        return -EPERM;
    }
    int64_t align = n->request_alignment;
    ret = -ENOTSUP;
    if (n->drv->co_pwrite_zeroes && VMM_IS_ALIGNED(offset, align) &&
        VMM_IS_ALIGNED(bytes, align)) {
        block_inc_in_flight(n);
        ret = zeroes_split(n, offset, bytes, flags & ~VMM_REQ_FUA);
        if (ret == 0 && (flags & VMM_REQ_FUA) && n->drv->co_flush) {
            ret = n->drv->co_flush(n);
        }
        block_dec_in_flight(n);
    }
    if (ret == -ENOTSUP) {
        ret = zeroes_by_writes(n, offset, bytes, flags);
    }
    return ret;
}

/* ---- Child and public forms ------------------------------------------------------- */

int block_child_co_preadv(VmmBlockChild *c, int64_t offset, int64_t bytes,
                          const struct iovec *iov, int iovcnt, int flags)
{
    return c ? block_co_preadv(c->bs, offset, bytes, iov, iovcnt, flags) : -ENOMEDIUM;
}

int block_child_co_pwritev(VmmBlockChild *c, int64_t offset, int64_t bytes,
                           const struct iovec *iov, int iovcnt, int flags)
{
    return c ? block_co_pwritev(c->bs, offset, bytes, iov, iovcnt, flags) : -ENOMEDIUM;
}

int vmm_block_co_preadv(VmmBlockNode *n, int64_t offset, int64_t bytes,
                        const struct iovec *iov, int iovcnt, int flags)
{
    return n ? block_co_preadv(n, offset, bytes, iov, iovcnt, flags) : -EINVAL;
}

int vmm_block_co_pwritev(VmmBlockNode *n, int64_t offset, int64_t bytes,
                         const struct iovec *iov, int iovcnt, int flags)
{
    return n ? block_co_pwritev(n, offset, bytes, iov, iovcnt, flags) : -EINVAL;
}
