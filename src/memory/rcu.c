/* SPDX-License-Identifier: MIT */
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "memory/rcu.h"
#include "util/compiler.h"
#include "util/lock.h"
#include "util/log.h"
#include "util/thread.h"

#ifdef VMM_RCU_TSAN
char vk_rcu_tsan_token;
#endif

static pthread_key_t rcu_key;
static pthread_once_t rcu_once = PTHREAD_ONCE_INIT;
static __thread bool rcu_registered;

static void rcu_thread_exit(void *arg)
{
    (void)arg;
    if (rcu_registered) {
        urcu_memb_unregister_thread();
        rcu_registered = false;
    }
}

static void rcu_key_init(void)
{
    (void)pthread_key_create(&rcu_key, rcu_thread_exit);
}

void vk_rcu_register_thread(void)
{
    if (vk_likely(rcu_registered)) {
        return;
    }
    pthread_once(&rcu_once, rcu_key_init);
    urcu_memb_register_thread();
    rcu_registered = true;
    /* A non-NULL value makes the key's destructor run at thread exit. */
    (void)pthread_setspecific(rcu_key, (void *)1);
}

/* ---- Deferred reclamation ---------------------------------------------------
 *
 * One process-wide reclaimer thread, started on the first vk_rcu_call() and
 * alive until the process exits (as liburcu's call_rcu thread is).  Queued
 * heads form a FIFO under rcu_q_lock (map updates are rare: slots and BARs).
 * The reclaimer takes the whole batch, waits one grace period for all of it,
 * then runs the callbacks.  Heads still queued at exit stay reachable from
 * rcu_q_head, so leak checkers do not count them.
 *
 * struct rcu_head is liburcu's: its `next` node links our queue and `func`
 * holds the callback.
 */
static VmmMutex rcu_q_lock = { PTHREAD_MUTEX_INITIALIZER };
static pthread_cond_t rcu_q_cond = PTHREAD_COND_INITIALIZER;
static struct cds_wfcq_node *rcu_q_head VMM_GUARDED_BY(rcu_q_lock);
static struct cds_wfcq_node **rcu_q_tail VMM_GUARDED_BY(rcu_q_lock) = &rcu_q_head;
static pthread_once_t rcu_reclaimer_once = PTHREAD_ONCE_INIT;
static bool rcu_reclaimer_failed;

static struct rcu_head *rcu_of(struct cds_wfcq_node *n)
{
    return n ? caa_container_of(n, struct rcu_head, next) : NULL;
}

static void *rcu_reclaimer(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "vmmkit-rcu");
    for (;;) {
        vk_mutex_lock(&rcu_q_lock);
        while (!rcu_q_head) {
            pthread_cond_wait(&rcu_q_cond, &rcu_q_lock.m);
        }
        struct rcu_head *batch = rcu_of(rcu_q_head);
        rcu_q_head = NULL;
        rcu_q_tail = &rcu_q_head;
        vk_mutex_unlock(&rcu_q_lock);

        /* Every reader that could see an object of the batch started
         * before its vk_rcu_call(), hence before this grace period. */
        urcu_memb_synchronize_rcu();
        vk_rcu_tsan_acquire();     /* pairs with vk_rcu_read_unlock() */
        while (batch) {
            struct rcu_head *next = rcu_of(batch->next.next);
            batch->func(batch);
            batch = next;
        }
    }
    return NULL;
}

static void rcu_reclaimer_start(void)
{
    rcu_reclaimer_failed = vk_thread_start_detached(rcu_reclaimer, NULL) != 0;
}

void vk_rcu_call(struct rcu_head *head, void (*fn)(struct rcu_head *head))
{
    pthread_once(&rcu_reclaimer_once, rcu_reclaimer_start);
    head->func = fn;
    if (vk_unlikely(rcu_reclaimer_failed)) {
        /* No thread to defer to (EAGAIN at start-up): wait here instead.
         * The caller is outside any read-side section (it is a writer). */
        vk_warn("rcu: no reclaimer thread; freeing synchronously");
        urcu_memb_synchronize_rcu();
        vk_rcu_tsan_acquire();
        fn(head);
        return;
    }
    head->next.next = NULL;
    vk_mutex_lock(&rcu_q_lock);
    *rcu_q_tail = &head->next;
    rcu_q_tail = &head->next.next;
    pthread_cond_signal(&rcu_q_cond);
    vk_mutex_unlock(&rcu_q_lock);
}
