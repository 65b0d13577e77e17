/* SPDX-License-Identifier: MIT */
/* Helpers shared by the aio tests. */
#ifndef AIO_TEST_UTIL_H
#define AIO_TEST_UTIL_H

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

/*
 * Run @fn in a child process and collect what it wrote to stderr.
 * Returns the wait status.  Misuse aborts in debug builds and only logs
 * in release builds: either way the message must name the misuse.
 */
static inline int run_in_child(void (*fn)(void), char *buf, size_t len)
{
    int fds[2];
    size_t got = 0;
    int status = 0;

    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        signal(SIGABRT, SIG_DFL);
        fn();
        _exit(0);
    }
    close(fds[1]);
    for (;;) {
        ssize_t r = read(fds[0], buf + got, len - 1 - got);
        if (r <= 0) {
            break;
        }
        got += r;
        if (got == len - 1) {
            break;
        }
    }
    buf[got] = 0;
    close(fds[0]);
    waitpid(pid, &status, 0);
    return status;
}

/* The child ended the way VMM_MISUSE promises: abort (debug) or exit 0. */
static inline void assert_misuse_outcome(int status)
{
#if VMM_DEBUG_CHECKS
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
#else
    assert_true(WIFEXITED(status));
#endif
}

static inline long env_long(const char *name, long def)
{
    const char *e = getenv(name);
    return e && *e ? strtol(e, NULL, 0) : def;
}

#endif
