/* SPDX-License-Identifier: MIT */
/*
 * aio/aio-posix.c - fd and event-notifier handlers, vmm_aio_poll(), and
 * per-handler adaptive busy polling.
 *
 * The handler list is read by the polling thread inside list_lock's
 * count (no mutex) and changed by any thread holding list_lock.  Changes
 * are copy-on-write: a new node replaces the old one, and the old node is
 * freed once no poller counts (see aio_free_deleted_handlers).
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aio/aio-priv.h"
#include "util/atomic.h"

#define POLL_NS_START 4000     /* first busy-poll budget when growing */
/* Near misses: blocks that ended by a handler's event after more than the
 * ceiling but within POLL_NEAR_MISS times it.  Every
 * (POLL_PROBE_GAP_MIN << poll_probe_shift)-th one sets the budget to the
 * ceiling once; the shift grows by one after each probe that failed, up to
 * POLL_PROBE_SHIFT_MAX (a gap of 256). */
#define POLL_NEAR_MISS 4
#define POLL_PROBE_GAP_MIN 4u
#define POLL_PROBE_SHIFT_MAX 6

static inline AioHandler *node_next(AioHandler *node)
{
    /* Pairs with the store-release in handler_link(). */
    return vk_atomic_load_acquire(&node->next);
}

static inline AioHandler *handlers_first(VmmAioContext *ctx)
{
    return vk_atomic_load_acquire(&ctx->handlers);
}

/* ---- Ready lists (home thread) ---------------------------------------------------------- */

void aio_ready_add(AioReadyList *list, AioHandler *node, int revents, bool poll_ready)
{
    if (node->ready_pprev) {
        /* On this list or a nested caller's: take it over (the outer
         * frame must not dispatch it again). */
        *node->ready_pprev = node->ready_next;
        if (node->ready_next) {
            node->ready_next->ready_pprev = node->ready_pprev;
        }
    }
    node->revents |= revents;
    node->poll_ready |= poll_ready;
    node->ready_next = list->head;
    if (list->head) {
        list->head->ready_pprev = &node->ready_next;
    }
    list->head = node;
    node->ready_pprev = &list->head;
}

static AioHandler *ready_pop(AioReadyList *list)
{
    AioHandler *node = list->head;

    if (node) {
        list->head = node->ready_next;
        if (list->head) {
            list->head->ready_pprev = &list->head;
        }
        node->ready_next = NULL;
        node->ready_pprev = NULL;
    }
    return node;
}

/* ---- Changing handlers (any thread, under list_lock) ---------------------------------- */

static AioHandler *find_handler_locked(VmmAioContext *ctx, int fd)
{
    for (AioHandler *n = ctx->handlers; n; n = n->next) {
        if (n->fd == fd && !n->deleted) {
            return n;
        }
    }
    return NULL;
}

static void count_handler(VmmAioContext *ctx, AioHandler *node, int delta)
{
    vk_atomic_set(&ctx->nr_handlers, ctx->nr_handlers + delta);
    if (node->io_poll) {
        vk_atomic_set(&ctx->poll_handler_cnt, ctx->poll_handler_cnt + delta);
    } else {
        vk_atomic_set(&ctx->poll_disable_cnt, ctx->poll_disable_cnt + delta);
    }
}

/* Put @new_node where @old was (or at the head), unlink @old. */
static void handler_link(VmmAioContext *ctx, AioHandler *old, AioHandler *new_node)
{
    if (old) {
        AioHandler *next = old->next;
        if (new_node) {
            new_node->next = next;
            new_node->pprev = old->pprev;
            if (next) {
                next->pprev = &new_node->next;
            }
            /* Pairs with the acquire in node_next()/handlers_first(). */
            vk_atomic_store_release(old->pprev, new_node);
        } else {
            if (next) {
                next->pprev = old->pprev;
            }
            vk_atomic_store_release(old->pprev, next);
        }
        /* old->next stays valid for a poller standing on old. */
        vk_atomic_set(&old->deleted, 1);
        count_handler(ctx, old, -1);
    } else {
        new_node->next = ctx->handlers;
        if (new_node->next) {
            new_node->next->pprev = &new_node->next;
        }
        new_node->pprev = &ctx->handlers;
        vk_atomic_store_release(&ctx->handlers, new_node);
    }
    if (new_node) {
        count_handler(ctx, new_node, 1);
    }
}

