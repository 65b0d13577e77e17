/* SPDX-License-Identifier: MIT */
/*
 * Coroutine stacks and the coroutine pool.
 *
 * Each stack is one anonymous mapping whose lowest page is PROT_NONE (the
 * guard page), i.e. two kernel VMAs per coroutine.  A process may hold at
 * most vm.max_map_count VMAs, so the pool (which keeps stacks mapped for
 * reuse) is capped against it: all pools together may hold at most
 * co_pool_budget_for(max_map_count) coroutines, leaving the rest of
 * the VMAs to live coroutines and to everything else in the process.
 *
 * Pools: each thread has a private pool (plain list, no atomics) and there
 * is one shared pool (a mutex-protected list).  The budget is handed out in
 * "credits": a coroutine may sit in a pool only with a credit.  A thread
 * reserves credits in chunks from the global counter, so the common
 * put/get touch no shared cache line; a full thread pool moves half of
 * itself (with its credits) to the shared pool, and a thread whose pool is
 * empty takes a batch (with credits) from the shared pool.  At thread exit
 * the private pool goes to the shared pool and unused credits go back.
 *
 * Invariant (checked by tests):
 *   budget_free + sum(thread credits) + global_count == budget_total,
 *   and each thread's pool count <= its credits.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "coroutine-int.h"
#include "util/atomic.h"
#include "util/log.h"

#if VMM_CO_ASAN
#include <sanitizer/asan_interface.h>
#endif
#if VMM_CO_TSAN
#include <sanitizer/tsan_interface.h>
#endif
#if defined(VMM_HAVE_VALGRIND)
#include <valgrind/valgrind.h>
#endif

#define STACK_SIZE_DEFAULT  (1u << 20)      /* 1 MiB, touched lazily */
#define POOL_LOCAL_MAX      256             /* per-thread pool length */
#define POOL_CREDIT_CHUNK   32              /* credits reserved at a time */
#define POOL_BATCH          (POOL_LOCAL_MAX / 2)
#define POOL_HARD_MAX       4096            /* cap even with a huge map count */
#define MAP_COUNT_RESERVE   5000            /* VMAs left to everyone else */
#define MAP_COUNT_DEFAULT   65530           /* the kernel's default */

/* ---- Stacks ---------------------------------------------------------- */

static long live_stacks;    /* atomic; stats only */

size_t co_stack_size(void)
{
#if VMM_CO_ASAN
    /* Instrumented frames and redzones are much larger. */
    return STACK_SIZE_DEFAULT * 2;
#else
    return STACK_SIZE_DEFAULT;
#endif
}

int co_stack_alloc(VmmCoStack *s, size_t size)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t total = VMM_ALIGN_UP(size, page) + page;
    char *p = mmap(NULL, total, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);

    if (p == MAP_FAILED) {
        return -errno;
    }
    if (mprotect(p, page, PROT_NONE) < 0) {
        int err = -errno;
        munmap(p, total);
        return err;
    }
    s->base = p;
    s->size = total;
    s->guard = page;
    s->valgrind_id = 0;
#if defined(VMM_HAVE_VALGRIND)
    s->valgrind_id = VALGRIND_STACK_REGISTER(p + page, p + total);
#endif
    vk_atomic_inc(&live_stacks);
    return 0;
}

void co_stack_free(VmmCoStack *s)
{
    if (!s->base) {
        return;
    }
#if defined(VMM_HAVE_VALGRIND)
    VALGRIND_STACK_DEREGISTER(s->valgrind_id);
#endif
#if VMM_CO_ASAN
    /* Frames that never returned leave poisoned shadow behind; a later
     * mapping at the same address must not inherit it. */
    ASAN_UNPOISON_MEMORY_REGION(s->base + s->guard, s->size - s->guard);
#endif
    munmap(s->base, s->size);
    s->base = NULL;
    vk_atomic_dec(&live_stacks);
}

/* ---- Creating and destroying coroutine objects ------------------------ */

static struct VmmCoroutine *co_new(int *errp)
{
    struct VmmCoroutine *co = aligned_alloc(VMM_CACHELINE,
                                            VMM_ALIGN_UP(sizeof(*co), VMM_CACHELINE));
    int ret;

