/* SPDX-License-Identifier: MIT */
/*
 * Real KVM: the control socket of tools/vmmkit-run (--api-socket), driven
 * the way an operator's script would.  vmmkit-run boots Debian's kernel
 * with the demo initramfs in "wait" mode (the guest stays up); we connect,
 * query, pause during the boot (no console output while paused), resume,
 * check the errors for a bad command and a resume while running, wait for
 * the guest's /init, then stop: vmmkit-run exits 130 and removes the socket.
 * Then the seccomp allow list: vmmkit-run with the filter on, two vCPUs and
 * a disk boots a guest that writes a marker, reboots (vmmkit-run rebuilds
 * the machine under the filter), writes and reads back the pattern and
 * powers off: exit 0, every step on the console, the pattern in the image.
 * Then --console tty and --rng: the guest reads /dev/hwrng and echoes on
 * /dev/hvc0 a line written to vmmkit-run's stdin, under the filter.
 * Last, a guest that goes silent ("wait" mode) under --console-timeout and
 * --verbose: vmmkit-run reports progress while it runs, then stops it with
 * the reason and its last console lines, exit 1, long before any test
 * timeout.
 *
 * usage: test-api-socket VMMKIT-RUN VMLINUZ INITRAMFS
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "vmmkit/vmmkit.h"

static const char *run_path, *kernel, *initrd;

#define OUT_MAX (1 << 20)
static char out[OUT_MAX];
static size_t out_len;
static int console_fd = -1;
static int stdin_fd = -1;       /* vmmkit-run's stdin when >= 0, else /dev/null */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Read what the guest printed so far (non-blocking); returns the bytes. */
static size_t drain(void)
{
    size_t got = 0;
    for (;;) {
        ssize_t n = read(console_fd, out + out_len, OUT_MAX - 1 - out_len);
        if (n <= 0) {
            return got;
        }
        fwrite(out + out_len, 1, (size_t)n, stderr);
        out_len += (size_t)n;
        out[out_len] = '\0';
        got += (size_t)n;
    }
}

/* Send one command line, return the one-line answer (without '\n'). */
static const char *command(int fd, const char *cmd)
{
    static char line[256];
    char req[64];
    int n = snprintf(req, sizeof(req), "%s\n", cmd);
    assert_int_equal(write(fd, req, (size_t)n), n);
    size_t len = 0;
    double t0 = now();
    while (len < sizeof(line) - 1) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        assert_true(now() - t0 < 120);
        if (poll(&p, 1, 1000) <= 0) {
            drain();
            continue;
        }
        ssize_t r = read(fd, line + len, 1);
        assert_true(r == 1);
        if (line[len] == '\n') {
            break;
        }
        len++;
    }
    line[len] = '\0';
    fprintf(stderr, "# api: %s -> %s\n", cmd, line);
    return line;
}

static int connect_retry(const char *path, pid_t child)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    double t0 = now();
    for (;;) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            return fd;
        }
        close(fd);
        /* vmmkit-run must still be there. */
        assert_int_equal(waitpid(child, NULL, WNOHANG), 0);
        assert_true(now() - t0 < 60);
        usleep(20 * 1000);
    }
}

/* Start vmmkit-run on the kernel and initrd with @cpus vCPUs, the filter
 * on, the extra options @opts (NULL-terminated, may be NULL) and @append;
 * its console (and with @with_stderr its messages) becomes console_fd
 * (non-blocking) and the output buffer starts empty.  Returns its pid. */
