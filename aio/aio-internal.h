/* SPDX-License-Identifier: MIT */
/*
 * aio/aio-internal.h - what other parts of the library may use of the
 * AioContext beyond the public vmmkit/aio.h.  Hidden symbols (no
 * VMM_EXPORT); include it as "aio/aio-internal.h".
 *
 * 1. Per-context private slots.  A subsystem registers a key once (with a
 *    destroy callback) and stores one pointer per context under it: the
 *    coroutine code keeps its scheduled-coroutine list and BH and the
 *    thread pool there, the block layer its per-context graph-lock reader
 *    counts.  Destroy callbacks run when the context is destroyed, before
 *    its BHs are checked for leaks, in reverse key order, in the thread
 *    that drops the last reference.
 *
 * 2. Context hooks: a process-wide callback pair told about every context
 *    created and destroyed (registering one replays the live contexts).
 *
 * 3. The calling thread's current context (iothreads and the main loop set
 *    it once per thread).
 */
#ifndef VMM_AIO_INTERNAL_H
#define VMM_AIO_INTERNAL_H

#include "util/compiler.h"
#include "vmmkit/aio.h"

/* ---- Private slots -------------------------------------------------------- */

#define VMM_AIO_SLOT_MAX 16

/* Called with the context and the slot's value when the context dies; the
 * value is never NULL here.  Runs before BHs are leak-checked, so it may
 * still vmm_bh_delete() BHs it owns (they are freed without running). */
typedef void VmmAioSlotDestroy(VmmAioContext *ctx, void *value);
/* Builds a slot's value on first use (aio_slot_get_or_create). */
typedef void *VmmAioSlotCreate(VmmAioContext *ctx, void *arg);

/*
 * Reserve a slot key.  @name is for diagnostics.  Returns the key (>= 0) or
 * -ENOSPC when all VMM_AIO_SLOT_MAX keys are taken.  Call once per process
 * (e.g. from pthread_once); any thread.
 */
int aio_slot_key_new(const char *name, VmmAioSlotDestroy *destroy);

/* The value stored under @key, or NULL.  Any thread (acquire load: the
 * value's contents written before it was set are visible). */
void *aio_slot_get(VmmAioContext *ctx, int key);

/*
 * Store @value under @key if the slot is empty.  Returns @value if it was
 * stored, else the value another thread stored first (the caller then frees
 * its own).  Any thread.
 */
void *aio_slot_set(VmmAioContext *ctx, int key, void *value);

/*
 * The value under @key, created by @create(ctx, arg) if there is none.
 * Concurrent first calls may both run @create; one value wins, and the
 * loser's value is passed to the key's destroy callback.  Returns NULL
 * only if @create returned NULL.  Any thread.
 */
void *aio_slot_get_or_create(VmmAioContext *ctx, int key,
                                 VmmAioSlotCreate *create, void *arg);

/* ---- Context hooks ---------------------------------------------------------- */

typedef struct VmmAioContextHooks {
    /* After the context is fully built, in the creating thread. */
    void (*created)(VmmAioContext *ctx, void *opaque);
    /* When the last reference is dropped, after the slot destroy callbacks,
     * in that thread.  The context is still usable (BHs, handlers). */
    void (*destroyed)(VmmAioContext *ctx, void *opaque);
} VmmAioContextHooks;

/*
 * Register @hooks (the struct must outlive the registration).  created()
 * is called at once for every live context, then for each new one.
 * Hooks run under a process-wide mutex: they must not create or destroy
 * contexts.  Returns 0, -EEXIST if already registered or -ENOMEM.
 * Any thread.
 */
int aio_context_hooks_register(const VmmAioContextHooks *hooks, void *opaque);
/* Returns 0 or -ENOENT.  Any thread. */
int aio_context_hooks_unregister(const VmmAioContextHooks *hooks);

/*
 * Return once every callback that @ctx's thread was running at the call
 * has returned: a one-shot BH scheduled now runs after them, since that
 * thread runs its callbacks one at a time.  Used after deleting a BH or
 * handler whose callback may be running there, before freeing what the
 * callback uses (vmm_bh_delete() stops later runs, not a current one).
 * Nothing to wait for when the caller runs @ctx itself, or when @ctx has
 * no thread of its own (its caller polls it, and is not inside a callback
 * while calling this).  Main loop (it waits with VMM_AIO_WAIT_WHILE): @ctx's
 * thread must be running.  -ENOMEM when the BH cannot be made (nothing
 * waited for), else 0.
 */
