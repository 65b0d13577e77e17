/* SPDX-License-Identifier: MIT */
/*
 * aio/aio-priv.h - the AioContext's insides, shared by the files of aio/
 * only (other subsystems use aio-internal.h).  docs/aio.md explains the
 * algorithms and their barrier pairings.
 */
#ifndef VMM_AIO_PRIV_H
#define VMM_AIO_PRIV_H

#include <poll.h>
#include <pthread.h>
#include <glib.h>

#include "vmmkit/aio.h"
#include "aio/aio-internal.h"
#include "aio/lockcnt.h"
#include "util/atomic.h"
#include "util/compiler.h"
#include "util/log.h"

/* A pthread mutex the clang thread-safety analysis can see. */
typedef struct VMM_CAPABILITY("mutex") AioMutex {
    pthread_mutex_t m;
} AioMutex;

static inline void aio_mutex_init(AioMutex *mu) { pthread_mutex_init(&mu->m, NULL); }
static inline void aio_mutex_destroy(AioMutex *mu) { pthread_mutex_destroy(&mu->m); }
static inline void aio_mutex_lock(AioMutex *mu) VMM_ACQUIRE(*mu) VMM_NO_TSA
{
    pthread_mutex_lock(&mu->m);
}
static inline void aio_mutex_unlock(AioMutex *mu) VMM_RELEASE(*mu) VMM_NO_TSA
{
    pthread_mutex_unlock(&mu->m);
}

/* ---- BHs ---------------------------------------------------------------- */

enum {
    BH_PENDING   = 1 << 0,   /* on ctx->bh_list or a slice */
    BH_SCHEDULED = 1 << 1,   /* run the callback when dequeued */
    BH_DELETED   = 1 << 2,   /* free when dequeued, without running */
    BH_ONESHOT   = 1 << 3,   /* free after running */
    BH_IDLE      = 1 << 4,   /* polled (<= 10 ms), does not count as progress */
};

struct VmmBH {
    VmmAioContext *ctx;      /* NULL once the context was destroyed */
    const char *name;
    VmmBHFunc *cb;
    void *opaque;
    VmmBH *next;             /* bh_list / slice link (see async.c) */
    unsigned flags;          /* atomic: BH_* */
    VmmBH *all_next, **all_pprev;  /* ctx->all_bhs, under ctx->bh_lock */
};

typedef struct BHListSlice BHListSlice;
struct BHListSlice {
    VmmBH *head;             /* FIFO, owned by the home thread */
    BHListSlice *next;
};

/* ---- Handlers ------------------------------------------------------------- */

typedef struct AioHandler AioHandler;
struct AioHandler {
    /* The handler list: readers (the polling thread, inside list_lock's
     * count) follow ->next with acquire loads; writers hold list_lock. */
    AioHandler *next;
    AioHandler **pprev;
    AioHandler *deleted_next;        /* ctx->deleted_handlers, under list_lock */

    int fd;
    VmmIOHandler *io_read;
    VmmIOHandler *io_write;
    VmmIOPoll *io_poll;
    VmmIOHandler *io_poll_ready;
    VmmIOHandler *io_poll_begin;
    VmmIOHandler *io_poll_end;
    void *opaque;
    bool is_ctx_notifier;            /* the context's own notifier */
    int deleted;                     /* atomic; set under list_lock */

    /* Home-thread state: the ready list of one vmm_aio_poll() frame. */
    AioHandler *ready_next, **ready_pprev;
    int revents;
    bool poll_ready;

    bool in_poll_ready;              /* io_poll_ready is running: don't poll it */
    bool poll_begun;                 /* io_poll_begin called, io_poll_end due */
    bool broken;                     /* fd closed under us (POLLNVAL/EBADF) */

    int64_t poll_ns;                 /* adaptive busy-poll budget */
    /* Home thread: probes of the full budget after near misses (see
     * adjust_polling_time() in aio-posix.c). */
    unsigned poll_near_misses;       /* since the last probe */
    unsigned poll_probe_shift;       /* near misses between probes: 4 << this */
    bool poll_probing;               /* the budget was raised by a probe */