static void handler_retire_locked(VmmAioContext *ctx, AioHandler *old)
{
    if (vk_lockcnt_count(&ctx->list_lock) == 0 && ctx->fdmon->can_free(ctx, old)) {
        free(old);
        return;
    }
    old->deleted_next = ctx->deleted_handlers;
    vk_atomic_set(&ctx->deleted_handlers, old);
}

static int aio_set_handler(VmmAioContext *ctx, int fd, const VmmAioHandlerOptions *o,
                           bool ctx_notifier)
{
    bool del = !o->io_read && !o->io_write && !o->io_poll && !o->io_poll_ready &&
               !o->io_poll_begin && !o->io_poll_end;
    AioHandler *new_node = NULL;

    /* Removing needs no open fd: the caller may have closed it first. */
    if (fd < 0 || (!del && fcntl(fd, F_GETFD) < 0)) {
        return -EBADF;
    }
    if ((o->io_poll_ready || o->io_poll_begin || o->io_poll_end) && !o->io_poll) {
        return -EINVAL;
    }
    if (!del) {
        new_node = calloc(1, sizeof(*new_node));
        if (!new_node) {
            return -ENOMEM;
        }
        new_node->fd = fd;
        new_node->io_read = o->io_read;
        new_node->io_write = o->io_write;
        new_node->io_poll = o->io_poll;
        new_node->io_poll_ready = o->io_poll_ready;
        new_node->io_poll_begin = o->io_poll_begin;
        new_node->io_poll_end = o->io_poll_end;
        new_node->opaque = o->opaque;
        new_node->is_ctx_notifier = ctx_notifier;
    }

    vk_lockcnt_lock(&ctx->list_lock);
    AioHandler *old = find_handler_locked(ctx, fd);
    if (del && !old) {
        vk_lockcnt_unlock(&ctx->list_lock);
        return -ENOENT;
    }
    if (old && old->is_ctx_notifier && !ctx_notifier) {
        vk_lockcnt_unlock(&ctx->list_lock);
        free(new_node);
        return -EBUSY;
    }
    if (old && new_node) {
        new_node->poll_ns = vk_atomic_read(&old->poll_ns);
    }
    handler_link(ctx, old, new_node);
    ctx->fdmon->update(ctx, old, new_node);
    if (old) {
        aio_gsource_remove_handler(ctx, old);
    }
    if (new_node) {
        aio_gsource_add_handler(ctx, new_node);
    }
    if (old) {
        handler_retire_locked(ctx, old);
    }
    vk_lockcnt_unlock(&ctx->list_lock);

    /* A poller blocked on the old set of fds must look again. */
    vmm_aio_notify(ctx);
    return 0;
}

int vmm_aio_set_fd_handler(VmmAioContext *ctx, int fd, VmmIOHandler *io_read,
                           VmmIOHandler *io_write, VmmIOPoll *io_poll,
                           VmmIOHandler *io_poll_ready, void *opaque)
{
    VmmAioHandlerOptions o = {
        .size = sizeof(o), .io_read = io_read, .io_write = io_write,
        .io_poll = io_poll, .io_poll_ready = io_poll_ready, .opaque = opaque,
    };

    if (!AIO_CTX_CHECK_ERR(ctx)) {
        return -EINVAL;
    }
    return aio_set_handler(ctx, fd, &o, false);
}

