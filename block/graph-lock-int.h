/* SPDX-License-Identifier: MIT */
/*
 * Internal: the graph read lock's fast path, inline, for the block layer's
 * own request path (block/backend.c) and the exported functions
 * (block/graph-lock.c, which explains the algorithm and the barrier
 * pairings).  Two out-of-line calls alone cost ~2.3 ns per lock+unlock
 * pair on the development VM (five taken branches per pair, measured by
 * bench-graph-lock), so the per-request path must not make them.
 *
 * The inline code reads every thread-local through a volatile asm with a
 * memory clobber (x86-64): it may be inlined into a coroutine that yields
 * and resumes on another thread, and a plain TLS access could reuse the
 * old thread's %fs-relative address.  Other architectures call the
 * exported functions.
 */
#ifndef VMM_BLOCK_GRAPH_LOCK_INT_H
#define VMM_BLOCK_GRAPH_LOCK_INT_H

#include "aio/aio-internal.h"
#include "block/block-int.h"

/* One reader count per AioContext, on its own cache line (graph-lock.c). */
typedef struct BlockGraphSlot {
    uint32_t count;                 /* written by the context's thread */
    VmmAioContext *ctx;             /* owner, or BLOCK_GRAPH_SLOT_FREE (atomic) */
    struct BlockGraphSlot *next;    /* all slots, under graph-lock.c's list_lock */
} VMM_CACHE_ALIGNED BlockGraphSlot;

/* The owner of a free slot: never a context, never NULL (a thread that
 * runs no context has a NULL current context, which must not match). */
#define BLOCK_GRAPH_SLOT_FREE ((VmmAioContext *)&block_graph_free_slot)

/* Flags the fast path reads (graph-lock.c's header comment: pairings). */
typedef struct BlockGraphFlags {
    int has_writer;
    int writer_waiting;
    bool use_membarrier;
} BlockGraphFlags;

extern BlockGraphFlags block_graph_flags;
/* Owner of nothing; the initial value of every thread's slot cache. */
extern BlockGraphSlot block_graph_free_slot;
/* This thread's cached slot, valid while its ctx is the current context. */
extern __thread BlockGraphSlot *block_graph_tls_slot
    VMM_TLS_IE __attribute__((visibility("hidden")));

BlockGraphSlot *block_graph_slot_lookup_slow(VmmAioContext *ctx);
void coroutine_fn block_graph_rdlock_slow(BlockGraphSlot *s);
void block_graph_slot_add_foreign(uint32_t delta);
/* Debug builds (VMM_DEBUG_CHECKS): count the read locks the caller (the
 * running coroutine, else the thread) holds, and report an unlock without
 * a lock where it happens (graph-lock.c). */
void block_graph_debug_rdlock(void);
void block_graph_debug_rdunlock(void);

static inline BlockGraphSlot *block_graph_tls_slot_fresh(void)
{
#ifdef VMM_TLS_PTR_FRESH
    return VMM_TLS_PTR_FRESH(block_graph_tls_slot);    /* aio/aio-internal.h */
#else
    /* Only reached inside the exported vmm_graph_co_rdlock/rdunlock (the
     * inline fast path below is x86-64 only), which do not yield between
     * this read and its use. */
    return block_graph_tls_slot;
#endif
}

/*
 * The calling thread's slot, or NULL (use the shared `foreign` counter).
 * The cache is valid while its slot belongs to the context this thread
 * runs now: slots are recycled, never freed, and a recycled one names its
 * new owner, a free one BLOCK_GRAPH_SLOT_FREE; the cache starts at
 * block_graph_free_slot, so one compare covers "no cache" too.  The
 * result must not be used after a yield.
 */
static inline BlockGraphSlot *block_graph_slot_current(void)
{
    VmmAioContext *ctx = aio_current_context_fresh();
    BlockGraphSlot *s = block_graph_tls_slot_fresh();
    if (vk_likely(vk_atomic_read(&s->ctx) == ctx)) {
        return s;
    }
    return block_graph_slot_lookup_slow(ctx);
}

static inline void block_graph_fence_reader(void)
{
    if (vk_likely(vk_atomic_read(&block_graph_flags.use_membarrier))) {
        vk_barrier();      /* pairs with graph-lock.c fence_writer()'s membarrier */
    } else {
        vk_smp_mb();       /* pairs with graph-lock.c fence_writer()'s smp_mb */
    }
}

static inline void block_graph_slot_add(BlockGraphSlot *s, uint32_t delta)
{
    if (vk_likely(s != NULL)) {
        /* Single writer (this context's thread): no RMW needed.  Release:
         * the writer's acquire load of the count sees our graph reads as
         * done (pairings (1)/(2) order it against the flags). */
        vk_atomic_store_release(&s->count, vk_atomic_read(&s->count) + delta);
    } else {
        block_graph_slot_add_foreign(delta);
    }
}

/* The fast paths.  Inline only where the thread-local reads above are
 * fresh asm (they may be inlined into a function that yields); elsewhere
 * only the exported functions, which never yield between the read and its
 * last use, expand them. */
static inline void coroutine_fn block_graph_rdlock_body(void)
    VMM_ACQUIRE_SHARED(vmm_graph_lock);
static inline void coroutine_fn block_graph_rdlock_body(void) VMM_NO_TSA
{
    BlockGraphSlot *s = block_graph_slot_current();
    block_graph_slot_add(s, 1);
    block_graph_fence_reader();                     /* pairing (1) */
    if (vk_unlikely(vk_atomic_load_acquire(&block_graph_flags.has_writer))) {
        block_graph_rdlock_slow(s);     /* counts the hold itself */
    } else if (VMM_DEBUG_CHECKS) {
        block_graph_debug_rdlock();
    }
}

static inline void coroutine_fn block_graph_rdunlock_body(void)
    VMM_RELEASE_SHARED(vmm_graph_lock);
static inline void coroutine_fn block_graph_rdunlock_body(void) VMM_NO_TSA
{
    if (VMM_DEBUG_CHECKS) {
        block_graph_debug_rdunlock();   /* aborts on an unlock without lock */
    }
    BlockGraphSlot *s = block_graph_slot_current();
    block_graph_slot_add(s, (uint32_t)-1);
    block_graph_fence_reader();                     /* pairing (2) */
    if (vk_unlikely(vk_atomic_read(&block_graph_flags.writer_waiting))) {
        vmm_aio_wait_kick();
    }
}

/* What the block layer's request path calls (same semantics as
 * vmm_graph_co_rdlock / vmm_graph_co_rdunlock). */
static inline void coroutine_fn block_graph_co_rdlock_fast(void)
    VMM_ACQUIRE_SHARED(vmm_graph_lock);
static inline void coroutine_fn block_graph_co_rdlock_fast(void) VMM_NO_TSA
{
#if defined(__x86_64__) && defined(__ELF__)
    block_graph_rdlock_body();
#else
    vmm_graph_co_rdlock();
#endif
}

static inline void coroutine_fn block_graph_co_rdunlock_fast(void)
    VMM_RELEASE_SHARED(vmm_graph_lock);
static inline void coroutine_fn block_graph_co_rdunlock_fast(void) VMM_NO_TSA
{
#if defined(__x86_64__) && defined(__ELF__)
    block_graph_rdunlock_body();
#else
    vmm_graph_co_rdunlock();
#endif
}

#endif /* VMM_BLOCK_GRAPH_LOCK_INT_H */
