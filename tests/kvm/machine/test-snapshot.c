/* SPDX-License-Identifier: MIT */
/*
 * Real KVM: snapshot a running Linux guest and restore it in new processes.
 *   test-snapshot VMLINUZ INITRAMFS
 *
 * The guest runs /init's `soak` workload, which checks itself: each round
 * writes a block to its disk and reads it back, re-checks a pattern in
 * memory, and prints "VMMKIT-COUNT n".  A source process boots it, pauses
 * it mid-run, writes a snapshot and is killed (SIGKILL).  Three restore
 * processes then build machines from that one file (clones), each on its
 * own copy of the disk as the source left it: the guest must go on from
 * the source's last round (n+1, n+2, ... on the console, the partial line
 * the source printed included), its own checks must pass, the disk must
 * hold what the guest wrote.  Corrupt, truncated and mismatched snapshots
 * are refused with their reason.
 *
 * The child modes (this program, re-executed):
 *   --source VMLINUZ INITRAMFS DISK SNAP   boot, snapshot at round >= 3, die
 *   --restore SNAP DISK ROUNDS             restore, run ROUNDS rounds, stop
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
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "vmmkit/vmmkit.h"

#define OUT_MAX (1 << 20)
#define DISK_SIZE (8 << 20)
#define MEM (256ull << 20)

static const char *kernel, *initrd;
static char self[4096];

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- Console bookkeeping (both sides) ---------------------------------------- */

typedef struct Console {
    char buf[OUT_MAX];
    size_t len;
} Console;

/* Read what is there; echo it to @echo_fd (-1: no). */
static void con_drain(int fd, Console *c, int echo_fd)
{
    for (;;) {
        ssize_t n = read(fd, c->buf + c->len, OUT_MAX - 1 - c->len);
        if (n <= 0) {
            break;
        }
        if (echo_fd >= 0) {
            ssize_t w = write(echo_fd, c->buf + c->len, (size_t)n);
            (void)w;
        }
        c->len += (size_t)n;
        c->buf[c->len] = '\0';
    }
}

/* The last complete "VMMKIT-COUNT n" line's n, or -1. */
static long last_count(const char *s)
{
    long last = -1;
    for (const char *p = s; (p = strstr(p, "VMMKIT-COUNT ")); p++) {
        char *end;
        long n = strtol(p + 13, &end, 10);
        if (*end == '\n' || (*end == '\r' && end[1] == '\n')) {
            last = n;
        }
    }
    return last;
}

static int count_lines(const char *s, long *first, long *last, bool *consecutive)
{
    int n = 0;
    long prev = -1;
    *consecutive = true;
    for (const char *p = s; (p = strstr(p, "VMMKIT-COUNT ")); p++) {
        char *end;
        long v = strtol(p + 13, &end, 10);
        if (*end != '\n' && *end != '\r') {
            continue;               /* a partial line at the end */
        }
        if (n == 0) {
            *first = v;
        } else if (v != prev + 1) {
            *consecutive = false;
        }
        prev = v;
        *last = v;
        n++;
    }
    return n;
}

static int open_console(int p[2])
{
    if (pipe2(p, O_CLOEXEC) < 0) {
        return -1;
    }
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    return 0;
}

/* ---- Child: the source ---------------------------------------------------------- */

