/* SPDX-License-Identifier: MIT */
/*
 * vmmkit/aio.h - the AioContext event loop.
 *
 * An AioContext runs bottom halves (BHs), fd and event-notifier handlers
 * and timers.  One thread at a time runs a context (vmm_aio_poll() or the
 * GSource); any thread may schedule BHs on it or notify it.
 */
#ifndef VMMKIT_AIO_H
#define VMMKIT_AIO_H

#include "vmmkit/common.h"

VMM_BEGIN_DECLS

typedef struct VmmAioContext VmmAioContext;
typedef struct VmmBH VmmBH;
typedef struct VmmTimer VmmTimer;
typedef struct VmmEventNotifier VmmEventNotifier;
typedef struct VmmIOThread VmmIOThread;

typedef void VmmBHFunc(void *opaque);
typedef void VmmIOHandler(void *opaque);
/* Poll-mode callback: returns true if there is work (then io_poll_ready runs). */
typedef bool VmmIOPoll(void *opaque);
typedef void VmmTimerFunc(void *opaque);

/* Which fd monitor a context uses. */
typedef enum VmmFdMonitorKind {
    VMM_FDMON_AUTO = 0,     /* io_uring where the kernel allows it, else poll/epoll */
    VMM_FDMON_POLL,         /* ppoll(2) only */
    VMM_FDMON_EPOLL,        /* ppoll(2), then epoll(7) past a threshold of handlers */
    VMM_FDMON_IO_URING,     /* io_uring; creation fails with the kernel's error
                             * (-ENOSYS, -EPERM) if unavailable */
} VmmFdMonitorKind;

typedef struct VmmAioContextOptions {
    size_t size;                 /* sizeof(VmmAioContextOptions), for ABI growth */
    VmmFdMonitorKind fdmon;
    int64_t poll_max_ns;         /* adaptive busy polling ceiling, 0 disables */
    int64_t poll_grow;           /* 0 = default (2) */
    int64_t poll_shrink;         /* 0 = default (halve) */
} VmmAioContextOptions;

/* ---- Contexts ---------------------------------------------------------- */

/* Create a context (refcount 1); @opts may be NULL (defaults: fd monitor
 * AUTO, busy polling off).  The environment variable VMM_FDMON=poll|epoll|
 * io_uring overrides AUTO (used by the tests).  Any thread. */
VMM_EXPORT VmmAioContext *vmm_aio_context_new(const VmmAioContextOptions *opts,
                                              int *errp);
/* Any thread. */
VMM_EXPORT void vmm_aio_context_ref(VmmAioContext *ctx);
/* Drops a reference; the last one destroys the context.  A BH still
 * scheduled at that point is reported (debug builds abort naming it); BHs
 * and timers not yet deleted are detached (using them is then reported,
 * deleting/freeing them is fine).  Dropped inside one of the context's own
 * callbacks, destruction waits until the outermost poll returns; dropped in
 * another thread while the context is polled, it is reported.  Any thread. */
VMM_EXPORT void vmm_aio_context_unref(VmmAioContext *ctx);

/* The process's main context, created on first use.  The thread that first
 * calls vmm_aio_poll() on it (or attaches its GSource) is the main loop.
 * Any thread. */
VMM_EXPORT VmmAioContext *vmm_aio_context_main(void);

/* The context the calling thread runs (an iothread's, the main loop's), or
 * the main context for threads that run none (e.g. vCPU threads).  Safe in
 * coroutines that move between threads.  Any thread. */
VMM_EXPORT VmmAioContext *vmm_aio_context_current(void);

/* True when the calling thread is the one running @ctx.  Any thread. */
VMM_EXPORT bool vmm_aio_context_in_thread(VmmAioContext *ctx);

/* Wake a blocking vmm_aio_poll() on @ctx.  Writes the eventfd only when a
 * poller may be blocking.  Any thread, and async-signal-safe. */
VMM_EXPORT void vmm_aio_notify(VmmAioContext *ctx);

