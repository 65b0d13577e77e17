/* SPDX-License-Identifier: MIT */
/* The graph lock: readers in iothreads, the writer in the main loop. */
#include "block-test-util.h"
#include "aio/aio-internal.h"
#include "block/block-int.h"
#include "../device/misuse.h"

static int flag_get(int *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static void flag_set(int *p, int v)
{
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
    vmm_aio_wait_kick();
}

/* Coroutine: wait (sleeping) until *p becomes non-zero. */
static void co_wait_flag(int *p)
{
    while (!flag_get(p)) {
        vmm_co_sleep_ns(NULL, 1000000);
    }
}

static void spin_main_ms(int ms)
{
    int64_t end = vmm_clock_ns() + (int64_t)ms * 1000000;
    while (vmm_clock_ns() < end) {
        vmm_aio_poll(vmm_aio_context_main(), false);
        g_usleep(500);
    }
}

static VmmCoroutine *spawn(VmmAioContext *ctx, VmmCoroutineEntry *fn, void *opaque)
{
    int err = 0;
    VmmCoroutine *co = vmm_coroutine_create(fn, opaque, &err);
    assert_non_null(co);
    vmm_aio_co_enter(ctx, co);
    return co;
}

/* ---- A reader holds the lock: the writer waits for it ---------------------- */

typedef struct Reader {
    VmmAioContext *unlock_ctx;      /* move here before unlocking (or NULL) */
    int held, go, released, done;
    int64_t hold_ns;
    int *until;                     /* with hold_ns: release early once set */
} Reader;

/* Coroutine: sleep until *p becomes non-zero, at most @ns. */
static void co_wait_flag_ns(int *p, int64_t ns)
{
    int64_t end = vmm_clock_ns() + ns;
    while (!flag_get(p) && vmm_clock_ns() < end) {
        vmm_co_sleep_ns(NULL, 1000000);
    }
}

static void reader_entry(void *opaque)
{
    Reader *r = opaque;
    vmm_graph_co_rdlock();
    flag_set(&r->held, 1);
    if (r->hold_ns && r->until) {
        co_wait_flag_ns(r->until, r->hold_ns);
    } else if (r->hold_ns) {
        vmm_co_sleep_ns(NULL, r->hold_ns);
    } else {
        co_wait_flag(&r->go);
    }
    if (r->unlock_ctx) {
        vmm_aio_co_reschedule_self(r->unlock_ctx);
    }
    flag_set(&r->released, 1);
    vmm_graph_co_rdunlock();
    flag_set(&r->done, 1);
}

static void test_main_loop_reader(void **state)
{
    (void)state;
    Reader r = { .hold_ns = 1 };
    co_run_in(vmm_aio_context_main(), reader_entry, &r);
    assert_true(r.done);
    assert_int_equal(block_graph_reader_count(), 0);
    vmm_graph_rdlock_main_loop();
    vmm_graph_rdunlock_main_loop();
}

static void test_writer_waits_for_reader(void **state)
{
    (void)state;
    int e = 0;
    VmmIOThread *t = vmm_iothread_new("gl-r", NULL, &e);
    Reader r = { .hold_ns = 30000000 };
    spawn(vmm_iothread_get_context(t), reader_entry, &r);
    VMM_AIO_WAIT_WHILE(NULL, !flag_get(&r.held));
    assert_true(block_graph_reader_count() >= 1);
    vmm_graph_wrlock();                 /* would hang on a lost wake-up */
    assert_true(flag_get(&r.released));
    vmm_graph_wrunlock();
    VMM_AIO_WAIT_WHILE(NULL, !flag_get(&r.done));
    assert_int_equal(block_graph_reader_count(), 0);
    vmm_iothread_destroy(t);
}

/* ---- Readers queue while the writer holds it ------------------------------------ */

/* got[0]: inside the read section; got[1]: after the unlock. */
static void quick_reader(void *opaque)
{
    int *got = opaque;
    vmm_graph_co_rdlock();
    flag_set(&got[0], 1);
    vmm_graph_co_rdunlock();
    flag_set(&got[1], 1);
}

static void test_readers_wait_for_writer(void **state)
{
    (void)state;
    int e = 0;
    VmmIOThread *t = vmm_iothread_new("gl-q", NULL, &e);
    int got[3][2] = { { 0 } };
    vmm_graph_wrlock();
    for (int i = 0; i < 3; i++) {
        spawn(vmm_iothread_get_context(t), quick_reader, got[i]);
    }
    spin_main_ms(30);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(flag_get(&got[i][0]), 0);
    }
    vmm_graph_wrunlock();
    VMM_AIO_WAIT_WHILE(NULL, !flag_get(&got[0][1]) || !flag_get(&got[1][1]) ||
                             !flag_get(&got[2][1]));
    assert_int_equal(block_graph_reader_count(), 0);
    vmm_iothread_destroy(t);
}

