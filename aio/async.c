/* SPDX-License-Identifier: MIT */
/*
 * aio/async.c - AioContext lifecycle, bottom halves, notify, the current
 * context, private slots and context hooks.
 *
 * See docs/aio.md for the BH flag machine, list slicing and the
 * notify_me/notified protocol.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aio/aio-priv.h"
#include "util/atomic.h"
#include "util/trace.h"

/* ---- Threads and the current context ------------------------------------------------ */

static __thread char tls_token;
/* Declared in aio-internal.h (initial-exec, hidden) for
 * aio_current_context_fresh(). */
__thread VmmAioContext *aio_tls_current;

/* Not inlined and behind a compiler barrier: a coroutine that yields on
 * one thread and resumes on another must read the new thread's values. */
VMM_NOINLINE const void *aio_thread_token(void)
{
    const void *p = &tls_token;
    __asm__ volatile("" : "+r"(p));
    return p;
}

VMM_NOINLINE VmmAioContext *aio_get_current_context_raw(void)
{
    VmmAioContext **p = &aio_tls_current;
    __asm__ volatile("" : "+r"(p));
    return *p;
}

VMM_NOINLINE static void set_tls_current(VmmAioContext *ctx)
{
    VmmAioContext **p = &aio_tls_current;
    __asm__ volatile("" : "+r"(p));
    *p = ctx;
}

void aio_set_current_context(VmmAioContext *ctx)
{
    VmmAioContext *old = aio_get_current_context_raw();
    const void *me = aio_thread_token();

    if (old && old != ctx && vk_atomic_read(&old->home) == me) {
        vk_atomic_set(&old->home, NULL);
    }
    if (ctx) {
        const void *home = vk_atomic_read(&ctx->home);
        if (home && home != me) {
            VMM_MISUSE("context '%s' already runs in another thread", ctx->name);
            return;
        }
        vk_atomic_set(&ctx->home, me);
    }
    set_tls_current(ctx);
}

VmmAioContext *vmm_aio_context_current(void)
{
    VmmAioContext *ctx = aio_get_current_context_raw();
    return ctx ? ctx : vmm_aio_context_main();
}

bool vmm_aio_context_in_thread(VmmAioContext *ctx)
{
    const void *me = aio_thread_token();

    if (!ctx) {
        return false;
    }
    return aio_get_current_context_raw() == ctx ||
           vk_atomic_read(&ctx->poller) == me ||
           vk_atomic_read(&ctx->home) == me;
}

bool aio_ctx_check(VmmAioContext *ctx, const char *func, bool has_error)
{
    const char *what = NULL;

    if (vk_unlikely(!ctx)) {
        what = "NULL context";
    } else if (vk_unlikely(vk_atomic_read(&ctx->magic) != AIO_CTX_MAGIC)) {
        what = "context is destroyed or not a context";
    }
    if (vk_likely(!what)) {
        return true;
    }
    if (has_error) {
        vk_misuse_errno(func, -EINVAL, "%s (%p)", what, (void *)ctx);
    } else {
        vk_misuse(func, "%s (%p)", what, (void *)ctx);
    }
    return false;
}

static void ctx_destroy(VmmAioContext *ctx);

bool aio_poll_enter(VmmAioContext *ctx, VmmAioContext **saved_current)
{
    /* Direct TLS access is fine here: nothing in this function yields. */
    const void *me = &tls_token;
    const void *home = vk_atomic_read(&ctx->home);

    if (home == me) {
        /* The home thread is the only poller by contract: no claim. */
        if (ctx->poll_depth++ == 0) {
            vk_atomic_set(&ctx->poller, me);
        }
    } else if (vk_atomic_load_acquire(&ctx->poller) == me) {
        /* Acquire pairs with the store-release in aio_poll_exit() of the
         * previous poller: its poll_depth and list state are visible. */
        ctx->poll_depth++;
    } else {
        if (vk_unlikely(home)) {
            VMM_MISUSE("context '%s' polled outside the thread that runs it", ctx->name);
            return false;
        }
        if (vk_unlikely(vk_atomic_cmpxchg(&ctx->poller, NULL, me) != NULL)) {
            VMM_MISUSE("context '%s' polled by two threads at once", ctx->name);
            return false;
        }
        ctx->poll_depth = 1;
        if (aio_context_is_main(ctx)) {
            /* The first thread to poll the main context is the main loop. */
            vk_atomic_set(&ctx->home, me);
        }
    }
    *saved_current = aio_tls_current;
    aio_tls_current = ctx;
    return true;
}

