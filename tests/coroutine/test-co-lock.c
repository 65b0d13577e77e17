/* SPDX-License-Identifier: MIT */
/* CoMutex, CoQueue and CoRwlock behaviour, in one context (ordering is
 * deterministic there) and across iothreads. */
#include "co-test-util.h"

static VmmAioContext *main_ctx;

static int setup(void **state)
{
    (void)state;
    main_ctx = vmm_aio_context_main();
    vmm_aio_poll(main_ctx, false);      /* this thread runs the main loop */
    return 0;
}

/* Run everything scheduled on the main context until it goes quiet. */
static void drain(void)
{
    while (vmm_aio_poll(main_ctx, false)) {
    }
}

static char trace[64];
static int trace_n;

static void mark(char c)
{
    trace[trace_n++] = c;
    trace[trace_n] = 0;
}

static void reset_trace(void)
{
    trace_n = 0;
    trace[0] = 0;
}

/* ---- CoMutex -------------------------------------------------------------- */

static VmmCoMutex mtx;

static void co_mutex_user(void *opaque)
{
    char c = (char)(uintptr_t)opaque;

    vmm_co_mutex_lock(&mtx);
    mark(c);
    vmm_coroutine_yield();          /* hold it across a yield */
    mark((char)(c - 'a' + 'A'));
    vmm_co_mutex_unlock(&mtx);
}

static void test_mutex_fifo(void **state)
{
    (void)state;
    VmmCoroutine *co[4];

    vmm_co_mutex_init(&mtx);
    reset_trace();
    for (int i = 0; i < 4; i++) {
        co[i] = vmm_coroutine_create(co_mutex_user, (void *)(uintptr_t)('a' + i), NULL);
        vmm_coroutine_enter(co[i]);
    }
    /* a holds it; b, c, d queued in arrival order. */
    assert_string_equal(trace, "a");
    vmm_coroutine_enter(co[0]);     /* a unlocks: b gets it (no barging) */
    drain();
    assert_string_equal(trace, "aAb");
    /* A newcomer must queue behind c and d. */
    VmmCoroutine *e = vmm_coroutine_create(co_mutex_user, (void *)(uintptr_t)'e', NULL);
    vmm_coroutine_enter(e);
    assert_string_equal(trace, "aAb");
    vmm_coroutine_enter(co[1]);
    drain();
    vmm_coroutine_enter(co[2]);
    drain();
    vmm_coroutine_enter(co[3]);
    drain();
    vmm_coroutine_enter(e);
    drain();
    assert_string_equal(trace, "aAbBcCdDeE");
}

static void co_hold_and_end(void *opaque) VMM_NO_TSA
{
    (void)opaque;
    vmm_co_mutex_lock(&mtx);
}

static void child_end_holding(void)
{
    vmm_co_mutex_init(&mtx);
    vmm_coroutine_enter(vmm_coroutine_create(co_hold_and_end, NULL, NULL));
}

static void test_mutex_end_holding_reported(void **state)
{
    (void)state;
    char out[4096];
    bool aborted = co_run_child(child_end_holding, out, sizeof(out));

    assert_non_null(strstr(out, "returned holding 1 coroutine lock"));
    assert_int_equal(aborted, VMM_DEBUG_CHECKS);
}

static void co_unlock_not_mine(void *opaque) VMM_NO_TSA
{
    (void)opaque;
    vmm_co_mutex_unlock(&mtx);
}

static void child_unlock_not_held(void)
{
    vmm_co_mutex_init(&mtx);
    vmm_coroutine_enter(vmm_coroutine_create(co_unlock_not_mine, NULL, NULL));
}

static void test_mutex_unlock_not_held(void **state)
{
    (void)state;
    char out[4096];
    bool aborted = co_run_child(child_unlock_not_held, out, sizeof(out));

    assert_non_null(strstr(out, "which does not hold it"));
    assert_int_equal(aborted, VMM_DEBUG_CHECKS);
}

/* ---- CoQueue --------------------------------------------------------------- */

static VmmCoQueue queue;
static int items;

static void co_consumer(void *opaque)
{
    char c = (char)(uintptr_t)opaque;

    vmm_co_mutex_lock(&mtx);
    while (items == 0) {
        vmm_co_queue_wait(&queue, &mtx);
    }
    items--;
    mark(c);
    vmm_co_mutex_unlock(&mtx);
}

static void co_producer(void *opaque)
{
    int n = (int)(uintptr_t)opaque;

    vmm_co_mutex_lock(&mtx);
    items += n;
    if (n == 1) {
        assert_true(vmm_co_queue_next(&queue));
    } else {
        vmm_co_queue_restart_all(&queue);
    }
    vmm_co_mutex_unlock(&mtx);
}

