/* SPDX-License-Identifier: MIT */
/*
 * Internal: the coroutine object, the machine-level switch and the stack
 * pool.  Shared by the files of aio/coroutine/ and by internal tests and
 * benchmarks; nothing here is exported.
 */
#ifndef VMM_AIO_COROUTINE_INT_H
#define VMM_AIO_COROUTINE_INT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "vmmkit/coroutine.h"
#include "aio/coroutine/coroutine-config.h"
#ifdef VMM_CO_FORCE_UCONTEXT
/* tests/coroutine builds the portable backend too, on every host. */
#undef VMM_CO_BACKEND_ASM
#endif
#include "util/compiler.h"
#include "util/atomic.h"

/* ---- Sanitizer and valgrind detection ---------------------------------- */

#if defined(__has_feature)
# if __has_feature(address_sanitizer)
#  define VMM_CO_ASAN 1
# endif
# if __has_feature(thread_sanitizer)
#  define VMM_CO_TSAN 1
# endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(VMM_CO_ASAN)
# define VMM_CO_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__) && !defined(VMM_CO_TSAN)
# define VMM_CO_TSAN 1
#endif
#ifndef VMM_CO_ASAN
# define VMM_CO_ASAN 0
#endif
#ifndef VMM_CO_TSAN
# define VMM_CO_TSAN 0
#endif

/*
 * The address of the initial-exec thread-local @var (declared with
 * VMM_TLS_IE and, if static, __attribute__((used))) of the calling thread,
 * computed afresh: one volatile asm with a memory clobber (as
 * VMM_TLS_PTR_FRESH in aio/aio-internal.h), never merged with an earlier
 * computation nor moved across a call, so code that a coroutine switch
 * may move to another thread gets that thread's variable.  Two
 * instructions, no __tls_get_addr.  Only where VMM_CO_TLS_ADDR_FRESH is
 * defined (x86-64 ELF); elsewhere use a noinline getter.
 */
#if defined(__x86_64__) && defined(__ELF__)
#define VMM_CO_TLS_ADDR_FRESH(var) __extension__({                      \
        __typeof__(var) *tls_a_;                                         \
        __asm__ volatile("movq " #var "@gottpoff(%%rip), %0\n\t"         \
                         "addq %%fs:0, %0"                               \
                         : "=r"(tls_a_) : : "memory");                   \
        tls_a_; })
#endif

/* A pthread mutex that clang's thread-safety analysis understands. */
typedef struct VMM_CAPABILITY("mutex") VmmCoPthreadLock {
    pthread_mutex_t m;
} VmmCoPthreadLock;
#define VMM_CO_PTHREAD_LOCK_INIT { PTHREAD_MUTEX_INITIALIZER }

static inline void co_plock(VmmCoPthreadLock *l) VMM_ACQUIRE(*l) VMM_NO_TSA
{
    pthread_mutex_lock(&l->m);
}

static inline void co_punlock(VmmCoPthreadLock *l) VMM_RELEASE(*l) VMM_NO_TSA
{
    pthread_mutex_unlock(&l->m);
}

/*
 * A tiny spinlock for the locks' internal state: the critical sections
 * are a few instructions and never yield.  After a short spin it yields
 * the CPU, so a preempted holder on a shared machine costs little.
 */
typedef struct VMM_CAPABILITY("spinlock") VmmCoSpin {
    uint32_t v;
} VmmCoSpin;

void co_spin_lock_slow(VmmCoSpin *s);

static inline void co_spin_lock(VmmCoSpin *s) VMM_ACQUIRE(*s) VMM_NO_TSA
{
    /* Acquire pairs with the release in co_spin_unlock(). */
    if (vk_unlikely(vk_atomic_xchg_acquire(&s->v, 1))) {
        co_spin_lock_slow(s);
    }
}

static inline void co_spin_unlock(VmmCoSpin *s) VMM_RELEASE(*s) VMM_NO_TSA
{
    vk_atomic_store_release(&s->v, 0);
}