/* ---- The inline current-context read follows a coroutine that moves ------------ */

typedef struct FreshProbe {
    VmmAioContext *to;
    VmmAioContext *before, *after, *after_raw;
    int done;
} FreshProbe;

static void fresh_probe_entry(void *opaque)
{
    FreshProbe *p = opaque;
    /* Both reads inlined into one frame, a yield (thread change) between:
     * the second must see the new thread's value, not a reused one. */
    p->before = aio_current_context_fresh();
    vmm_aio_co_reschedule_self(p->to);
    p->after = aio_current_context_fresh();
    p->after_raw = aio_get_current_context_raw();
    flag_set(&p->done, 1);
}

static void test_fresh_context_moves(void **state)
{
    (void)state;
    int e = 0;
    VmmIOThread *a = vmm_iothread_new("gl-fa", NULL, &e);
    VmmIOThread *b = vmm_iothread_new("gl-fb", NULL, &e);
    assert_non_null(a);
    assert_non_null(b);
    assert_ptr_equal(aio_current_context_fresh(), aio_get_current_context_raw());
    FreshProbe p = { .to = vmm_iothread_get_context(b) };
    spawn(vmm_iothread_get_context(a), fresh_probe_entry, &p);
    VMM_AIO_WAIT_WHILE(NULL, !flag_get(&p.done));
    assert_ptr_equal(p.before, vmm_iothread_get_context(a));
    assert_ptr_equal(p.after, vmm_iothread_get_context(b));
    assert_ptr_equal(p.after_raw, vmm_iothread_get_context(b));
    vmm_iothread_destroy(a);
    vmm_iothread_destroy(b);
}

/* ---- A reader that moves between contexts; a context that dies ------------------ */

static void test_reader_moves(void **state)
{
    (void)state;
    int e = 0;
    VmmIOThread *a = vmm_iothread_new("gl-a", NULL, &e);
    VmmIOThread *b = vmm_iothread_new("gl-b", NULL, &e);
    Reader r = { .unlock_ctx = vmm_iothread_get_context(b) };
    spawn(vmm_iothread_get_context(a), reader_entry, &r);
    VMM_AIO_WAIT_WHILE(NULL, !flag_get(&r.held));
    flag_set(&r.go, 1);
    VMM_AIO_WAIT_WHILE(NULL, !flag_get(&r.done));
    /* A is +1, B is -1: the sum is what counts. */
    assert_int_equal(block_graph_reader_count(), 0);
    vmm_graph_wrlock();
    vmm_graph_wrunlock();
    vmm_iothread_destroy(a);
    vmm_iothread_destroy(b);
    assert_int_equal(block_graph_reader_count(), 0);
}

typedef struct Mover {
    VmmAioContext *to;
    int held, moved, go, released, done;
} Mover;

static void mover_entry(void *opaque)
{
    Mover *m = opaque;
    vmm_graph_co_rdlock();
    flag_set(&m->held, 1);
    vmm_aio_co_reschedule_self(m->to);
    flag_set(&m->moved, 1);
    co_wait_flag(&m->go);
    flag_set(&m->released, 1);
    vmm_graph_co_rdunlock();
    flag_set(&m->done, 1);
}

/* Runs inside the writer's poll: lets the orphaned reader finish. */
static void release_mover(void *opaque)
{
    Mover *m = opaque;
    flag_set(&m->go, 1);
}

static void test_context_dies_with_reader(void **state)
{
    (void)state;
    int e = 0;
    VmmIOThread *a = vmm_iothread_new("gl-dying", NULL, &e);
    VmmIOThread *b = vmm_iothread_new("gl-survivor", NULL, &e);
    Mover m = { .to = vmm_iothread_get_context(b) };
    spawn(vmm_iothread_get_context(a), mover_entry, &m);
    VMM_AIO_WAIT_WHILE(NULL, !flag_get(&m.moved));
    vmm_iothread_destroy(a);           /* its +1 goes to the orphaned count */
    assert_int_equal(block_graph_reader_count(), 1);
    /* The writer must still wait for that reader: it is released only by a
     * BH that runs inside the writer's wait. */
    vmm_bh_schedule_oneshot(vmm_aio_context_main(), release_mover, &m, "release");
    vmm_graph_wrlock();
    assert_true(flag_get(&m.released));
    vmm_graph_wrunlock();
    VMM_AIO_WAIT_WHILE(NULL, !flag_get(&m.done));
    assert_int_equal(block_graph_reader_count(), 0);
    vmm_iothread_destroy(b);
}

/* ---- Callbacks run during the writer's wait may take the read lock ------------ */

static int cb_reader_done;
static void cb_reader(void *opaque)
{
    (void)opaque;
    vmm_graph_co_rdlock();
    vmm_graph_co_rdunlock();
    flag_set(&cb_reader_done, 1);
}

static void start_cb_reader(void *opaque)
{
    (void)opaque;
    spawn(vmm_aio_context_main(), cb_reader, NULL);
}

