/* SPDX-License-Identifier: MIT */
/*
 * Coroutines: create, enter, yield, and the switch with its sanitizer
 * annotations.
 *
 * Thread-locals.  A coroutine may yield on one thread and be resumed on
 * another.  The compiler assumes a function runs on one thread from start
 * to end, so it may compute the address of a __thread variable once and
 * reuse it after a call that switched coroutines (on aarch64 it caches
 * tpidr_el0; on x86-64 it may cache %fs:0).  Every thread-local here is
 * therefore read through a getter that computes its address afresh: on
 * x86-64 one volatile asm (VMM_CO_TLS_ADDR_FRESH, initial-exec), elsewhere
 * a noinline function whose body holds a volatile asm, so the call can
 * neither be inlined nor be treated as pure and merged; and code
 * re-fetches it after each switch.  co_switch() is noinline for the
 * same reason.  The public header offers the same pattern (VMM_CO_TLS).
 */
#include <errno.h>
#include <fenv.h>
#include <stdlib.h>

#include "aio/aio-internal.h"
#include "coroutine-int.h"
#include "util/atomic.h"
#include "util/log.h"

#if VMM_CO_ASAN
#include <sanitizer/common_interface_defs.h>
#endif
#if VMM_CO_TSAN
#include <sanitizer/tsan_interface.h>
#endif

typedef struct CoThread {
    struct VmmCoroutine *current;   /* NULL while the thread's own stack runs */
    struct VmmCoroutine leader;     /* stands for the thread's own stack */
} CoThread;

static __thread CoThread co_thread VMM_TLS_IE __attribute__((used));

/* The calling thread's CoThread, computed afresh on every call. */
#ifdef VMM_CO_TLS_ADDR_FRESH
static inline CoThread *co_thread_get(void)
{
    return VMM_CO_TLS_ADDR_FRESH(co_thread);
}
#else
static VMM_NOINLINE CoThread *co_thread_get(void)
{
    __asm__ volatile("");
    return &co_thread;
}
#endif

static void co_thread_init(CoThread *t)
{
    t->leader.is_leader = true;
    co_fifo_init(&t->leader.wakeup);
#if VMM_CO_TSAN
    t->leader.tsan_fiber = __tsan_get_current_fiber();
#endif
}

struct VmmCoroutine *co_current(void)
{
    return co_thread_get()->current;
}

#if VMM_CO_ASAN
/* A thread's own stack has no bounds we chose: ASan reports them when we
 * first arrive in a coroutine from it, and switching back needs them. */
static void asan_learn_leader(struct VmmCoroutine *caller, const void *bottom,
                              size_t size)
{
    if (caller->is_leader && !caller->stack.base) {
        caller->stack.base = (char *)bottom;
        caller->stack.size = size;
        caller->stack.guard = 0;
    }
}
#endif

/*
 * Switch from @from (running) to @to.  Returns when someone switches back
 * to @from, possibly on another thread: nothing read from @t before the
 * switch may be used after it, and callers re-fetch thread state through
 * co_thread_get() (noinline), so inlining this is safe.
 */
static inline __attribute__((always_inline)) int co_switch(CoThread *t, struct VmmCoroutine *from,
                                  struct VmmCoroutine *to, int action)
{
    int ret;

    t->current = to->is_leader ? NULL : to;
#if VMM_CO_ASAN
    void *fake_stack = NULL;
    const void *old_bottom;
    size_t old_size;

    /* A terminating coroutine's fake frames die with it (NULL); others
     * keep them for when they resume. */
    __sanitizer_start_switch_fiber(action == VMM_CO_TERMINATE ? NULL : &fake_stack,
                                   to->stack.base + to->stack.guard,
                                   to->stack.size - to->stack.guard);
#endif
#if VMM_CO_TSAN
    /* flags 0: the switch synchronises the two fibers (happens-before). */
    __tsan_switch_to_fiber(to->tsan_fiber, 0);
#endif
    ret = VMM_CO_BACKEND_SWITCH(from, to, action);
#if VMM_CO_ASAN
    __sanitizer_finish_switch_fiber(fake_stack, &old_bottom, &old_size);
    if (from->caller) {
        asan_learn_leader(from->caller, old_bottom, old_size);
    }
#endif
    return ret;
}