    /* fd monitors */
    GPollFD gpfd;                    /* when the GSource is in use */
    bool in_gsource;
    bool in_epoll;                   /* registered with the epoll fd */
    bool in_ring;                    /* io_uring: a POLL_ADD is in flight */
    bool in_submit;                  /* io_uring: on the submit list */
    unsigned uring_ops;              /* io_uring: pending ADD/REMOVE */
    AioHandler *submit_next;
};

typedef struct AioReadyList {
    AioHandler *head;
} AioReadyList;

void aio_ready_add(AioReadyList *list, AioHandler *node, int revents, bool poll_ready);

/* ---- fd monitors ------------------------------------------------------------ */

typedef struct FdMonOps {
    VmmFdMonitorKind kind;
    /* A handler replaced @old by @new_node (either may be NULL).  Under
     * list_lock; any thread. */
    void (*update)(VmmAioContext *ctx, AioHandler *old, AioHandler *new_node);
    /* Wait up to @timeout_ns (-1: forever, 0: don't block) and add ready
     * handlers to @ready.  Home thread, inside list_lock's count. */
    int (*wait)(VmmAioContext *ctx, AioReadyList *ready, int64_t timeout_ns);
    /* True if wait() must be called even with timeout 0. Home thread. */
    bool (*need_wait)(VmmAioContext *ctx);
    /* need_wait() only says there is something to hand over or collect
     * without blocking (io_uring: re-arms to submit, completions to read),
     * never that busy polling cannot see a handler (poll/epoll: a handler
     * without io_poll).  Such a monitor does not end poll mode, and a
     * context about to busy-poll first calls wait() with timeout 0. */
    bool need_wait_transient;
    /* May @node be freed now?  Under list_lock with count 0. */
    bool (*can_free)(VmmAioContext *ctx, AioHandler *node);
    void (*destroy)(VmmAioContext *ctx);
} FdMonOps;

extern const FdMonOps fdmon_poll_ops;
extern const FdMonOps fdmon_epoll_ops;
extern const FdMonOps fdmon_io_uring_ops;

/* fdmon-epoll.c: switch from poll to epoll (under list_lock). */
bool fdmon_epoll_try_enable(VmmAioContext *ctx);
void fdmon_epoll_try_upgrade(VmmAioContext *ctx, unsigned nfds);
/* fdmon-io-uring.c: set up the ring; 0 or -errno. */
int fdmon_io_uring_setup(VmmAioContext *ctx);
/* Switch away from io_uring (the GSource cannot use it). */
void fdmon_io_uring_fallback(VmmAioContext *ctx);
/* Shared by the poll and epoll monitors. */
bool aio_poll_disabled(VmmAioContext *ctx);
/* An fd was closed under its handler: say so once and stop watching it. */
void aio_report_broken(VmmAioContext *ctx, AioHandler *node);
void fdmon_poll_ops_release(VmmAioContext *ctx);

#define FDMON_EPOLL_THRESHOLD 64

/* ---- Timers ---------------------------------------------------------------- */

struct VmmTimer {
    VmmAioContext *ctx;
    VmmTimerFunc *cb;
    void *opaque;
    int64_t expire;          /* -1 when not pending; under ctx->timer_lock */
    VmmTimer *next;          /* sorted by expire, under ctx->timer_lock */
};

/* ---- The context ------------------------------------------------------------ */

#define AIO_CTX_MAGIC 0x41494f43u   /* "AIOC" */
#define AIO_CTX_DEAD  0xdeadc7c7u

struct VmmEventNotifier {
    int fd;
};

struct VmmAioContext {
    /* Written by any thread (schedulers, notifiers). */
    VmmBH *bh_list VMM_CACHE_ALIGNED;  /* LIFO, pushed wait-free */
    bool notified;                     /* see vmm_aio_notify() */
    unsigned notify_me;                /* bit 0: GSource; += 2 per blocking poller */

    /* Mostly read. */
    unsigned magic VMM_CACHE_ALIGNED;
    int refcnt;
    char *name;
    VmmEventNotifier notifier;
    const void *home;                  /* thread token of the thread running it */
    const void *poller;                /* thread token inside vmm_aio_poll() */
    unsigned poll_depth;               /* nesting, home thread */
    bool destroy_pending;              /* last unref inside our own poll */