/* Copy the caller's (possibly older, smaller) options; 0 or -EINVAL. */
static int handler_opts_copy(VmmAioHandlerOptions *dst, const VmmAioHandlerOptions *src)
{
    *dst = (VmmAioHandlerOptions){ .size = sizeof(*dst) };
    if (!src) {
        return 0;
    }
    /* The first version ended with opaque. */
    size_t min = offsetof(VmmAioHandlerOptions, opaque) + sizeof(src->opaque);
    if (src->size < min) {
        return -EINVAL;
    }
    memcpy(dst, src, src->size < sizeof(*dst) ? src->size : sizeof(*dst));
    dst->size = sizeof(*dst);
    return 0;
}

int vmm_aio_set_fd_handler_full(VmmAioContext *ctx, int fd, const VmmAioHandlerOptions *opts)
{
    VmmAioHandlerOptions o;

    if (!AIO_CTX_CHECK_ERR(ctx) || handler_opts_copy(&o, opts) < 0) {
        return -EINVAL;
    }
    return aio_set_handler(ctx, fd, &o, false);
}

int vmm_aio_set_event_notifier(VmmAioContext *ctx, VmmEventNotifier *n, VmmIOHandler *cb,
                               VmmIOPoll *io_poll, VmmIOHandler *io_poll_ready,
                               void *opaque)
{
    VmmAioHandlerOptions o = {
        .size = sizeof(o), .io_read = cb, .io_poll = io_poll,
        .io_poll_ready = io_poll_ready, .opaque = opaque,
    };

    if (!AIO_CTX_CHECK_ERR(ctx)) {
        return -EINVAL;
    }
    if (!n) {
        return -EINVAL;
    }
    return aio_set_handler(ctx, n->fd, &o, false);
}

int vmm_aio_set_event_notifier_full(VmmAioContext *ctx, VmmEventNotifier *n,
                                    const VmmAioHandlerOptions *opts)
{
    VmmAioHandlerOptions o;

    if (!AIO_CTX_CHECK_ERR(ctx) || !n || handler_opts_copy(&o, opts) < 0 || o.io_write) {
        return -EINVAL;
    }
    return aio_set_handler(ctx, n->fd, &o, false);
}

/* Free nodes removed while pollers counted.  Home thread, outside the count. */
void aio_free_deleted_handlers(VmmAioContext *ctx)
{
    if (!vk_atomic_read(&ctx->deleted_handlers)) {
        return;
    }
    vk_lockcnt_lock(&ctx->list_lock);
    if (vk_lockcnt_count(&ctx->list_lock) == 0) {
        AioHandler **p = &ctx->deleted_handlers;
        while (*p) {
            AioHandler *node = *p;
            if (ctx->fdmon->can_free(ctx, node)) {
                vk_atomic_set(p, node->deleted_next);
                free(node);
            } else {
                p = &node->deleted_next;
            }
        }
    }
    vk_lockcnt_unlock(&ctx->list_lock);
}

/* ---- Dispatch --------------------------------------------------------------------------- */

static bool dispatch_node(AioHandler *node)
{
    int revents = node->revents;
    bool poll_ready = node->poll_ready;
    bool progress = false;

    node->revents = 0;
    node->poll_ready = false;
    if (vk_atomic_read(&node->deleted)) {
        return false;
    }
    if (poll_ready && node->io_poll_ready) {
        node->in_poll_ready = true;
        node->io_poll_ready(node->opaque);
        node->in_poll_ready = false;
        progress = !node->is_ctx_notifier;
    }
    if ((revents & (POLLIN | POLLHUP | POLLERR)) && node->io_read &&
        !vk_atomic_read(&node->deleted)) {
        node->io_read(node->opaque);
        progress |= !node->is_ctx_notifier;
    }
    if ((revents & (POLLOUT | POLLERR)) && node->io_write &&
        !vk_atomic_read(&node->deleted)) {
        node->io_write(node->opaque);
        progress = true;
    }
    return progress;
}