/*
 * Every coroutine's entry starts with the ABI's initial FPU control words
 * (x86-64: MXCSR controls 0x1F80, x87 CW 0x037F; aarch64: FPCR 0), also when its
 * object comes from the pool: otherwise it would inherit the words the
 * previous user of that stack had when it ended.  Not with
 * -Dcoroutine_fpu_ctl=false, where coroutines share the thread's words.
 */
static inline void co_fpu_reset(void)
{
#if defined(VMM_CO_BACKEND_ASM) && !VMM_CO_FPU_CTL
    /* shared with the thread: leave them alone */
#elif defined(__x86_64__)
    /* Status flags set, as the switch keeps them (switch-x86_64.S): the
     * load then leaves MXCSR unchanged unless the controls differ. */
    static const uint32_t mxcsr = 0x1FBF;
    static const uint16_t cw = 0x037F;

    __asm__ volatile("ldmxcsr %0\n\tfldcw %1" : : "m"(mxcsr), "m"(cw));
#elif defined(__aarch64__)
    uint64_t fpcr;

    __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
    if (fpcr) {                 /* "msr fpcr" can be slow: only when needed */
        __asm__ volatile("msr fpcr, xzr");
    }
#else
    fesetenv(FE_DFL_ENV);
#endif
}

void co_trampoline(struct VmmCoroutine *co)
{
#if VMM_CO_ASAN
    const void *old_bottom;
    size_t old_size;

    __sanitizer_finish_switch_fiber(NULL, &old_bottom, &old_size);
    asan_learn_leader(co->caller, old_bottom, old_size);
#endif
    for (;;) {
        co_fpu_reset();
        co->entry(co->opaque);
        /* Back to whoever entered us last; a pooled coroutine re-created
         * later resumes here and runs its new entry. */
        co_switch(co_thread_get(), co, co->caller, VMM_CO_TERMINATE);
    }
}

VmmCoroutine *vmm_coroutine_create(VmmCoroutineEntry *entry, void *opaque, int *errp)
{
    int err = 0;
    struct VmmCoroutine *co;

    if (!entry) {
        int e = VMM_MISUSE_ERR(-EINVAL, "NULL entry function");
        if (errp) {
            *errp = e;
        }
        return NULL;
    }
    co = co_pool_get(&err);
    if (!co) {
        if (errp) {
            *errp = err;
        }
        return NULL;
    }
    co->entry = entry;
    co->opaque = opaque;
    co->ctx = NULL;
    co->caller = NULL;
    co->locks_held = 0;
    co->graph_rdlocks = 0;
    vk_atomic_set(&co->scheduled, NULL);
    return co;
}

static bool co_check_enter(struct VmmCoroutine *to, bool from_wakeup)
{
    const char *sched = vk_atomic_read(&to->scheduled);

    if (from_wakeup && to->wakeup_queued) {
        to->wakeup_queued = false;
        vk_atomic_set(&to->scheduled, NULL);
        sched = NULL;
    }
    if (vk_unlikely(sched)) {
        VMM_MISUSE("coroutine %p entered while scheduled by %s", (void *)to, sched);
        return false;
    }
    if (vk_unlikely(to->caller)) {
        VMM_MISUSE("coroutine %p re-entered recursively (it is running)", (void *)to);
        return false;
    }
    return true;
}

static void co_terminated(struct VmmCoroutine *co)
{
    if (vk_unlikely(co->locks_held)) {
        VMM_MISUSE("coroutine %p returned holding %u coroutine lock(s)",
                   (void *)co, co->locks_held);
    }
    co->caller = NULL;
    co_pool_put(co);
}

