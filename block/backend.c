/* SPDX-License-Identifier: MIT */
/*
 * BlockBackend: the root of a tree of nodes, held by a device.  It counts
 * its own requests, queues new ones while drained, tells the device about
 * drain/resize/context changes, and wraps each request in the graph read
 * lock.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "block/block-int.h"
#include "block/graph-lock-int.h"

struct VmmBlockBackend {
    VmmBlockChild *root VMM_GUARDED_BY(vmm_graph_lock);
    VmmAioContext *ctx;                 /* atomic: changes under drain */
    unsigned in_flight;                 /* atomic */
    int quiesce_counter;                /* atomic reads, main-loop writes */
    bool disable_queuing;
    bool ctx_fixed_by_dev;
    VmmBlockDevOps dev_ops;
    void *dev_opaque;
    bool has_dev;

    VmmMutex queue_lock;
    BlockWaiter *queued;                /* under queue_lock */
};

/* ---- Parent callbacks --------------------------------------------------------- */

static void blk_child_drained_begin(VmmBlockChild *c)
{
    VmmBlockBackend *blk = c->parent;
    /* seq_cst RMW: pairs with blk_co_enter's in_flight increment. */
    if (vk_atomic_fetch_add(&blk->quiesce_counter, 1) == 0 && blk->dev_ops.drained_begin) {
        blk->dev_ops.drained_begin(blk->dev_opaque);
    }
}

static void blk_child_drained_end(VmmBlockChild *c)
{
    VmmBlockBackend *blk = c->parent;
    if (vk_atomic_fetch_sub(&blk->quiesce_counter, 1) != 1) {
        return;
    }
    if (blk->dev_ops.drained_end) {
        blk->dev_ops.drained_end(blk->dev_opaque);
    }
    vk_mutex_lock(&blk->queue_lock);
    BlockWaiter *w = block_waiters_take(&blk->queued);
    vk_mutex_unlock(&blk->queue_lock);
    block_wake_all(w);
}

static bool blk_child_drained_poll(VmmBlockChild *c)
{
    VmmBlockBackend *blk = c->parent;
    if (vk_atomic_load_acquire(&blk->in_flight) > 0) {  /* pairs with blk_dec_in_flight */
        return true;
    }
    return blk->dev_ops.drained_poll && blk->dev_ops.drained_poll(blk->dev_opaque);
}

static int blk_child_can_set_context(VmmBlockChild *c, VmmAioContext *ctx,
                                     GPtrArray *visited, GError **errp)
{
    VmmBlockBackend *blk = c->parent;
    for (guint i = 0; i < visited->len; i++) {
        if (g_ptr_array_index(visited, i) == blk) {
            return 0;
        }
    }
    g_ptr_array_add(visited, blk);
    if (blk->dev_ops.can_set_context) {
        return blk->dev_ops.can_set_context(blk->dev_opaque, ctx, errp);
    }
    if (blk->has_dev && !blk->ctx_fixed_by_dev) {
        g_set_error(errp, BLOCK_ERR_DOMAIN, EBUSY,
                    "A device uses this BlockBackend and does not allow it to move");
        return -EBUSY;
    }
    return 0;
}

static void blk_child_set_context(VmmBlockChild *c, VmmAioContext *ctx, GPtrArray *visited)
{
    VmmBlockBackend *blk = c->parent;
    for (guint i = 0; i < visited->len; i++) {
        if (g_ptr_array_index(visited, i) == blk) {
            return;
        }
    }
    g_ptr_array_add(visited, blk);
    vk_atomic_set(&blk->ctx, ctx);
    if (blk->dev_ops.set_context) {
        blk->dev_ops.set_context(blk->dev_opaque, ctx);
    }
}

static void blk_child_resize(VmmBlockChild *c)
{
    VmmBlockBackend *blk = c->parent;
    if (blk->dev_ops.resize) {
        blk->dev_ops.resize(blk->dev_opaque);
    }
}

static const char *blk_child_parent_name(VmmBlockChild *c)
{
    (void)c;
    return "BlockBackend";
}

const BlockChildClass block_child_of_backend = {
    .kind = "backend",
    .drained_begin = blk_child_drained_begin,
    .drained_end = blk_child_drained_end,
    .drained_poll = blk_child_drained_poll,
    .can_set_context = blk_child_can_set_context,
    .set_context = blk_child_set_context,
    .resize = blk_child_resize,
    .parent_name = blk_child_parent_name,
};

/* ---- Lifetime ------------------------------------------------------------------- */