/* What a switch tells the coroutine it lands in. */
enum {
    VMM_CO_ENTER = 1,       /* the target starts or resumes running */
    VMM_CO_YIELD = 2,       /* the coroutine we came from yielded */
    VMM_CO_TERMINATE = 3,   /* the coroutine we came from returned */
};

/* A coroutine stack: [base, base + guard) is PROT_NONE, the rest usable. */
typedef struct VmmCoStack {
    char *base;             /* start of the whole mapping (guard page first) */
    size_t size;            /* whole mapping, guard included */
    size_t guard;           /* guard bytes at the bottom */
    unsigned valgrind_id;   /* VALGRIND_STACK_REGISTER id, 0 if none */
} VmmCoStack;

/* An intrusive singly-linked list entry, used by the locks' FIFO queues. */
typedef struct VmmCoLink {
    struct VmmCoroutine *next;
} VmmCoLink;

/* A FIFO of coroutines (head/tail), used by CoQueue and wake-up queues. */
typedef struct VmmCoFifo {
    struct VmmCoroutine *head;
    struct VmmCoroutine **tailp;    /* &head when empty */
} VmmCoFifo;

struct VmmCoroutine {
    /* Hot fields first: the switch path touches only this cache line. */
    void *sp;                       /* saved stack pointer while not running */
    VmmCoroutineEntry *entry;
    void *opaque;
    struct VmmCoroutine *caller;    /* who entered us; non-NULL while running */
    VmmAioContext *ctx;             /* context we last ran in (see co_enter) */
    const char *scheduled;          /* atomic: who scheduled us, NULL if not */
    const void *sched_where;        /* ... and from where (return address) */
    int xfer;                       /* portable backend: action handed over */
    unsigned locks_held;            /* CoMutex/CoRwlock holds, checked at exit */

    /* Coroutines woken while we run: entered right after we yield. */
    VmmCoFifo wakeup;
    /* Link in a wait queue (CoQueue, CoMutex, wake-up FIFO) ... */
    struct VmmCoroutine *queue_next;
    /* ... or in the lock-free scheduled list of a context, or the pool. */
    struct VmmCoroutine *sched_next;

    /* vmm_aio_co_reschedule_self(): whoever we yield to schedules us here. */
    VmmAioContext *resched_ctx;
    const void *resched_where;

    VmmCoStack stack;
#if VMM_CO_TSAN
    void *tsan_fiber;
#endif
    void *backend;                  /* portable backend: its jmp_buf/ucontext */
    bool is_leader;                 /* a thread's own stack, not a coroutine */
    bool wakeup_queued;             /* in another coroutine's wake-up FIFO */
    unsigned graph_rdlocks;         /* graph read locks held (debug builds) */
};

/* ---- FIFO helpers (not thread-safe; the caller serialises) -------------- */

static inline void co_fifo_init(VmmCoFifo *f)
{
    f->head = NULL;
    f->tailp = &f->head;
}

static inline void co_fifo_push(VmmCoFifo *f, struct VmmCoroutine *co)
{
    if (!f->tailp) {
        f->tailp = &f->head;    /* zero-initialised storage is an empty FIFO */
    }
    co->queue_next = NULL;
    *f->tailp = co;
    f->tailp = &co->queue_next;
}

static inline struct VmmCoroutine *co_fifo_pop(VmmCoFifo *f)
{
    struct VmmCoroutine *co = f->head;

    if (co) {
        f->head = co->queue_next;
        if (!f->head) {
            f->tailp = &f->head;
        }
        co->queue_next = NULL;
    }
    return co;
}

/* Move all of @src in front of @dst (so they run first); @src ends empty. */
static inline void co_fifo_prepend(VmmCoFifo *dst, VmmCoFifo *src)
{
    if (!src->head) {
        return;
    }
    *src->tailp = dst->head;
    if (!dst->head) {
        dst->tailp = src->tailp;
    }
    dst->head = src->head;
    co_fifo_init(src);
}