    if (!co) {
        *errp = -ENOMEM;
        return NULL;
    }
    memset(co, 0, sizeof(*co));
    co_fifo_init(&co->wakeup);
    ret = co_stack_alloc(&co->stack, co_stack_size());
    if (ret < 0) {
        free(co);
        *errp = ret;
        return NULL;
    }
    ret = co_backend_init(co);
    if (ret < 0) {
        co_stack_free(&co->stack);
        free(co);
        *errp = ret;
        return NULL;
    }
#if VMM_CO_TSAN
    co->tsan_fiber = __tsan_create_fiber(0);
#endif
    return co;
}

void co_destroy(struct VmmCoroutine *co)
{
#if VMM_CO_TSAN
    __tsan_destroy_fiber(co->tsan_fiber);
#endif
    co_backend_fini(co);
    co_stack_free(&co->stack);
    free(co);
}

/* ---- The budget -------------------------------------------------------- */

static pthread_once_t budget_once = PTHREAD_ONCE_INIT;
static long budget_total;           /* written under global_lock */
static long budget_free;            /* atomic */

static VmmCoPthreadLock global_lock = VMM_CO_PTHREAD_LOCK_INIT;
static struct VmmCoroutine *global_head VMM_GUARDED_BY(global_lock);
static long global_count;           /* written under global_lock, read relaxed */

long co_pool_budget_for(long max_map_count)
{
    /* Two VMAs per pooled coroutine; pools get half of what is left after
     * the reserve, the other half stays for live coroutines. */
    long n = (max_map_count - MAP_COUNT_RESERVE) / 2 / 2;

    if (n < 0) {
        return 0;
    }
    return n > POOL_HARD_MAX ? POOL_HARD_MAX : n;
}

static long read_max_map_count(void)
{
    FILE *f = fopen("/proc/sys/vm/max_map_count", "re");
    long v = MAP_COUNT_DEFAULT;

    if (f) {
        if (fscanf(f, "%ld", &v) != 1) {
            v = MAP_COUNT_DEFAULT;
        }
        fclose(f);
    }
    return v;
}

static void budget_init(void)
{
    long n = co_pool_budget_for(read_max_map_count());

    co_plock(&global_lock);
    budget_total = n;
    vk_atomic_set(&budget_free, n);
    co_punlock(&global_lock);
}

/* Take up to @want credits; returns how many were granted. */
static long budget_take(long want)
{
    long cur = vk_atomic_read(&budget_free);

    for (;;) {
        long n = cur < want ? cur : want;
        long seen;

        if (n <= 0) {
            return 0;
        }
        seen = vk_atomic_cmpxchg(&budget_free, cur, cur - n);
        if (seen == cur) {
            return n;
        }
        cur = seen;
    }
}

/* ---- Thread pools -------------------------------------------------------- */

typedef struct LocalPool {
    struct VmmCoroutine *head;
    long count;
    long credit;
    bool registered;
} LocalPool;

static __thread LocalPool local_pool VMM_TLS_IE __attribute__((used));
static pthread_key_t local_key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

/* Pool code never runs across a coroutine switch, but it may be called
 * from a coroutine that moved threads: always fetch the pool afresh. */
#ifdef VMM_CO_TLS_ADDR_FRESH
static inline LocalPool *local_get(void)
{
    return VMM_CO_TLS_ADDR_FRESH(local_pool);
}
#else
static VMM_NOINLINE LocalPool *local_get(void)
{
    __asm__ volatile("");
    return &local_pool;
}
#endif

/* Move up to @n coroutines of @lp, with their credits, to the shared pool. */
static void local_to_global(LocalPool *lp, long n)
{
    struct VmmCoroutine *first = lp->head, *last = NULL, *co = lp->head;
    long moved = 0;

    while (co && moved < n) {
        last = co;
        co = co->sched_next;
        moved++;
    }
    if (!moved) {
        return;
    }
    lp->head = co;
    lp->count -= moved;
    lp->credit -= moved;
    co_plock(&global_lock);
    last->sched_next = global_head;
    global_head = first;
    vk_atomic_set(&global_count, global_count + moved);
    co_punlock(&global_lock);
}