/* Run what is ready: BHs, handlers, expired timers.  With @blocking, wait
 * until something is ready (bounded by the nearest timer).  Returns true if
 * progress was made (a callback other than an idle BH ran).  Non-blocking
 * with nothing to do makes no system call (with poll/epoll this needs every
 * handler to have an io_poll callback; io_uring needs none).
 * @ctx's thread (for a context without one: one thread at a time; two at
 * once is reported); may nest (from inside a callback). */
VMM_EXPORT bool vmm_aio_poll(VmmAioContext *ctx, bool blocking);

/* Adaptive polling parameters: ceiling in ns (0 turns polling off), growth
 * factor (0 = 2; 1 is invalid), shrink divisor (0 = 2).  Returns 0 or
 * -EINVAL (also for a NULL @ctx, or a negative value).  Any thread
 * (handlers' budgets are clamped when next used). */
VMM_EXPORT int vmm_aio_context_set_poll_params(VmmAioContext *ctx, int64_t max_ns,
                                               int64_t grow, int64_t shrink);

/* The fd monitor actually in use (never VMM_FDMON_AUTO).  Any thread. */
VMM_EXPORT VmmFdMonitorKind vmm_aio_context_fdmon(VmmAioContext *ctx);

/* ---- Bottom halves ----------------------------------------------------- */

/* @name is used in diagnostics and may be NULL (it must outlive the BH).
 * Returns NULL if @ctx or @cb is NULL (logged) or memory is short.  Any
 * thread. */
VMM_EXPORT VmmBH *vmm_bh_new(VmmAioContext *ctx, VmmBHFunc *cb, void *opaque,
                             const char *name);
/* Lock-free (it never waits for another thread; a push retries only when
 * another push or a poll came in between); from any thread or a signal
 * handler.  A BH scheduled while BHs run waits for the next pass. */
VMM_EXPORT void vmm_bh_schedule(VmmBH *bh);
/* As schedule, but the BH is only polled (at least every 10 ms) and does
 * not count as progress.  Any thread. */
VMM_EXPORT void vmm_bh_schedule_idle(VmmBH *bh);
/* Any thread. */
VMM_EXPORT void vmm_bh_cancel(VmmBH *bh);
/* Deletes (cancelling it); safe from inside its own callback.  The memory
 * is freed by the context's next poll.  Deleting twice is reported.
 * Any thread. */
VMM_EXPORT void vmm_bh_delete(VmmBH *bh);
/* Allocate, schedule, run once, free.  Returns 0, -EINVAL (@ctx or @cb
 * NULL; logged) or -ENOMEM.  Any thread. */
VMM_EXPORT int vmm_bh_schedule_oneshot(VmmAioContext *ctx, VmmBHFunc *cb,
                                       void *opaque, const char *name);

/* ---- fd and event-notifier handlers ------------------------------------ */

/* Install, replace (same fd) or remove (all callbacks NULL) the handlers of
 * @fd.  Removing from inside a dispatch is safe (a removed handler is not
 * called again, even if it was ready).  Returns 0 or -errno: -EBADF for an
 * invalid fd, -ENOENT when removing a handler that is not set, -EBUSY for the
 * context's own notifier fd, -EINVAL for
 * io_poll_ready without io_poll or a NULL @ctx (logged).  An fd closed while its handler is set is
 * reported and no longer watched.  Any thread (a poller blocked in @ctx's
 * thread is woken to see the change). */
VMM_EXPORT int vmm_aio_set_fd_handler(VmmAioContext *ctx, int fd,
                                      VmmIOHandler *io_read,
                                      VmmIOHandler *io_write,
                                      VmmIOPoll *io_poll,
                                      VmmIOHandler *io_poll_ready,
                                      void *opaque);

