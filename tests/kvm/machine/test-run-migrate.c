/* SPDX-License-Identifier: MIT */
/*
 * Real KVM: vmmkit-run's snapshot, restore and migration, driven through
 * its control socket as an operator's script would.
 *  1. vmmkit-run (seccomp on) runs the self-checking `soak` guest; at
 *     round 3 "pause" then "snapshot PATH" then "stop"; a second
 *     vmmkit-run --restore PATH (seccomp on) on the same disk goes on from
 *     the next round, its checks passing; "stop".  The same snapshot's
 *     stream form through a FIFO ("snapshot FIFO", then --restore FIFO on
 *     a copy of the disk as it was) goes on the same way.
 *  2. vmmkit-run --incoming ADDRESS (seccomp on) waits; another
 *     vmmkit-run (seccomp on: its filter lets the outgoing stream
 *     connection through) runs the guest and at round 3 gets "migrate ADDRESS": it answers "ok
 *     stopped" and exits 0; the guest goes on in the first one.  Once
 *     over a Unix socket, once over TCP on the loopback interface.
 *
 * usage: test-run-migrate VMMKIT-RUN VMLINUZ INITRAMFS
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
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
#include <sys/ioctl.h>
#include <net/if.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "vmmkit/vmmkit.h"

static const char *run_path, *kernel, *initrd;

#define OUT_MAX (1 << 20)

typedef struct Run {
    pid_t pid;
    int out;                    /* its stdout (the console), non-blocking */
    char buf[OUT_MAX];
    size_t len;
} Run;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void drain(Run *r)
{
    for (;;) {
        ssize_t n = read(r->out, r->buf + r->len, OUT_MAX - 1 - r->len);
        if (n <= 0) {
            return;
        }
        fwrite(r->buf + r->len, 1, (size_t)n, stderr);
        r->len += (size_t)n;
        r->buf[r->len] = '\0';
    }
}

static void spawn(Run *r, const char *const *argv)
{
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    r->len = 0;
    r->buf[0] = '\0';
    r->pid = fork();
    assert_true(r->pid >= 0);
    if (r->pid == 0) {
        int null = open("/dev/null", O_RDONLY);
        dup2(null, 0);
        dup2(p[1], 1);
        execv(run_path, (char *const *)argv);
        _exit(127);
    }
    close(p[1]);
    r->out = p[0];
    fcntl(r->out, F_SETFL, O_NONBLOCK);
}

static long last_count(const char *s)
{
    long last = -1;
    for (const char *p = s; (p = strstr(p, "VMMKIT-COUNT ")); p++) {
        char *end;
        long n = strtol(p + 13, &end, 10);
        if (*end == '\r' || *end == '\n') {
            last = n;
        }
    }
    return last;
}

/* Until the console shows round @n (the run must not end first). */
static void wait_round(Run *r, long n)
{
    double t0 = now();
    while (last_count(r->buf) < n) {
        struct pollfd p = { .fd = r->out, .events = POLLIN };
        poll(&p, 1, 200);
        drain(r);
        assert_null(strstr(r->buf, "VMMKIT-FAIL"));
        assert_int_equal(waitpid(r->pid, NULL, WNOHANG), 0);
        if (now() - t0 > 300) {
            fail_msg("no round %ld after 300 s; console:\n%s", n, r->buf);
        }
    }
}

static int wait_exit(Run *r)
{
    int st;
    double t0 = now();
    while (waitpid(r->pid, &st, WNOHANG) == 0) {
        drain(r);
        assert_true(now() - t0 < 120);
        usleep(50 * 1000);
    }
    drain(r);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int connect_retry(const char *path, Run *r)
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
        drain(r);
        assert_int_equal(waitpid(r->pid, NULL, WNOHANG), 0);
        assert_true(now() - t0 < 120);
        usleep(50 * 1000);
    }
}

static const char *command(int fd, const char *cmd, Run *r)
{
    static char line[256];
    char req[160];
    int n = snprintf(req, sizeof(req), "%s\n", cmd);
    assert_int_equal(write(fd, req, (size_t)n), n);
    size_t len = 0;
    double t0 = now();
    while (len < sizeof(line) - 1) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        assert_true(now() - t0 < 300);
        if (poll(&p, 1, 200) <= 0) {
            drain(r);
            continue;
        }
        assert_int_equal(read(fd, line + len, 1), 1);
        if (line[len] == '\n') {
            break;
        }
        len++;
    }
    line[len] = '\0';
    fprintf(stderr, "# api: %s -> %s\n", cmd, line);
    return line;
}