/* ---- Machine backend (switch-*.S + backend-asm.c, or backend-ucontext.c) */

/* Prepare @co's fresh stack so that the first switch into it calls
 * co_trampoline(co).  0 or -errno. */
int co_backend_init(struct VmmCoroutine *co);
void co_backend_fini(struct VmmCoroutine *co);
/* Save the running state into @from, resume @to; returns the action passed
 * by whoever later switches back to @from. */
int co_backend_switch(struct VmmCoroutine *from, struct VmmCoroutine *to,
                          int action);
/* Runs first on every new stack; never returns. */
void co_trampoline(struct VmmCoroutine *co) __attribute__((noreturn));
/* "asm" or "ucontext". */
extern const char co_backend_name[];

#if defined(VMM_CO_BACKEND_ASM)
/* The hand-written switch: saves the callee-saved registers and the FPU
 * control words on the current stack, stores the stack pointer in
 * *save_sp, loads @new_sp, restores, and returns @action there. */
int co_switch_asm(void **save_sp, void *new_sp, int action);
/* Entry stub of a fresh stack (calls co_trampoline). */
void co_trampoline_asm(void);
#define VMM_CO_BACKEND_SWITCH(from, to, action) \
    co_switch_asm(&(from)->sp, (to)->sp, action)
#else
#define VMM_CO_BACKEND_SWITCH(from, to, action) co_backend_switch(from, to, action)
#endif

/* ---- Stacks and the pool (stack.c, pool.c) ------------------------------ */

size_t co_stack_size(void);
int co_stack_alloc(VmmCoStack *s, size_t size);
void co_stack_free(VmmCoStack *s);

/* A coroutine object with its stack: from the pool when possible. */
struct VmmCoroutine *co_pool_get(int *errp);
void co_pool_put(struct VmmCoroutine *co);
/* Frees a coroutine for good (stack, sanitizer fiber, backend state). */
void co_destroy(struct VmmCoroutine *co);

/* Pool statistics and limits, for tests and docs. */
typedef struct VmmCoPoolStats {
    long budget_total;      /* coroutines all pools together may hold */
    long budget_free;       /* of which not reserved by any thread yet */
    long global_count;      /* in the shared pool */
    long local_count;       /* in the calling thread's pool */
    long local_credit;      /* credits the calling thread holds */
    long live_stacks;       /* stacks mapped right now (pooled or in use) */
} VmmCoPoolStats;
void co_pool_stats(VmmCoPoolStats *st);
/* Budget from a vm.max_map_count value (pure function, tested). */
long co_pool_budget_for(long max_map_count);
/* Re-derive the budget (tests); frees the shared pool. */
void co_pool_reset_budget(long max_map_count);
/* Empties the calling thread's pool (thread exit does this too). */
void co_pool_drain_local(void);

/* ---- Core (coroutine.c) ------------------------------------------------ */

/* Enter @co as if it were running in @ctx, then run what it woke. */
void co_enter_ctx(VmmAioContext *ctx, struct VmmCoroutine *co);
/* The running coroutine or NULL (TLS, safe across thread moves). */
struct VmmCoroutine *co_current(void);
/* Queue @co to be entered right after the running coroutine yields;
 * @who/@where name the waker in double-wake reports. */
void co_queue_wakeup_by(struct VmmCoroutine *co, const char *who, const void *where);
#define co_queue_wakeup(co) \
    co_queue_wakeup_by(co, __func__, __builtin_return_address(0))

/* ---- Scheduling (co-sched.c) -------------------------------------------- */

/* vmm_aio_co_schedule/enter/wake with the name of the calling API. */
void co_schedule_by(VmmAioContext *ctx, struct VmmCoroutine *co,
                        const char *who, const void *where);
void co_enter_from(VmmAioContext *ctx, struct VmmCoroutine *co,
                       const char *who, const void *where);
void co_wake_by(struct VmmCoroutine *co, const char *who, const void *where);

#endif