static void local_pool_exit(void *arg)
{
    LocalPool *lp = arg;

    local_to_global(lp, lp->count);
    if (lp->credit > 0) {
        vk_atomic_fetch_add(&budget_free, lp->credit);
    }
    lp->credit = 0;
    lp->registered = false;
}

static void key_init(void)
{
    if (pthread_key_create(&local_key, local_pool_exit) != 0) {
        vk_error("coroutine pool: no thread-exit hook; thread pools leak credits");
    }
}

void co_pool_drain_local(void)
{
    LocalPool *lp = local_get();

    while (lp->head) {
        struct VmmCoroutine *co = lp->head;
        lp->head = co->sched_next;
        lp->count--;
        co_destroy(co);
    }
    if (lp->credit > 0) {
        vk_atomic_fetch_add(&budget_free, lp->credit);
    }
    lp->credit = 0;
}

struct VmmCoroutine *co_pool_get(int *errp)
{
    LocalPool *lp = local_get();
    struct VmmCoroutine *co = lp->head;

    if (vk_likely(co)) {
        lp->head = co->sched_next;
        lp->count--;
        co->sched_next = NULL;
        return co;
    }
    if (vk_atomic_read(&global_count) > 0) {
        long n = 0;

        co_plock(&global_lock);
        while (global_head && n < POOL_BATCH) {
            co = global_head;
            global_head = co->sched_next;
            co->sched_next = lp->head;
            lp->head = co;
            n++;
        }
        vk_atomic_set(&global_count, global_count - n);
        co_punlock(&global_lock);
        lp->count += n;
        lp->credit += n;
        if (n && !lp->registered) {
            pthread_once(&key_once, key_init);
            pthread_setspecific(local_key, lp);
            lp->registered = true;
        }
        if (lp->head) {
            co = lp->head;
            lp->head = co->sched_next;
            lp->count--;
            co->sched_next = NULL;
            return co;
        }
    }
    return co_new(errp);
}

void co_pool_put(struct VmmCoroutine *co)
{
    LocalPool *lp = local_get();

    if (vk_unlikely(lp->count >= lp->credit)) {
        if (lp->count >= POOL_LOCAL_MAX) {
            local_to_global(lp, POOL_BATCH);
        } else {
            long got;

            pthread_once(&budget_once, budget_init);
            got = budget_take(POOL_CREDIT_CHUNK);
            if (!got) {
                co_destroy(co);
                return;
            }
            lp->credit += got;
            if (!lp->registered) {
                pthread_once(&key_once, key_init);
                pthread_setspecific(local_key, lp);
                lp->registered = true;
            }
        }
    }
    co->sched_next = lp->head;
    lp->head = co;
    lp->count++;
}

void co_pool_stats(VmmCoPoolStats *st)
{
    LocalPool *lp = local_get();

    pthread_once(&budget_once, budget_init);
    co_plock(&global_lock);
    st->budget_total = budget_total;
    st->global_count = global_count;
    co_punlock(&global_lock);
    st->budget_free = vk_atomic_read(&budget_free);
    st->local_count = lp->count;
    st->local_credit = lp->credit;
    st->live_stacks = vk_atomic_read(&live_stacks);
}

void co_pool_reset_budget(long max_map_count)
{
    long n = co_pool_budget_for(max_map_count);
    struct VmmCoroutine *head;

    pthread_once(&budget_once, budget_init);
    co_pool_drain_local();
    co_plock(&global_lock);
    head = global_head;
    global_head = NULL;
    /* Credits still held by other threads stay theirs. */
    vk_atomic_set(&budget_free, vk_atomic_read(&budget_free) + global_count
                   + (n - budget_total));
    budget_total = n;
    vk_atomic_set(&global_count, 0);
    co_punlock(&global_lock);
    while (head) {
        struct VmmCoroutine *co = head;
        head = co->sched_next;
        co_destroy(co);
    }
}
