/* SPDX-License-Identifier: MIT */
/*
 * Real KVM: vmmkit-run's snapshot, restore and migration, driven through
 * its control socket as an operator's script would.
 *  1. vmmkit-run (seccomp on) runs the self-checking `soak` guest; at
 *     round 3 "pause" then "snapshot PATH" then "stop"; a second
 *     vmmkit-run --restore PATH (seccomp on) on the same disk goes on from
 *     the next round, its checks passing; "stop".  The same snapshot's
 *     stream form through a FIFO ("snapshot FIFO", then --restore FIFO on
 *     a copy of the disk as it was) goes on the same way.  The machine has
 *     virtio-net on a tap (in the test's own network namespace, IPv6
 *     addresses that exist only there) and vhost-vsock: before the save
 *     and after each restore (on the same tap, with another vsock CID
 *     each time) a stream from the host reaches the guest over TCP and
 *     over vsock with its checksum checked at both ends, and the host
 *     pings the guest.  A --restore without the --vsock is refused with
 *     a message (exit status 2).
 *  2. vmmkit-run --incoming ADDRESS (seccomp on) waits; another
 *     vmmkit-run (seccomp on: its filter lets the outgoing stream
 *     connection through) runs the guest and at round 3 gets "migrate ADDRESS": it answers "ok
 *     stopped" and exits 0; the guest goes on in the first one.  Once
 *     over a Unix socket, once over TCP on the loopback interface.  Over
 *     the Unix socket the machine has --net and --vsock: the destination
 *     is on a second tap (the source holds the first until it exits; its
 *     host address moves over after the hand-over, as an operator's
 *     network would follow the guest) and another vsock CID; the host
 *     pings the guest and streams reach it over TCP and vsock, checksummed,
 *     before and after.  A vsock stream from the host is open when the
 *     migration starts (vhost-vsock waits out the pre-copy paused): the
 *     hand-over breaks it (the guest is told to reset).
 *
 * usage: test-run-migrate VMMKIT-RUN VMLINUZ INITRAMFS NETCHECK
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/ioctl.h>
#include <net/if.h>
#include <linux/if_tun.h>
#include <sched.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "vmmkit/vmmkit.h"

static const char *run_path, *kernel, *initrd, *netcheck;

/* The network of test_snapshot_restore, in this test's own namespace. */
#define TAP "vmr1"
#define TAP_MAC "52:54:00:7e:57:21"
#define GUEST_ADDR "fd00:7e57::2"
#define TAP2 "vmr2"                 /* a migration's destination's */
#define HOST_MAC "02:00:00:7e:57:01"    /* both taps' host side */


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

/* @argv with its stdout (and with @err its stderr too) read into @r. */
static void spawn_out(Run *r, const char *const *argv, bool err)
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
        if (err) {
            dup2(p[1], 2);
        }
        execv(run_path, (char *const *)argv);
        _exit(127);
    }
    close(p[1]);
    r->out = p[0];
    fcntl(r->out, F_SETFL, O_NONBLOCK);
}

static void spawn(Run *r, const char *const *argv)
{
    spawn_out(r, argv, false);
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
    r->pid = 0;
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

/* netcheck on the host side with @args (its output on stderr), while @r's
 * console is drained: it must say OK (the checksum matched at both ends)
 * within 180 s. */
static void host_netcheck(Run *r, char *const args[])
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(2, 1);
        execv(netcheck, args);
        _exit(127);
    }
    int st;
    double t0 = now();
    while (waitpid(pid, &st, WNOHANG) == 0) {
        drain(r);
        if (now() - t0 > 180) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            fail_msg("netcheck %s: no answer in 180 s; console:\n%s", args[1], r->buf);
        }
        usleep(50 * 1000);
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fail_msg("netcheck %s %s failed (status 0x%x); console:\n%s", args[1], args[2], st,
                 r->buf);
    }
}

/* The guest of @r (vsock CID @cid) on the network: the host pings it, and
 * @len bytes reach its netcheck over TCP and over vsock (a new connection
 * each), the checksum checked at both ends. */
static void check_net(Run *r, const char *cid, const char *len)
{
    assert_int_equal(system("ping6 -c 1 -w 60 " GUEST_ADDR " >/dev/null"), 0);
    char *tcp[] = { (char *)netcheck, "tcp-send", GUEST_ADDR, "5021", (char *)len, NULL };
    host_netcheck(r, tcp);
    char *vsock[] = { (char *)netcheck, "vsock-send", (char *)cid, "6021", (char *)len, NULL };
    host_netcheck(r, vsock);
    drain(r);
    assert_null(strstr(r->buf, "VMMKIT-FAIL"));
}

static Run a, b, c;

/* A destination that takes the connection and drops it at once. */
static void *accept_and_drop(void *arg)
{
    int c = accept(*(int *)arg, NULL, NULL);
    if (c >= 0) {
        close(c);
    }
    return NULL;
}

