/* SPDX-License-Identifier: MIT */
/*
 * Drain: quiesce a node's parents, then wait in the main loop until no
 * request is in flight in the node or its parents, wherever those requests
 * run.  Requests count themselves in n->in_flight; the decrement kicks the
 * waiting main loop (vmm_aio_wait_kick), so a drain waiting for I/O in an
 * iothread needs nothing from that iothread but its normal progress.
 *
 * Barrier pairing: the drainer increments quiesce_counter (seq_cst RMW),
 * then reads in_flight; a BlockBackend request increments its in_flight
 * (seq_cst RMW), then reads quiesce_counter (backend.c).  One of the two
 * sees the other: either the request queues itself, or the drain waits
 * for it.  block_dec_in_flight's kick has its own full barrier, paired
 * with the one in vmm_aio_wait_begin_() of VMM_AIO_WAIT_WHILE.
 */
#include <errno.h>

#include "block/block-int.h"

int block_drain_all_count;

void block_inc_in_flight(VmmBlockNode *n)
{
    vk_atomic_inc(&n->in_flight);
}

void block_dec_in_flight(VmmBlockNode *n)
{
    vk_atomic_dec(&n->in_flight);
    vmm_aio_wait_kick();
}

/* Acquire, here and in block_node_drain_busy: pairs with the (seq_cst,
 * hence release) decrement in block_dec_in_flight, so whoever sees a count
 * of 0 also sees everything the finished requests wrote (their data). */
unsigned vmm_block_node_in_flight(VmmBlockNode *n)
{
    return vk_atomic_load_acquire(&n->in_flight);
}

bool vmm_block_node_quiesced(VmmBlockNode *n)
{
    return vk_atomic_read(&n->quiesce_counter) > 0;
}

static void parents_drained_begin(VmmBlockNode *n) VMM_NO_TSA
{
    for (VmmBlockChild *c = n->parents; c; c = c->next_parent) {
        if (!c->quiesced_parent) {
            c->quiesced_parent = true;
            if (c->klass->drained_begin) {
                c->klass->drained_begin(c);
            }
        }
    }
}

static void parents_drained_end(VmmBlockNode *n) VMM_NO_TSA
{
    for (VmmBlockChild *c = n->parents; c; c = c->next_parent) {
        if (c->quiesced_parent) {
            c->quiesced_parent = false;
            if (c->klass->drained_end) {
                c->klass->drained_end(c);
            }
        }
    }
}

/* Main loop: the main loop is the only graph writer, so reading the
 * parents list here needs no lock. */
bool block_node_drain_busy(VmmBlockNode *n) VMM_NO_TSA
{
    if (vk_atomic_load_acquire(&n->in_flight) > 0) {
        return true;
    }
    for (VmmBlockChild *c = n->parents; c; c = c->next_parent) {
        if (c->klass->drained_poll && c->klass->drained_poll(c)) {
            return true;
        }
    }
    return false;
}

void block_drained_begin_nopoll(VmmBlockNode *n)
{
    /* seq_cst RMW: pairs with the request's in_flight increment (see top). */
    if (vk_atomic_fetch_add(&n->quiesce_counter, 1) == 0) {
        parents_drained_begin(n);
    }
}

/* From a coroutine, drain runs in a main-loop BH and the coroutine waits
 * (as QEMU's bdrv_co_yield_to_drain).  The coroutine must not itself be
 * one of the requests being drained. */
typedef struct DrainHop {
    VmmBlockNode *n;
    bool begin;
    VmmCoroutine *co;
} DrainHop;

static void drain_hop_bh(void *opaque)
{
    DrainHop *d = opaque;
    VmmCoroutine *co = d->co;
    if (d->begin) {
        vmm_block_drained_begin(d->n);
    } else {
        vmm_block_drained_end(d->n);
    }
    vmm_aio_co_wake(co);        /* d lives on co's stack: not used after */
}

static bool drain_hop(VmmBlockNode *n, bool begin)
{
    if (!vmm_in_coroutine()) {
        return false;
    }
    DrainHop d = { n, begin, vmm_coroutine_self() };
    if (vmm_bh_schedule_oneshot(vmm_aio_context_main(), drain_hop_bh, &d, "drain-hop") < 0) {
        VMM_MISUSE("cannot schedule the drain in the main loop");
        return true;
    }
    vmm_coroutine_yield();
    return true;
}