bool aio_dispatch_handlers(VmmAioContext *ctx, AioReadyList *ready)
{
    bool progress = false;
    AioHandler *node;

    (void)ctx;
    while ((node = ready_pop(ready))) {
        progress |= dispatch_node(node);
    }
    return progress;
}

/* ---- Adaptive polling -------------------------------------------------------------------- */

/*
 * Poll mode (QEMU's poll_set_started).  It starts when try_poll_mode()
 * busy-polls and lasts, across vmm_aio_poll() calls, until the context is
 * about to block (or, with a GSource, until the poll's dispatch).  Every
 * handler polled in it gets io_poll_begin once (node->poll_begun), and
 * io_poll_end when it stops, unless it was removed or replaced first (its
 * node is then deleted and never looked at again).  All of it runs in the
 * home thread inside list_lock's count, so nodes cannot be freed under us.
 */
static void node_poll_begin(AioHandler *node)
{
    node->poll_begun = true;
    if (node->io_poll_begin) {
        node->io_poll_begin(node->opaque);
    }
}

static void poll_mode_start(VmmAioContext *ctx)
{
    if (ctx->poll_started) {
        return;
    }
    ctx->poll_started = true;
    for (AioHandler *node = handlers_first(ctx); node; node = node_next(node)) {
        if (node->io_poll && !node->poll_begun && !node->in_poll_ready &&
            !vk_atomic_read(&node->deleted)) {
            node_poll_begin(node);
        }
    }
}

/*
 * Leave poll mode: io_poll_end for each begun handler, then poll it once
 * more.  Work queued after its last busy-poll check but before io_poll_end
 * re-enabled notifications produced no notification, so without this
 * re-poll it would wait for the next unrelated event.  Returns true if a
 * re-poll found work (added to @ready): the caller must not block.
 */
static bool poll_mode_stop(VmmAioContext *ctx, AioReadyList *ready)
{
    bool found = false;

    if (!ctx->poll_started) {
        return false;
    }
    ctx->poll_started = false;
    for (AioHandler *node = handlers_first(ctx); node; node = node_next(node)) {
        if (!node->poll_begun || vk_atomic_read(&node->deleted)) {
            continue;
        }
        node->poll_begun = false;
        if (!node->io_poll_end) {
            continue;
        }
        node->io_poll_end(node->opaque);
        /* A removal from inside io_poll_end is honoured; an io_poll_ready
         * running in an outer frame re-checks itself (see aio.h). */
        if (!vk_atomic_read(&node->deleted) && !node->in_poll_ready &&
            node->io_poll(node->opaque)) {
            aio_ready_add(ready, node, 0, true);
            found = true;
        }
    }
    return found;
}

/*
 * One pass over the poll handlers.  Returns true if one had work (then the
 * caller stops busy-polling); *progress is set for work other than our
 * own notifier (whose work, BHs, counts when the BHs run).
 */
static bool run_poll_handlers_once(VmmAioContext *ctx, AioReadyList *ready, bool *progress)
{
    bool found = false;

    for (AioHandler *node = handlers_first(ctx); node; node = node_next(node)) {
        if (!node->io_poll || vk_atomic_read(&node->deleted)) {
            continue;
        }
        if (node->in_poll_ready) {
            /* Its io_poll_ready is running in an outer frame (and polls
             * us): do not nest it. */
            continue;
        }
        if (ctx->poll_started && !node->poll_begun) {
            /* Installed (or replaced) since poll mode started. */
            node_poll_begin(node);
        }
        if (node->io_poll(node->opaque)) {
            aio_ready_add(ready, node, 0, true);
            found = true;
            if (!node->is_ctx_notifier) {
                *progress = true;
            }
            if (node->poll_probing) {
                /* The probe paid: probe soon again if it ever shrinks. */
                node->poll_probing = false;
                node->poll_probe_shift = 0;
            }
        }
    }
    return found;
}