void aio_poll_exit(VmmAioContext *ctx, VmmAioContext *saved_current)
{
    aio_tls_current = saved_current;
    if (--ctx->poll_depth == 0) {
        /* Pairs with the acquire in aio_poll_enter(). */
        vk_atomic_store_release(&ctx->poller, NULL);
        if (vk_unlikely(ctx->destroy_pending)) {
            /* A callback dropped the last reference: finish it now. */
            ctx_destroy(ctx);
        }
    }
}

/* ---- notify ------------------------------------------------------------------------------ */

/*
 * The notify_me / notified protocol (a Dekker pair on sequentially
 * consistent atomics):
 *   notifier:  [push BH]  xchg(notified, true)   load(notify_me)   -> write eventfd if != 0
 *   poller:    fetch_add(notify_me, 2)            load(notified)    -> don't block if true
 * In the single total order of seq-cst operations one side sees the
 * other's write, so a poller about to block either sees notified or gets
 * the eventfd write.  The fast path (notified already true) is safe
 * because the poller clears notified (aio_notify_accept) before it takes
 * the BH list, so a still-set flag means our push will be taken.
 */
void vmm_aio_notify(VmmAioContext *ctx)
{
    /* Pairs with the xchg in aio_notify_accept(). */
    if (vk_atomic_load_seq_cst(&ctx->notified)) {
        return;
    }
    /* Pairs with the fetch_add of notify_me in vmm_aio_poll() and the
     * fetch_or in the GSource prepare. */
    (void)vk_atomic_xchg(&ctx->notified, true);
    if (vk_atomic_load_seq_cst(&ctx->notify_me)) {
        vmm_event_notifier_set(&ctx->notifier);
    }
}

void aio_notify_accept(VmmAioContext *ctx)
{
    /* Clearing is a full barrier (xchg): it orders before our read of the
     * BH list, pairing with the load in vmm_aio_notify()'s fast path. */
    if (vk_atomic_read(&ctx->notified)) {
        (void)vk_atomic_xchg(&ctx->notified, false);
    }
}

bool aio_ctx_notifier_poll(void *opaque)
{
    VmmAioContext *ctx = opaque;
    return vk_atomic_read(&ctx->notified);
}

/* ---- Bottom halves --------------------------------------------------------------------- */

/*
 * Lock-free push (Treiber): write our link, then swing the head to us with
 * a compare-and-swap that retries only if another push or a take came in
 * between.  The link is written before the BH is published, so the
 * consumer never waits for it.  The take swaps the whole list out, never
 * single BHs, so a BH taken and pushed again between our load of the head
 * and our CAS (ABA) leaves the head pointing at a BH whose link we set
 * from it: still a correct list.
 */
static inline void bh_push(VmmAioContext *ctx, VmmBH *bh)
{
    /* The CAS writes the line we load here: take it writable at once. */
    vk_prefetchw(&ctx->bh_list);
    VmmBH *old = vk_atomic_read(&ctx->bh_list);

    do {
        vk_atomic_set(&bh->next, old);
        /* Seq-cst CAS.  Pairs with the xchg in bh_take_all(): the link
         * written above is visible to the taker; and it orders the push
         * before vmm_aio_notify()'s load of notified (see there). */
    } while (!__atomic_compare_exchange_n(&ctx->bh_list, &old, bh, true,
                                          __ATOMIC_SEQ_CST, __ATOMIC_RELAXED));
}

static void bh_enqueue(VmmAioContext *ctx, VmmBH *bh, unsigned new_flags)
{
    /* Start taking the list head's line (written by the poller's take)
     * while the fetch_or below takes the BH's line: two misses overlap. */
    vk_prefetchw(&ctx->bh_list);
    /* The fetch_or pairs with the fetch_and in aio_bh_poll(): only the
     * caller that sets PENDING pushes. */
    unsigned old = vk_atomic_fetch_or(&bh->flags, BH_PENDING | new_flags);

    if (vk_unlikely(old & BH_DELETED)) {
        VMM_MISUSE("BH '%s' scheduled after vmm_bh_delete()", bh->name);
        return;
    }
    if (!(old & BH_PENDING)) {
        bh_push(ctx, bh);
    }
    vmm_aio_notify(ctx);
}

