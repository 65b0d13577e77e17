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
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
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

/* An outgoing stream connection (vmmkit-run's "migrate ADDRESS") is
 * allowed: socket(AF_UNIX/AF_INET/AF_INET6, SOCK_STREAM|SOCK_CLOEXEC, 0)
 * and connect; any other kind of socket, bind and listen still fail. */
static void test_client_connection(void **state)
{
    (void)state;
    char path[] = "/tmp/vmmkit-seccomp-sockXXXXXX";
    int tmp = mkstemp(path);
    assert_true(tmp >= 0);
    close(tmp);
    unlink(path);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    strcpy(sa.sun_path, path);
    int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(ls >= 0);
    assert_int_equal(bind(ls, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(ls, 1), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (run_seccomp_install(false) < 0) {
            _exit(CHILD_INSTALL_FAILED);
        }
        int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
            write(s, "m", 1) != 1) {
            _exit(CHILD_POLL_FAILED);
        }
        int t = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);   /* allowed */
        if (t < 0) {
            _exit(CHILD_POLL_FAILED);
        }
        struct sockaddr_in6 any = { .sin6_family = AF_INET6 };
        if (bind(t, (struct sockaddr *)&any, sizeof(any)) == 0 || errno != EPERM ||
            listen(t, 1) == 0 || errno != EPERM) {
            _exit(CHILD_ALLOWED);
        }
        const int refused[][2] = { { AF_INET, SOCK_DGRAM | SOCK_CLOEXEC },
                                   { AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC },
                                   { AF_PACKET, SOCK_RAW | SOCK_CLOEXEC },
                                   { AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC } };
        for (unsigned i = 0; i < 4; i++) {
            int u = socket(refused[i][0], refused[i][1], 0);
            if (u >= 0 || errno != EPERM) {
                _exit(CHILD_ALLOWED);
            }
        }
        _exit(CHILD_OK);
    }
    int c = accept(ls, NULL, NULL);
    assert_true(c >= 0);
    char b = 0;
    assert_int_equal(read(c, &b, 1), 1);
    assert_int_equal(b, 'm');
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), CHILD_OK);
    close(c);
    close(ls);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_restarted_poll),
        cmocka_unit_test(test_refused_call),
        cmocka_unit_test(test_client_connection),
    };
    return cmocka_run_group_tests_name("seccomp-policy", tests, NULL, NULL);
}