/* The rounds in @a then @b: consecutive, at least @min after @a's last. */
static void check_continues(const char *a, const char *b, int min)
{
    size_t n = strlen(a) + strlen(b) + 1;
    char *all = malloc(n);
    snprintf(all, n, "%s%s", a, b);
    long prev = -1, before = last_count(a);
    int after = 0;
    for (const char *p = all; (p = strstr(p, "VMMKIT-COUNT ")); p++) {
        char *end;
        long v = strtol(p + 13, &end, 10);
        if (*end != '\r' && *end != '\n') {
            continue;
        }
        if (prev >= 0 && v != prev + 1) {
            fail_msg("round %ld after round %ld", v, prev);
        }
        prev = v;
        after += v > before;
    }
    free(all);
    assert_true(after >= min);
    assert_null(strstr(b, "VMMKIT-FAIL"));
    fprintf(stderr, "# rounds went on from %ld to %ld\n", before, prev);
}

static void new_disk(const char *path)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 8 << 20), 0);
    close(fd);
}

#define SOAK "console=ttyS0 quiet panic=-1 vmmkit.mode=soak"

static Run a, b, c;

/* The stream form through a FIFO: "snapshot run.fifo" is copied to the
 * regular file run.stream, which later feeds "--restore run.fifo". */
static void *fifo_to_file(void *arg)
{
    size_t *total = arg;
    int in = open("run.fifo", O_RDONLY | O_CLOEXEC);
    int out = open("run.stream", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    static char buf[1 << 16];
    ssize_t n;
    while (in >= 0 && out >= 0 && (n = read(in, buf, sizeof(buf))) > 0) {
        *total += write(out, buf, (size_t)n) == n ? (size_t)n : 0;
    }
    close(in);
    close(out);
    return NULL;
}

static void *file_to_fifo(void *arg)
{
    (void)arg;
    int out = open("run.fifo", O_WRONLY | O_CLOEXEC);
    int in = open("run.stream", O_RDONLY | O_CLOEXEC);
    static char buf[1 << 16];
    ssize_t n;
    while (in >= 0 && out >= 0 && (n = read(in, buf, sizeof(buf))) > 0) {
        if (write(out, buf, (size_t)n) != n) {
            break;
        }
    }
    close(in);
    close(out);
    return NULL;
}

static void copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(in >= 0 && out >= 0);
    static char buf[1 << 16];
    ssize_t n;
    while ((n = read(in, buf, sizeof(buf))) > 0) {
        assert_int_equal(write(out, buf, (size_t)n), n);
    }
    close(in);
    close(out);
}

static void test_snapshot_restore(void **state)
{
    (void)state;
    new_disk("run-disk.img");
    const char *argv1[] = { run_path, "--kernel", kernel, "--initrd", initrd, "--memory",
                            "256M", "--cpus", "2", "--seccomp", "on", "--disk", "run-disk.img",
                            "--api-socket", "a.sock", "--append", SOAK, NULL };
    spawn(&a, argv1);
    int fd = connect_retry("a.sock", &a);
    wait_round(&a, 3);
    assert_string_equal(command(fd, "pause", &a), "ok paused");
    assert_string_equal(command(fd, "snapshot run.snap", &a), "ok paused");
    /* The stream form, to a FIFO. */
    unlink("run.fifo");
    assert_int_equal(mkfifo("run.fifo", 0600), 0);
    size_t stream_bytes = 0;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, fifo_to_file, &stream_bytes), 0);
    assert_string_equal(command(fd, "snapshot run.fifo", &a), "ok paused");
    pthread_join(t, NULL);
    assert_true(stream_bytes > (1 << 20));
    char enoent[128];
    snprintf(enoent, sizeof(enoent), "error %s", vmm_strerror(-ENOENT));
    assert_string_equal(command(fd, "snapshot /nonexistent/dir/x", &a), enoent);
    command(fd, "stop", &a);
    close(fd);
    assert_int_equal(wait_exit(&a), 130);
    copy_file("run-disk.img", "run-disk2.img");     /* the disk at the snapshot */

    const char *argv2[] = { run_path, "--restore", "run.snap", "--seccomp", "on", "--disk",
                            "run-disk.img", "--api-socket", "b.sock", NULL };
    spawn(&b, argv2);
    fd = connect_retry("b.sock", &b);
    wait_round(&b, last_count(a.buf) + 3);
    command(fd, "stop", &b);
    close(fd);
    assert_int_equal(wait_exit(&b), 130);
    check_continues(a.buf, b.buf, 3);

    /* --restore from the FIFO (RAM copied in), on the saved disk. */
    const char *argv3[] = { run_path, "--restore", "run.fifo", "--seccomp", "on", "--disk",
                            "run-disk2.img", "--api-socket", "c.sock", NULL };
    spawn(&c, argv3);
    assert_int_equal(pthread_create(&t, NULL, file_to_fifo, NULL), 0);
    fd = connect_retry("c.sock", &c);
    wait_round(&c, last_count(a.buf) + 3);
    command(fd, "stop", &c);
    close(fd);
    assert_int_equal(wait_exit(&c), 130);
    pthread_join(t, NULL);
    check_continues(a.buf, c.buf, 3);
    unlink("run.snap");
    unlink("run.fifo");
    unlink("run.stream");
    unlink("run-disk.img");
    unlink("run-disk2.img");
}