static void bh_all_add(VmmAioContext *ctx, VmmBH *bh)
{
    aio_mutex_lock(&ctx->bh_lock);
    bh->all_next = ctx->all_bhs;
    if (bh->all_next) {
        bh->all_next->all_pprev = &bh->all_next;
    }
    ctx->all_bhs = bh;
    bh->all_pprev = &ctx->all_bhs;
    aio_mutex_unlock(&ctx->bh_lock);
}

/*
 * @flags: the BH's flags as its dequeue read them.  Oneshot BHs are never
 * on all_bhs; the others are, until unlinked here or detached by
 * bh_finalize().  all_pprev is read under bh_lock only: bh_all_add() in
 * another thread (vmm_bh_new) rewrites it when it links a BH before this one.
 */
static void bh_free(VmmAioContext *ctx, VmmBH *bh, unsigned flags)
{
    if (!(flags & BH_ONESHOT)) {
        aio_mutex_lock(&ctx->bh_lock);
        if (bh->all_pprev) {
            *bh->all_pprev = bh->all_next;
            if (bh->all_next) {
                bh->all_next->all_pprev = bh->all_pprev;
            }
        }
        aio_mutex_unlock(&ctx->bh_lock);
    }
    free(bh);
}

/*
 * A BH on a cache line of its own: its flags and link move between the
 * scheduling and the polling thread on every schedule, and a neighbour on
 * the same line (another BH scheduled the other way) would add transfers.
 */
static VmmBH *bh_alloc(void)
{
    void *p = NULL;

    _Static_assert(sizeof(VmmBH) <= VMM_CACHELINE, "VmmBH fits one cache line");
    return posix_memalign(&p, VMM_CACHELINE, sizeof(VmmBH)) ? NULL : p;
}

VmmBH *vmm_bh_new(VmmAioContext *ctx, VmmBHFunc *cb, void *opaque, const char *name)
{
    if (!AIO_CTX_CHECK_ERR(ctx)) {
        return NULL;
    }
    if (!cb) {
        VMM_MISUSE_ERR(0, "BH '%s' without a callback", name ? name : "?");
        return NULL;
    }
    VmmBH *bh = bh_alloc();
    if (!bh) {
        return NULL;
    }
    memset(bh, 0, sizeof(*bh));
    bh->ctx = ctx;
    bh->cb = cb;
    bh->opaque = opaque;
    bh->name = name ? name : "(unnamed)";
    bh_all_add(ctx, bh);
    return bh;
}

static VmmAioContext *bh_ctx(VmmBH *bh, const char *func)
{
    if (vk_unlikely(!bh)) {
        vk_misuse(func, "NULL BH");
        return NULL;
    }
    VmmAioContext *ctx = vk_atomic_read(&bh->ctx);
    if (vk_unlikely(!ctx)) {
        vk_misuse(func, "BH '%s' used after its context was destroyed", bh->name);
    }
    return ctx;
}

void vmm_bh_schedule(VmmBH *bh)
{
    VmmAioContext *ctx = bh_ctx(bh, __func__);
    if (ctx) {
        bh_enqueue(ctx, bh, BH_SCHEDULED);
    }
}

void vmm_bh_schedule_idle(VmmBH *bh)
{
    VmmAioContext *ctx = bh_ctx(bh, __func__);
    if (ctx) {
        bh_enqueue(ctx, bh, BH_SCHEDULED | BH_IDLE);
    }
}

void vmm_bh_cancel(VmmBH *bh)
{
    if (bh) {
        vk_atomic_fetch_and(&bh->flags, ~(unsigned)BH_SCHEDULED);
    }
}

void vmm_bh_delete(VmmBH *bh)
{
    if (!bh) {
        return;
    }
    VmmAioContext *ctx = vk_atomic_read(&bh->ctx);
    if (!ctx) {
        /* The context is gone; nothing else can reach the BH. */
        free(bh);
        return;
    }
    unsigned old = vk_atomic_fetch_or(&bh->flags, BH_PENDING | BH_DELETED);
    if (vk_unlikely(old & BH_DELETED)) {
        VMM_MISUSE("BH '%s' deleted twice", bh->name);
        return;
    }
    if (!(old & BH_PENDING)) {
        bh_push(ctx, bh);
    }
    /* Freed by the context's next aio_bh_poll (or its destruction); no
     * need to wake it for that. */
}

