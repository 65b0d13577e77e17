/* SPDX-License-Identifier: MIT */
/* Helpers shared by the coroutine tests. */
#ifndef CO_TEST_UTIL_H
#define CO_TEST_UTIL_H

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "aio/coroutine/coroutine-int.h"
#include "vmmkit/coroutine.h"

/*
 * glibc declares pthread_self() "const", so the compiler may reuse its
 * value across a yield after which the coroutine runs on another thread.
 * Coroutine code must call it through a getter like this one.
 */
static VMM_NOINLINE VMM_UNUSED pthread_t co_thread_self(void)
{
    __asm__ volatile("");
    return pthread_self();
}

#if VMM_CO_TSAN
/* Tests that fork are left out under TSan (it loses fibers in children). */
#pragma GCC diagnostic ignored "-Wunused-function"
#endif

static inline long co_env_long(const char *name, long def)
{
    const char *e = getenv(name);
    return e && *e ? strtol(e, NULL, 0) : def;
}

/* Poll the main context until *flag becomes true (at most @ms). */
static inline bool co_poll_main_until(int *flag, long ms)
{
    VmmAioContext *m = vmm_aio_context_main();
    int64_t end = vmm_clock_ns() + ms * 1000000LL;

    while (!__atomic_load_n(flag, __ATOMIC_ACQUIRE)) {
        if (vmm_clock_ns() > end) {
            return false;
        }
        vmm_aio_poll(m, false);
        sched_yield();
    }
    return true;
}

/* Wait (without polling anything) until *flag becomes true (at most @ms). */
static inline bool co_wait_flag(int *flag, long ms)
{
    int64_t end = vmm_clock_ns() + ms * 1000000LL;

    while (!__atomic_load_n(flag, __ATOMIC_ACQUIRE)) {
        if (vmm_clock_ns() > end) {
            return false;
        }
        usleep(200);
    }
    return true;
}

static inline void co_set_flag(int *flag)
{
    __atomic_store_n(flag, 1, __ATOMIC_RELEASE);
}

/*
 * Run @fn in a child and collect its stderr.  Misuse aborts in debug
 * builds and only logs in release builds; returns whether it aborted.
 * ThreadSanitizer loses track of fibers in forked children: skip there.
 */
static inline bool co_run_child(void (*fn)(void), char *out, size_t outsz)
{
    int pfd[2];
    pid_t pid;
    int status;
    ssize_t n, got = 0;

    if (VMM_CO_TSAN) {
        skip();
    }
    assert_int_equal(pipe(pfd), 0);
    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        dup2(pfd[1], 2);
        close(pfd[0]);
        signal(SIGABRT, SIG_DFL);
        fn();
        _exit(0);
    }
    close(pfd[1]);
    while ((n = read(pfd[0], out + got, outsz - 1 - (size_t)got)) > 0) {
        got += n;
    }
    out[got] = 0;
    close(pfd[0]);
    waitpid(pid, &status, 0);
    return !WIFEXITED(status) || WEXITSTATUS(status) != 0;
}

#endif