static void test_queue_wait_next_restart(void **state)
{
    (void)state;
    vmm_co_mutex_init(&mtx);
    vmm_co_queue_init(&queue);
    items = 0;
    reset_trace();
    assert_true(vmm_co_queue_empty(&queue));
    for (int i = 0; i < 3; i++) {
        vmm_coroutine_enter(vmm_coroutine_create(co_consumer, (void *)(uintptr_t)('a' + i),
                                                 NULL));
    }
    assert_false(vmm_co_queue_empty(&queue));
    assert_string_equal(trace, "");
    vmm_coroutine_enter(vmm_coroutine_create(co_producer, (void *)(uintptr_t)1, NULL));
    drain();
    assert_string_equal(trace, "a");        /* FIFO: the first waiter */
    vmm_coroutine_enter(vmm_coroutine_create(co_producer, (void *)(uintptr_t)2, NULL));
    drain();
    assert_string_equal(trace, "abc");
    assert_true(vmm_co_queue_empty(&queue));
    /* next on an empty queue */
    vmm_coroutine_enter(vmm_coroutine_create(co_producer, (void *)(uintptr_t)2, NULL));
    assert_int_equal(items, 2);
}

static pthread_mutex_t plock = PTHREAD_MUTEX_INITIALIZER;

static void co_pwaiter(void *opaque)
{
    char c = (char)(uintptr_t)opaque;

    pthread_mutex_lock(&plock);
    vmm_co_queue_wait_pthread(&queue, &plock);
    mark(c);
    pthread_mutex_unlock(&plock);
}

static void test_queue_enter_next_outside(void **state)
{
    (void)state;
    vmm_co_queue_init(&queue);
    reset_trace();
    for (int i = 0; i < 3; i++) {
        vmm_coroutine_enter(vmm_coroutine_create(co_pwaiter, (void *)(uintptr_t)('a' + i),
                                                 NULL));
    }
    pthread_mutex_lock(&plock);
    /* Not in a coroutine: the waiter runs right here, taking plock itself. */
    assert_true(vmm_co_enter_next(&queue, &plock));
    assert_string_equal(trace, "a");
    vmm_co_enter_all(&queue, &plock);
    assert_string_equal(trace, "abc");
    assert_false(vmm_co_enter_next(&queue, &plock));
    pthread_mutex_unlock(&plock);
}

/* ---- CoRwlock ---------------------------------------------------------------- */

static VmmCoRwlock rw;

typedef struct RwOp {
    char name;
    char kind;      /* 'r' read, 'w' write, 'u' read then upgrade, 'd' write then downgrade */
} RwOp;

static void co_rw(void *opaque) VMM_NO_TSA
{
    RwOp *op = opaque;

    if (op->kind == 'r' || op->kind == 'u') {
        vmm_co_rwlock_rdlock(&rw);
    } else {
        vmm_co_rwlock_wrlock(&rw);
    }
    mark(op->name);
    vmm_coroutine_yield();
    if (op->kind == 'u') {
        vmm_co_rwlock_upgrade(&rw);
        mark('^');
        vmm_coroutine_yield();
    } else if (op->kind == 'd') {
        vmm_co_rwlock_downgrade(&rw);
        mark('v');
        vmm_coroutine_yield();
    }
    mark((char)(op->name - 'a' + 'A'));
    vmm_co_rwlock_unlock(&rw);
}

static VmmCoroutine *start(RwOp *op)
{
    VmmCoroutine *co = vmm_coroutine_create(co_rw, op, NULL);

    vmm_coroutine_enter(co);
    return co;
}

static void test_rwlock_readers_share_writer_waits(void **state)
{
    (void)state;
    RwOp a = { 'a', 'r' }, b = { 'b', 'r' }, c = { 'c', 'w' }, d = { 'd', 'r' };

    vmm_co_rwlock_init(&rw);
    reset_trace();
    VmmCoroutine *ca = start(&a), *cb = start(&b);
    assert_string_equal(trace, "ab");           /* readers share */
    VmmCoroutine *cc = start(&c);
    VmmCoroutine *cd = start(&d);
    /* The writer waits for the readers; the later reader queues behind the
     * writer instead of joining the readers (no writer starvation). */
    assert_string_equal(trace, "ab");
    vmm_coroutine_enter(ca);
    drain();
    assert_string_equal(trace, "abA");
    vmm_coroutine_enter(cb);
    drain();
    assert_string_equal(trace, "abABc");
    vmm_coroutine_enter(cc);
    drain();
    assert_string_equal(trace, "abABcCd");
    vmm_coroutine_enter(cd);
    drain();
    assert_string_equal(trace, "abABcCdD");
}

static void test_rwlock_fifo_tickets(void **state)
{
    (void)state;
    RwOp w1 = { 'a', 'w' }, r1 = { 'b', 'r' }, r2 = { 'c', 'r' }, w2 = { 'd', 'w' },
         r3 = { 'e', 'r' };

    vmm_co_rwlock_init(&rw);
    reset_trace();
    VmmCoroutine *c1 = start(&w1), *c2 = start(&r1), *c3 = start(&r2), *c4 = start(&w2),
                 *c5 = start(&r3);
    assert_string_equal(trace, "a");
    vmm_coroutine_enter(c1);
    drain();
    /* Both queued readers go in together, the writer behind them waits. */
    assert_string_equal(trace, "aAbc");
    vmm_coroutine_enter(c2);
    drain();
    vmm_coroutine_enter(c3);
    drain();
    assert_string_equal(trace, "aAbcBCd");
    vmm_coroutine_enter(c4);
    drain();
    vmm_coroutine_enter(c5);
    drain();
    assert_string_equal(trace, "aAbcBCdDeE");
}

