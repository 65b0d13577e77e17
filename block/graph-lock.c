/* SPDX-License-Identifier: MIT */
/*
 * The graph lock: coroutine readers in any AioContext, one writer (the main
 * loop).  QEMU's algorithm (block/graph-lock.c) with three changes: the
 * reader's Dekker fences are asymmetric; the lost-wake-up fix is a "writer
 * waiting" flag that stays set for the whole wait; and has_writer stays set
 * while the writer waits.  QEMU clears it while polling so that callbacks
 * run by the poll can take the read lock, but that lets readers in every
 * thread in, and readers that keep the lock busy (tests/block stress) starve
 * the writer forever.  Here only readers running in the main loop's own
 * poll pass (they are counted and waited for); other threads queue.
 *
 * State
 *   has_writer       set by the writer from the start of its wait until it
 *                    unlocks; readers that see it queue (except main-loop
 *                    readers during the wait, see block_graph_rdlock_slow).
 *   writer_waiting   set for the whole of vmm_graph_wrlock()'s wait; readers
 *                    that see it on unlock kick the main loop.
 *   GraphSlot        one reader count per AioContext (its own cache line),
 *                    in the context's private slot (aio/aio-internal.h),
 *                    written only by the thread running that context.  A
 *                    coroutine may lock in context A and unlock in B: A
 *                    stays +1 and B -1 (as unsigned); only the sum means
 *                    anything.  When a context dies its count moves to
 *                    `orphaned`, so the sum still sees every reader.
 *                    Threads that run no context use `foreign` (atomic RMW).
 *
 * Barrier pairings
 *   (1) rdlock: count++ ; FENCE_R ; read has_writer
 *       wrlock: has_writer = 1 ; FENCE_W ; read all counts
 *       Either the reader sees has_writer (and backs off), or the writer
 *       sees its count (and waits).
 *   (2) rdunlock: count-- ; FENCE_R ; read writer_waiting -> kick
 *       wrlock:   writer_waiting = 1 ; FENCE_W ; read all counts (each
 *                 time it evaluates its wait condition)
 *       Either the unlocking reader sees writer_waiting and kicks (the kick
 *       then pairs with VMM_AIO_WAIT_WHILE's own full barriers), or the
 *       writer's next count read sees the decrement.  (QEMU's older
 *       "kick only if has_writer" lost this wake-up because its writer
 *       cleared has_writer while polling; the flag we test is set for the
 *       whole wait.)
 *   FENCE_R/FENCE_W are asymmetric when the kernel has
 *   membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED): FENCE_R is a compiler
 *   barrier and FENCE_W the system call, which runs a full barrier on every
 *   CPU running a thread of this process (a thread not running has passed
 *   through the scheduler's own barrier).  Otherwise (and under
 *   ThreadSanitizer, which does not model it) both are full fences.
 *   The count stores are release and the writer's loads acquire; the
 *   has_writer load is acquire and wrunlock's store release: those give
 *   the happens-before edges between graph readers and the writer.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "aio/aio-internal.h"
#include "block/block-int.h"
#include "block/graph-lock-int.h"
#include "util/trace.h"

VmmGraphLock vmm_graph_lock;

typedef BlockGraphSlot GraphSlot;

/* has_writer, writer_waiting, use_membarrier: read inline by the fast path
 * (graph-lock-int.h). */
BlockGraphFlags block_graph_flags;
#define has_writer      (block_graph_flags.has_writer)
#define writer_waiting  (block_graph_flags.writer_waiting)
#define use_membarrier  (block_graph_flags.use_membarrier)

BlockGraphSlot block_graph_free_slot = { .ctx = BLOCK_GRAPH_SLOT_FREE };
__thread BlockGraphSlot *block_graph_tls_slot = &block_graph_free_slot;
#define tls_slot        block_graph_tls_slot

static uint32_t foreign_count;      /* threads without a context; atomic */

