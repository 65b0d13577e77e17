/* SPDX-License-Identifier: MIT */
/*
 * Stress (suite 'concurrency', run under ThreadSanitizer): coroutines in two
 * iothreads write and read back their own regions of one image through a
 * BlockBackend, while the main loop keeps replacing the raw node's child
 * (two file nodes on the same image: io_uring and thread pool), moving the
 * subtree between the iothreads, draining, and taking the write lock.
 * Every read must return what that coroutine last wrote.
 * VMM_STRESS_SECONDS (default 2) bounds the run.
 */
#include "block-test-util.h"
#include "block/block-int.h"

#define WORKERS_PER_THREAD 3
#define REGION (64 * 1024)

typedef struct Worker {
    VmmBlockBackend *blk;
    int id;
    int stop;                /* atomic */
    int done;                /* atomic */
    long ops;
    int errors;
    char msg[160];
} Worker;

static void worker_entry(void *opaque)
{
    Worker *w = opaque;
    int64_t base = (int64_t)w->id * REGION;
    unsigned char *wbuf = g_malloc(REGION), *rbuf = g_malloc(REGION);
    guint32 seed = 1234 + w->id;
    GRand *rnd = g_rand_new_with_seed(seed);

    while (!__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE) && !w->errors) {
        int64_t off = g_rand_int_range(rnd, 0, REGION - 1);
        int64_t len = g_rand_int_range(rnd, 1, (gint32)MIN(16384, REGION - off));
        unsigned char tag = (unsigned char)(w->ops * 31 + w->id);
        for (int64_t i = 0; i < len; i++) {
            wbuf[i] = (unsigned char)(tag + i);
        }
        struct iovec wv[2] = { { wbuf, (size_t)len / 2 }, { wbuf + len / 2,
                                                          (size_t)(len - len / 2) } };
        int ret = vmm_blk_co_pwritev(w->blk, base + off, len, wv, 2, 0);
        if (ret < 0) {
            snprintf(w->msg, sizeof(w->msg), "write %d: %s", w->id, strerror(-ret));
            w->errors++;
            break;
        }
        struct iovec rv = { rbuf, (size_t)len };
        ret = vmm_blk_co_preadv(w->blk, base + off, len, &rv, 1, 0);
        if (ret < 0) {
            snprintf(w->msg, sizeof(w->msg), "read %d: %s", w->id, strerror(-ret));
            w->errors++;
            break;
        }
        if (memcmp(rbuf, wbuf, len)) {
            snprintf(w->msg, sizeof(w->msg), "worker %d: data mismatch at %" PRId64
                     " len %" PRId64, w->id, base + off, len);
            w->errors++;
            break;
        }
        /* Atomic: the main loop reads it to know the workers progress. */
        __atomic_store_n(&w->ops, w->ops + 1, __ATOMIC_RELAXED);
    }
    g_rand_free(rnd);
    g_free(wbuf);
    g_free(rbuf);
    __atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);
    vmm_aio_wait_kick();
}

static bool workers_done(Worker *w, int n)
{
    for (int i = 0; i < n; i++) {
        if (!__atomic_load_n(&w[i].done, __ATOMIC_ACQUIRE)) {
            return false;
        }
    }
    return true;
}

static long workers_ops(Worker *w, int n)
{
    long ops = 0;
    for (int i = 0; i < n; i++) {
        ops += __atomic_load_n(&w[i].ops, __ATOMIC_RELAXED);
    }
    return ops;
}

/* The main loop's side: replace the child, move the tree, drain, take the
 * write lock, until @secs have passed and both sides made some progress
 * (the checks below): on a loaded machine (TSan, two cores) the workers
 * may barely start within @secs, which proves nothing.  A side stuck for
 * good still fails, after a 60 s cap.  Returns the number of rounds. */