/* A migration to a destination that hangs up fails, and the machine goes
 * on with its vhost-vsock running again (the source pauses it for the
 * pre-copy): a new vsock connection carries data to the guest. */
static void failed_migration(Run *r, int fd, const char *cid)
{
    int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX, .sun_path = "dead.sock" };
    unlink(sa.sun_path);
    assert_true(l >= 0);
    assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(l, 1), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, accept_and_drop, &l), 0);
    const char *res = command(fd, "migrate unix:dead.sock", r);
    assert_int_equal(strncmp(res, "error", 5), 0);
    pthread_join(th, NULL);
    close(l);
    unlink(sa.sun_path);
    char *vsock[] = { (char *)netcheck, "vsock-send", (char *)cid, "6021", "65536", NULL };
    host_netcheck(r, vsock);
}

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
                            "--net", "tap=" TAP ",mac=" TAP_MAC, "--vsock", "cid=53",
                            "--api-socket", "a.sock", "--append", SOAK, NULL };
    spawn(&a, argv1);
    int fd = connect_retry("a.sock", &a);
    wait_round(&a, 3);
    assert_non_null(strstr(a.buf, "VMMKIT-NET-UP mac=" TAP_MAC));
    check_net(&a, "53", "65536");
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

    /* Without the --vsock the saved machine had: refused, and said why. */
    const char *argv_bad[] = { run_path, "--restore", "run.snap", "--seccomp", "on", "--disk",
                               "run-disk.img", "--net", "tap=" TAP, NULL };
    spawn_out(&b, argv_bad, true);
    assert_int_equal(wait_exit(&b), 2);
    assert_non_null(strstr(b.buf, "the snapshot has 3 devices, the machine 2"));
    assert_non_null(strstr(b.buf, "its devices must match the saved ones"));

    /* The same tap, another vsock CID. */
    const char *argv2[] = { run_path, "--restore", "run.snap", "--seccomp", "on", "--disk",
                            "run-disk.img", "--net", "tap=" TAP, "--vsock", "cid=54",
                            "--api-socket", "b.sock", NULL };
    spawn(&b, argv2);
    fd = connect_retry("b.sock", &b);
    wait_round(&b, last_count(a.buf) + 3);
    check_net(&b, "54", "1048576");
    command(fd, "stop", &b);
    close(fd);
    assert_int_equal(wait_exit(&b), 130);
    check_continues(a.buf, b.buf, 3);

    /* --restore from the FIFO (RAM copied in), on the saved disk. */
    const char *argv3[] = { run_path, "--restore", "run.fifo", "--seccomp", "on", "--disk",
                            "run-disk2.img", "--net", "tap=" TAP, "--vsock", "cid=55",
                            "--api-socket", "c.sock", NULL };
    spawn(&c, argv3);
    assert_int_equal(pthread_create(&t, NULL, file_to_fifo, NULL), 0);
    fd = connect_retry("c.sock", &c);
    wait_round(&c, last_count(a.buf) + 3);
    check_net(&c, "55", "1048576");
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

/* With @net, the source has --net on TAP and --vsock cid=56, the
 * destination --net on TAP2 and --vsock cid=57. */