VmmBlockBackend *vmm_blk_new(VmmAioContext *ctx, int *errp)
{
    (void)errp;
    VmmBlockBackend *blk = g_new0(VmmBlockBackend, 1);
    blk->ctx = ctx ? ctx : vmm_aio_context_main();
    vk_mutex_init(&blk->queue_lock);
    return blk;
}

VmmBlockBackend *vmm_blk_new_open(const char *options, int flags, GError **errp)
{
    VmmBlockNode *n = vmm_block_open(options, flags, errp);
    if (!n) {
        return NULL;
    }
    VmmBlockBackend *blk = vmm_blk_new(NULL, NULL);
    if (vmm_blk_insert(blk, n, errp) < 0) {
        vmm_block_node_unref(n);
        vmm_blk_unref(blk);
        return NULL;
    }
    vmm_block_node_unref(n);
    return blk;
}

void vmm_blk_unref(VmmBlockBackend *blk)
{
    if (!blk) {
        return;
    }
    vmm_blk_remove(blk);
    vk_mutex_destroy(&blk->queue_lock);
    g_free(blk);
}

int vmm_blk_insert(VmmBlockBackend *blk, VmmBlockNode *n, GError **errp)
{
    if (!blk || !n) {
        g_set_error(errp, BLOCK_ERR_DOMAIN, EINVAL, "blk_insert: NULL argument");
        return -EINVAL;
    }
    vmm_graph_rdlock_main_loop();
    bool has_root = blk->root != NULL;
    vmm_graph_rdunlock_main_loop();
    if (has_root) {
        g_set_error(errp, BLOCK_ERR_DOMAIN, EBUSY, "The BlockBackend already has a node");
        return -EBUSY;
    }
    int ret = block_node_move_context(n, vmm_blk_get_context(blk), NULL, errp);
    if (ret < 0) {
        return ret;
    }
    vmm_graph_wrlock();
    blk->root = block_child_attach(blk, &block_child_of_backend, n, "root",
                                   VMM_CHILD_DATA | VMM_CHILD_PRIMARY);
    vmm_graph_wrunlock();
    return 0;
}

void vmm_blk_remove(VmmBlockBackend *blk)
{
    vmm_graph_rdlock_main_loop();
    VmmBlockChild *root = blk->root;
    vmm_graph_rdunlock_main_loop();
    if (!root) {
        return;
    }
    VmmBlockNode *n = root->bs;
    vmm_block_node_ref(n);
    vmm_block_drained_begin(n);
    vmm_graph_wrlock();
    block_child_detach(root);
    blk->root = NULL;
    vmm_graph_wrunlock();
    vmm_block_drained_end(n);
    vmm_block_node_unref(n);     /* the edge's reference */
    vmm_block_node_unref(n);
}

VmmBlockNode *vmm_blk_node(VmmBlockBackend *blk) VMM_NO_TSA
{
    return blk->root ? blk->root->bs : NULL;
}

int vmm_blk_set_dev_ops(VmmBlockBackend *blk, const VmmBlockDevOps *ops, void *opaque)
{
    if (!blk) {
        return -EINVAL;
    }
    memset(&blk->dev_ops, 0, sizeof(blk->dev_ops));
    if (ops) {
        if (ops->size < offsetof(VmmBlockDevOps, drained_begin)) {
            return VMM_MISUSE_ERR(-EINVAL, "VmmBlockDevOps.size not set");
        }
        memcpy(&blk->dev_ops, ops, MIN(ops->size, sizeof(blk->dev_ops)));
    }
    blk->dev_opaque = opaque;
    blk->has_dev = ops != NULL;
    return 0;
}

int vmm_blk_set_context(VmmBlockBackend *blk, VmmAioContext *ctx, GError **errp)
{
    if (!blk || !ctx) {
        g_set_error(errp, BLOCK_ERR_DOMAIN, EINVAL, "blk_set_context: NULL argument");
        return -EINVAL;
    }
    vmm_graph_rdlock_main_loop();
    VmmBlockChild *root = blk->root;
    vmm_graph_rdunlock_main_loop();
    blk->ctx_fixed_by_dev = true;     /* the holder asked for it */
    int ret = 0;
    if (root) {
        ret = block_node_move_context(root->bs, ctx, NULL, errp);
    } else {
        vk_atomic_set(&blk->ctx, ctx);
        if (blk->dev_ops.set_context) {
            blk->dev_ops.set_context(blk->dev_opaque, ctx);
        }
    }
    blk->ctx_fixed_by_dev = false;
    return ret;
}