static pid_t spawn_run(const char *cpus, const char *const *opts, const char *append,
                       bool with_stderr)
{
    const char *argv[32] = { run_path, "--kernel", kernel, "--initrd", initrd, "--memory",
                             "256M", "--cpus", cpus, "--seccomp", "on" };
    size_t n = 11;
    for (; opts && *opts && n < 28; opts++) {
        argv[n++] = *opts;
    }
    argv[n++] = "--append";
    argv[n++] = append;
    argv[n] = NULL;
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        int null = open("/dev/null", O_RDONLY);
        dup2(stdin_fd >= 0 ? stdin_fd : null, 0);
        dup2(p[1], 1);
        if (with_stderr) {
            dup2(p[1], 2);
        }
        execv(run_path, (char *const *)argv);
        _exit(127);
    }
    close(p[1]);
    console_fd = p[0];
    fcntl(console_fd, F_SETFL, O_NONBLOCK);
    out_len = 0;
    out[0] = '\0';
    return child;
}

/* Collect vmmkit-run's output until it exits (within @limit_s seconds);
 * returns its exit status. */
static int wait_run(pid_t child, double limit_s)
{
    int status = 0;
    double t0 = now();
    while (waitpid(child, &status, WNOHANG) == 0) {
        assert_true(now() - t0 < limit_s);
        struct pollfd pf = { .fd = console_fd, .events = POLLIN };
        poll(&pf, 1, 500);
        drain();
    }
    drain();
    close(console_fd);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void test_api_socket(void **state)
{
    (void)state;
    /* The answers name the states as the library does. */
    char running[32], paused[32];
    snprintf(running, sizeof(running), "ok %s", vmm_machine_state_name(VMM_MACHINE_RUNNING));
    snprintf(paused, sizeof(paused), "ok %s", vmm_machine_state_name(VMM_MACHINE_PAUSED));
    char sock[108];
    snprintf(sock, sizeof(sock), "/tmp/vmmkit-api-%d.sock", (int)getpid());
    pid_t child = spawn_run("1", (const char *[]){ "--api-socket", sock, NULL },
                            "console=ttyS0 quiet panic=-1 vmmkit.mode=wait", false);

    int fd = connect_retry(sock, child);
    assert_string_equal(command(fd, "query"), running);
    /* Pause during the boot: nothing reaches the console meanwhile. */
    assert_string_equal(command(fd, "pause"), paused);
    assert_string_equal(command(fd, "query"), paused);
    drain();
    usleep(1000 * 1000);
    assert_int_equal(drain(), 0);
    assert_string_equal(command(fd, "resume"), running);
    /* Errors are answers, not the end of the connection. */
    assert_true(strncmp(command(fd, "resume"), "error ", 6) == 0);
    assert_string_equal(command(fd, "bogus"), "error unknown command bogus");
    assert_string_equal(command(fd, "query"), running);
    /* The boot completes after the pause. */
    double t0 = now();
    while (!strstr(out, "VMMKIT-WAITING")) {
        assert_true(now() - t0 < 300);
        struct pollfd pf = { .fd = console_fd, .events = POLLIN };
        poll(&pf, 1, 500);
        drain();
    }
    assert_string_equal(command(fd, "query"), running);
    /* A second client is served too. */
    int fd2 = connect_retry(sock, child);
    assert_string_equal(command(fd2, "query"), running);
    close(fd2);
    /* stop ends the machine; vmmkit-run exits 130 and removes the socket. */
    assert_true(strncmp(command(fd, "stop"), "ok ", 3) == 0);
    int status = 0;
    t0 = now();
    while (waitpid(child, &status, WNOHANG) == 0) {
        assert_true(now() - t0 < 60);
        drain();
        usleep(50 * 1000);
    }
    drain();
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 130);
    struct stat st;
    assert_int_equal(stat(sock, &st), -1);
    assert_int_equal(errno, ENOENT);
    close(fd);
    close(console_fd);
}