/*
 * Handler callbacks for vmm_aio_set_fd_handler_full().  Zero-initialise it
 * and set @size to sizeof(VmmAioHandlerOptions): fields past @size (an
 * older caller's smaller struct) count as NULL.
 *
 * io_poll_begin / io_poll_end (QEMU's aio_set_event_notifier_poll()): the
 * context is entering / leaving busy-poll mode for this handler.  A virtio
 * queue disables guest notifications in begin (io_poll will find the work)
 * and re-enables them in end.  Rules:
 *  - Both run in the thread running the context, inside vmm_aio_poll(),
 *    never concurrently with the handler's other callbacks.  They come in
 *    pairs: begin, then exactly one end, while the handler stays installed.
 *    Poll mode may last across several vmm_aio_poll() calls (while work keeps
 *    coming); it ends before the context blocks in the fd monitor (and before
 *    each poll returns when the context's GSource exists).
 *  - After io_poll_end the context calls io_poll once more and dispatches
 *    io_poll_ready if it reports work.  That closes the lost-event window:
 *    work queued after the last busy-poll check but before end re-enabled
 *    notifications sent no notification; the re-poll sees it.  For this to
 *    hold, io_poll_end must end with a full barrier (enable, then smp_mb)
 *    pairing with the producer's "publish work; smp_mb; read enable flag".
 *  - A handler removed or replaced while in poll mode gets NO io_poll_end
 *    (removal may happen in any thread, where end must not run): whoever
 *    removes it owns the notification state and re-enables it if needed.
 *    A replacement handler starts its own pair when next polled.
 *  - When a nested vmm_aio_poll() ends poll mode while this handler's
 *    io_poll_ready runs in an outer frame, io_poll_end is called but the
 *    re-poll is skipped (it would nest io_poll_ready): that io_poll_ready
 *    must check for work again before it returns.
 * io_poll_begin/io_poll_end need io_poll (else -EINVAL); either may be NULL.
 */
typedef struct VmmAioHandlerOptions {
    size_t size;                    /* sizeof(VmmAioHandlerOptions) */
    VmmIOHandler *io_read;
    VmmIOHandler *io_write;
    VmmIOPoll *io_poll;
    VmmIOHandler *io_poll_ready;
    void *opaque;
    VmmIOHandler *io_poll_begin;
    VmmIOHandler *io_poll_end;
} VmmAioHandlerOptions;

/* As vmm_aio_set_fd_handler() with every callback in @opts (all NULL, or
 * @opts NULL, removes).  -EINVAL also for a @size too small to hold
 * io_poll_ready..opaque or begin/end without io_poll.  Same threads. */
VMM_EXPORT int vmm_aio_set_fd_handler_full(VmmAioContext *ctx, int fd,
                                           const VmmAioHandlerOptions *opts);

/* An eventfd-backed notifier.  All notifier functions: any thread. */
VMM_EXPORT VmmEventNotifier *vmm_event_notifier_new(int *errp);
VMM_EXPORT void vmm_event_notifier_free(VmmEventNotifier *n);
VMM_EXPORT int vmm_event_notifier_set(VmmEventNotifier *n);
/* Returns true if it was set. */
VMM_EXPORT bool vmm_event_notifier_test_and_clear(VmmEventNotifier *n);
VMM_EXPORT int vmm_event_notifier_fd(VmmEventNotifier *n);

/* Handlers for a notifier: @cb runs (with @opaque) when it is set; the
 * notifier is NOT cleared automatically.  All NULL removes.  Same threads
 * as vmm_aio_set_fd_handler(). */
VMM_EXPORT int vmm_aio_set_event_notifier(VmmAioContext *ctx, VmmEventNotifier *n,
                                          VmmIOHandler *cb, VmmIOPoll *io_poll,
                                          VmmIOHandler *io_poll_ready,
                                          void *opaque);

/* As vmm_aio_set_event_notifier() with @opts (io_write must be NULL, else
 * -EINVAL).  Same threads as vmm_aio_set_fd_handler(). */
VMM_EXPORT int vmm_aio_set_event_notifier_full(VmmAioContext *ctx, VmmEventNotifier *n,
                                               const VmmAioHandlerOptions *opts);

/* ---- Timers (monotonic clock, nanoseconds) ----------------------------- */

