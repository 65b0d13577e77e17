/* SPDX-License-Identifier: MIT */
/*
 * Stress: hundreds of coroutines spread over several iothreads pass
 * through a CoMutex, a CoRwlock and a CoQueue-based bounded buffer for a
 * while, migrating between iothreads (also while holding locks), and
 * check the invariants each lock promises.  Data guarded by the locks is
 * plain (non-atomic) memory, so ThreadSanitizer checks that the locks
 * really order it.
 *
 * Tunables: VMM_CO_STRESS_MS (default 3000), VMM_CO_STRESS_COROUTINES
 * (default 300), VMM_CO_STRESS_IOTHREADS (default 3).
 */
#include "co-test-util.h"

#define MAX_IO 8
#define BUF_CAP 8

typedef struct Stress {
    VmmAioContext *ctx[MAX_IO];
    int nio;
    int64_t deadline;

    VmmCoMutex m;
    int m_inside;                   /* guarded by m */
    long m_count;                   /* guarded by m */

    VmmCoRwlock rw;
    int readers;                    /* atomic: readers inside */
    int writer;                     /* guarded by rw (write) */
    long rw_value[4];               /* guarded by rw: all equal */

    VmmCoMutex qm;                  /* guards the buffer */
    VmmCoQueue not_full, not_empty;
    int buf[BUF_CAP];
    int buf_n;
    long produced_sum, consumed_sum; /* guarded by qm */
    int producers_left;             /* guarded by qm */

    int violations;                 /* atomic */
    int finished;                   /* atomic */
    int ncoroutines;
    int done;
} Stress;

typedef struct Worker {
    Stress *s;
    unsigned seed;
    int role;       /* 0 mutex, 1 rwlock, 2 producer, 3 consumer */
} Worker;

static void violation(Stress *s)
{
    __atomic_add_fetch(&s->violations, 1, __ATOMIC_SEQ_CST);
}

static unsigned rnd(Worker *w)
{
    w->seed = w->seed * 1103515245u + 12345u;
    return w->seed >> 16;
}

/* Yield in some way: a plain reschedule to this or another iothread. */
static void wander(Worker *w)
{
    Stress *s = w->s;

    vmm_aio_co_reschedule_self(s->ctx[rnd(w) % (unsigned)s->nio]);
}

static bool time_left(Stress *s)
{
    return vmm_clock_ns() < s->deadline;
}

static void mutex_round(Worker *w)
{
    Stress *s = w->s;

    vmm_co_mutex_lock(&s->m);
    if (s->m_inside++ != 0) {
        violation(s);
    }
    s->m_count++;
    if (rnd(w) % 4 == 0) {
        wander(w);                  /* holder moves thread */
    }
    if (--s->m_inside != 0) {
        violation(s);
    }
    vmm_co_mutex_unlock(&s->m);
}

static void rw_round(Worker *w) VMM_NO_TSA
{
    Stress *s = w->s;
    unsigned r = rnd(w) % 8;

    if (r < 5) {
        vmm_co_rwlock_rdlock(&s->rw);
        __atomic_add_fetch(&s->readers, 1, __ATOMIC_SEQ_CST);
        if (s->writer || s->rw_value[0] != s->rw_value[3]) {
            violation(s);
        }
        if (r == 0) {
            wander(w);
        }
        __atomic_sub_fetch(&s->readers, 1, __ATOMIC_SEQ_CST);
        vmm_co_rwlock_unlock(&s->rw);
    } else {
        bool downgrade = r == 7, upgrade = r == 6;

        if (upgrade) {
            vmm_co_rwlock_rdlock(&s->rw);
            vmm_co_rwlock_upgrade(&s->rw);
        } else {
            vmm_co_rwlock_wrlock(&s->rw);
        }
        if (s->writer++ || __atomic_load_n(&s->readers, __ATOMIC_SEQ_CST)) {
            violation(s);
        }
        for (int i = 0; i < 4; i++) {
            s->rw_value[i]++;
            if (i == 1 && rnd(w) % 2) {
                wander(w);          /* readers must not see the torn update */
            }
        }
        s->writer--;
        if (downgrade) {
            vmm_co_rwlock_downgrade(&s->rw);
            __atomic_add_fetch(&s->readers, 1, __ATOMIC_SEQ_CST);
            if (s->writer || s->rw_value[0] != s->rw_value[3]) {
                violation(s);
            }
            __atomic_sub_fetch(&s->readers, 1, __ATOMIC_SEQ_CST);
        }
        vmm_co_rwlock_unlock(&s->rw);
    }
}