static void test_callback_reader_during_wait(void **state)
{
    (void)state;
    int e = 0;
    VmmIOThread *t = vmm_iothread_new("gl-cb", NULL, &e);
    /* The reader holds the lock until the callback's reader is done (10 s
     * at most), so the writer must wait, and run the callback meanwhile.
     * A fixed 40 ms hold raced: a main thread stalled that long found no
     * reader left, took the lock without polling, and the callback had
     * not run.  A writer that does not run callbacks while it waits, or a
     * callback reader that blocks on it, now fails after 10 s. */
    Reader r = { .hold_ns = 10 * 1000000000LL, .until = &cb_reader_done };
    cb_reader_done = 0;
    spawn(vmm_iothread_get_context(t), reader_entry, &r);
    VMM_AIO_WAIT_WHILE(NULL, !flag_get(&r.held));
    /* Runs inside the writer's poll: a main-loop coroutine reader. */
    vmm_bh_schedule_oneshot(vmm_aio_context_main(), start_cb_reader, NULL, "cb-reader");
    vmm_graph_wrlock();
    assert_true(flag_get(&cb_reader_done));
    assert_true(flag_get(&r.released));
    vmm_graph_wrunlock();
    VMM_AIO_WAIT_WHILE(NULL, !flag_get(&r.done));
    vmm_iothread_destroy(t);
}

/* ---- Misuse: debug builds abort naming it ------------------------------------ */
/* (The misusing functions are unbalanced on purpose: VMM_NO_TSA.) */

#if defined(__SANITIZE_THREAD__)
#define GL_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define GL_TSAN 1
#endif
#endif
#ifndef GL_TSAN
#define GL_TSAN 0
#endif

#if !GL_TSAN     /* the child starts a thread: TSan forbids that after fork */
static void *wrlock_thread(void *opaque)
{
    (void)opaque;
    vmm_graph_wrlock();     /* a plain thread, not the main loop */
    vmm_graph_wrunlock();
    return NULL;
}

static void wrlock_from_plain_thread(void *opaque)
{
    pthread_t t;
    (void)opaque;
    vmm_aio_poll(vmm_aio_context_main(), false);    /* this thread is the main loop */
    pthread_create(&t, NULL, wrlock_thread, NULL);
    pthread_join(t, NULL);
}

static void test_wrlock_wrong_thread(void **state)
{
    (void)state;
    expect_misuse(wrlock_from_plain_thread, NULL, "not the main loop");
}
#endif

static void unlock_only_entry(void *opaque) VMM_NO_TSA
{
    (void)opaque;
    vmm_graph_co_rdunlock();
}

static void co_rdunlock_without_lock(void *opaque)
{
    (void)opaque;
    co_run_in(vmm_aio_context_main(), unlock_only_entry, NULL);
}

static void rdunlock_outside_coroutine(void *opaque) VMM_NO_TSA
{
    (void)opaque;
    vmm_graph_co_rdunlock();
}

/* Locked in one coroutine, unlocked in another: each holds its own. */
static void lock_only_entry(void *opaque) VMM_NO_TSA
{
    (void)opaque;
    vmm_graph_co_rdlock();
}

static void co_rdunlock_other_coroutine(void *opaque)
{
    (void)opaque;
    co_run_in(vmm_aio_context_main(), lock_only_entry, NULL);
    co_run_in(vmm_aio_context_main(), unlock_only_entry, NULL);
}

static void main_rdunlock_without_lock(void *opaque) VMM_NO_TSA
{
    (void)opaque;
    vmm_aio_poll(vmm_aio_context_main(), false);
    vmm_graph_rdunlock_main_loop();
}

static void test_rdunlock_without_rdlock(void **state)
{
    (void)state;
    if (!VMM_DEBUG_CHECKS) {
        skip();     /* the holder counts exist in debug builds only */
    }
    expect_misuse(co_rdunlock_without_lock, NULL, "released but not held by this coroutine");
    expect_misuse(rdunlock_outside_coroutine, NULL, "released but not held by this thread");
    expect_misuse(co_rdunlock_other_coroutine, NULL, "released but not held by this coroutine");
    expect_misuse(main_rdunlock_without_lock, NULL, "main-loop graph read lock released");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_main_loop_reader),
        cmocka_unit_test(test_writer_waits_for_reader),
        cmocka_unit_test(test_readers_wait_for_writer),
        cmocka_unit_test(test_fresh_context_moves),
        cmocka_unit_test(test_reader_moves),
        cmocka_unit_test(test_context_dies_with_reader),
        cmocka_unit_test(test_callback_reader_during_wait),
#if !GL_TSAN     /* the child starts a thread: TSan forbids that after fork */
        cmocka_unit_test(test_wrlock_wrong_thread),
#endif
        cmocka_unit_test(test_rdunlock_without_rdlock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