int vmm_bh_schedule_oneshot(VmmAioContext *ctx, VmmBHFunc *cb, void *opaque,
                            const char *name)
{
    if (!AIO_CTX_CHECK_ERR(ctx)) {
        return -EINVAL;
    }
    if (!cb) {
        return VMM_MISUSE_ERR(-EINVAL, "oneshot BH '%s' without a callback", name ? name : "?");
    }
    /* Not bh_alloc(): an aligned allocation and its free cost glibc
     * several times a malloc, paid on every one-shot schedule, while a
     * one-shot BH crosses threads once. */
    VmmBH *bh = malloc(sizeof(*bh));
    if (!bh) {
        return -ENOMEM;
    }
    bh->ctx = ctx;
    bh->cb = cb;
    bh->opaque = opaque;
    bh->name = name ? name : "(oneshot)";
    bh->flags = BH_PENDING | BH_SCHEDULED | BH_ONESHOT;
    bh->all_next = NULL;
    bh->all_pprev = NULL;
    bh_push(ctx, bh);
    vmm_aio_notify(ctx);
    return 0;
}

/* Take everything pushed so far, in FIFO order. */
static VmmBH *bh_take_all(VmmAioContext *ctx)
{
    /* Seq-cst (a plain load on x86): ordered after the xchg of notified
     * in aio_notify_accept(), see vmm_aio_notify(). */
    if (!vk_atomic_load_seq_cst(&ctx->bh_list)) {
        return NULL;
    }
    /* Pairs with the CAS in bh_push(): every link of the list is written. */
    VmmBH *lifo = vk_atomic_xchg(&ctx->bh_list, NULL);
    VmmBH *fifo = NULL;

    while (lifo) {
        /* We write the link, and aio_bh_poll() the flags, of a line the
         * scheduler wrote last: fetch it writable at once. */
        vk_prefetchw(lifo);
        VmmBH *next = vk_atomic_read(&lifo->next);
        vk_atomic_set(&lifo->next, fifo);
        fifo = lifo;
        lifo = next;
    }
    return fifo;
}

/*
 * Run the scheduled BHs.  Everything pushed before the call forms a slice
 * on ctx's slice list; a nested call (a BH that polls) keeps running the
 * outer slices, and a BH scheduled while BHs run lands in the next call.
 */
bool aio_bh_poll(VmmAioContext *ctx)
{
    BHListSlice slice = { .head = bh_take_all(ctx), .next = NULL };
    BHListSlice *s;
    bool progress = false;

    if (!slice.head && !ctx->slice_head) {
        return false;
    }
    *ctx->slice_tail = &slice;
    ctx->slice_tail = &slice.next;

    while ((s = ctx->slice_head)) {
        VmmBH *bh = s->head;
        if (!bh) {
            ctx->slice_head = s->next;
            if (!ctx->slice_head) {
                ctx->slice_tail = &ctx->slice_head;
            }
            continue;
        }
        s->head = vk_atomic_read(&bh->next);
        /* Pairs with the fetch_or in bh_enqueue(): from here on a new
         * schedule pushes the BH again. */
        unsigned flags = vk_atomic_fetch_and(&bh->flags,
                                              ~(unsigned)(BH_PENDING | BH_SCHEDULED | BH_IDLE));
        if ((flags & (BH_SCHEDULED | BH_DELETED)) == BH_SCHEDULED) {
            if (!(flags & BH_IDLE)) {
                progress = true;
            }
            TRACE_PROBE(bh_dispatch, ctx, bh, bh->cb);
            bh->cb(bh->opaque);
        }
        if (flags & (BH_DELETED | BH_ONESHOT)) {
            bh_free(ctx, bh, flags);
        }
    }
    return progress;
}

