/* SPDX-License-Identifier: MIT */
/*
 * Test helpers: run @fn(@arg) in a child process and check it reports API
 * misuse naming @needle.
 *  expect_misuse: a misuse without an errno to return (a void function):
 *    debug builds (VMM_DEBUG_CHECKS) must abort, release builds must log
 *    it and carry on (the child then exits 0).
 *  expect_misuse_errno: a caller mistake for which the header promises an
 *    errno: every build logs it and returns (@fn checks the errno and
 *    exits non-zero if it is wrong); nothing aborts.
 */
#ifndef TEST_DEVICE_MISUSE_H
#define TEST_DEVICE_MISUSE_H

#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static inline int misuse_child(void (*fn)(void *), void *arg, const char *needle)
{
    int pfd[2];
    char out[4096];
    size_t n = 0;
    int status;

    assert_int_equal(pipe(pfd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(pfd[1], STDERR_FILENO);
        close(pfd[0]);
        fn(arg);
        _exit(0);
    }
    close(pfd[1]);
    for (;;) {
        ssize_t r = read(pfd[0], out + n, sizeof(out) - 1 - n);
        if (r <= 0) {
            break;
        }
        n += (size_t)r;
    }
    out[n] = 0;
    close(pfd[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!strstr(out, needle)) {
        fail_msg("misuse message lacks '%s': %s", needle, out);
    }
    return status;
}

static inline void expect_misuse(void (*fn)(void *), void *arg, const char *needle)
{
    int status = misuse_child(fn, arg, needle);

    if (VMM_DEBUG_CHECKS) {
        assert_true(WIFSIGNALED(status));
        assert_int_equal(WTERMSIG(status), SIGABRT);
    } else {
        assert_true(WIFEXITED(status));
    }
}

static inline void expect_misuse_errno(void (*fn)(void *), void *arg, const char *needle)
{
    int status = misuse_child(fn, arg, needle);

    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

#endif
