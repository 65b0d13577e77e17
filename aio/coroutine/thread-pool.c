/* SPDX-License-Identifier: MIT */
/*
 * The thread pool: blocking work submitted from a context runs in worker
 * threads, and its completion runs back in that context.
 *
 * Each context has its own pool (in a private slot), created on first use,
 * with at most max_workers threads (default 64).  Workers start on demand
 * when no worker is idle, and exit after 10 s without work, or when the
 * limit is lowered.  A finished request is pushed on a lock-free list and
 * the context's completion BH delivers it: done() runs in the context's
 * thread, in submission order within one BH pass.
 *
 * Barrier pairs: the worker's cmpxchg push of a finished request (seq_cst,
 * after it stored req->ret) <-> the exchange of the list head in
 * completion_bh(); the pool mutex orders queueing and worker hand-out.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>

#include "aio/aio-internal.h"
#include "coroutine-int.h"
#include "util/atomic.h"
#include "util/log.h"
#include "util/thread.h"

#define TP_MAX_WORKERS_DEFAULT 64
#define TP_IDLE_NS             (10 * 1000000000LL)

typedef struct TpReq {
    VmmThreadPoolFunc *fn;
    void *arg;
    VmmThreadPoolDone *done;
    void *opaque;
    int ret;
    struct TpReq *next;
} TpReq;

typedef struct ThreadPool {
    VmmAioContext *ctx;
    VmmBH *bh;
    TpReq *finished;                        /* atomic LIFO */
    VmmCoPthreadLock lock;
    pthread_cond_t work_cond;               /* with lock: work or stop */
    pthread_cond_t exit_cond;               /* with lock: a worker left */
    TpReq *head; /* under lock */
    TpReq **tailp; /* under lock */
    int max_workers; /* under lock */
    int workers; /* under lock */
    int idle; /* under lock */
    int queued; /* under lock */
    bool stopping; /* under lock */
} ThreadPool;

static int pool_key = -1;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

static void cond_wait_until(pthread_cond_t *c, VmmCoPthreadLock *l, int64_t deadline_ns)
    VMM_REQUIRES(*l)
{
    struct timespec ts = { .tv_sec = deadline_ns / 1000000000,
                           .tv_nsec = deadline_ns % 1000000000 };

    pthread_cond_timedwait(c, &l->m, &ts);
}

static int64_t mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void finished_push(ThreadPool *p, TpReq *req)
{
    TpReq *old = vk_atomic_read(&p->finished);

    for (;;) {
        TpReq *seen;

        req->next = old;
        /* Pairs with the exchange in completion_bh(). */
        seen = vk_atomic_cmpxchg(&p->finished, old, req);
        if (seen == old) {
            return;
        }
        old = seen;
    }
}

static void *worker_main(void *opaque)
{
    ThreadPool *p = opaque;

    co_plock(&p->lock);
    for (;;) {
        int64_t deadline = mono_ns() + TP_IDLE_NS;
        TpReq *req;

        while (!p->head && !p->stopping && p->workers <= p->max_workers &&
               mono_ns() < deadline) {
            p->idle++;
            cond_wait_until(&p->work_cond, &p->lock, deadline);
            p->idle--;
        }
        /* Leave when idle too long, told to stop (queue drained), or above
         * a lowered limit. */
        if (!p->head || p->workers > p->max_workers) {
            break;
        }
        req = p->head;
        p->head = req->next;
        if (!p->head) {
            p->tailp = &p->head;
        }
        p->queued--;
        co_punlock(&p->lock);

        req->ret = req->fn(req->arg);
        finished_push(p, req);
        vmm_bh_schedule(p->bh);

        co_plock(&p->lock);
    }
    p->workers--;
    pthread_cond_broadcast(&p->exit_cond);
    co_punlock(&p->lock);
    return NULL;
}

static void completion_bh(void *opaque)
{
    ThreadPool *p = opaque;
    /* Pairs with the cmpxchg in finished_push(). */
    TpReq *lifo = vk_atomic_xchg(&p->finished, NULL);
    TpReq *fifo = NULL;

    while (lifo) {
        TpReq *next = lifo->next;
        lifo->next = fifo;
        fifo = lifo;
        lifo = next;
    }
    while (fifo) {
        TpReq *req = fifo;
        fifo = req->next;
        if (req->done) {
            req->done(req->opaque, req->ret);
        }
        free(req);
    }
}