void co_enter_ctx(VmmAioContext *ctx, struct VmmCoroutine *co)
{
    CoThread *t = co_thread_get();
    struct VmmCoroutine *self, *to;
    VmmCoFifo pending;

    if (vk_unlikely(!t->leader.is_leader)) {
        co_thread_init(t);
    }
    self = t->current ? t->current : &t->leader;
    co_fifo_init(&pending);
    to = co;
    for (bool first = true; to; to = co_fifo_pop(&pending), first = false) {
        int ret;

        if (!co_check_enter(to, !first)) {
            continue;
        }
        to->caller = self;
        /* Pairs with the acquire load of co->ctx in vmm_aio_co_wake(): a
         * waker that sees this coroutine in a wait queue also sees the
         * context it runs in. */
        vk_atomic_store_release(&to->ctx, ctx);
        ret = co_switch(t, self, to, VMM_CO_ENTER);
        t = co_thread_get();
        /* What @to woke runs now, before older pending entries:
         * depth-first, most recently queued first. */
        if (vk_unlikely(to->wakeup.head)) {
            co_fifo_prepend(&pending, &to->wakeup);
        }
        if (ret == VMM_CO_TERMINATE) {
            co_terminated(to);
        } else if (vk_unlikely(to->resched_ctx)) {
            /* It has switched out completely: now it may run elsewhere. */
            VmmAioContext *dest = to->resched_ctx;

            to->resched_ctx = NULL;
            co_schedule_by(dest, to, "vmm_aio_co_reschedule_self", to->resched_where);
        }
    }
}

/* vmm_aio_context_current() without its pthread_once on every call. */
static inline VmmAioContext *current_context(void)
{
    static VmmAioContext *main_ctx;     /* atomic; set once */
    VmmAioContext *ctx = aio_current_context_fresh();

    if (vk_likely(ctx)) {
        return ctx;
    }
    /* Pairs with itself: the context is fully built before it is published
     * by vmm_aio_context_main(). */
    ctx = vk_atomic_load_acquire(&main_ctx);
    if (vk_unlikely(!ctx)) {
        ctx = vmm_aio_context_main();
        vk_atomic_store_release(&main_ctx, ctx);
    }
    return ctx;
}

void vmm_coroutine_enter(VmmCoroutine *co)
{
    if (!co) {
        VMM_MISUSE("NULL coroutine");
        return;
    }
    co_enter_ctx(current_context(), co);
}

void vmm_coroutine_enter_if_inactive(VmmCoroutine *co)
{
    if (!co) {
        VMM_MISUSE("NULL coroutine");
        return;
    }
    if (!co->caller && !vk_atomic_read(&co->scheduled)) {
        co_enter_ctx(current_context(), co);
    }
}

void vmm_coroutine_yield(void)
{
    CoThread *t = co_thread_get();
    struct VmmCoroutine *self = t->current;
    struct VmmCoroutine *to;

    if (vk_unlikely(!self)) {
        VMM_MISUSE("yield outside a coroutine");
        return;
    }
    to = self->caller;
    self->caller = NULL;
    co_switch(t, self, to, VMM_CO_YIELD);
}

void co_queue_wakeup_by(struct VmmCoroutine *co, const char *who, const void *where)
{
    struct VmmCoroutine *self = co_thread_get()->current;
    const char *prev;

    (void)where;
    if (vk_unlikely(co == self)) {
        VMM_MISUSE("coroutine %p woken by %s while it is running", (void *)co, who);
        return;
    }
    prev = vk_atomic_cmpxchg(&co->scheduled, NULL, who);
    if (vk_unlikely(prev)) {
        VMM_MISUSE("coroutine %p woken by %s while already scheduled by %s",
                   (void *)co, who, prev);
        return;
    }
    co->sched_where = where;
    co->wakeup_queued = true;
    co_fifo_push(&self->wakeup, co);
}

VmmCoroutine *vmm_coroutine_self(void)
{
    return co_thread_get()->current;
}

bool vmm_in_coroutine(void)
{
    return co_thread_get()->current != NULL;
}

unsigned *aio_co_graph_rdlocks(void)
{
    VmmCoroutine *co = co_thread_get()->current;

    return co ? &co->graph_rdlocks : NULL;
}

bool vmm_coroutine_entered(VmmCoroutine *co)
{
    return co && co->caller != NULL;
}

VmmAioContext *vmm_coroutine_get_context(VmmCoroutine *co)
{
    return co ? vk_atomic_load_acquire(&co->ctx) : NULL;
}
