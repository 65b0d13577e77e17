/* SPDX-License-Identifier: MIT */
/*
 * IOThreads, aio-wait and cross-thread scheduling under load (suite
 * concurrency; also run under ThreadSanitizer).  Sizes are bounded and
 * tunable: VMM_TEST_AIO_ITERS (BHs per producer).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>

#include "aio-test-util.h"
#include "vmmkit/aio.h"
#include "aio/aio-internal.h"
#include "util/thread.h"

#define NPRODUCERS 4

static VmmIOThread *io[2];

static int setup(void **state)
{
    int err = 0;
    (void)state;
    io[0] = vmm_iothread_new("test-io0", NULL, &err);
    io[1] = vmm_iothread_new("test-io1", NULL, &err);
    assert_non_null(io[0]);
    assert_non_null(io[1]);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    vmm_iothread_destroy(io[0]);
    vmm_iothread_destroy(io[1]);
    return 0;
}

/* ---- iothread basics ---- */

typedef struct Probe {
    VmmAioContext *expect;
    bool in_thread;
    bool current_ok;
    size_t stack;
    int done;
} Probe;

static void probe_cb(void *opaque)
{
    Probe *p = opaque;
    p->current_ok = vmm_aio_context_current() == p->expect &&
                    aio_get_current_context_raw() == p->expect;
    p->in_thread = vmm_aio_context_in_thread(p->expect);
    pthread_attr_t a;
    if (pthread_getattr_np(pthread_self(), &a) == 0) {
        pthread_attr_getstacksize(&a, &p->stack);
        pthread_attr_destroy(&a);
    }
    __atomic_store_n(&p->done, 1, __ATOMIC_RELEASE);
    vmm_aio_wait_kick();
}

static bool probe_pending(void *opaque)
{
    return !__atomic_load_n(&((Probe *)opaque)->done, __ATOMIC_ACQUIRE);
}

static void test_iothread_context(void **state)
{
    (void)state;
    for (int i = 0; i < 2; i++) {
        VmmAioContext *ctx = vmm_iothread_get_context(io[i]);
        Probe p = { .expect = ctx };
        assert_false(vmm_aio_context_in_thread(ctx));
        assert_int_equal(vmm_bh_schedule_oneshot(ctx, probe_cb, &p, "probe"), 0);
        VMM_AIO_WAIT_WHILE(NULL, probe_pending(&p));
        assert_true(p.current_ok);
        assert_true(p.in_thread);
        /* The library's small stack (util/thread.h), not glibc's 8 MiB:
         * under 2 MiB, where no transparent huge page fits. */
        assert_true(p.stack >= VMM_THREAD_STACK_SIZE && p.stack < (2u << 20));
    }
    assert_ptr_equal(vmm_aio_context_current(), vmm_aio_context_main());
}

static void test_iothread_start_stop(void **state)
{
    (void)state;
    for (int i = 0; i < 10; i++) {
        int err = 0;
        VmmIOThread *t = vmm_iothread_new("short", NULL, &err);
        assert_non_null(t);
        Probe p = { .expect = vmm_iothread_get_context(t) };
        vmm_bh_schedule_oneshot(p.expect, probe_cb, &p, "probe");
        /* Stopping runs what was scheduled before. */
        vmm_iothread_destroy(t);
        assert_int_equal(p.done, 1);
    }
}

/* ---- cross-thread scheduling under load ---- */

typedef struct Load {
    long per_producer;
    long ran[2];            /* atomic */
    long bounced;           /* atomic: BHs forwarded io0 -> io1 */
    VmmBH *shared[2];       /* scheduled by every producer */
    long shared_runs[2];    /* atomic */
} Load;

static Load load;

static void hit_cb(void *opaque)
{
    long which = (long)(intptr_t)opaque;
    __atomic_fetch_add(&load.ran[which], 1, __ATOMIC_RELEASE);
    vmm_aio_wait_kick();
}

static void bounce_cb(void *opaque)
{
    (void)opaque;
    /* From io0 into io1: iothreads schedule on each other too. */
    vmm_bh_schedule_oneshot(vmm_iothread_get_context(io[1]), hit_cb, (void *)1, "bounced");
    __atomic_fetch_add(&load.bounced, 1, __ATOMIC_RELAXED);
}

static void shared_cb(void *opaque)
{
    long which = (long)(intptr_t)opaque;
    __atomic_fetch_add(&load.shared_runs[which], 1, __ATOMIC_RELAXED);
}