static void producer(Worker *w)
{
    Stress *s = w->s;

    do {
        int v = (int)(rnd(w) % 1000) + 1;

        vmm_co_mutex_lock(&s->qm);
        while (s->buf_n == BUF_CAP) {
            vmm_co_queue_wait(&s->not_full, &s->qm);
        }
        s->buf[s->buf_n++] = v;
        s->produced_sum += v;
        vmm_co_queue_next(&s->not_empty);
        vmm_co_mutex_unlock(&s->qm);
        if (rnd(w) % 4 == 0) {
            wander(w);
        }
    } while (time_left(s));
    vmm_co_mutex_lock(&s->qm);
    if (--s->producers_left == 0) {
        vmm_co_queue_restart_all(&s->not_empty);    /* consumers: finish */
    }
    vmm_co_mutex_unlock(&s->qm);
}

static void consumer(Worker *w)
{
    Stress *s = w->s;

    vmm_co_mutex_lock(&s->qm);
    for (;;) {
        while (s->buf_n == 0 && s->producers_left > 0) {
            vmm_co_queue_wait(&s->not_empty, &s->qm);
        }
        if (s->buf_n == 0) {
            break;
        }
        int v = s->buf[--s->buf_n];
        if (v < 1 || v > 1000) {
            violation(s);
        }
        s->consumed_sum += v;
        vmm_co_queue_next(&s->not_full);
        if (rnd(w) % 8 == 0) {
            vmm_co_mutex_unlock(&s->qm);
            wander(w);
            vmm_co_mutex_lock(&s->qm);
        }
    }
    vmm_co_mutex_unlock(&s->qm);
}

static void co_worker(void *opaque)
{
    Worker *w = opaque;
    Stress *s = w->s;

    /* Every worker makes at least one round, however late it starts: the
     * checks after the run (some mutex rounds, some rwlock writes, some
     * items produced) must not depend on the scheduler starting workers
     * before the deadline on a loaded machine. */
    switch (w->role) {
    case 0:
        do {
            mutex_round(w);
        } while (time_left(s));
        break;
    case 1:
        do {
            rw_round(w);
        } while (time_left(s));
        break;
    case 2:
        producer(w);
        break;
    default:
        consumer(w);
        break;
    }
    if (__atomic_add_fetch(&s->finished, 1, __ATOMIC_SEQ_CST) == s->ncoroutines) {
        co_set_flag(&s->done);
    }
}

static void test_stress(void **state)
{
    (void)state;
    long ms = co_env_long("VMM_CO_STRESS_MS", 3000);
    int n = (int)co_env_long("VMM_CO_STRESS_COROUTINES", 300);
    int nio = (int)co_env_long("VMM_CO_STRESS_IOTHREADS", 3);
    VmmIOThread *io[MAX_IO];
    Stress *s = calloc(1, sizeof(*s));
    Worker *w = calloc((size_t)n, sizeof(*w));

    if (nio < 2) {
        nio = 2;
    }
    if (nio > MAX_IO) {
        nio = MAX_IO;
    }
    s->nio = nio;
    s->ncoroutines = n;
    for (int i = 0; i < nio; i++) {
        io[i] = vmm_iothread_new("co-stress", NULL, NULL);
        assert_non_null(io[i]);
        s->ctx[i] = vmm_iothread_get_context(io[i]);
    }
    vmm_co_mutex_init(&s->m);
    vmm_co_rwlock_init(&s->rw);
    vmm_co_mutex_init(&s->qm);
    vmm_co_queue_init(&s->not_full);
    vmm_co_queue_init(&s->not_empty);
    for (int i = 0; i < n; i++) {
        w[i].role = i % 4;
        if (w[i].role == 2) {
            s->producers_left++;
        }
    }
    s->deadline = vmm_clock_ns() + ms * 1000000LL;
    for (int i = 0; i < n; i++) {
        w[i].s = s;
        w[i].seed = (unsigned)i * 2654435761u + 1;
        vmm_aio_co_schedule(s->ctx[i % nio], vmm_coroutine_create(co_worker, &w[i], NULL));
    }
    assert_true(co_wait_flag(&s->done, ms + 60000));
    for (int i = 0; i < nio; i++) {
        vmm_iothread_destroy(io[i]);
    }
    assert_int_equal(s->violations, 0);
    assert_int_equal(s->m_inside, 0);
    assert_true(s->m_count > 0);
    assert_true(s->rw_value[0] == s->rw_value[3] && s->rw_value[0] > 0);
    assert_int_equal(s->buf_n, 0);
    assert_int_equal(s->produced_sum, s->consumed_sum);
    assert_true(s->produced_sum > 0);
    print_message("# stress: %d coroutines, %d iothreads, %ld ms: %ld mutex rounds, "
                  "%ld rwlock writes, %ld produced\n", n, nio, ms, s->m_count,
                  s->rw_value[0], s->produced_sum);
    free(w);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stress),
    };

    return cmocka_run_group_tests_name("co-stress", tests, NULL, NULL);
}