/* The loopback interface up (the emulated machine's /init leaves it
 * down); a no-op where it is up. */
static void loopback_up(void)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr = { 0 };
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
    if (s >= 0 && ioctl(s, SIOCGIFFLAGS, &ifr) == 0 && !(ifr.ifr_flags & IFF_UP)) {
        ifr.ifr_flags |= IFF_UP;
        assert_int_equal(ioctl(s, SIOCSIFFLAGS, &ifr), 0);
    }
    if (s >= 0) {
        close(s);
    }
}

static void migrate_via(const char *addr, const char *wait_path)
{
    new_disk("run-disk.img");
    if (wait_path) {
        unlink(wait_path);
    }
    const char *argv_d[] = { run_path, "--incoming", addr, "--seccomp", "on",
                             "--disk", "run-disk.img", "--api-socket", "d.sock", NULL };
    spawn(&b, argv_d);
    /* vmmkit-run opens its control socket, probes KVM, then listens. */
    struct stat st;
    for (int i = 0; i < 600 && wait_path && stat(wait_path, &st) < 0; i++) {
        usleep(100 * 1000);
    }
    const char *argv_s[] = { run_path, "--kernel", kernel, "--initrd", initrd, "--memory",
                             "256M", "--cpus", "2", "--seccomp", "on", "--disk",
                             "run-disk.img", "--api-socket", "s.sock", "--append", SOAK, NULL };
    spawn(&a, argv_s);
    int fd = connect_retry("s.sock", &a);
    wait_round(&a, 3);
    char enoent[128], cmd[160];
    snprintf(enoent, sizeof(enoent), "error %s", vmm_strerror(-ENOENT));
    assert_string_equal(command(fd, "migrate unix:nowhere.sock", &a), enoent);
    snprintf(cmd, sizeof(cmd), "migrate %s", addr);
    /* Over TCP the destination may not listen yet: retry while refused. */
    const char *r;
    for (int i = 0; (r = command(fd, cmd, &a)) && strstr(r, "refused") && i < 600; i++) {
        usleep(100 * 1000);
    }
    assert_string_equal(r, "ok stopped");
    close(fd);
    assert_int_equal(wait_exit(&a), 0);
    int dfd = connect_retry("d.sock", &b);
    wait_round(&b, last_count(a.buf) + 3);
    command(dfd, "stop", &b);
    close(dfd);
    assert_int_equal(wait_exit(&b), 130);
    check_continues(a.buf, b.buf, 3);
    unlink("run-disk.img");
}

static void test_migrate(void **state)
{
    (void)state;
    migrate_via("unix:mig-in.sock", "mig-in.sock");
}

static void test_migrate_tcp(void **state)
{
    (void)state;
    loopback_up();
    migrate_via("tcp:127.0.0.1:47017", NULL);
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
        cmocka_unit_test(test_snapshot_restore),
        cmocka_unit_test(test_migrate),
        cmocka_unit_test(test_migrate_tcp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