static int64_t bh_list_timeout(VmmBH *bh, int64_t timeout)
{
    while (bh) {
        unsigned flags = vk_atomic_read(&bh->flags);
        if ((flags & (BH_SCHEDULED | BH_DELETED)) == BH_SCHEDULED) {
            if (!(flags & BH_IDLE)) {
                return 0;
            }
            /* Idle BHs are polled at least every 10 ms. */
            if (timeout < 0 || timeout > 10 * 1000 * 1000) {
                timeout = 10 * 1000 * 1000;
            }
        }
        bh = vk_atomic_load_acquire(&bh->next);
    }
    return timeout;
}

/*
 * Nanoseconds the poller may block: 0 if a BH is scheduled, <= 10 ms for
 * idle BHs, else until the nearest timer (-1: no bound).  Home thread;
 * only the home thread removes BHs, so walking the pushed list is safe.
 */
int64_t aio_compute_timeout(VmmAioContext *ctx)
{
    int64_t timeout = aio_timer_deadline_ns(ctx);

    if (timeout == 0) {
        return 0;
    }
    for (BHListSlice *s = ctx->slice_head; s; s = s->next) {
        timeout = bh_list_timeout(s->head, timeout);
        if (timeout == 0) {
            return 0;
        }
    }
    return bh_list_timeout(vk_atomic_load_acquire(&ctx->bh_list), timeout);
}

/* At destruction: free deleted BHs, report the ones still scheduled. */
static void bh_finalize(VmmAioContext *ctx)
{
    VmmBH *bh = bh_take_all(ctx);

    if (ctx->slice_head) {
        VMM_MISUSE("context '%s' destroyed while running BHs", ctx->name);
    }
    while (bh) {
        VmmBH *next = vk_atomic_read(&bh->next);
        unsigned flags = vk_atomic_fetch_and(&bh->flags,
                                              ~(unsigned)(BH_PENDING | BH_SCHEDULED | BH_IDLE));
        if ((flags & (BH_SCHEDULED | BH_DELETED)) == BH_SCHEDULED) {
            VMM_MISUSE("BH '%s' leaked: still scheduled when context '%s' was destroyed",
                       bh->name, ctx->name);
        }
        if (flags & (BH_DELETED | BH_ONESHOT)) {
            bh_free(ctx, bh, flags);
        }
        bh = next;
    }
    /* BHs still owned by callers: detach them, so using them later is
     * reported instead of touching freed memory. */
    aio_mutex_lock(&ctx->bh_lock);
    for (bh = ctx->all_bhs; bh; bh = bh->all_next) {
        vk_info("BH '%s' not deleted before context '%s' was destroyed",
                 bh->name, ctx->name);
        vk_atomic_set(&bh->ctx, NULL);
        bh->all_pprev = NULL;
    }
    ctx->all_bhs = NULL;
    aio_mutex_unlock(&ctx->bh_lock);
}

/* ---- Slots ------------------------------------------------------------------------------ */

static pthread_mutex_t slot_lock = PTHREAD_MUTEX_INITIALIZER;
static const char *slot_names[VMM_AIO_SLOT_MAX];
static VmmAioSlotDestroy *slot_destroy[VMM_AIO_SLOT_MAX];
static int slot_count;

int aio_slot_key_new(const char *name, VmmAioSlotDestroy *destroy)
{
    int key = -ENOSPC;

    pthread_mutex_lock(&slot_lock);
    if (slot_count < VMM_AIO_SLOT_MAX) {
        key = slot_count;
        slot_names[key] = name;
        slot_destroy[key] = destroy;
        /* Release: the table entry is visible to whoever sees the count. */
        vk_atomic_store_release(&slot_count, key + 1);
    }
    pthread_mutex_unlock(&slot_lock);
    return key;
}

static bool slot_key_ok(int key, const char *func)
{
    if (vk_unlikely(key < 0 || key >= vk_atomic_load_acquire(&slot_count))) {
        vk_misuse(func, "bad slot key %d", key);
        return false;
    }
    return true;
}

void *aio_slot_get(VmmAioContext *ctx, int key)
{
    if (!slot_key_ok(key, __func__)) {
        return NULL;
    }
    /* Pairs with the cmpxchg in aio_slot_set(). */
    return vk_atomic_load_acquire(&ctx->slots[key]);
}

void *aio_slot_set(VmmAioContext *ctx, int key, void *value)
{
    if (!slot_key_ok(key, __func__)) {
        return NULL;
    }
    void *old = vk_atomic_cmpxchg(&ctx->slots[key], NULL, value);
    return old ? old : value;
}