static int run_source(const char *vmlinuz, const char *initramfs, const char *disk,
                      const char *snap)
{
    static Console con;
    int p[2];
    if (open_console(p) < 0) {
        return 10;
    }
    VmmMachineOptions o = { .size = sizeof(o), .kernel = vmlinuz, .initrd = initramfs,
                            .cmdline = "console=ttyS0 quiet panic=-1 vmmkit.mode=soak",
                            .memory = MEM, .cpus = 2, .console_out_fd = p[1] };
    int err = 0;
    VmmMachine *m = vmm_machine_new(&o, &err);
    if (!m || vmm_machine_add_disk(m, disk, false) < 0 || vmm_machine_start(m) < 0) {
        printf("\nSOURCE-ERROR build or start: %s\n", vmm_strerror(err));
        return 11;
    }
    double t0 = now();
    while (last_count(con.buf) < 3) {
        struct pollfd pf[2] = { { .fd = p[0], .events = POLLIN },
                                { .fd = vmm_machine_event_fd(m), .events = POLLIN } };
        poll(pf, 2, 200);
        con_drain(p[0], &con, STDOUT_FILENO);
        if (pf[1].revents || now() - t0 > 400 || strstr(con.buf, "VMMKIT-FAIL")) {
            printf("\nSOURCE-ERROR the guest ended or stalled before round 3\n");
            return 12;
        }
    }
    if (vmm_machine_pause(m) < 0) {
        printf("\nSOURCE-ERROR pause\n");
        return 13;
    }
    con_drain(p[0], &con, STDOUT_FILENO);
    int fd = open(snap, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    double t1 = now();
    int r = fd < 0 ? -errno : vmm_machine_snapshot(m, fd);
    double t2 = now();
    if (r < 0) {
        printf("\nSOURCE-ERROR snapshot: %s\n", vmm_strerror(r));
        return 14;
    }
    close(fd);
    /* The partial line the guest was printing when it stopped. */
    const char *nl = strrchr(con.buf, '\n');
    const char *tail = nl ? nl + 1 : con.buf;
    char tpath[4200];
    snprintf(tpath, sizeof(tpath), "%s.tail", snap);
    FILE *tf = fopen(tpath, "w");
    if (!tf) {
        return 15;
    }
    fputs(tail, tf);
    fclose(tf);
    printf("\nSOURCE-SNAPSHOT count=%ld ms=%.1f\n", last_count(con.buf), (t2 - t1) * 1e3);
    fflush(stdout);
    raise(SIGKILL);                         /* the source dies, no clean-up */
    return 16;
}

/* ---- Child: a restore ----------------------------------------------------------- */

static int run_restore(const char *snap, const char *disk, int rounds)
{
    static Console con;
    int p[2];
    if (open_console(p) < 0) {
        return 20;
    }
    double t0 = now();
    int fd = open(snap, O_RDONLY | O_CLOEXEC);
    VmmMachineOptions o = { .size = sizeof(o), .console_out_fd = p[1] };
    int err = 0;
    VmmMachine *m = fd < 0 ? NULL : vmm_machine_restore(&o, fd, &err);
    if (fd >= 0) {
        close(fd);
    }
    if (!m) {
        printf("\nRESTORE-ERROR restore: %s\n", vmm_strerror(err));
        return 21;
    }
    int r = vmm_machine_add_disk(m, disk, false);
    if (r == 0) {
        r = vmm_machine_start(m);
    }
    double t1 = now();
    if (r < 0) {
        printf("\nRESTORE-ERROR start: %s\n", vmm_strerror(r));
        return 22;
    }
    int seen = 0;
    long first = -1, last = -1;
    bool consecutive;
    int ret = 0;
    while (seen < rounds) {
        struct pollfd pf[2] = { { .fd = p[0], .events = POLLIN },
                                { .fd = vmm_machine_event_fd(m), .events = POLLIN } };
        poll(pf, 2, 200);
        con_drain(p[0], &con, STDOUT_FILENO);
        seen = count_lines(con.buf, &first, &last, &consecutive);
        if (pf[1].revents || strstr(con.buf, "VMMKIT-FAIL")) {
            ret = 23;
            break;
        }
        if (now() - t1 > 150) {
            ret = 24;
            break;
        }
    }
    vmm_machine_stop(m);
    char msg[256] = "";
    vmm_machine_wait(m, -1, msg, sizeof(msg));
    con_drain(p[0], &con, STDOUT_FILENO);
    vmm_machine_free(m);
    printf("\nRESTORE-DONE status=%d restore_ms=%.1f end=%s\n", ret, (t1 - t0) * 1e3, msg);
    return ret;
}

/* ---- The test (parent) ------------------------------------------------------------ */

typedef struct Child {
    pid_t pid;
    int out;
    Console con;
    int status;
} Child;

static void spawn(Child *c, char *const argv[])
{
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    c->pid = fork();
    assert_true(c->pid >= 0);
    if (c->pid == 0) {
        dup2(p[1], STDOUT_FILENO);
        execv(self, argv);
        _exit(127);
    }
    close(p[1]);
    c->out = p[0];
    c->con.len = 0;
    c->con.buf[0] = '\0';
}

/* Collect the children's output until all have exited. */
static void reap(Child *c, int n, double timeout_s)
{
    double t0 = now();
    int left = n;
    for (int i = 0; i < n; i++) {
        fcntl(c[i].out, F_SETFL, O_NONBLOCK);
    }
    while (left) {
        struct pollfd pf[8];
        for (int i = 0; i < n; i++) {
            pf[i] = (struct pollfd){ .fd = c[i].out, .events = POLLIN };
        }
        poll(pf, (nfds_t)n, 200);
        for (int i = 0; i < n; i++) {
            con_drain(c[i].out, &c[i].con, STDERR_FILENO);
            if (c[i].pid > 0 && waitpid(c[i].pid, &c[i].status, WNOHANG) == c[i].pid) {
                con_drain(c[i].out, &c[i].con, STDERR_FILENO);
                c[i].pid = 0;
                left--;
            }
        }
        if (now() - t0 > timeout_s) {
            for (int i = 0; i < n; i++) {
                if (c[i].pid > 0) {
                    kill(c[i].pid, SIGKILL);
                }
            }
            fail_msg("children still running after %.0f s", timeout_s);
        }
    }
}

static void copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(in >= 0 && out >= 0);
    static char buf[1 << 16];
    ssize_t n;
    while ((n = read(in, buf, sizeof(buf))) > 0) {
        assert_int_equal(write(out, buf, (size_t)n), n);
    }
    close(in);
    close(out);
}