static int64_t max_poll_ns(VmmAioContext *ctx)
{
    int64_t max_ns = 0;

    for (AioHandler *node = handlers_first(ctx); node; node = node_next(node)) {
        int64_t ns = vk_atomic_read(&node->poll_ns);
        if (node->io_poll && !vk_atomic_read(&node->deleted) && ns > max_ns) {
            max_ns = ns;
        }
    }
    return max_ns;
}

/* Busy-poll for up to the largest handler budget (bounded by *timeout);
 * sets *timeout to 0 when something became ready. */
static bool try_poll_mode(VmmAioContext *ctx, AioReadyList *ready, int64_t *timeout)
{
    bool progress = false;
    bool found;
    int64_t max_ns = 0;

    if (!vk_atomic_read(&ctx->poll_handler_cnt)) {
        return false;
    }
    int64_t ceiling = vk_atomic_read(&ctx->poll_max_ns);
    if (*timeout != 0 && ceiling) {
        max_ns = max_poll_ns(ctx);
        if (max_ns > ceiling) {
            max_ns = ceiling;     /* lowered by set_poll_params */
        }
        if (*timeout > 0 && *timeout < max_ns) {
            max_ns = *timeout;
        }
    }
    if (max_ns > 0 && ctx->fdmon->need_wait_transient && ctx->fdmon->need_wait(ctx)) {
        /* io_uring: a handler that fired was re-armed with an SQE that
         * waits for the next wait(), and would keep us from busy polling
         * after every event (a doorbell handled through its eventfd, then
         * the next one slept for).  Hand it over and collect what is
         * ready, without blocking; work found ends the search. */
        ctx->fdmon->wait(ctx, ready, 0);
        if (ready->head) {
            *timeout = 0;
            return progress;
        }
    }
    if (max_ns > 0 && !ctx->fdmon->need_wait(ctx)) {
        int64_t end = aio_now_ns() + max_ns;
        unsigned spins = 0;
        poll_mode_start(ctx);
        /* The clock is read every 8th pass only: a read costs as much as
         * a few passes (more in a VM), and a pass that finds work a clock
         * read later answers that much later. */
        do {
            found = run_poll_handlers_once(ctx, ready, &progress);
        } while (!found && ((++spins & 7) || aio_now_ns() < end) &&
                 !ctx->fdmon->need_wait(ctx));
    } else {
        found = run_poll_handlers_once(ctx, ready, &progress);
    }
    if (found) {
        *timeout = 0;
    }
    return progress;
}

/*
 * Grow or shrink a handler's budget after a block of @block_ns ended by it.
 * Home thread; poll_ns and the parameters are atomics because
 * vmm_aio_context_set_poll_params() and handler replacement (any thread)
 * read or change them.
 *
 * @block_ns runs from before the busy poll to the wait's return, so it
 * holds the thread's wake-up as well as the wait for the event.  Where a
 * wake-up costs more than the ceiling (30-60 us seen in nested VMs,
 * against a 32 us ceiling), an event that comes a microsecond after the
 * block began still looks too late to poll for, the budget never grows,
 * and a driver that answers at once is slept for on every request.  So a
 * block that ends by the handler's event within POLL_NEAR_MISS times the
 * ceiling is a near miss, and now and then one buys a probe: the budget
 * is set to the ceiling for the next wait.  A probe whose poll finds the
 * event keeps that budget (run_poll_handlers_once()); one that misses
 * shows up here as the next block and doubles the gap to the next probe,
 * so events that really come late cost at most one ceiling of polling
 * every 256 near misses.
 */
