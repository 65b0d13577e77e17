/* SPDX-License-Identifier: MIT */
/* Scheduling across contexts: schedule, wake, enter, reschedule_self,
 * sleep, the sync wrapper, double-schedule reports, the thread pool. */
#include <errno.h>

#include "co-test-util.h"

static VmmIOThread *io[2];
static VmmAioContext *ioctx[2];

static int setup(void **state)
{
    (void)state;
    for (int i = 0; i < 2; i++) {
        int err = 0;
        char name[16];

        snprintf(name, sizeof(name), "co-io%d", i);
        io[i] = vmm_iothread_new(name, NULL, &err);
        assert_non_null(io[i]);
        ioctx[i] = vmm_iothread_get_context(io[i]);
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (int i = 0; i < 2; i++) {
        vmm_iothread_destroy(io[i]);
    }
    return 0;
}

/* ---- schedule + wake ------------------------------------------------------ */

typedef struct Where {
    VmmAioContext *ctx[4];
    pthread_t thread[4];
    int n;
    int done;
    int yielded;
} Where;

static void note(Where *w)
{
    w->ctx[w->n] = vmm_aio_context_current();
    w->thread[w->n] = co_thread_self();
    w->n++;
}

static void co_sched_wake(void *opaque)
{
    Where *w = opaque;

    note(w);
    co_set_flag(&w->yielded);
    vmm_coroutine_yield();
    note(w);
    co_set_flag(&w->done);
}

static void test_schedule_and_wake(void **state)
{
    (void)state;
    Where w = { .n = 0 };
    VmmCoroutine *co = vmm_coroutine_create(co_sched_wake, &w, NULL);

    vmm_aio_co_schedule(ioctx[0], co);
    assert_true(co_wait_flag(&w.yielded, 5000));
    assert_ptr_equal(vmm_coroutine_get_context(co), ioctx[0]);
    /* Woken from this thread, it runs in the context it last ran in. */
    vmm_aio_co_wake(co);
    assert_true(co_wait_flag(&w.done, 5000));
    assert_int_equal(w.n, 2);
    for (int i = 0; i < 2; i++) {
        assert_ptr_equal(w.ctx[i], ioctx[0]);
        assert_false(pthread_equal(w.thread[i], pthread_self()));
    }
    assert_true(pthread_equal(w.thread[0], w.thread[1]));
}

/* ---- reschedule_self --------------------------------------------------------- */

static void co_hop(void *opaque)
{
    Where *w = opaque;

    note(w);
    vmm_aio_co_reschedule_self(ioctx[0]);
    note(w);
    vmm_aio_co_reschedule_self(ioctx[1]);
    note(w);
    vmm_aio_co_reschedule_self(vmm_aio_context_main());
    note(w);
    co_set_flag(&w->done);
}

static void test_reschedule_self(void **state)
{
    (void)state;
    Where w = { .n = 0 };
    VmmAioContext *m = vmm_aio_context_main();

    /* Start in the main context, run by this thread. */
    vmm_aio_co_schedule(m, vmm_coroutine_create(co_hop, &w, NULL));
    assert_true(co_poll_main_until(&w.done, 5000));
    assert_ptr_equal(w.ctx[0], m);
    assert_ptr_equal(w.ctx[1], ioctx[0]);
    assert_ptr_equal(w.ctx[2], ioctx[1]);
    assert_ptr_equal(w.ctx[3], m);
    assert_true(pthread_equal(w.thread[0], pthread_self()));
    assert_false(pthread_equal(w.thread[1], pthread_self()));
    assert_false(pthread_equal(w.thread[2], w.thread[1]));
    assert_true(pthread_equal(w.thread[3], pthread_self()));
}

/* ---- aio_co_enter: woken coroutines run right after the waker yields ---------- */

static char order[16];
static int order_n;

static void co_log(void *opaque)
{
    order[order_n++] = (char)(uintptr_t)opaque;
}

static void co_enterer(void *opaque)
{
    VmmAioContext *m = vmm_aio_context_main();

    (void)opaque;
    vmm_aio_co_enter(m, vmm_coroutine_create(co_log, (void *)(uintptr_t)'b', NULL));
    vmm_aio_co_enter(m, vmm_coroutine_create(co_log, (void *)(uintptr_t)'c', NULL));
    order[order_n++] = 'a';
}

static void test_enter_semantics(void **state)
{
    (void)state;
    VmmAioContext *m = vmm_aio_context_main();

    order_n = 0;
    /* Outside a coroutine, in the context's thread: runs at once. */
    vmm_aio_poll(m, false);             /* make this thread the main loop */
    vmm_aio_co_enter(m, vmm_coroutine_create(co_enterer, NULL, NULL));
    order[order_n] = 0;
    /* From a coroutine: after it yields (here: returns), in order, before
     * the outer enter returns. */
    assert_string_equal(order, "abc");
}

/* ---- double schedule is reported with names --------------------------------- */

static void co_never(void *opaque)
{
    (void)opaque;
}

static void child_double_schedule(void)
{
    int err = 0;
    VmmAioContext *ctx = vmm_aio_context_new(NULL, &err);
    VmmCoroutine *co = vmm_coroutine_create(co_never, NULL, NULL);

    /* Nobody polls @ctx, so the first schedule is still pending. */
    vmm_aio_co_schedule(ctx, co);
    vmm_aio_co_schedule(ctx, co);
}

static void test_double_schedule(void **state)
{
    (void)state;
    char out[4096];
    bool aborted = co_run_child(child_double_schedule, out, sizeof(out));

    assert_non_null(strstr(out, "already scheduled by vmm_aio_co_schedule"));
    assert_int_equal(aborted, VMM_DEBUG_CHECKS);
}

static void co_wake_twice(void *opaque)
{
    VmmCoroutine *other = opaque;

    vmm_aio_co_wake(other);
    vmm_aio_co_wake(other);     /* still queued: reported */
}

static void co_wait_forever(void *opaque)
{
    (void)opaque;
    vmm_coroutine_yield();
}

static void child_double_wake(void)
{
    VmmAioContext *m = vmm_aio_context_main();
    VmmCoroutine *sleeper = vmm_coroutine_create(co_wait_forever, NULL, NULL);

    vmm_aio_poll(m, false);
    vmm_coroutine_enter(sleeper);
    vmm_coroutine_enter(vmm_coroutine_create(co_wake_twice, sleeper, NULL));
}

static void test_double_wake(void **state)
{
    (void)state;
    char out[4096];
    bool aborted = co_run_child(child_double_wake, out, sizeof(out));

    assert_non_null(strstr(out, "woken by vmm_aio_co_wake while already scheduled by "
                                "vmm_aio_co_wake"));
    assert_int_equal(aborted, VMM_DEBUG_CHECKS);
}

static void child_enter_scheduled(void)
{
    int err = 0;
    VmmAioContext *ctx = vmm_aio_context_new(NULL, &err);
    VmmCoroutine *co = vmm_coroutine_create(co_never, NULL, NULL);

    vmm_aio_co_schedule(ctx, co);
    vmm_coroutine_enter(co);
}

static void test_enter_scheduled(void **state)
{
    (void)state;
    char out[4096];
    bool aborted = co_run_child(child_enter_scheduled, out, sizeof(out));

    assert_non_null(strstr(out, "entered while scheduled by vmm_aio_co_schedule"));
    assert_int_equal(aborted, VMM_DEBUG_CHECKS);
}

/* ---- sleep and wake-up -------------------------------------------------------------- */

typedef struct Sleeper {
    VmmCoSleep w;
    int64_t slept_ns;
    int started;
    int done;
} Sleeper;

static void co_sleep_short(void *opaque)
{
    Sleeper *s = opaque;
    int64_t t0 = vmm_clock_ns();

    vmm_co_sleep_ns(NULL, 3000000);
    s->slept_ns = vmm_clock_ns() - t0;
    co_set_flag(&s->done);
}

static void test_sleep(void **state)
{
    (void)state;
    Sleeper s = { .done = 0 };

    vmm_aio_co_schedule(ioctx[1], vmm_coroutine_create(co_sleep_short, &s, NULL));
    assert_true(co_wait_flag(&s.done, 5000));
    assert_true(s.slept_ns >= 3000000);
}

static void co_sleep_long(void *opaque)
{
    Sleeper *s = opaque;
    int64_t t0 = vmm_clock_ns();

    co_set_flag(&s->started);
    vmm_co_sleep_ns(&s->w, 3600LL * 1000000000);
    s->slept_ns = vmm_clock_ns() - t0;
    co_set_flag(&s->done);
}

static void test_sleep_wake(void **state)
{
    (void)state;
    Sleeper s = { .done = 0 };

    vmm_aio_co_schedule(ioctx[1], vmm_coroutine_create(co_sleep_long, &s, NULL));
    assert_true(co_wait_flag(&s.started, 5000));
    /* The coroutine may not be asleep yet; keep waking until it ends
     * (a wake before the sleep starts does nothing). */
    for (int i = 0; i < 50000 && !__atomic_load_n(&s.done, __ATOMIC_ACQUIRE); i++) {
        vmm_co_sleep_wake(&s.w);
        usleep(100);
    }
    assert_true(co_wait_flag(&s.done, 5000));
    assert_true(s.slept_ns < 3600LL * 1000000000);
}

/* ---- sync wrapper --------------------------------------------------------------------- */

static void co_sleepy_work(void *opaque)
{
    int *v = opaque;

    for (int i = 0; i < 3; i++) {
        vmm_co_sleep_ns(NULL, 100000);
        (*v)++;
    }
}

static void co_run_sync_inside(void *opaque)
{
    /* Called from a coroutine, it just runs the function. */
    assert_int_equal(vmm_co_run_sync(vmm_aio_context_main(), co_sleepy_work, opaque), 0);
}

static void test_run_sync(void **state)
{
    (void)state;
    int v = 0;
    VmmAioContext *m = vmm_aio_context_main();

    vmm_aio_poll(m, false);     /* this thread is the main loop */
    /* In the context's own thread: polls it. */
    assert_int_equal(vmm_co_run_sync(m, co_sleepy_work, &v), 0);
    assert_int_equal(v, 3);
    /* The main loop waiting for an iothread's context. */
    assert_int_equal(vmm_co_run_sync(ioctx[0], co_sleepy_work, &v), 0);
    assert_int_equal(v, 6);
    assert_int_equal(vmm_co_run_sync(m, co_run_sync_inside, &v), 0);
    assert_int_equal(v, 9);
}

/* ---- thread pool --------------------------------------------------------------------- */

typedef struct PoolWork {
    pthread_t worker;
    int in_flight;
    int max_in_flight;
    int result;
    VmmAioContext *ctx_after;
    pthread_t thread_after;
    int done;
} PoolWork;

static int blocking_fn(void *arg)
{
    PoolWork *p = arg;
    int now = __atomic_add_fetch(&p->in_flight, 1, __ATOMIC_SEQ_CST);
    int max = __atomic_load_n(&p->max_in_flight, __ATOMIC_SEQ_CST);

    while (now > max && !__atomic_compare_exchange_n(&p->max_in_flight, &max, now, false,
                                                     __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
    }
    __atomic_store_n(&p->worker, co_thread_self(), __ATOMIC_RELAXED);
    usleep(2000);
    __atomic_sub_fetch(&p->in_flight, 1, __ATOMIC_SEQ_CST);
    return 42;
}

static void co_submitter(void *opaque)
{
    PoolWork *p = opaque;

    p->result = vmm_thread_pool_co_submit(blocking_fn, p);
    p->ctx_after = vmm_aio_context_current();
    p->thread_after = co_thread_self();
    co_set_flag(&p->done);
}

static void test_pool_co_submit(void **state)
{
    (void)state;
    PoolWork p = { .done = 0 };
    pthread_t io_thread;

    vmm_aio_co_schedule(ioctx[0], vmm_coroutine_create(co_submitter, &p, NULL));
    assert_true(co_wait_flag(&p.done, 5000));
    assert_int_equal(p.result, 42);
    /* It resumed in its own context, on the iothread, not the worker. */
    assert_ptr_equal(p.ctx_after, ioctx[0]);
    io_thread = p.thread_after;
    assert_false(pthread_equal(io_thread, p.worker));
    assert_false(pthread_equal(io_thread, pthread_self()));
}

typedef struct Many {
    PoolWork w;
    int completions;
    int wrong_thread;
} Many;

static void many_done(void *opaque, int ret)
{
    Many *m = opaque;

    if (ret != 42 || !vmm_aio_context_in_thread(vmm_aio_context_main())) {
        m->wrong_thread++;
    }
    m->completions++;
}

static void test_pool_bounded(void **state)
{
    (void)state;
    VmmAioContext *main_ctx = vmm_aio_context_main();
    Many m = { .completions = 0 };
    int64_t end = vmm_clock_ns() + 10000000000LL;

    vmm_aio_poll(main_ctx, false);
    assert_int_equal(vmm_thread_pool_set_max_workers(main_ctx, 3), 0);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(vmm_thread_pool_submit(main_ctx, blocking_fn, &m.w, many_done, &m), 0);
    }
    while (m.completions < 20 && vmm_clock_ns() < end) {
        vmm_aio_poll(main_ctx, true);
    }
    assert_int_equal(m.completions, 20);
    assert_int_equal(m.wrong_thread, 0);
    assert_true(m.w.max_in_flight <= 3);
    assert_true(m.w.max_in_flight >= 1);
    assert_int_equal(vmm_thread_pool_set_max_workers(main_ctx, 64), 0);
}

static int slow_fn(void *arg)
{
    int *started = arg;

    co_set_flag(started);
    usleep(20000);
    return 7;
}

static void count_done(void *opaque, int ret)
{
    int *n = opaque;

    *n += ret;
}

static void test_pool_context_destroy(void **state)
{
    (void)state;
    int err = 0;
    VmmAioContext *ctx = vmm_aio_context_new(NULL, &err);
    int started = 0, done = 0;

    assert_non_null(ctx);
    /* Delivered while the context lives. */
    assert_int_equal(vmm_thread_pool_submit(ctx, slow_fn, &started, count_done, &done), 0);
    while (done == 0) {
        vmm_aio_poll(ctx, true);
    }
    assert_int_equal(done, 7);
    /* Destroyed with a request still running: destruction waits for the
     * worker, then drops the completion that can no longer be delivered. */
    started = 0;
    assert_int_equal(vmm_thread_pool_submit(ctx, slow_fn, &started, count_done, &done), 0);
    assert_true(co_wait_flag(&started, 5000));
    vmm_aio_context_unref(ctx);
    assert_int_equal(done, 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schedule_and_wake),
        cmocka_unit_test(test_reschedule_self),
        cmocka_unit_test(test_enter_semantics),
#if !VMM_CO_TSAN  /* fork: TSan loses track of fibers in the child */
        cmocka_unit_test(test_double_schedule),
#endif
#if !VMM_CO_TSAN  /* fork: TSan loses track of fibers in the child */
        cmocka_unit_test(test_double_wake),
#endif
#if !VMM_CO_TSAN  /* fork: TSan loses track of fibers in the child */
        cmocka_unit_test(test_enter_scheduled),
#endif
        cmocka_unit_test(test_sleep),
        cmocka_unit_test(test_sleep_wake),
        cmocka_unit_test(test_run_sync),
        cmocka_unit_test(test_pool_co_submit),
        cmocka_unit_test(test_pool_bounded),
        cmocka_unit_test(test_pool_context_destroy),
    };

    return cmocka_run_group_tests_name("co-sched", tests, setup, teardown);
}