static void *producer(void *opaque)
{
    long id = (long)(intptr_t)opaque;
    VmmAioContext *c0 = vmm_iothread_get_context(io[0]);
    VmmAioContext *c1 = vmm_iothread_get_context(io[1]);

    for (long i = 0; i < load.per_producer; i++) {
        switch ((i + id) % 3) {
        case 0:
            assert_int_equal(vmm_bh_schedule_oneshot(c0, hit_cb, (void *)0, "p0"), 0);
            break;
        case 1:
            assert_int_equal(vmm_bh_schedule_oneshot(c1, hit_cb, (void *)1, "p1"), 0);
            break;
        default:
            assert_int_equal(vmm_bh_schedule_oneshot(c0, bounce_cb, NULL, "bounce"), 0);
            break;
        }
        vmm_bh_schedule(load.shared[i & 1]);
    }
    return NULL;
}

static bool load_pending(void *opaque)
{
    static int toggle;
    (void)opaque;
    /* Retune io0's polling while it runs (any thread may). */
    toggle ^= 1;
    assert_int_equal(vmm_aio_context_set_poll_params(vmm_iothread_get_context(io[0]),
                                                     toggle ? 0 : 32768, 2, 2), 0);
    long want = load.per_producer * NPRODUCERS;
    return __atomic_load_n(&load.ran[0], __ATOMIC_ACQUIRE) +
           __atomic_load_n(&load.ran[1], __ATOMIC_ACQUIRE) < want;
}

static void test_cross_thread_under_load(void **state)
{
    (void)state;
    pthread_t t[NPRODUCERS];

    memset(&load, 0, sizeof(load));
    load.per_producer = env_long("VMM_TEST_AIO_ITERS", 20000);
    for (int i = 0; i < 2; i++) {
        load.shared[i] = vmm_bh_new(vmm_iothread_get_context(io[i]), shared_cb,
                                    (void *)(intptr_t)i, "shared");
    }
    for (long i = 0; i < NPRODUCERS; i++) {
        pthread_create(&t[i], NULL, producer, (void *)(intptr_t)i);
    }
    /* The main loop waits, woken by the iothreads' kicks. */
    VMM_AIO_WAIT_WHILE(NULL, load_pending(NULL));
    for (int i = 0; i < NPRODUCERS; i++) {
        pthread_join(t[i], NULL);
    }
    long total = __atomic_load_n(&load.ran[0], __ATOMIC_ACQUIRE) +
                 __atomic_load_n(&load.ran[1], __ATOMIC_ACQUIRE);
    assert_int_equal(total, load.per_producer * NPRODUCERS);
    assert_true(__atomic_load_n(&load.bounced, __ATOMIC_RELAXED) > 0);

    /* Every schedule of a shared BH is followed by at least one run. */
    for (int i = 0; i < 2; i++) {
        Probe p = { .expect = vmm_iothread_get_context(io[i]) };
        vmm_bh_schedule_oneshot(p.expect, probe_cb, &p, "flush");
        VMM_AIO_WAIT_WHILE(NULL, probe_pending(&p));
        long runs = __atomic_load_n(&load.shared_runs[i], __ATOMIC_RELAXED);
        assert_true(runs >= 1);
        assert_true(runs <= load.per_producer * NPRODUCERS / 2);
        vmm_bh_delete(load.shared[i]);
    }
}

/* ---- BH create/schedule/delete churn from several threads ---- */

/*
 * Threads create, schedule and delete BHs of one context in a loop while
 * the context's own thread polls: vmm_bh_new links into the context's list
 * of BHs while the poller frees deleted ones (unlinking them).  ThreadSanitizer
 * checks the list is only touched under its lock.
 */
#define NCHURN 3

static long churn_runs;     /* atomic */

static void churn_cb(void *opaque)
{
    (void)opaque;
    __atomic_fetch_add(&churn_runs, 1, __ATOMIC_RELAXED);
}

static void *churner(void *opaque)
{
    long iters = (long)(intptr_t)opaque;
    VmmAioContext *c0 = vmm_iothread_get_context(io[0]);

    for (long i = 0; i < iters; i++) {
        VmmBH *bh = vmm_bh_new(c0, churn_cb, NULL, "churn");
        assert_non_null(bh);
        vmm_bh_schedule(bh);
        if (i & 1) {
            sched_yield();      /* sometimes let it run before the delete */
        }
        vmm_bh_delete(bh);
    }
    return NULL;
}