static void test_seccomp_disk_reboot(void **state)
{
    (void)state;
    static const char img[] = "seccomp-disk.img";
    int dfd = open(img, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(dfd >= 0);
    assert_int_equal(ftruncate(dfd, 4 << 20), 0);
    pid_t child = spawn_run("2", (const char *[]){ "--disk", img, NULL },
                            "console=ttyS0 quiet panic=-1 vmmkit.tag=sc vmmkit.mode=reboot-demo",
                            false);
    assert_int_equal(wait_run(child, 400), 0);
    assert_null(strstr(out, "VMMKIT-FAIL"));
    const char *a = strstr(out, "VMMKIT-REBOOTING");
    assert_non_null(a);
    const char *b = strstr(a, "VMMKIT-AFTER-REBOOT");
    assert_non_null(b);
    assert_non_null(strstr(b, "VMMKIT-DEMO-OK"));
    /* The pattern reached the image. */
    char buf[64];
    assert_int_equal(pread(dfd, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
    assert_memory_equal(buf, "VMMKIT-PATTERN-sc\n", 18);
    close(dfd);
    unlink(img);
}

/* --console tty --rng: virtio-console on vmmkit-run's stdin/stdout (stdin
 * no longer feeds the serial port) and virtio-rng, seccomp on. */
static void test_console_rng_flags(void **state)
{
    (void)state;
    int in[2];
    assert_int_equal(pipe2(in, O_CLOEXEC), 0);
    stdin_fd = in[0];
    pid_t child = spawn_run("1", (const char *[]){ "--console", "tty", "--rng", NULL },
                            "console=ttyS0 quiet panic=-1 vmmkit.mode=devices", false);
    stdin_fd = -1;
    close(in[0]);
    double t0 = now();
    while (!strstr(out, "VMMKIT-HVC-READY")) {
        assert_true(now() - t0 < 300);
        assert_int_equal(waitpid(child, NULL, WNOHANG), 0);
        struct pollfd pf = { .fd = console_fd, .events = POLLIN };
        poll(&pf, 1, 500);
        drain();
    }
    static const char line[] = "typed-on-stdin-7\n";
    assert_int_equal(write(in[1], line, sizeof(line) - 1), (ssize_t)sizeof(line) - 1);
    assert_int_equal(wait_run(child, 300), 0);
    close(in[1]);
    assert_null(strstr(out, "VMMKIT-FAIL"));
    assert_non_null(strstr(out, "VMMKIT-RNG current=virtio_rng"));
    assert_non_null(strstr(out, "VMMKIT-HVC-GOT typed-on-stdin-7"));
    assert_non_null(strstr(out, "VMMKIT-HVC-ECHO typed-on-stdin-7"));  /* from /dev/hvc0 */
}

#define SILENT_S 25

static void test_silent_guest(void **state)
{
    (void)state;
    char limit[16];
    snprintf(limit, sizeof(limit), "%d", SILENT_S);
    pid_t child = spawn_run("1", (const char *[]){ "--verbose", "--console-timeout", limit, NULL },
                            "console=ttyS0 quiet panic=-1 vmmkit.mode=wait", true);
    /* Silent for SILENT_S after the boot: well inside this bound. */
    assert_int_equal(wait_run(child, 240), 1);
    /* Progress while it ran, then the reason. */
    assert_non_null(strstr(out, " exits: vCPU0 "));
    char reason[64];
    snprintf(reason, sizeof(reason), "the guest printed nothing for %d s", SILENT_S);
    const char *r = strstr(out, reason);
    assert_non_null(r);
    /* The last lines it printed, when it got as far as printing (a boot
     * slower than the bound is stopped with nothing printed: also right). */
    const char *w = strstr(out, "VMMKIT-WAITING");
    if (w) {
        assert_non_null(strstr(r, "vmmkit-run: | VMMKIT-WAITING"));
    } else {
        assert_non_null(strstr(r, "the guest printed nothing at all"));
    }
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s VMMKIT-RUN VMLINUZ INITRAMFS\n", argv[0]);
        return 2;
    }
    run_path = argv[1];
    kernel = argv[2];
    initrd = argv[3];
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_api_socket),
        cmocka_unit_test(test_seccomp_disk_reboot),
        cmocka_unit_test(test_console_rng_flags),
        cmocka_unit_test(test_silent_guest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