/* CLOCK_MONOTONIC in ns.  Any thread. */
VMM_EXPORT int64_t vmm_clock_ns(void);
/* NULL if @ctx or @cb is NULL (logged) or memory is short.  Any thread. */
VMM_EXPORT VmmTimer *vmm_timer_new(VmmAioContext *ctx, VmmTimerFunc *cb, void *opaque);
/* Arm at absolute @expire_ns (vmm_clock_ns() time base); re-arming moves it.
 * @ctx's thread, or any thread (it notifies the context). */
VMM_EXPORT void vmm_timer_mod(VmmTimer *t, int64_t expire_ns);
/* Any thread; a callback already running is not waited for. */
VMM_EXPORT void vmm_timer_del(VmmTimer *t);
/* Any thread. */
VMM_EXPORT bool vmm_timer_pending(VmmTimer *t);
/* Deletes and frees.  @ctx's thread (also from the timer's own callback),
 * or any thread when the callback cannot be running. */
VMM_EXPORT void vmm_timer_free(VmmTimer *t);

/* ---- GLib integration --------------------------------------------------- */

/* The context's GSource (a new reference the caller must g_source_unref()).
 * Attach it to any GMainContext and the AioContext runs inside that loop;
 * the source holds a reference on the context until it is finalized.  A
 * context on io_uring switches to ppoll (GLib polls the fds itself).
 * Returns a GSource *, typed void * so this header needs no glib.h.
 * @ctx's thread, or any thread before it runs. */
VMM_EXPORT void *vmm_aio_context_get_g_source(VmmAioContext *ctx);

/* ---- IOThreads ---------------------------------------------------------- */

/* Start a thread that runs its own context until stopped.  @opts NULL:
 * defaults with adaptive polling up to 32 us.  Main loop (any thread that
 * is not an iothread). */
VMM_EXPORT VmmIOThread *vmm_iothread_new(const char *name,
                                         const VmmAioContextOptions *opts,
                                         int *errp);
/* The iothread's context (owned by it; take a reference to keep it past
 * vmm_iothread_destroy()).  Any thread. */
VMM_EXPORT VmmAioContext *vmm_iothread_get_context(VmmIOThread *t);
/* Stop the thread (it finishes pending BHs), join it and free it.  Main loop. */
VMM_EXPORT void vmm_iothread_destroy(VmmIOThread *t);

/* ---- aio-wait ----------------------------------------------------------- */

/*
 * VMM_AIO_WAIT_WHILE(ctx, cond): from the main loop, poll until @cond is
 * false.  @ctx is the context whose work makes @cond change (NULL or the
 * main context: poll the main context; another context: its own thread
 * makes progress, and that work must call vmm_aio_wait_kick()).
 */
/* Wake the main loop if it waits in VMM_AIO_WAIT_WHILE: call after
 * changing what a waiter's condition reads.  Any thread. */
VMM_EXPORT void vmm_aio_wait_kick(void);
/* Used by the macro. */
VMM_EXPORT void vmm_aio_wait_begin_(void);
VMM_EXPORT void vmm_aio_wait_end_(void);

#define VMM_AIO_WAIT_WHILE(ctx, cond) ({                                   \
    bool waited_ = false;                                                  \
    VmmAioContext *wctx_ = (ctx);                                          \
    VmmAioContext *main_ = vmm_aio_context_main();                         \
    vmm_aio_wait_begin_();                                                 \
    while ((cond)) {                                                       \
        if (wctx_ && wctx_ != main_ && vmm_aio_context_in_thread(wctx_)) { \
            vmm_aio_poll(wctx_, true);                                     \
        } else {                                                           \
            vmm_aio_poll(main_, true);                                     \
        }                                                                  \
        waited_ = true;                                                    \
    }                                                                      \
    vmm_aio_wait_end_();                                                   \
    waited_; })

/* As VMM_AIO_WAIT_WHILE with the condition as a callback, giving up after
 * @ns (<= 0: never): returns 0 or -ETIMEDOUT (-EINVAL without @cond).
 * Same threads as the macro. */
VMM_EXPORT int vmm_aio_wait_while_timeout_(VmmAioContext *ctx,
                                           bool (*cond)(void *), void *opaque,
                                           int64_t ns);

VMM_END_DECLS

#endif /* VMMKIT_AIO_H */
