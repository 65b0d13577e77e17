/* SPDX-License-Identifier: MIT */
/*
 * aio/iothread.c - a thread that runs its own AioContext.
 *
 * Stop protocol: the destroyer sets `stopping` (release) and notifies the
 * context; the thread's blocking poll returns, it sees the flag (acquire),
 * runs what is still pending with non-blocking polls, and exits.
 */
#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "aio/aio-priv.h"
#include "util/thread.h"

VmmAioContext *aio_context_new_named(const VmmAioContextOptions *opts, const char *name,
                                     int *errp);

#define IOTHREAD_POLL_MAX_NS_DEFAULT 32768   /* as QEMU's iothreads */

struct VmmIOThread {
    pthread_t tid;
    VmmAioContext *ctx;
    char *name;
    bool stopping;            /* atomic */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool started;             /* under lock */
};

static void *iothread_run(void *opaque)
{
    VmmIOThread *t = opaque;

    aio_set_current_context(t->ctx);
    pthread_mutex_lock(&t->lock);
    t->started = true;
    pthread_cond_signal(&t->cond);
    pthread_mutex_unlock(&t->lock);

    /* Pairs with the store-release in vmm_iothread_destroy(). */
    while (!vk_atomic_load_acquire(&t->stopping)) {
        vmm_aio_poll(t->ctx, true);
    }
    while (vmm_aio_poll(t->ctx, false)) {
        /* finish what was scheduled before the stop */
    }
    aio_set_current_context(NULL);
    return NULL;
}

VmmIOThread *vmm_iothread_new(const char *name, const VmmAioContextOptions *opts, int *errp)
{
    VmmAioContextOptions def = {
        .size = sizeof(def),
        .fdmon = VMM_FDMON_AUTO,
        .poll_max_ns = IOTHREAD_POLL_MAX_NS_DEFAULT,
    };
    VmmIOThread *t = calloc(1, sizeof(*t));
    int err = -ENOMEM;

    if (!t) {
        goto fail;
    }
    t->name = strdup(name ? name : "iothread");
    if (!t->name) {
        goto fail;
    }
    t->ctx = aio_context_new_named(opts ? opts : &def, t->name, &err);
    if (!t->ctx) {
        goto fail;
    }
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->cond, NULL);
    pthread_attr_t attr;
    err = -vk_thread_attr_init(&attr);
    if (!err) {
        err = -pthread_create(&t->tid, &attr, iothread_run, t);
        pthread_attr_destroy(&attr);
    }
    if (err) {
        pthread_mutex_destroy(&t->lock);
        pthread_cond_destroy(&t->cond);
        vmm_aio_context_unref(t->ctx);
        goto fail;
    }
    char tname[16];
    snprintf(tname, sizeof(tname), "%s", t->name);
    pthread_setname_np(t->tid, tname);
    pthread_mutex_lock(&t->lock);
    while (!t->started) {
        pthread_cond_wait(&t->cond, &t->lock);
    }
    pthread_mutex_unlock(&t->lock);
    return t;

fail:
    if (t) {
        free(t->name);
        free(t);
    }
    if (errp) {
        *errp = err;
    }
    return NULL;
}

VmmAioContext *vmm_iothread_get_context(VmmIOThread *t)
{
    return t ? t->ctx : NULL;
}

void vmm_iothread_destroy(VmmIOThread *t)
{
    if (!t) {
        return;
    }
    if (pthread_equal(t->tid, pthread_self())) {
        VMM_MISUSE("iothread '%s' destroyed from its own thread", t->name);
        return;
    }
    /* Pairs with the load-acquire in iothread_run(). */
    vk_atomic_store_release(&t->stopping, true);
    vmm_aio_notify(t->ctx);
    pthread_join(t->tid, NULL);
    pthread_mutex_destroy(&t->lock);
    pthread_cond_destroy(&t->cond);
    vmm_aio_context_unref(t->ctx);
    free(t->name);
    free(t);
}