VmmAioContext *vmm_blk_get_context(VmmBlockBackend *blk)
{
    return vk_atomic_read(&blk->ctx);
}

int64_t vmm_blk_getlength(VmmBlockBackend *blk) VMM_NO_TSA
{
    VmmBlockNode *n = vmm_blk_node(blk);
    return n ? vmm_block_node_length(n) : -ENOMEDIUM;
}

bool vmm_blk_is_read_only(VmmBlockBackend *blk)
{
    VmmBlockNode *n = vmm_blk_node(blk);
    return n ? n->read_only : false;
}

uint32_t vmm_blk_request_alignment(VmmBlockBackend *blk)
{
    VmmBlockNode *n = vmm_blk_node(blk);
    return n ? n->request_alignment : 1;
}

uint32_t vmm_blk_max_transfer(VmmBlockBackend *blk)
{
    VmmBlockNode *n = vmm_blk_node(blk);
    return n ? vk_atomic_read(&n->max_transfer) : 0;
}

size_t vmm_blk_mem_alignment(VmmBlockBackend *blk)
{
    VmmBlockNode *n = vmm_blk_node(blk);
    return n ? n->mem_alignment : 1;
}

void vmm_blk_set_disable_request_queuing(VmmBlockBackend *blk, bool disable)
{
    blk->disable_queuing = disable;
}

void vmm_blk_drain(VmmBlockBackend *blk)
{
    VmmBlockNode *n = vmm_blk_node(blk);
    if (n) {
        vmm_block_node_ref(n);
        vmm_block_drained_begin(n);
        vmm_block_drained_end(n);
        vmm_block_node_unref(n);
    } else {
        /* Acquire: pairs with blk_dec_in_flight's (release) decrement. */
        VMM_AIO_WAIT_WHILE(vmm_blk_get_context(blk),
                           vk_atomic_load_acquire(&blk->in_flight) > 0);
    }
}

/* ---- Requests -------------------------------------------------------------------- */

static void blk_dec_in_flight(VmmBlockBackend *blk)
{
    vk_atomic_dec(&blk->in_flight);
    vmm_aio_wait_kick();
}

/* Count the request, or wait while the BlockBackend is drained. */
static void coroutine_fn blk_co_enter(VmmBlockBackend *blk)
{
    for (;;) {
        /* seq_cst RMW, then read quiesce_counter: pairs with the
         * drainer's counter RMW then in_flight read (drain.c). */
        vk_atomic_inc(&blk->in_flight);
        if (vk_likely(vk_atomic_read(&blk->quiesce_counter) == 0) ||
            blk->disable_queuing) {
            return;
        }
        vk_mutex_lock(&blk->queue_lock);
        if (vk_atomic_read(&blk->quiesce_counter) == 0) {
            vk_mutex_unlock(&blk->queue_lock);
            return;
        }
        blk_dec_in_flight(blk);
        block_wait_on(&blk->queued, &blk->queue_lock);
    }
}

typedef enum { OP_READ, OP_WRITE, OP_FLUSH, OP_DISCARD, OP_ZEROES } BlkOp;

static int coroutine_fn blk_co_do(VmmBlockBackend *blk, BlkOp op, int64_t offset,
                                  int64_t bytes, const struct iovec *iov, int iovcnt,
                                  int flags)
{
    if (!blk) {
        return -EINVAL;
    }
    blk_co_enter(blk);
    block_graph_co_rdlock_fast();       /* inline: no call per request */
    int ret;
    VmmBlockChild *root = blk->root;
    if (!root) {
        ret = -ENOMEDIUM;
    } else {
        switch (op) {
        case OP_READ:
            ret = block_co_preadv(root->bs, offset, bytes, iov, iovcnt, flags);
            break;
        case OP_WRITE:
            ret = block_co_pwritev(root->bs, offset, bytes, iov, iovcnt, flags);
            break;
        case OP_FLUSH:
            ret = block_co_flush(root->bs);
            break;
        case OP_DISCARD:
            ret = block_co_pdiscard(root->bs, offset, bytes);
            break;
        default:
            ret = block_co_pwrite_zeroes(root->bs, offset, bytes, flags);
            break;
        }
    }
    block_graph_co_rdunlock_fast();
    blk_dec_in_flight(blk);
    return ret;
}