static void migrate_via(const char *addr, const char *wait_path, bool net)
{
    new_disk("run-disk.img");
    if (wait_path) {
        unlink(wait_path);
    }
    const char *argv_d[] = { run_path, "--incoming", addr, "--seccomp", "on",
                             "--disk", "run-disk.img", "--api-socket", "d.sock",
                             net ? "--net" : NULL, "tap=" TAP2, "--vsock", "cid=57", NULL };
    spawn(&b, argv_d);
    /* vmmkit-run opens its control socket, probes KVM, then listens. */
    struct stat st;
    for (int i = 0; i < 600 && wait_path && stat(wait_path, &st) < 0; i++) {
        usleep(100 * 1000);
    }
    const char *argv_s[] = { run_path, "--kernel", kernel, "--initrd", initrd, "--memory",
                             "256M", "--cpus", "2", "--seccomp", "on", "--disk",
                             "run-disk.img", "--api-socket", "s.sock", "--append", SOAK,
                             net ? "--net" : NULL, "tap=" TAP ",mac=" TAP_MAC, "--vsock",
                             "cid=56", NULL };
    spawn(&a, argv_s);
    int fd = connect_retry("s.sock", &a);
    wait_round(&a, 3);
    if (net) {
        assert_non_null(strstr(a.buf, "VMMKIT-NET-UP mac=" TAP_MAC));
        check_net(&a, "56", "65536");
        failed_migration(&a, fd, "56");
    }
    char enoent[128], cmd[160];
    snprintf(enoent, sizeof(enoent), "error %s", vmm_strerror(-ENOENT));
    assert_string_equal(command(fd, "migrate unix:nowhere.sock", &a), enoent);
    /* With @net, 4 GiB over vsock open when the migration starts. */
    pid_t bg = -1;
    if (net) {
        bg = fork();
        assert_true(bg >= 0);
        if (bg == 0) {
            dup2(2, 1);
            execl(netcheck, netcheck, "vsock-send", "56", "6021", "4294967296", (char *)NULL);
            _exit(127);
        }
        usleep(2000 * 1000);
        assert_int_equal(waitpid(bg, NULL, WNOHANG), 0);
    }
    snprintf(cmd, sizeof(cmd), "migrate %s", addr);
    /* Over TCP the destination may not listen yet: retry while refused. */
    const char *r;
    for (int i = 0; (r = command(fd, cmd, &a)) && strstr(r, "refused") && i < 600; i++) {
        usleep(100 * 1000);
    }
    assert_string_equal(r, "ok stopped");
    close(fd);
    assert_int_equal(wait_exit(&a), 0);
    if (net) {
        /* The stream ends with the source's vhost, unfinished. */
        int bst = 0;
        double t0 = now();
        while (waitpid(bg, &bst, WNOHANG) == 0) {
            if (now() - t0 > 120) {
                kill(bg, SIGKILL);
                waitpid(bg, &bst, 0);
                break;
            }
            usleep(50 * 1000);
        }
        assert_true(WIFEXITED(bst) && WEXITSTATUS(bst) == 1);
        assert_int_equal(system("ip -6 addr del fd00:7e57::1/64 dev " TAP " && "
                                "ip -6 addr add fd00:7e57::1/64 dev " TAP2), 0);
    }
    int dfd = connect_retry("d.sock", &b);
    wait_round(&b, last_count(a.buf) + 3);
    if (net) {
        check_net(&b, "57", "1048576");
        assert_int_equal(system("ip -6 addr del fd00:7e57::1/64 dev " TAP2 " && "
                                "ip -6 addr add fd00:7e57::1/64 dev " TAP), 0);
    }
    command(dfd, "stop", &b);
    close(dfd);
    assert_int_equal(wait_exit(&b), 130);
    check_continues(a.buf, b.buf, 3);
    unlink("run-disk.img");
}

/* After each test: a vmmkit-run a failed check left running is killed
 * (it would hold its tap, CID and sockets in the next test). */
static int reap_runs(void **state)
{
    (void)state;
    Run *runs[] = { &a, &b, &c };
    for (int i = 0; i < 3; i++) {
        if (runs[i]->pid > 0 && waitpid(runs[i]->pid, NULL, WNOHANG) == 0) {
            kill(runs[i]->pid, SIGKILL);
            waitpid(runs[i]->pid, NULL, 0);
        }
        runs[i]->pid = 0;
    }
    return 0;
}

static void test_migrate(void **state)
{
    (void)state;
    migrate_via("unix:mig-in.sock", "mig-in.sock", true);
}

static void test_migrate_tcp(void **state)
{
    (void)state;
    loopback_up();
    migrate_via("tcp:127.0.0.1:47017", NULL, false);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s VMMKIT-RUN VMLINUZ INITRAMFS NETCHECK\n", argv[0]);
        return 2;
    }
    run_path = argv[1];
    kernel = argv[2];
    initrd = argv[3];
    netcheck = argv[4];
    signal(SIGPIPE, SIG_IGN);
    /* A network namespace of the test's own (its children inherit it), a
     * persistent tap TAP (it outlives each vmmkit-run) with fd00:7e57::1/64
     * on it: addresses no route leads out of. */
    if (unshare(CLONE_NEWNET) < 0) {
        perror("unshare(CLONE_NEWNET)");
        return 1;
    }
    FILE *f = fopen("/proc/sys/net/ipv6/conf/default/accept_dad", "w");
    if (!f || fputs("0", f) < 0 || fclose(f) != 0) {
        fprintf(stderr, "accept_dad: %s\n", strerror(errno));
        return 1;
    }
    int tap = vmm_virtio_net_open_tap(TAP);
    if (tap < 0 || ioctl(tap, TUNSETPERSIST, 1) < 0 ||
        system("ip link set lo up && ip link set " TAP " address " HOST_MAC " && "
               "ip link set " TAP " up && ip -6 addr add fd00:7e57::1/64 dev " TAP) != 0) {
        fprintf(stderr, "the tap %s: %s\n", TAP, vmm_strerror(tap < 0 ? tap : -errno));
        return 1;
    }
    close(tap);
    /* The second, with the first's MAC (the guest's neighbour entry for
     * the host stays right when the address moves over). */
    tap = vmm_virtio_net_open_tap(TAP2);
    if (tap < 0 || ioctl(tap, TUNSETPERSIST, 1) < 0 ||
        system("ip link set " TAP2 " address " HOST_MAC " && ip link set " TAP2 " up") != 0) {
        fprintf(stderr, "the tap %s: %s\n", TAP2, vmm_strerror(tap < 0 ? tap : -errno));
        return 1;
    }
    close(tap);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_snapshot_restore, reap_runs),
        cmocka_unit_test_teardown(test_migrate, reap_runs),
        cmocka_unit_test_teardown(test_migrate_tcp, reap_runs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