void *aio_slot_get_or_create(VmmAioContext *ctx, int key,
                                 VmmAioSlotCreate *create, void *arg)
{
    void *v = aio_slot_get(ctx, key);

    if (v || !slot_key_ok(key, __func__)) {
        return v;
    }
    v = create(ctx, arg);
    if (!v) {
        return NULL;
    }
    void *won = aio_slot_set(ctx, key, v);
    if (won != v && slot_destroy[key]) {
        slot_destroy[key](ctx, v);
    }
    return won;
}

static void slots_destroy(VmmAioContext *ctx)
{
    for (int key = vk_atomic_load_acquire(&slot_count) - 1; key >= 0; key--) {
        void *v = vk_atomic_xchg(&ctx->slots[key], NULL);
        if (v && slot_destroy[key]) {
            slot_destroy[key](ctx, v);
        }
    }
}

/* ---- Hooks and the list of contexts ----------------------------------------------------- */

#define MAX_HOOKS 8

static pthread_mutex_t hooks_lock = PTHREAD_MUTEX_INITIALIZER;
static const VmmAioContextHooks *hooks[MAX_HOOKS];
static void *hooks_opaque[MAX_HOOKS];
static VmmAioContext *all_contexts;

int aio_context_hooks_register(const VmmAioContextHooks *h, void *opaque)
{
    int ret = -ENOMEM;

    pthread_mutex_lock(&hooks_lock);
    for (int i = 0; i < MAX_HOOKS; i++) {
        if (hooks[i] == h) {
            ret = -EEXIST;
            goto out;
        }
    }
    for (int i = 0; i < MAX_HOOKS; i++) {
        if (!hooks[i]) {
            hooks[i] = h;
            hooks_opaque[i] = opaque;
            for (VmmAioContext *c = all_contexts; c && h->created; c = c->all_next) {
                h->created(c, opaque);
            }
            ret = 0;
            break;
        }
    }
out:
    pthread_mutex_unlock(&hooks_lock);
    return ret;
}

int aio_context_hooks_unregister(const VmmAioContextHooks *h)
{
    int ret = -ENOENT;

    pthread_mutex_lock(&hooks_lock);
    for (int i = 0; i < MAX_HOOKS; i++) {
        if (hooks[i] == h) {
            hooks[i] = NULL;
            ret = 0;
        }
    }
    pthread_mutex_unlock(&hooks_lock);
    return ret;
}

static void ctx_register(VmmAioContext *ctx)
{
    pthread_mutex_lock(&hooks_lock);
    ctx->all_next = all_contexts;
    all_contexts = ctx;
    for (int i = 0; i < MAX_HOOKS; i++) {
        if (hooks[i] && hooks[i]->created) {
            hooks[i]->created(ctx, hooks_opaque[i]);
        }
    }
    pthread_mutex_unlock(&hooks_lock);
}

static void ctx_unregister(VmmAioContext *ctx)
{
    pthread_mutex_lock(&hooks_lock);
    for (int i = 0; i < MAX_HOOKS; i++) {
        if (hooks[i] && hooks[i]->destroyed) {
            hooks[i]->destroyed(ctx, hooks_opaque[i]);
        }
    }
    for (VmmAioContext **p = &all_contexts; *p; p = &(*p)->all_next) {
        if (*p == ctx) {
            *p = ctx->all_next;
            break;
        }
    }
    pthread_mutex_unlock(&hooks_lock);
}

/* ---- Contexts ---------------------------------------------------------------------------- */

static VmmAioContext *main_ctx;
static pthread_once_t main_once = PTHREAD_ONCE_INIT;

static void ctx_free(VmmAioContext *ctx)
{
    aio_event_notifier_cleanup(&ctx->notifier);
    vk_lockcnt_destroy(&ctx->list_lock);
    aio_mutex_destroy(&ctx->bh_lock);
    aio_mutex_destroy(&ctx->timer_lock);
    free(ctx->name);
    vk_atomic_set(&ctx->magic, AIO_CTX_DEAD);
    free(ctx);
}