int vmm_blk_co_preadv(VmmBlockBackend *blk, int64_t offset, int64_t bytes,
                      const struct iovec *iov, int iovcnt, int flags)
{
    return blk_co_do(blk, OP_READ, offset, bytes, iov, iovcnt, flags);
}

int vmm_blk_co_pwritev(VmmBlockBackend *blk, int64_t offset, int64_t bytes,
                       const struct iovec *iov, int iovcnt, int flags)
{
    return blk_co_do(blk, OP_WRITE, offset, bytes, iov, iovcnt, flags);
}

int vmm_blk_co_flush(VmmBlockBackend *blk)
{
    return blk_co_do(blk, OP_FLUSH, 0, 0, NULL, 0, 0);
}

int vmm_blk_co_pdiscard(VmmBlockBackend *blk, int64_t offset, int64_t bytes)
{
    return blk_co_do(blk, OP_DISCARD, offset, bytes, NULL, 0, 0);
}

int vmm_blk_co_pwrite_zeroes(VmmBlockBackend *blk, int64_t offset, int64_t bytes, int flags)
{
    return blk_co_do(blk, OP_ZEROES, offset, bytes, NULL, 0, flags);
}

/* ---- Synchronous wrappers ---------------------------------------------------------- */

typedef struct SyncReq {
    VmmBlockBackend *blk;
    BlkOp op;
    int64_t offset, bytes;
    const struct iovec *iov;
    int iovcnt, flags;
    int ret;
    bool done;
} SyncReq;

static void coroutine_fn sync_entry(void *opaque)
{
    SyncReq *r = opaque;
    r->ret = blk_co_do(r->blk, r->op, r->offset, r->bytes, r->iov, r->iovcnt, r->flags);
    /* Release: the waiter reads ret after seeing done. */
    vk_atomic_store_release(&r->done, true);
    vmm_aio_wait_kick();
}

static int blk_sync(VmmBlockBackend *blk, BlkOp op, int64_t offset, int64_t bytes,
                    const struct iovec *iov, int iovcnt, int flags)
{
    if (vmm_in_coroutine()) {
        return blk_co_do(blk, op, offset, bytes, iov, iovcnt, flags);
    }
    if (!blk) {
        return -EINVAL;
    }
    SyncReq r = { blk, op, offset, bytes, iov, iovcnt, flags, 0, false };
    int err = 0;
    VmmCoroutine *co = vmm_coroutine_create(sync_entry, &r, &err);
    if (!co) {
        return err ? err : -ENOMEM;
    }
    VmmAioContext *ctx = vmm_blk_get_context(blk);
    vmm_aio_co_enter(ctx, co);
    VMM_AIO_WAIT_WHILE(ctx, !vk_atomic_load_acquire(&r.done));
    return r.ret;
}

int vmm_blk_preadv(VmmBlockBackend *blk, int64_t offset, int64_t bytes,
                   const struct iovec *iov, int iovcnt, int flags)
{
    return blk_sync(blk, OP_READ, offset, bytes, iov, iovcnt, flags);
}

int vmm_blk_pwritev(VmmBlockBackend *blk, int64_t offset, int64_t bytes,
                    const struct iovec *iov, int iovcnt, int flags)
{
    return blk_sync(blk, OP_WRITE, offset, bytes, iov, iovcnt, flags);
}

int vmm_blk_pread(VmmBlockBackend *blk, int64_t offset, int64_t bytes, void *buf, int flags)
{
    struct iovec iov = { buf, bytes > 0 ? (size_t)bytes : 0 };
    return blk_sync(blk, OP_READ, offset, bytes, &iov, 1, flags);
}

int vmm_blk_pwrite(VmmBlockBackend *blk, int64_t offset, int64_t bytes, const void *buf,
                   int flags)
{
    struct iovec iov = { (void *)buf, bytes > 0 ? (size_t)bytes : 0 };
    return blk_sync(blk, OP_WRITE, offset, bytes, &iov, 1, flags);
}

int vmm_blk_flush(VmmBlockBackend *blk)
{
    return blk_sync(blk, OP_FLUSH, 0, 0, NULL, 0, 0);
}

int vmm_blk_pdiscard(VmmBlockBackend *blk, int64_t offset, int64_t bytes)
{
    return blk_sync(blk, OP_DISCARD, offset, bytes, NULL, 0, 0);
}

int vmm_blk_pwrite_zeroes(VmmBlockBackend *blk, int64_t offset, int64_t bytes, int flags)
{
    return blk_sync(blk, OP_ZEROES, offset, bytes, NULL, 0, flags);
}