static VmmMutex list_lock = { PTHREAD_MUTEX_INITIALIZER };
static GraphSlot *all_slots VMM_GUARDED_BY(list_lock);
static uint32_t orphaned VMM_GUARDED_BY(list_lock);
static BlockWaiter *reader_queue VMM_GUARDED_BY(list_lock);

static int slot_key = -1;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

#if defined(__SANITIZE_THREAD__)
#define GRAPH_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define GRAPH_TSAN 1
#endif
#endif
#ifndef GRAPH_TSAN
#define GRAPH_TSAN 0
#endif

/* ---- Slots -------------------------------------------------------------------- */

static void slot_destroy(VmmAioContext *ctx, void *value)
{
    GraphSlot *s = value;
    (void)ctx;
    vk_mutex_lock(&list_lock);
    /* The dying context's readers (or its -1s) live on in the sum. */
    orphaned += vk_atomic_load_acquire(&s->count);
    vk_atomic_set(&s->count, 0);
    vk_atomic_set(&s->ctx, BLOCK_GRAPH_SLOT_FREE);  /* stale thread caches miss */
    vk_mutex_unlock(&list_lock);
}

static void *slot_create(VmmAioContext *ctx, void *arg)
{
    (void)arg;
    vk_mutex_lock(&list_lock);
    GraphSlot *s;
    for (s = all_slots; s; s = s->next) {
        if (vk_atomic_read(&s->ctx) == BLOCK_GRAPH_SLOT_FREE) {
            break;
        }
    }
    if (!s) {
        /* Slots are never freed: a thread may still hold a stale pointer
         * in tls_slot; it notices through s->ctx. */
        void *p = NULL;
        if (posix_memalign(&p, VMM_CACHELINE, sizeof(*s)) != 0) {
            vk_mutex_unlock(&list_lock);
            return NULL;            /* callers fall back to `foreign` */
        }
        s = memset(p, 0, sizeof(*s));
        s->next = all_slots;
        all_slots = s;
    }
    vk_atomic_set(&s->ctx, ctx);
    vk_mutex_unlock(&list_lock);
    return s;
}