static void test_rwlock_downgrade(void **state)
{
    (void)state;
    RwOp w = { 'a', 'd' }, r1 = { 'b', 'r' }, r2 = { 'c', 'r' }, w2 = { 'd', 'w' };

    vmm_co_rwlock_init(&rw);
    reset_trace();
    VmmCoroutine *ca = start(&w), *cb = start(&r1), *cc = start(&r2), *cd = start(&w2);
    assert_string_equal(trace, "a");
    vmm_coroutine_enter(ca);        /* downgrade: queued readers come in */
    drain();
    assert_string_equal(trace, "avbc");
    /* The writer behind them waits for all three readers. */
    vmm_coroutine_enter(ca);
    drain();
    vmm_coroutine_enter(cb);
    drain();
    assert_string_equal(trace, "avbcAB");
    vmm_coroutine_enter(cc);
    drain();
    assert_string_equal(trace, "avbcABCd");
    vmm_coroutine_enter(cd);
    drain();
    assert_string_equal(trace, "avbcABCdD");
}

static void test_rwlock_upgrade(void **state)
{
    (void)state;
    RwOp u = { 'a', 'u' }, r = { 'b', 'r' }, u2 = { 'c', 'u' };

    vmm_co_rwlock_init(&rw);
    /* Sole reader, nobody waiting: upgrades at once. */
    reset_trace();
    VmmCoroutine *ca = start(&u);
    vmm_coroutine_enter(ca);
    assert_string_equal(trace, "a^");
    vmm_coroutine_enter(ca);
    assert_string_equal(trace, "a^A");

    /* With another reader: waits for it as a writer. */
    reset_trace();
    VmmCoroutine *cc = start(&u2), *cb = start(&r);
    assert_string_equal(trace, "cb");
    vmm_coroutine_enter(cc);                    /* upgrade: must wait */
    drain();
    assert_string_equal(trace, "cb");
    vmm_coroutine_enter(cb);                    /* reader leaves */
    drain();
    assert_string_equal(trace, "cbB^");
    vmm_coroutine_enter(cc);
    drain();
    assert_string_equal(trace, "cbB^C");
}

/* ---- a holder and its waiters in different iothreads ------------------------------ */

typedef struct Cross {
    VmmCoMutex m;
    int inside;
    int violations;
    int done;
    int finished;
    VmmAioContext *ctx[2];
} Cross;

static void co_cross(void *opaque)
{
    Cross *x = opaque;

    for (int i = 0; i < 200; i++) {
        vmm_co_mutex_lock(&x->m);
        if (x->inside++) {
            x->violations++;
        }
        /* Move to the other iothread while holding it. */
        vmm_aio_co_reschedule_self(x->ctx[i & 1]);
        x->inside--;
        vmm_co_mutex_unlock(&x->m);
    }
    if (__atomic_add_fetch(&x->finished, 1, __ATOMIC_SEQ_CST) == 8) {
        co_set_flag(&x->done);
    }
}

static void test_mutex_across_iothreads(void **state)
{
    (void)state;
    VmmIOThread *io[2];
    Cross x = { .inside = 0 };

    for (int i = 0; i < 2; i++) {
        io[i] = vmm_iothread_new("co-lock-io", NULL, NULL);
        assert_non_null(io[i]);
        x.ctx[i] = vmm_iothread_get_context(io[i]);
    }
    for (int i = 0; i < 8; i++) {
        vmm_aio_co_schedule(x.ctx[i & 1], vmm_coroutine_create(co_cross, &x, NULL));
    }
    assert_true(co_wait_flag(&x.done, 20000));
    assert_int_equal(x.violations, 0);
    for (int i = 0; i < 2; i++) {
        vmm_iothread_destroy(io[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mutex_fifo),
#if !VMM_CO_TSAN  /* fork: TSan loses track of fibers in the child */
        cmocka_unit_test(test_mutex_end_holding_reported),
#endif
#if !VMM_CO_TSAN  /* fork: TSan loses track of fibers in the child */
        cmocka_unit_test(test_mutex_unlock_not_held),
#endif
        cmocka_unit_test(test_queue_wait_next_restart),
        cmocka_unit_test(test_queue_enter_next_outside),
        cmocka_unit_test(test_rwlock_readers_share_writer_waits),
        cmocka_unit_test(test_rwlock_fifo_tickets),
        cmocka_unit_test(test_rwlock_downgrade),
        cmocka_unit_test(test_rwlock_upgrade),
        cmocka_unit_test(test_mutex_across_iothreads),
    };

    return cmocka_run_group_tests_name("co-lock", tests, setup, NULL);
}