static void adjust_polling_time(VmmAioContext *ctx, AioHandler *node, int64_t block_ns)
{
    int64_t max = vk_atomic_read(&ctx->poll_max_ns);
    int64_t ns = vk_atomic_read(&node->poll_ns);
    bool probed = node->poll_probing;

    node->poll_probing = false;
    if (ns > max) {
        ns = max;
    }
    if (block_ns <= ns) {
        /* the sweet spot */
    } else if (block_ns > max) {
        int64_t shrink = vk_atomic_read(&ctx->poll_shrink);
        ns = shrink > 1 ? ns / shrink : 0;
        if (probed) {
            /* Polled a whole ceiling for nothing: back to none at once. */
            ns = 0;
            if (node->poll_probe_shift < POLL_PROBE_SHIFT_MAX) {
                node->poll_probe_shift++;
            }
        }
        if (max > 0 && block_ns <= POLL_NEAR_MISS * max &&
            ++node->poll_near_misses >= POLL_PROBE_GAP_MIN << node->poll_probe_shift) {
            node->poll_near_misses = 0;
            node->poll_probing = true;
            ns = max;
        }
    } else if (ns < max) {
        ns = ns ? ns * vk_atomic_read(&ctx->poll_grow) : POLL_NS_START;
        ns = ns > max ? max : ns;
    }
    vk_atomic_set(&node->poll_ns, ns);
}

static void adjust_ready(VmmAioContext *ctx, AioReadyList *ready, int64_t block_ns)
{
    for (AioHandler *node = ready->head; node; node = node->ready_next) {
        if (node->io_poll && !node->poll_ready) {
            adjust_polling_time(ctx, node, block_ns);
        }
    }
}

int vmm_aio_context_set_poll_params(VmmAioContext *ctx, int64_t max_ns, int64_t grow,
                                    int64_t shrink)
{
    if (!AIO_CTX_CHECK_ERR(ctx)) {
        return -EINVAL;
    }
    if (max_ns < 0 || grow < 0 || shrink < 0 || grow == 1) {
        return -EINVAL;
    }
    /* Handlers' budgets are clamped to the new ceiling when next used. */
    vk_atomic_set(&ctx->poll_grow, grow ? grow : 2);
    vk_atomic_set(&ctx->poll_shrink, shrink ? shrink : 2);
    vk_atomic_set(&ctx->poll_max_ns, max_ns);
    vmm_aio_notify(ctx);
    return 0;
}

/* Test hook (tests/aio): the busy-poll budget of @fd's handler, or -1. */
int64_t aio_handler_poll_ns(VmmAioContext *ctx, int fd);
int64_t aio_handler_poll_ns(VmmAioContext *ctx, int fd)
{
    int64_t ns = -1;

    vk_lockcnt_lock(&ctx->list_lock);
    AioHandler *n = find_handler_locked(ctx, fd);
    if (n) {
        int64_t max = vk_atomic_read(&ctx->poll_max_ns);
        ns = vk_atomic_read(&n->poll_ns);
        ns = ns > max ? max : ns;
    }
    vk_lockcnt_unlock(&ctx->list_lock);
    return ns;
}

/* Test hook (tests/aio): what a block of @block_ns ended by @fd's handler
 * does to its budget (home thread). */
int aio_handler_adjust_poll(VmmAioContext *ctx, int fd, int64_t block_ns);
int aio_handler_adjust_poll(VmmAioContext *ctx, int fd, int64_t block_ns)
{
    int ret = -ENOENT;

    vk_lockcnt_lock(&ctx->list_lock);
    AioHandler *n = find_handler_locked(ctx, fd);
    if (n) {
        adjust_polling_time(ctx, n, block_ns);
        ret = 0;
    }
    vk_lockcnt_unlock(&ctx->list_lock);
    return ret;
}

/* Test hook (tests/aio): set the busy-poll budget of @fd's handler. */
int aio_handler_set_poll_ns(VmmAioContext *ctx, int fd, int64_t ns);
int aio_handler_set_poll_ns(VmmAioContext *ctx, int fd, int64_t ns)
{
    int ret = -ENOENT;

    vk_lockcnt_lock(&ctx->list_lock);
    AioHandler *n = find_handler_locked(ctx, fd);
    if (n) {
        vk_atomic_set(&n->poll_ns, ns);
        ret = 0;
    }
    vk_lockcnt_unlock(&ctx->list_lock);
    return ret;
}