void vmm_block_drained_begin(VmmBlockNode *n)
{
    if (!n) {
        VMM_MISUSE("NULL node");
        return;
    }
    if (drain_hop(n, true)) {
        return;
    }
    vmm_block_node_ref(n);
    block_drained_begin_nopoll(n);
    VMM_AIO_WAIT_WHILE(vmm_block_node_get_context(n), block_node_drain_busy(n));
    vmm_block_node_unref(n);
}

void vmm_block_drained_end(VmmBlockNode *n)
{
    if (!n) {
        VMM_MISUSE("NULL node");
        return;
    }
    if (drain_hop(n, false)) {
        return;
    }
    int old = vk_atomic_fetch_sub(&n->quiesce_counter, 1);
    if (old <= 0) {
        vk_atomic_inc(&n->quiesce_counter);
        VMM_MISUSE("drained_end on node '%s' which is not drained", n->node_name);
        return;
    }
    if (old == 1) {
        parents_drained_end(n);
    }
}

static bool drain_busy_cb(void *opaque)
{
    return block_node_drain_busy(opaque);
}

int vmm_block_drained_begin_timeout(VmmBlockNode *n, int64_t timeout_ns)
{
    if (!n || timeout_ns < 0) {
        return VMM_MISUSE_ERR(-EINVAL, "bad argument");
    }
    if (vmm_in_coroutine()) {
        return VMM_MISUSE_ERR(-EINVAL, "timed drain from a coroutine (main loop only)");
    }
    block_drained_begin_nopoll(n);
    int ret = vmm_aio_wait_while_timeout_(vmm_block_node_get_context(n), drain_busy_cb, n,
                                          timeout_ns);
    if (ret < 0) {
        vmm_block_drained_end(n);
    }
    return ret;
}

void block_drain_all_begin_nopoll(void)
{
    block_drain_all_count++;
    for (guint i = 0; block_all_nodes && i < block_all_nodes->len; i++) {
        block_drained_begin_nopoll(g_ptr_array_index(block_all_nodes, i));
    }
}

static bool any_busy(void)
{
    for (guint i = 0; block_all_nodes && i < block_all_nodes->len; i++) {
        if (block_node_drain_busy(g_ptr_array_index(block_all_nodes, i))) {
            return true;
        }
    }
    return false;
}

void block_drain_poll_all(void)
{
    VMM_AIO_WAIT_WHILE(NULL, any_busy());
}

void vmm_block_drain_all_begin(void)
{
    if (vmm_in_coroutine()) {
        VMM_MISUSE("drain from a coroutine");
    }
    block_drain_all_begin_nopoll();
    block_drain_poll_all();
}

void vmm_block_drain_all_end(void)
{
    if (block_drain_all_count <= 0) {
        VMM_MISUSE("drain_all_end without drain_all_begin");
        return;
    }
    block_drain_all_count--;
    /* Nodes opened during the drain started with the count included. */
    for (guint i = 0; block_all_nodes && i < block_all_nodes->len; i++) {
        vmm_block_drained_end(g_ptr_array_index(block_all_nodes, i));
    }
}

/* ---- Coroutine wait lists ---------------------------------------------------- */

void block_wait_on(BlockWaiter **list, VmmMutex *lock) VMM_NO_TSA
{
    BlockWaiter w = { .co = vmm_coroutine_self(), .next = NULL };
    BlockWaiter **pp = list;
    while (*pp) {
        pp = &(*pp)->next;
    }
    *pp = &w;
    vk_mutex_unlock(lock);
    /* A waker that runs before the yield schedules us in our own context,
     * which runs us only after we yield (vmm_aio_co_wake). */
    vmm_coroutine_yield();
}

BlockWaiter *block_waiters_take(BlockWaiter **list)
{
    BlockWaiter *w = *list;
    *list = NULL;
    return w;
}

void block_wake_all(BlockWaiter *w)
{
    while (w) {
        /* Read both before waking: the waiter's frame dies once it runs. */
        BlockWaiter *next = w->next;
        VmmCoroutine *co = w->co;
        vmm_aio_co_wake(co);
        w = next;
    }
}