static long graph_churn(double secs, VmmBlockNode *top, VmmBlockNode *fa, VmmBlockNode *fb,
                        VmmBlockBackend *blk, VmmAioContext **ctx, Worker *w, int nw)
{
    GError *err = NULL;
    int64_t start = vmm_clock_ns();
    int64_t end = start + (int64_t)(secs * 1e9), cap = start + 60 * 1000000000LL;
    long rounds = 0;
    while (vmm_clock_ns() < end ||
           ((rounds <= 4 || workers_ops(w, nw) <= nw) && vmm_clock_ns() < cap)) {
        VmmBlockNode *next = rounds % 2 ? fa : fb;
        switch (rounds % 4) {
        case 0:
        case 2:
            assert_int_equal(vmm_block_replace_child(top, "file", next, &err), 0);
            break;
        case 1:
            assert_int_equal(vmm_blk_set_context(blk, ctx[(rounds / 4) % 2 ? 0 : 1], &err),
                             0);
            assert_int_equal(vmm_block_replace_child(top, "file", next, &err), 0);
            break;
        default:
            vmm_block_drained_begin(top);
            assert_int_equal(vmm_block_node_in_flight(top), 0);
            vmm_block_drained_end(top);
            vmm_graph_wrlock();
            vmm_graph_wrunlock();
            assert_int_equal(vmm_block_replace_child(top, "file", next, &err), 0);
            break;
        }
        rounds++;
        /* Let the workers run a little between graph changes. */
        int64_t pause = vmm_clock_ns() + 2000000;
        while (vmm_clock_ns() < pause) {
            vmm_aio_poll(vmm_aio_context_main(), false);
            g_usleep(200);
        }
    }
    return rounds;
}

static void test_stress(void **state)
{
    (void)state;
    const char *env = getenv("VMM_STRESS_SECONDS");
    double secs = env ? atof(env) : 2.0;
    enum { NW = 2 * WORKERS_PER_THREAD };
    char *path = tmpfile_make((int64_t)NW * REGION, true);
    GError *err = NULL;
    int e = 0;

    g_autofree char *o1 = g_strdup_printf("driver=file,node-name=fa,aio=auto,filename=%s",
                                          path);
    g_autofree char *o2 = g_strdup_printf("driver=file,node-name=fb,aio=threads,filename=%s",
                                          path);
    VmmBlockNode *fa = open_ok(o1);
    VmmBlockNode *fb = open_ok(o2);
    VmmBlockNode *top = open_ok("driver=raw,file=fa,node-name=top");
    VmmBlockBackend *blk = vmm_blk_new(NULL, NULL);
    assert_int_equal(vmm_blk_insert(blk, top, &err), 0);

    VmmIOThread *t[2];
    VmmAioContext *ctx[2];
    for (int i = 0; i < 2; i++) {
        t[i] = vmm_iothread_new(i ? "stress-1" : "stress-0", NULL, &e);
        assert_non_null(t[i]);
        ctx[i] = vmm_iothread_get_context(t[i]);
    }
    assert_int_equal(vmm_blk_set_context(blk, ctx[0], &err), 0);

    Worker w[NW];
    memset(w, 0, sizeof(w));
    for (int i = 0; i < NW; i++) {
        w[i].blk = blk;
        w[i].id = i;
        int ce = 0;
        VmmCoroutine *co = vmm_coroutine_create(worker_entry, &w[i], &ce);
        assert_non_null(co);
        vmm_aio_co_enter(ctx[i % 2], co);
    }

    long rounds = graph_churn(secs, top, fa, fb, blk, ctx, w, NW);
    for (int i = 0; i < NW; i++) {
        __atomic_store_n(&w[i].stop, 1, __ATOMIC_RELEASE);
    }
    VMM_AIO_WAIT_WHILE(NULL, !workers_done(w, NW));

    long ops = 0;
    for (int i = 0; i < NW; i++) {
        if (w[i].errors) {
            print_error("%s\n", w[i].msg);
            fail();
        }
        ops += w[i].ops;
    }
    print_message("# %ld graph changes, %ld verified write+read pairs\n", rounds, ops);
    assert_true(rounds > 4);
    assert_true(ops > NW);

    assert_int_equal(vmm_blk_set_context(blk, vmm_aio_context_main(), &err), 0);
    vmm_blk_unref(blk);
    vmm_block_node_unref(top);
    vmm_block_node_unref(fa);
    vmm_block_node_unref(fb);
    for (int i = 0; i < 2; i++) {
        vmm_iothread_destroy(t[i]);
    }
    tmpfile_remove(path);
}

