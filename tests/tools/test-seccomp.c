/* SPDX-License-Identifier: MIT */
/*
 * vmmkit-run's seccomp allow list (tools/seccomp-policy.c), installed in a
 * child process: what the VMM's main loop does must keep working under it,
 * and what it must not do must fail with EPERM.
 */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "seccomp-policy.h"

/* Child results. */
enum { CHILD_OK = 0, CHILD_INSTALL_FAILED = 10, CHILD_POLL_FAILED = 11, CHILD_ALLOWED = 12 };

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * A poll() with a timeout, interrupted by a stop and a continue (no handler
 * runs), resumes through restart_syscall, as it does when io_uring task
 * work interrupts vmmkit-run's main loop.  Under a filter without
 * restart_syscall the resumed wait fails with EPERM.
 */
static void test_restarted_poll(void **state)
{
    (void)state;
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(ready[0]);
        if (run_seccomp_install(false) < 0) {
            _exit(CHILD_INSTALL_FAILED);
        }
        ssize_t w = write(ready[1], "r", 1);
        (void)w;
        int fds[2];
        if (pipe(fds) < 0) {
            _exit(CHILD_POLL_FAILED);
        }
        struct pollfd p = { .fd = fds[0], .events = POLLIN };
        int r = poll(&p, 1, 1500);          /* nothing arrives: times out */
        _exit(r == 0 ? CHILD_OK : CHILD_POLL_FAILED);
    }
    close(ready[1]);
    char c;
    assert_int_equal(read(ready[0], &c, 1), 1);
    close(ready[0]);
    usleep(300 * 1000);                     /* the child sits in poll() */
    assert_int_equal(kill(pid, SIGSTOP), 0);
    siginfo_t si;
    assert_int_equal(waitid(P_PID, (id_t)pid, &si, WSTOPPED), 0);
    assert_int_equal(kill(pid, SIGCONT), 0);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), CHILD_OK);
}

/* The filter does refuse: a new socket (the control socket is made before
 * the filter) fails with EPERM, and the process goes on. */
static void test_refused_call(void **state)
{
    (void)state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (run_seccomp_install(false) < 0) {
            _exit(CHILD_INSTALL_FAILED);
        }
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        _exit(fd < 0 && errno == EPERM ? CHILD_OK : CHILD_ALLOWED);
    }
    int st;
    double t0 = now();
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(now() - t0 < 30);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), CHILD_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_restarted_poll),
        cmocka_unit_test(test_refused_call),
    };
    return cmocka_run_group_tests_name("seccomp-policy", tests, NULL, NULL);
}