static void pool_destroy(VmmAioContext *ctx, void *value)
{
    ThreadPool *p = value;
    TpReq *left;
    int n = 0;

    (void)ctx;
    co_plock(&p->lock);
    p->stopping = true;
    pthread_cond_broadcast(&p->work_cond);
    while (p->workers > 0) {
        pthread_cond_wait(&p->exit_cond, &p->lock.m);
    }
    co_punlock(&p->lock);
    /* Workers drained the queue before leaving; what finished but was not
     * delivered can no longer run in this context. */
    left = vk_atomic_xchg(&p->finished, NULL);
    while (left) {
        TpReq *next = left->next;
        free(left);
        left = next;
        n++;
    }
    if (n) {
        vk_warn("context '%s' destroyed with %d thread-pool completion(s) undelivered",
                 aio_context_name(p->ctx), n);
    }
    vmm_bh_delete(p->bh);
    pthread_cond_destroy(&p->work_cond);
    pthread_cond_destroy(&p->exit_cond);
    pthread_mutex_destroy(&p->lock.m);
    free(p);
}

static void pool_key_init(void)
{
    pool_key = aio_slot_key_new("thread-pool", pool_destroy);
    if (pool_key < 0) {
        vk_error("thread pool: no context slot left (%d)", pool_key);
    }
}

static void *pool_create(VmmAioContext *ctx, void *arg) VMM_NO_TSA
{
    ThreadPool *p = calloc(1, sizeof(*p));
    pthread_condattr_t ca;

    (void)arg;
    if (!p) {
        return NULL;
    }
    p->ctx = ctx;
    p->bh = vmm_bh_new(ctx, completion_bh, p, "thread-pool-completion");
    if (!p->bh) {
        free(p);
        return NULL;
    }
    pthread_mutex_init(&p->lock.m, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->work_cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&p->exit_cond, NULL);
    p->tailp = &p->head;
    p->max_workers = TP_MAX_WORKERS_DEFAULT;
    return p;
}

static ThreadPool *pool_get(VmmAioContext *ctx)
{
    pthread_once(&pool_once, pool_key_init);
    if (pool_key < 0) {
        return NULL;
    }
    return aio_slot_get_or_create(ctx, pool_key, pool_create, NULL);
}

static int spawn_worker(ThreadPool *p) VMM_REQUIRES(p->lock)
{
    int ret = vk_thread_start_detached(worker_main, p);
    if (ret == 0) {
        p->workers++;
    }
    return -ret;
}

int vmm_thread_pool_submit(VmmAioContext *ctx, VmmThreadPoolFunc *fn, void *arg,
                           VmmThreadPoolDone *done, void *opaque)
{
    ThreadPool *p;
    TpReq *req;
    int ret = 0;

    if (!ctx || !fn) {
        return VMM_MISUSE_ERR(-EINVAL, "NULL %s", ctx ? "function" : "context");
    }
    p = pool_get(ctx);
    req = calloc(1, sizeof(*req));
    if (!p || !req) {
        free(req);
        return -ENOMEM;
    }
    req->fn = fn;
    req->arg = arg;
    req->done = done;
    req->opaque = opaque;

    co_plock(&p->lock);
    *p->tailp = req;
    p->tailp = &req->next;
    p->queued++;
    if (p->idle >= p->queued) {
        pthread_cond_signal(&p->work_cond);
    } else if (p->workers < p->max_workers) {
        ret = spawn_worker(p);
        if (ret < 0 && p->workers > 0) {
            ret = 0;        /* the running workers will get to it */
        }
        if (p->idle) {
            pthread_cond_signal(&p->work_cond);
        }
    }
    if (ret < 0) {
        /* No worker at all: take the request back. */
        TpReq **pp = &p->head;
        while (*pp != req) {
            pp = &(*pp)->next;
        }
        *pp = NULL;
        p->tailp = pp;
        p->queued--;
        free(req);
    }
    co_punlock(&p->lock);
    return ret;
}

int vmm_thread_pool_set_max_workers(VmmAioContext *ctx, int max)
{
    ThreadPool *p;

    if (!ctx || max < 1) {
        return VMM_MISUSE_ERR(-EINVAL, "%s",
                              ctx ? "max_workers must be at least 1" : "NULL context");
    }
    p = pool_get(ctx);
    if (!p) {
        return -ENOMEM;
    }
    co_plock(&p->lock);
    p->max_workers = max;
    pthread_cond_broadcast(&p->work_cond);     /* surplus workers leave */
    co_punlock(&p->lock);
    return 0;
}

/* ---- From a coroutine ------------------------------------------------------- */

typedef struct CoSubmit {
    struct VmmCoroutine *co;
    int ret;
} CoSubmit;

static void co_submit_done(void *opaque, int ret)
{
    CoSubmit *s = opaque;

    s->ret = ret;
    co_wake_by(s->co, "vmm_thread_pool_co_submit", NULL);
}

int vmm_thread_pool_co_submit(VmmThreadPoolFunc *fn, void *arg)
{
    CoSubmit s = { .co = co_current() };
    int ret;

    if (!s.co) {
        return VMM_MISUSE_ERR(-EINVAL, "called outside a coroutine");
    }
    ret = vmm_thread_pool_submit(vmm_aio_context_current(), fn, arg, co_submit_done, &s);
    if (ret < 0) {
        return ret;
    }
    vmm_coroutine_yield();
    return s.ret;
}