/* The disk's block for round @n names round @n (what the guest wrote). */
static void check_disk_block(const char *disk, long n)
{
    int fd = open(disk, O_RDONLY);
    assert_true(fd >= 0);
    char got[32] = "", want[32];
    assert_int_equal(pread(fd, got, 14, (n % 16) * 4096), 14);
    close(fd);
    snprintf(want, sizeof(want), "SOAK-%08ld-", n);
    if (memcmp(got, want, 14) != 0) {
        fail_msg("%s: block %ld holds '%.14s', expected '%s'", disk, n % 16, got, want);
    }
}

static char log_msgs[8192];

static void capture_log(VmmLogLevel level, const char *msg, void *opaque)
{
    (void)level;
    (void)opaque;
    size_t l = strlen(log_msgs);
    snprintf(log_msgs + l, sizeof(log_msgs) - l, "%s\n", msg);
}

/* vmm_machine_restore refuses @path with errno @want and a message
 * containing @why. */
static void expect_refused(const char *path, const VmmMachineOptions *o, int want,
                           const char *why)
{
    log_msgs[0] = '\0';
    vmm_set_log_handler(capture_log, NULL, VMM_LOG_ERROR);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    int err = 0;
    VmmMachine *m = vmm_machine_restore(o, fd, &err);
    close(fd);
    vmm_set_log_handler(NULL, NULL, VMM_LOG_WARNING);
    assert_null(m);
    assert_int_equal(err, want);
    if (!strstr(log_msgs, why)) {
        fail_msg("%s: refused with '%s', expected '%s'", path, log_msgs, why);
    }
    fprintf(stderr, "# %s refused: %s", path, log_msgs);
}