    /* BHs: home thread. */
    BHListSlice *slice_head, **slice_tail;
    AioMutex bh_lock;           /* all_bhs */
    VmmBH *all_bhs;                    /* under bh_lock */

    /* Handlers. */
    VmmLockCnt list_lock;
    AioHandler *handlers;              /* see AioHandler */
    AioHandler *deleted_handlers;      /* under list_lock */
    unsigned nr_handlers;              /* under list_lock; atomic reads */
    unsigned poll_disable_cnt;         /* handlers without io_poll; atomic reads */
    unsigned poll_handler_cnt;         /* handlers with io_poll; atomic reads */

    /* fd monitor. */
    const FdMonOps *fdmon;             /* written under list_lock by the home thread */
    VmmFdMonitorKind fdmon_wanted;
    struct pollfd *pollfds;            /* fdmon-poll, home thread */
    AioHandler **pollfd_nodes;
    unsigned pollfds_len;
    int epollfd;
    bool epoll_failed;                 /* an epoll_ctl failed: back to poll */
    void *uring;                       /* struct io_uring * */
    AioHandler *submit_list;           /* io_uring, under list_lock */

    /* Adaptive polling. */
    int64_t poll_max_ns, poll_grow, poll_shrink;
    bool poll_started;                 /* in busy-poll mode; home thread */

    /* Timers. */
    AioMutex timer_lock;
    VmmTimer *timers;                  /* under timer_lock */
    void *all_timers;                  /* under timer_lock; see timer.c */
    int64_t timer_deadline;            /* atomic copy of timers->expire, INT64_MAX if none */

    /* GSource. */
    GSource *source;

    /* Slots. */
    void *slots[VMM_AIO_SLOT_MAX];

    /* Process-wide list of contexts, under the hooks mutex. */
    VmmAioContext *all_next;
};

/* A token unique to the calling thread (the address of a thread-local). */
const void *aio_thread_token(void);

/* @ctx is a live context; else report the misuse (debug builds abort
 * unless @has_error: the caller returns the error its header promises). */
bool aio_ctx_check(VmmAioContext *ctx, const char *func, bool has_error);
#define AIO_CTX_CHECK(ctx) aio_ctx_check(ctx, __func__, false)
#define AIO_CTX_CHECK_ERR(ctx) aio_ctx_check(ctx, __func__, true)

/* async.c */
bool aio_bh_poll(VmmAioContext *ctx);
int64_t aio_compute_timeout(VmmAioContext *ctx);
void aio_notify_accept(VmmAioContext *ctx);
bool aio_ctx_notifier_poll(void *opaque);

/* aio-posix.c */
int aio_handlers_init(VmmAioContext *ctx, const VmmAioContextOptions *opts);
void aio_handlers_destroy(VmmAioContext *ctx);
bool aio_dispatch_handlers(VmmAioContext *ctx, AioReadyList *ready);
void aio_free_deleted_handlers(VmmAioContext *ctx);
bool aio_gsource_dispatch_fds(VmmAioContext *ctx);

/* timer.c */
bool aio_run_timers(VmmAioContext *ctx);
int64_t aio_timer_deadline_ns(VmmAioContext *ctx);   /* -1 none, else ns from now */
void aio_timers_destroy(VmmAioContext *ctx);

/* gsource.c */
void aio_gsource_add_handler(VmmAioContext *ctx, AioHandler *node);
void aio_gsource_remove_handler(VmmAioContext *ctx, AioHandler *node);

/* event-notifier.c */
int aio_event_notifier_init(VmmEventNotifier *n);
void aio_event_notifier_cleanup(VmmEventNotifier *n);

/* Poll-frame bookkeeping shared by vmm_aio_poll() and the GSource. */
bool aio_poll_enter(VmmAioContext *ctx, VmmAioContext **saved_current);
void aio_poll_exit(VmmAioContext *ctx, VmmAioContext *saved_current);

static inline int64_t aio_now_ns(void)
{
    return vmm_clock_ns();
}

#endif /* VMM_AIO_PRIV_H */