/* ---- vmm_aio_poll ----------------------------------------------------------------------------- */

bool vmm_aio_poll(VmmAioContext *ctx, bool blocking)
{
    AioReadyList ready = { NULL };
    VmmAioContext *saved;
    int64_t timeout;
    bool progress;

    if (!AIO_CTX_CHECK(ctx) || !aio_poll_enter(ctx, &saved)) {
        return false;
    }
    vk_lockcnt_inc(&ctx->list_lock);

    timeout = blocking ? aio_compute_timeout(ctx) : 0;
    /* A block is timed from before the busy poll (as QEMU does): an event
     * that came after the budget but within the ceiling grows it, instead
     * of looking like the sweet spot. */
    int64_t t0 = timeout != 0 && vk_atomic_read(&ctx->poll_max_ns) ? aio_now_ns() : 0;
    progress = try_poll_mode(ctx, &ready, &timeout);

    bool use_notify_me = timeout != 0;
    if (use_notify_me) {
        /* Pairs with the xchg of notified in vmm_aio_notify(): either we
         * see notified, or the notifier sees notify_me and writes the
         * eventfd we are about to wait on. */
        vk_atomic_fetch_add(&ctx->notify_me, 2);
        if (vk_atomic_load_seq_cst(&ctx->notified)) {
            timeout = 0;
        }
    }
    if (ctx->poll_started &&
        (timeout != 0 || vk_atomic_read(&ctx->source) ||
         (!ctx->fdmon->need_wait_transient && ctx->fdmon->need_wait(ctx)))) {
        /* About to block, GLib may poll next, or the next call cannot
         * busy-poll (a handler only the kernel reports): leave poll mode,
         * then the final re-poll; work it finds must not wait for a
         * wake-up.  An io_uring monitor's pending completions or re-arms
         * are collected below without blocking, and poll mode goes on. */
        if (poll_mode_stop(ctx, &ready)) {
            timeout = 0;
        }
    }
    if (timeout != 0 || ctx->fdmon->need_wait(ctx)) {
        ctx->fdmon->wait(ctx, &ready, timeout);
        if (t0 && timeout != 0) {
            adjust_ready(ctx, &ready, aio_now_ns() - t0);
        }
    }
    if (use_notify_me) {
        /* Once we do not block, notifiers need not write the eventfd;
         * a stale non-zero value only costs a spurious write. */
        vk_atomic_fetch_sub(&ctx->notify_me, 2);
    }
    aio_notify_accept(ctx);

    progress |= aio_bh_poll(ctx);
    progress |= aio_dispatch_handlers(ctx, &ready);

    vk_lockcnt_dec(&ctx->list_lock);
    aio_free_deleted_handlers(ctx);

    progress |= aio_run_timers(ctx);
    aio_poll_exit(ctx, saved);
    return progress;
}

/* ---- Setup and teardown ----------------------------------------------------------------------- */

static void ctx_notifier_read(void *opaque)
{
    VmmAioContext *ctx = opaque;
    vmm_event_notifier_test_and_clear(&ctx->notifier);
}

static VmmFdMonitorKind fdmon_from_env(void)
{
    const char *e = getenv("VMM_FDMON");

    if (!e || !*e || !strcmp(e, "auto")) {
        return VMM_FDMON_AUTO;
    }
    if (!strcmp(e, "poll")) {
        return VMM_FDMON_POLL;
    }
    if (!strcmp(e, "epoll")) {
        return VMM_FDMON_EPOLL;
    }
    if (!strcmp(e, "io_uring")) {
        return VMM_FDMON_IO_URING;
    }
    vk_warn("VMM_FDMON=%s: unknown fd monitor, using auto", e);
    return VMM_FDMON_AUTO;
}