static void test_snapshot_restore_clones(void **state)
{
    (void)state;
    /* The disk the guest writes. */
    int fd = open("soak-disk.img", O_RDWR | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, DISK_SIZE), 0);
    close(fd);

    Child src;
    char *sargv[] = { self, "--source", (char *)kernel, (char *)initrd, "soak-disk.img",
                      "soak.snap", NULL };
    spawn(&src, sargv);
    reap(&src, 1, 500);
    assert_true(WIFSIGNALED(src.status) && WTERMSIG(src.status) == SIGKILL);
    const char *s = strstr(src.con.buf, "SOURCE-SNAPSHOT count=");
    assert_non_null(s);
    long c = strtol(s + 22, NULL, 10);
    assert_true(c >= 3);
    /* The console before the snapshot (the guest's lines only). */
    size_t guest_len = (size_t)(s - src.con.buf);
    char *before = strndup(src.con.buf, guest_len);
    assert_int_equal(last_count(before), c);
    free(before);
    check_disk_block("soak-disk.img", c);
    FILE *tf = fopen("soak.snap.tail", "r");
    assert_non_null(tf);
    char tail[256] = "";
    size_t tl = fread(tail, 1, sizeof(tail) - 1, tf);
    tail[tl] = '\0';
    fclose(tf);
    struct stat st;
    assert_int_equal(stat("soak.snap", &st), 0);
    fprintf(stderr, "# snapshot at round %ld: %lld bytes, %lld allocated\n", c,
            (long long)st.st_size, (long long)st.st_blocks * 512);
    /* Zero pages are holes: far less is allocated than the file's length. */
    assert_true((uint64_t)st.st_blocks * 512 < (uint64_t)st.st_size);

    /* Refusals, with their reasons. */
    VmmMachineOptions o = { .size = sizeof(o), .console_out_fd = -1 };
    copy_file("soak.snap", "bad.snap");
    assert_int_equal(truncate("bad.snap", st.st_size / 2), 0);
    expect_refused("bad.snap", &o, -EINVAL, "truncated: section ram 0");
    copy_file("soak.snap", "bad.snap");
    fd = open("bad.snap", O_RDWR);
    char b;
    assert_int_equal(pread(fd, &b, 1, 4096 + 100), 1);
    b ^= 0x40;
    assert_int_equal(pwrite(fd, &b, 1, 4096 + 100), 1);
    close(fd);
    expect_refused("bad.snap", &o, -EINVAL, "section vcpu 0: checksum mismatch");
    VmmMachineOptions big = o;
    big.memory = 2 * MEM;
    expect_refused("soak.snap", &big, -EINVAL, "RAM size mismatch");
    VmmMachineOptions cpus = o;
    cpus.cpus = 1;
    expect_refused("soak.snap", &cpus, -EINVAL, "vCPU count mismatch");
    unlink("bad.snap");
    /* Restored without its disk: start refuses, naming the difference. */
    fd = open("soak.snap", O_RDONLY);
    int err = 0;
    VmmMachine *m = vmm_machine_restore(&o, fd, &err);
    close(fd);
    assert_non_null(m);
    log_msgs[0] = '\0';
    vmm_set_log_handler(capture_log, NULL, VMM_LOG_ERROR);
    assert_int_equal(vmm_machine_start(m), -EINVAL);
    vmm_set_log_handler(NULL, NULL, VMM_LOG_WARNING);
    assert_non_null(strstr(log_msgs, "the snapshot has 1 devices, the machine 0"));
    vmm_machine_free(m);

    /* Three clones at once, each on its copy of the disk. */
    Child kids[3];
    char disk[3][32];
    for (int i = 0; i < 3; i++) {
        snprintf(disk[i], sizeof(disk[i]), "clone%d.img", i);
        copy_file("soak-disk.img", disk[i]);
        char *rargv[] = { self, "--restore", "soak.snap", disk[i], "4", NULL };
        spawn(&kids[i], rargv);
    }
    reap(kids, 3, 400);
    for (int i = 0; i < 3; i++) {
        Child *k = &kids[i];
        assert_true(WIFEXITED(k->status));
        if (WEXITSTATUS(k->status) != 0 || strstr(k->con.buf, "VMMKIT-FAIL") ||
            strstr(k->con.buf, "soft lockup") || strstr(k->con.buf, "BUG:")) {
            fail_msg("clone %d failed (exit %d):\n%s", i, WEXITSTATUS(k->status), k->con.buf);
        }
        /* The source's partial line, then the clone's output. */
        size_t n = strlen(tail) + k->con.len + 1;
        char *all = malloc(n);
        snprintf(all, n, "%s%s", tail, k->con.buf);
        long first = -1, last = -1;
        bool consecutive;
        int lines = count_lines(all, &first, &last, &consecutive);
        free(all);
        fprintf(stderr, "# clone %d: rounds %ld..%ld (%d lines) %s\n", i, first, last, lines,
                strstr(k->con.buf, "RESTORE-DONE"));
        assert_true(lines >= 4);
        assert_int_equal(first, c + 1);
        assert_true(consecutive);
        check_disk_block(disk[i], last);
        unlink(disk[i]);
    }
    unlink("soak-disk.img");
    unlink("soak.snap");
    unlink("soak.snap.tail");
}

int main(int argc, char **argv)
{
    ssize_t l = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (l <= 0) {
        return 2;
    }
    self[l] = '\0';
    if (argc == 6 && strcmp(argv[1], "--source") == 0) {
        return run_source(argv[2], argv[3], argv[4], argv[5]);
    }
    if (argc == 5 && strcmp(argv[1], "--restore") == 0) {
        return run_restore(argv[2], argv[3], atoi(argv[4]));
    }
    if (argc != 3) {
        fprintf(stderr, "usage: %s VMLINUZ INITRAMFS\n", argv[0]);
        return 2;
    }
    kernel = argv[1];
    initrd = argv[2];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_snapshot_restore_clones),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
