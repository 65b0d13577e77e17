/* SPDX-License-Identifier: MIT */
/* Attributes for the threads the library creates (vCPUs, iothreads, the
 * machine's waiter, thread-pool workers). */
#ifndef VMMKIT_UTIL_THREAD_H
#define VMMKIT_UTIL_THREAD_H

#include <pthread.h>
#include <signal.h>

/* 1 MiB stacks instead of glibc's 8 MiB.  The size matters less than the
 * shape: a stack mapping smaller than 2 MiB cannot hold a transparent huge
 * page, so on a host with THP "always" a mostly idle thread stack stays a
 * few 4 KiB pages instead of a 2 MiB page (measured: 2 MiB of the VMM's
 * overhead in bench-boot).  Deep work runs on coroutine stacks, which are
 * sized separately (aio/coroutine/pool.c). */
#define VMM_THREAD_STACK_SIZE (1u << 20)

/* pthread_attr_init() plus the library's stack size; the caller destroys
 * it.  Returns 0 or a positive errno, like pthread functions. */
static inline int vk_thread_attr_init(pthread_attr_t *attr)
{
    int r = pthread_attr_init(attr);
    if (r == 0) {
        r = pthread_attr_setstacksize(attr, VMM_THREAD_STACK_SIZE);
        if (r) {
            pthread_attr_destroy(attr);
        }
    }
    return r;
}

/* Start a detached library thread (worker, reclaimer) with the library's
 * stack size and every signal blocked: signals belong to the program's own
 * threads.  Returns 0 or a positive errno. */
static inline int vk_thread_start_detached(void *(*fn)(void *), void *arg)
{
    pthread_attr_t attr;
    sigset_t all, old;
    pthread_t th;

    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int r = vk_thread_attr_init(&attr);
    if (r == 0) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        r = pthread_create(&th, &attr, fn, arg);
        pthread_attr_destroy(&attr);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return r;
}

#endif