/* Graph-lock readers only: each holds the lock across yields and checks
 * that a pair of values the writer changes together never tears. */
static int pair_a VMM_GUARDED_BY(vmm_graph_lock);
static int pair_b VMM_GUARDED_BY(vmm_graph_lock);

typedef struct LockWorker {
    int stop, done, torn;
    long rounds;
} LockWorker;

static void lock_worker(void *opaque)
{
    LockWorker *lw = opaque;
    while (!__atomic_load_n(&lw->stop, __ATOMIC_ACQUIRE)) {
        vmm_graph_co_rdlock();
        int a = pair_a;
        vmm_co_sleep_ns(NULL, 10000);         /* hold it across a yield */
        if (pair_b != a) {
            lw->torn++;
        }
        vmm_graph_co_rdunlock();
        __atomic_store_n(&lw->rounds, lw->rounds + 1, __ATOMIC_RELAXED);
    }
    __atomic_store_n(&lw->done, 1, __ATOMIC_RELEASE);
    vmm_aio_wait_kick();
}

static bool lock_workers_ran(LockWorker *lw, int n)
{
    for (int i = 0; i < n; i++) {
        if (!__atomic_load_n(&lw[i].rounds, __ATOMIC_RELAXED)) {
            return false;
        }
    }
    return true;
}

static void test_lock_stress(void **state)
{
    (void)state;
    const char *env = getenv("VMM_STRESS_SECONDS");
    double secs = (env ? atof(env) : 2.0) / 2;
    int e = 0;
    VmmIOThread *t[2];
    LockWorker lw[4];
    memset(lw, 0, sizeof(lw));
    for (int i = 0; i < 2; i++) {
        t[i] = vmm_iothread_new("lock-stress", NULL, &e);
    }
    for (int i = 0; i < 4; i++) {
        int ce = 0;
        VmmCoroutine *co = vmm_coroutine_create(lock_worker, &lw[i], &ce);
        vmm_aio_co_enter(vmm_iothread_get_context(t[i % 2]), co);
    }
    /* For @secs, and until every reader got through at least once (60 s
     * cap: a reader starved for good still fails the check below). */
    int64_t start = vmm_clock_ns();
    int64_t end = start + (int64_t)(secs * 1e9), cap = start + 60 * 1000000000LL;
    long writes = 0;
    while (vmm_clock_ns() < end || (!lock_workers_ran(lw, 4) && vmm_clock_ns() < cap)) {
        vmm_graph_wrlock();
        pair_a++;
        g_usleep(50);
        pair_b++;
        vmm_graph_wrunlock();
        writes++;
        vmm_aio_poll(vmm_aio_context_main(), false);
        g_usleep(300);
    }
    for (int i = 0; i < 4; i++) {
        __atomic_store_n(&lw[i].stop, 1, __ATOMIC_RELEASE);
    }
    for (int i = 0; i < 4; i++) {
        VMM_AIO_WAIT_WHILE(NULL, !__atomic_load_n(&lw[i].done, __ATOMIC_ACQUIRE));
        assert_int_equal(lw[i].torn, 0);
        assert_true(lw[i].rounds > 0);
    }
    print_message("# %ld write sections\n", writes);
    assert_int_equal(block_graph_reader_count(), 0);
    for (int i = 0; i < 2; i++) {
        vmm_iothread_destroy(t[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stress),
        cmocka_unit_test(test_lock_stress),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
