/* SPDX-License-Identifier: MIT */
/*
 * The raw format: a window [offset, offset + size) of its child "file".
 * Options: offset=0 size=<child length - offset>.
 */
#include <errno.h>

#include "block/block-int.h"

typedef struct RawState {
    int64_t offset;
    int64_t size;              /* -1: up to the child's end */
} RawState;

static const BlockOptDesc raw_opts[] = {
    { "offset", BLOCK_OPT_SIZE, "start of the window in the child" },
    { "size", BLOCK_OPT_SIZE, "length of the window" },
    { NULL, 0, NULL },
};

static const char *const raw_children[] = { "file", NULL };

static void raw_refresh_length(VmmBlockNode *n) GRAPH_RDLOCK
{
    RawState *s = n->opaque;
    int64_t child_len = n->file ? vk_atomic_read(&n->file->bs->total_bytes) : 0;
    int64_t len = s->size >= 0 ? s->size : MAX(child_len - s->offset, 0);
    vk_atomic_set(&n->total_bytes, len);
    if (n->file) {
        n->request_alignment = n->file->bs->request_alignment;
        n->mem_alignment = n->file->bs->mem_alignment;
        vk_atomic_set(&n->max_transfer,
                       block_node_cap_max_transfer(n, n->file->bs->max_transfer));
    }
}

static int raw_open(VmmBlockNode *n, BlockOpts *o, int flags, GError **errp) GRAPH_RDLOCK
{
    RawState *s = n->opaque;
    uint64_t off, size;
    bool has_size = block_opts_has(o, "size");
    (void)flags;

    if (!block_opts_take_size(o, "offset", 0, &off, errp) ||
        !block_opts_take_size(o, "size", 0, &size, errp)) {
        return -EINVAL;
    }
    int64_t child_len = vk_atomic_read(&n->file->bs->total_bytes);
    if ((int64_t)off > child_len) {
        g_set_error(errp, BLOCK_ERR_DOMAIN, EINVAL,
                    "Option 'offset' (%" PRIu64 ") is beyond the end of '%s' (%" PRId64 ")",
                    off, n->file->bs->node_name, child_len);
        return -EINVAL;
    }
    if (has_size && (int64_t)size > child_len - (int64_t)off) {
        g_set_error(errp, BLOCK_ERR_DOMAIN, EINVAL,
                    "Options 'offset' + 'size' (%" PRIu64 " + %" PRIu64 ") exceed the "
                    "length of '%s' (%" PRId64 ")", off, size, n->file->bs->node_name,
                    child_len);
        return -EINVAL;
    }
    s->offset = (int64_t)off;
    s->size = has_size ? (int64_t)size : -1;
    if (!VMM_IS_ALIGNED(s->offset, n->file->bs->request_alignment)) {
        g_set_error(errp, BLOCK_ERR_DOMAIN, EINVAL,
                    "Option 'offset' must be a multiple of %u (the alignment of '%s')",
                    n->file->bs->request_alignment, n->file->bs->node_name);
        return -EINVAL;
    }
    raw_refresh_length(n);
    return 0;
}

static int coroutine_fn raw_co_preadv(VmmBlockNode *n, int64_t offset, int64_t bytes,
                                      const struct iovec *iov, int iovcnt, int flags) GRAPH_RDLOCK
{
    RawState *s = n->opaque;
    return block_child_co_preadv(n->file, offset + s->offset, bytes, iov, iovcnt, flags);
}

static int coroutine_fn raw_co_pwritev(VmmBlockNode *n, int64_t offset, int64_t bytes,
                                       const struct iovec *iov, int iovcnt, int flags) GRAPH_RDLOCK
{
    RawState *s = n->opaque;
    return block_child_co_pwritev(n->file, offset + s->offset, bytes, iov, iovcnt, flags);
}

static int coroutine_fn raw_co_flush(VmmBlockNode *n) GRAPH_RDLOCK
{
    return n->file ? block_co_flush(n->file->bs) : -ENOMEDIUM;
}

static int coroutine_fn raw_co_pdiscard(VmmBlockNode *n, int64_t offset, int64_t bytes) GRAPH_RDLOCK
{
    RawState *s = n->opaque;
    return n->file ? block_co_pdiscard(n->file->bs, offset + s->offset, bytes) : -ENOMEDIUM;
}

static int coroutine_fn raw_co_pwrite_zeroes(VmmBlockNode *n, int64_t offset,
                                             int64_t bytes, int flags) GRAPH_RDLOCK
{
    RawState *s = n->opaque;
    return n->file ? block_co_pwrite_zeroes(n->file->bs, offset + s->offset, bytes, flags)
                   : -ENOMEDIUM;
}

const BlockDriver block_driver_raw = {
    .name = "raw",
    .instance_size = sizeof(RawState),
    .opts = raw_opts,
    .child_names = raw_children,
    .child_role = VMM_CHILD_DATA | VMM_CHILD_PRIMARY,
    .open = raw_open,
    .co_preadv = raw_co_preadv,
    .co_pwritev = raw_co_pwritev,
    .co_flush = raw_co_flush,
    .co_pdiscard = raw_co_pdiscard,
    .co_pwrite_zeroes = raw_co_pwrite_zeroes,
    .refresh_length = raw_refresh_length,
};