int aio_context_barrier(VmmAioContext *ctx);

/* Run @fn(@opaque) in @ctx's thread and return once it has returned:
 * directly when the caller runs @ctx, else as a one-shot BH waited for
 * with VMM_AIO_WAIT_WHILE (main loop; @ctx's thread must be running).
 * 0, or -ENOMEM when the BH cannot be made (@fn did not run). */
int aio_run_in_context(VmmAioContext *ctx, void (*fn)(void *opaque), void *opaque);

/* vmm_bh_delete(@bh), then aio_context_barrier() on its context when that
 * still exists (a BH outlives a destroyed context, which it then no longer
 * names).  Same threads and errors as aio_context_barrier(). */
int aio_bh_delete_sync(VmmBH *bh);

/* ---- Current context ---------------------------------------------------------- */

/*
 * Make @ctx the calling thread's current context (its home: the thread
 * that runs it) until changed; NULL clears it.  vmm_aio_context_current()
 * then returns it.  Iothreads call it at start, the main loop for the main
 * context.  vmm_aio_poll() also makes the polled context current while it
 * runs callbacks and restores the previous value after.  Calling thread.
 */
void aio_set_current_context(VmmAioContext *ctx);

/* The raw thread-local value (NULL when the thread runs no context).  Not
 * inlined, so coroutines that move between threads never cache it. */
VmmAioContext *aio_get_current_context_raw(void);

/* The thread-local behind both (aio/async.c).  Read it only through
 * aio_current_context_fresh(); written only by async.c. */
extern __thread VmmAioContext *aio_tls_current
    VMM_TLS_IE __attribute__((visibility("hidden")));

/*
 * Same value as aio_get_current_context_raw(), inline, for hot paths
 * (the graph read lock).  Calling thread.
 *
 * Coroutines move between threads, and a compiler treats the thread
 * pointer as constant within a function: a plain `tls_var` read inlined
 * into a function that yields may reuse the address (or value) computed
 * before the yield, i.e. the old thread's.  So on x86-64 the whole access
 * (GOT offset load + %fs-relative load) is one volatile asm with a memory
 * clobber: it is never merged with another read, nor moved across a call
 * (a yield is a call).  The initial-exec model makes it two loads and no
 * __tls_get_addr.  Elsewhere it is the out-of-line call.
 */
#if defined(__x86_64__) && defined(__ELF__)
/* Load the initial-exec thread-local pointer @var afresh, as above: one
 * volatile asm (GOT offset, then %fs-relative load) that the compiler can
 * neither merge with another read nor move across a call. */
#define VMM_TLS_PTR_FRESH(var) __extension__({                          \
        __typeof__(var) tls_v_;                                          \
        __asm__ volatile("movq " #var "@gottpoff(%%rip), %0\n\t"         \
                         "movq %%fs:(%0), %0"                            \
                         : "=r"(tls_v_) : : "memory");                   \
        tls_v_; })
#endif

static inline VmmAioContext *aio_current_context_fresh(void)
{
#ifdef VMM_TLS_PTR_FRESH
    return VMM_TLS_PTR_FRESH(aio_tls_current);
#else
    return aio_get_current_context_raw();
#endif
}

/* True for the process's main context.  Any thread. */
bool aio_context_is_main(VmmAioContext *ctx);

/* True when a thread runs the main context (it polled it first, see
 * vmm_aio_context_main()) and it is not the calling thread.  Any thread. */
bool aio_main_loop_is_other_thread(void);

/* The running coroutine's count of graph read locks held (the block
 * layer's debug checks), or NULL outside a coroutine.  Calling thread. */
unsigned *aio_co_graph_rdlocks(void);

/* The context's name (diagnostics): "main", an iothread's name, or "aio". */
const char *aio_context_name(VmmAioContext *ctx);

#endif /* VMM_AIO_INTERNAL_H */