static void graph_init(void)
{
    slot_key = aio_slot_key_new("graph-lock", slot_destroy);
    if (slot_key < 0) {
        vk_error("graph lock: no AioContext slot (%d); readers use a shared counter",
                  slot_key);
    }
    if (!GRAPH_TSAN &&
        syscall(__NR_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0) {
        vk_atomic_store_release(&use_membarrier, true);
    }
}

static inline void graph_ensure_init(void)
{
    if (vk_unlikely(vk_atomic_load_acquire(&slot_key) < 0)) {
        pthread_once(&init_once, graph_init);
    }
}

/* Set up at load time, so the reader fast path has no init check (the
 * aio slot registry needs only static initialisers). */
static void __attribute__((constructor)) graph_ctor(void)
{
    pthread_once(&init_once, graph_init);
}

/* Slow half of block_graph_slot_current(): look up (or create) the
 * current context's slot and cache it for this thread.  Called by the
 * fast path, which does not yield before it last uses the result, so the
 * thread-local written here is the calling thread's. */
VMM_NOINLINE GraphSlot *block_graph_slot_lookup_slow(VmmAioContext *ctx)
{
    graph_ensure_init();
    if (!ctx || slot_key < 0) {
        return NULL;
    }
    GraphSlot *s = aio_slot_get_or_create(ctx, slot_key, slot_create, NULL);
    tls_slot = s ? s : &block_graph_free_slot;
    return s;
}

static void fence_writer(void)
{
    if (vk_atomic_read(&use_membarrier)) {
        /* Pairs with block_graph_fence_reader()'s compiler barrier on
         * every CPU (graph-lock-int.h). */
        if (syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0) {
            return;
        }
        vk_error("membarrier failed; graph lock falls back to full fences");
        vk_atomic_set(&use_membarrier, false);
        /* A reader that still used the compiler barrier has passed through
         * the failed system call's context switch: full barrier there. */
    }
    vk_smp_mb();           /* pairs with block_graph_fence_reader()'s smp_mb */
}

void block_graph_slot_add_foreign(uint32_t delta)
{
    vk_atomic_fetch_add(&foreign_count, delta);
}

static uint32_t reader_count(void)
{
    vk_mutex_lock(&list_lock);
    uint32_t sum = orphaned + vk_atomic_load_acquire(&foreign_count);
    for (GraphSlot *s = all_slots; s; s = s->next) {
        sum += vk_atomic_load_acquire(&s->count);
    }
    vk_mutex_unlock(&list_lock);
    return sum;
}

/* ---- Debug checks (VMM_DEBUG_CHECKS) --------------------------------------------- */

/* Read locks held outside coroutines by this thread, and the main loop's
 * read-lock depth.  A coroutine's own count lives in the coroutine (it
 * may unlock in another thread than it locked in). */
static __thread unsigned tls_rdlocks;
static __thread unsigned tls_main_rdlocks;

static unsigned *rdlock_depth(void)
{
    unsigned *d = aio_co_graph_rdlocks();
    return d ? d : &tls_rdlocks;
}

void block_graph_debug_rdlock(void)
{
    (*rdlock_depth())++;
}

void block_graph_debug_rdunlock(void)
{
    unsigned *d = rdlock_depth();

    if (*d == 0) {
        vk_misuse("vmm_graph_co_rdunlock", "graph read lock released but not held by "
                   "this %s", vmm_in_coroutine() ? "coroutine" : "thread");
        return;
    }
    (*d)--;
}

/* ---- Readers ----------------------------------------------------------------- */

static void coroutine_fn graph_rdlock_retry(void);

VMM_NOINLINE void coroutine_fn block_graph_rdlock_slow(GraphSlot *s) VMM_NO_TSA
{
    if (!vmm_in_coroutine()) {
        /* Cannot wait outside a coroutine; the main loop has its own lock. */
        VMM_MISUSE("vmm_graph_co_rdlock outside a coroutine while a writer is active");
        if (VMM_DEBUG_CHECKS) {
            block_graph_debug_rdlock();     /* counted as held, as it is */
        }
        return;
    }
    vk_mutex_lock(&list_lock);
    if (!vk_atomic_load_acquire(&has_writer)) {
        /* The writer left between our check and the lock: we hold it. */
        vk_mutex_unlock(&list_lock);
        if (VMM_DEBUG_CHECKS) {
            block_graph_debug_rdlock();
        }
        return;
    }
    if (vk_atomic_read(&writer_waiting) &&
        aio_context_is_main(aio_get_current_context_raw())) {
        /* A callback run by the writer's own wait: it must not wait for
         * the writer.  The writer counts us, and does not own the graph
         * until we are done. */
        vk_mutex_unlock(&list_lock);
        if (VMM_DEBUG_CHECKS) {
            block_graph_debug_rdlock();
        }
        return;
    }
    /* Back off (same thread as the increment: no yield since), queue,
     * and let the writer's poll see the count drop. */
    block_graph_slot_add(s, (uint32_t)-1);
    BlockWaiter w = { .co = vmm_coroutine_self(), .next = NULL };
    BlockWaiter **pp = &reader_queue;
    while (*pp) {
        pp = &(*pp)->next;
    }
    *pp = &w;
    vk_mutex_unlock(&list_lock);
    vmm_aio_wait_kick();
    TRACE_PROBE(graph_rdlock_wait, w.co);
    vmm_coroutine_yield();
    TRACE_PROBE(graph_rdlock_wait_done, w.co);
    graph_rdlock_retry();      /* from the start, in whatever thread we are now;
                                * it counts the hold (debug builds) */
}

/* The fast paths are block_graph_rdlock_body() and
 * block_graph_rdunlock_body() (graph-lock-int.h), inlined here and into
 * the block layer's request path. */
void vmm_graph_co_rdlock(void) VMM_NO_TSA
{
    block_graph_rdlock_body();
}

/* Not inlined into block_graph_rdlock_slow: a fresh frame re-reads the thread-locals
 * after the yield. */
static VMM_NOINLINE void coroutine_fn graph_rdlock_retry(void) VMM_NO_TSA
{
    vmm_graph_co_rdlock();
}

void vmm_graph_co_rdunlock(void) VMM_NO_TSA
{
    block_graph_rdunlock_body();
}

void vmm_graph_rdlock_main_loop(void) VMM_NO_TSA
{
    if (VMM_DEBUG_CHECKS) {
        block_assert_main_loop(__func__);
        tls_main_rdlocks++;
    }
}

void vmm_graph_rdunlock_main_loop(void) VMM_NO_TSA
{
    if (VMM_DEBUG_CHECKS) {
        block_assert_main_loop(__func__);
        if (tls_main_rdlocks == 0) {
            VMM_MISUSE("main-loop graph read lock released but not held");
            return;
        }
        tls_main_rdlocks--;
    }
}

void vmm_graph_assume_rdlock(void)
{
}

void block_assert_main_loop(const char *func)
{
    VmmAioContext *cur = aio_get_current_context_raw();
    if (vmm_in_coroutine() && !aio_context_is_main(cur)) {
        vk_misuse(func, "called from a coroutine outside the main loop");
    } else if (cur && !aio_context_is_main(cur)) {
        vk_misuse(func, "called from context '%s', not the main loop",
                   aio_context_name(cur));
    } else if (!cur && aio_main_loop_is_other_thread()) {
        vk_misuse(func, "called from a thread that is not the main loop (the thread "
                   "that polls the main context)");
    }
}

/* ---- Writer ------------------------------------------------------------------- */

static bool readers_active(void)
{
    uint32_t n = reader_count();

    if (vk_unlikely((int32_t)n < 0)) {
        /* Only an unlock without a lock gets here; debug builds report it
         * at the unlock already (block_graph_debug_rdunlock). */
        VMM_MISUSE("graph read lock released more often than taken (%d readers)",
                   (int32_t)n);
        return false;
    }
    return n > 0;
}

void vmm_graph_wrlock(void) VMM_NO_TSA
{
    graph_ensure_init();
    if (vmm_in_coroutine()) {
        VMM_MISUSE("graph write lock taken in a coroutine");
    }
    block_assert_main_loop(__func__);
    if (vk_atomic_read(&has_writer)) {
        VMM_MISUSE("graph write lock taken twice");
    }
    /* New requests queue at BlockBackends, so readers cannot starve us. */
    block_drain_all_begin_nopoll();

    vk_atomic_set(&writer_waiting, 1);
    vk_atomic_set(&has_writer, 1);
    fence_writer();                                 /* pairings (1) and (2) */
    /* Readers in other threads now queue; readers run by this poll (the
     * main loop's callbacks) pass (block_graph_rdlock_slow), so they cannot deadlock
     * against us, and they are counted, so we wait for them too. */
    TRACE_PROBE(graph_wrlock_wait);
    VMM_AIO_WAIT_WHILE(NULL, readers_active());
    TRACE_PROBE(graph_wrlock_wait_done);
    vk_atomic_set(&writer_waiting, 0);

    vmm_block_drain_all_end();
}

void vmm_graph_wrunlock(void) VMM_NO_TSA
{
    block_assert_main_loop(__func__);
    if (!vk_atomic_read(&has_writer)) {
        VMM_MISUSE("graph write lock released but not held");
        return;
    }
    vk_mutex_lock(&list_lock);
    /* Release: readers' acquire load of has_writer sees our graph writes. */
    vk_atomic_store_release(&has_writer, 0);
    BlockWaiter *w = block_waiters_take(&reader_queue);
    vk_mutex_unlock(&list_lock);
    block_wake_all(w);
}

/* ---- Benchmark and test helpers ---------------------------------------------- */

uint32_t block_graph_reader_count(void)
{
    return reader_count();
}

bool block_graph_uses_membarrier(void)
{
    graph_ensure_init();
    return vk_atomic_read(&use_membarrier);
}