int aio_handlers_init(VmmAioContext *ctx, const VmmAioContextOptions *opts)
{
    VmmFdMonitorKind kind = opts ? opts->fdmon : VMM_FDMON_AUTO;
    bool forced_by_env = false;
    size_t size = opts ? opts->size : 0;
    int ret;

    if (kind > VMM_FDMON_IO_URING) {
        return -EINVAL;
    }
    if (kind == VMM_FDMON_AUTO) {
        kind = fdmon_from_env();
        forced_by_env = kind != VMM_FDMON_AUTO;
    }
#define OPT(field, def) \
    (size >= offsetof(VmmAioContextOptions, field) + sizeof(opts->field) ? opts->field : (def))
    ctx->poll_max_ns = OPT(poll_max_ns, 0);
    ctx->poll_grow = OPT(poll_grow, 0);
    ctx->poll_shrink = OPT(poll_shrink, 0);
#undef OPT
    if (ctx->poll_max_ns < 0 || ctx->poll_grow < 0 || ctx->poll_grow == 1 ||
        ctx->poll_shrink < 0) {
        return -EINVAL;
    }
    ctx->poll_grow = ctx->poll_grow ? ctx->poll_grow : 2;
    ctx->poll_shrink = ctx->poll_shrink ? ctx->poll_shrink : 2;

    ctx->fdmon_wanted = kind;
    ctx->fdmon = &fdmon_poll_ops;
    if (kind == VMM_FDMON_IO_URING || kind == VMM_FDMON_AUTO) {
        ret = fdmon_io_uring_setup(ctx);
        if (ret < 0 && kind == VMM_FDMON_IO_URING) {
            return ret;
        }
    }
    if (kind == VMM_FDMON_EPOLL && forced_by_env) {
        /* The test knob: epoll from the first handler on. */
        if (!fdmon_epoll_try_enable(ctx)) {
            return -ENOSYS;
        }
    }
    VmmAioHandlerOptions n = {
        .size = sizeof(n), .io_read = ctx_notifier_read,
        .io_poll = aio_ctx_notifier_poll, .opaque = ctx,
    };
    return aio_set_handler(ctx, ctx->notifier.fd, &n, true);
}

void aio_handlers_destroy(VmmAioContext *ctx)
{
    vk_lockcnt_lock(&ctx->list_lock);
    AioHandler *node = ctx->handlers;
    ctx->handlers = NULL;
    while (node) {
        AioHandler *next = node->next;
        if (!node->is_ctx_notifier) {
            vk_warn("context '%s' destroyed with a handler still set on fd %d",
                     ctx->name, node->fd);
        }
        aio_gsource_remove_handler(ctx, node);
        node->deleted_next = ctx->deleted_handlers;
        ctx->deleted_handlers = node;
        node = next;
    }
    /* The monitor lets go of every node (io_uring cancels its polls). */
    ctx->fdmon->destroy(ctx);
    node = ctx->deleted_handlers;
    ctx->deleted_handlers = NULL;
    while (node) {
        AioHandler *next = node->deleted_next;
        free(node);
        node = next;
    }
    free(ctx->pollfds);
    free(ctx->pollfd_nodes);
    ctx->pollfds = NULL;
    ctx->pollfd_nodes = NULL;
    vk_lockcnt_unlock(&ctx->list_lock);
}

VmmFdMonitorKind vmm_aio_context_fdmon(VmmAioContext *ctx)
{
    if (!AIO_CTX_CHECK(ctx)) {
        return VMM_FDMON_AUTO;
    }
    vk_lockcnt_lock(&ctx->list_lock);
    VmmFdMonitorKind k = ctx->fdmon->kind;
    vk_lockcnt_unlock(&ctx->list_lock);
    return k;
}