static void test_bh_churn(void **state)
{
    (void)state;
    long iters = env_long("VMM_TEST_AIO_ITERS", 20000);
    pthread_t t[NCHURN];

    __atomic_store_n(&churn_runs, 0, __ATOMIC_RELAXED);
    for (long i = 0; i < NCHURN; i++) {
        pthread_create(&t[i], NULL, churner, (void *)(intptr_t)iters);
    }
    for (int i = 0; i < NCHURN; i++) {
        pthread_join(t[i], NULL);
    }
    /* Flush: every deleted BH is freed by the iothread's next poll. */
    Probe p = { .expect = vmm_iothread_get_context(io[0]) };
    vmm_bh_schedule_oneshot(p.expect, probe_cb, &p, "flush");
    VMM_AIO_WAIT_WHILE(NULL, probe_pending(&p));
    assert_true(__atomic_load_n(&churn_runs, __ATOMIC_RELAXED) <= iters * NCHURN);
}

/* ---- handlers and timers set from another thread ---- */

typedef struct Remote {
    int fds[2];
    int reads;              /* atomic */
    int timer_runs;         /* atomic */
} Remote;

static void remote_read(void *opaque)
{
    Remote *r = opaque;
    char buf[16];
    if (read(r->fds[0], buf, sizeof(buf)) > 0) {
        __atomic_fetch_add(&r->reads, 1, __ATOMIC_RELEASE);
        vmm_aio_wait_kick();
    }
}

static void remote_timer(void *opaque)
{
    Remote *r = opaque;
    __atomic_fetch_add(&r->timer_runs, 1, __ATOMIC_RELEASE);
    vmm_aio_wait_kick();
}

static bool remote_reads_pending(void *opaque)
{
    return __atomic_load_n(&((Remote *)opaque)->reads, __ATOMIC_ACQUIRE) == 0;
}

static bool remote_timer_pending(void *opaque)
{
    return __atomic_load_n(&((Remote *)opaque)->timer_runs, __ATOMIC_ACQUIRE) == 0;
}

static void test_handler_and_timer_from_other_thread(void **state)
{
    (void)state;
    VmmAioContext *ctx = vmm_iothread_get_context(io[0]);
    Remote r = { 0 };
    assert_int_equal(pipe2(r.fds, O_NONBLOCK), 0);
    /* The iothread is blocked in its poll; adding the handler wakes it. */
    assert_int_equal(vmm_aio_set_fd_handler(ctx, r.fds[0], remote_read, NULL, NULL, NULL, &r), 0);
    assert_int_equal(write(r.fds[1], "x", 1), 1);
    VMM_AIO_WAIT_WHILE(NULL, remote_reads_pending(&r));
    assert_int_equal(vmm_aio_set_fd_handler(ctx, r.fds[0], NULL, NULL, NULL, NULL, NULL), 0);

    VmmTimer *t = vmm_timer_new(ctx, remote_timer, &r);
    vmm_timer_mod(t, vmm_clock_ns() + 2 * 1000000);
    VMM_AIO_WAIT_WHILE(NULL, remote_timer_pending(&r));
    /* The callback ran; free from the main thread once it is idle. */
    Probe p = { .expect = ctx };
    vmm_bh_schedule_oneshot(ctx, probe_cb, &p, "sync");
    VMM_AIO_WAIT_WHILE(NULL, probe_pending(&p));
    vmm_timer_free(t);
    close(r.fds[0]);
    close(r.fds[1]);
}

/* ---- aio-wait timeout ---- */

static bool always(void *opaque)
{
    (void)opaque;
    return true;
}

static void test_wait_timeout(void **state)
{
    (void)state;
    int64_t t0 = vmm_clock_ns();
    assert_int_equal(vmm_aio_wait_while_timeout_(NULL, always, NULL, 20 * 1000000), -ETIMEDOUT);
    assert_true(vmm_clock_ns() - t0 >= 20 * 1000000);
    Probe p = { .expect = vmm_iothread_get_context(io[1]) };
    vmm_bh_schedule_oneshot(p.expect, probe_cb, &p, "probe");
    assert_int_equal(vmm_aio_wait_while_timeout_(NULL, probe_pending, &p, 5000000000LL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_iothread_context),
        cmocka_unit_test(test_iothread_start_stop),
        cmocka_unit_test(test_cross_thread_under_load),
        cmocka_unit_test(test_bh_churn),
        cmocka_unit_test(test_handler_and_timer_from_other_thread),
        cmocka_unit_test(test_wait_timeout),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