static VmmAioContext *ctx_new_named(const VmmAioContextOptions *opts, const char *name,
                                    int *errp)
{
    VmmAioContext *ctx = NULL;
    int ret;

    if (opts && opts->size < offsetof(VmmAioContextOptions, fdmon) + sizeof(opts->fdmon)) {
        ret = -EINVAL;
        goto fail;
    }
    if (posix_memalign((void **)&ctx, VMM_CACHELINE, sizeof(*ctx))) {
        ret = -ENOMEM;
        goto fail;
    }
    memset(ctx, 0, sizeof(*ctx));
    ctx->magic = AIO_CTX_MAGIC;
    ctx->refcnt = 1;
    ctx->name = strdup(name);
    ctx->slice_tail = &ctx->slice_head;
    ctx->epollfd = -1;
    ctx->timer_deadline = INT64_MAX;
    aio_mutex_init(&ctx->bh_lock);
    aio_mutex_init(&ctx->timer_lock);
    vk_lockcnt_init(&ctx->list_lock);
    ret = aio_event_notifier_init(&ctx->notifier);
    if (ret < 0 || !ctx->name) {
        ret = ret < 0 ? ret : -ENOMEM;
        ctx_free(ctx);
        goto fail;
    }
    ret = aio_handlers_init(ctx, opts);
    if (ret < 0) {
        ctx_free(ctx);
        goto fail;
    }
    ctx_register(ctx);
    return ctx;

fail:
    if (errp) {
        *errp = ret;
    }
    return NULL;
}

VmmAioContext *vmm_aio_context_new(const VmmAioContextOptions *opts, int *errp)
{
    return ctx_new_named(opts, "aio", errp);
}

VmmAioContext *aio_context_new_named(const VmmAioContextOptions *opts, const char *name,
                                     int *errp);
VmmAioContext *aio_context_new_named(const VmmAioContextOptions *opts, const char *name,
                                     int *errp)
{
    return ctx_new_named(opts, name ? name : "aio", errp);
}

const char *aio_context_name(VmmAioContext *ctx)
{
    return ctx->name;
}

void vmm_aio_context_ref(VmmAioContext *ctx)
{
    if (AIO_CTX_CHECK(ctx)) {
        vk_atomic_inc(&ctx->refcnt);
    }
}

static void ctx_destroy(VmmAioContext *ctx)
{
    const void *poller = vk_atomic_read(&ctx->poller);

    if (poller == &tls_token) {
        /* The last reference went away inside one of our own callbacks:
         * destroy when the outermost poll returns. */
        ctx->destroy_pending = true;
        return;
    }
    if (poller) {
        VMM_MISUSE("context '%s' destroyed while another thread polls it", ctx->name);
        return;
    }
    slots_destroy(ctx);
    ctx_unregister(ctx);
    bh_finalize(ctx);
    aio_timers_destroy(ctx);
    aio_handlers_destroy(ctx);
    ctx_free(ctx);
}

void vmm_aio_context_unref(VmmAioContext *ctx)
{
    if (!AIO_CTX_CHECK(ctx)) {
        return;
    }
    int old = vk_atomic_fetch_sub(&ctx->refcnt, 1);
    if (old == 1) {
        if (aio_context_is_main(ctx)) {
            VMM_MISUSE("the main context is never destroyed");
            vk_atomic_inc(&ctx->refcnt);
            return;
        }
        ctx_destroy(ctx);
    } else if (vk_unlikely(old <= 0)) {
        VMM_MISUSE("context '%s' unreferenced too often", ctx->name);
    }
}

static void main_ctx_init(void)
{
    int err = 0;

    VmmAioContext *ctx = ctx_new_named(NULL, "main", &err);
    /* Pairs with the acquire in aio_context_is_main(). */
    vk_atomic_store_release(&main_ctx, ctx);
    if (!ctx) {
        vk_error("cannot create the main context: %s", strerror(-err));
    }
}

VmmAioContext *vmm_aio_context_main(void)
{
    pthread_once(&main_once, main_ctx_init);
    return vk_atomic_load_acquire(&main_ctx);
}

bool aio_main_loop_is_other_thread(void)
{
    VmmAioContext *m = vk_atomic_load_acquire(&main_ctx);
    const void *home = m ? vk_atomic_read(&m->home) : NULL;

    return home && home != aio_thread_token();
}

bool aio_context_is_main(VmmAioContext *ctx)
{
    return ctx && ctx == vk_atomic_load_acquire(&main_ctx);
}
