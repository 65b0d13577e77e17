/* SPDX-License-Identifier: MIT */
/*
 * Benchmark: snapshot, restore and live migration of a 256 MiB Linux guest
 * (Debian's kernel, the demo initramfs in "wait" mode, one vCPU, console
 * only), vmmkit against QEMU (-M microvm, the same kernel, initramfs and
 * command line) saving and loading through its migration stream, on the
 * same KVM, driven by this one program:
 *
 *   snapshot   the guest paused, the time to write its state to a file:
 *              vmm_machine_snapshot(); QEMU: `migrate exec:cat > FILE`
 *              until query-migrate says completed.
 *   restore    from fork() of a new process to its guest running: a
 *              re-exec of this program doing vmm_machine_restore() +
 *              vmm_machine_start(), reporting on a pipe; QEMU started with
 *              -incoming "exec:cat FILE" until query-status says running.
 *   migrate    a running guest to a new process over a Unix socket: the
 *              total time and the time paused (vmm_machine_migrate's
 *              stats; QEMU's query-migrate total-time and downtime, its
 *              downtime-limit set to vmmkit's 50 ms budget and its
 *              bandwidth unlimited).  QEMU's downtime ends when its last
 *              byte is sent; vmmkit's downtime_ns when the destination's
 *              answer ('G', sent as its first vCPU enters KVM_RUN)
 *              reaches the source, its downtime to run when that vCPU
 *              entered KVM_RUN (the destination's clock, sent with 'G':
 *              one host, one clock), its stop_copy_ns when its last byte
 *              is sent: all are printed against QEMU's.
 *
 *   bench-snapshot VMLINUZ INITRAMFS [-- QEMU-COMMAND...]
 * VMM_BENCH_REPS (default 5; 1 with VMM_BENCH_QUICK=1, which also leaves
 * QEMU out and compares vmmkit with itself) repetitions of snapshot and
 * restore, one migration each; BENCH lines compare medians.  Needs a
 * kernel KVM: run it through run-bench-snapshot.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vmmkit/vmmkit.h"
#include "../bench-util.h"

#define MEM (256ull << 20)
#define MAX_REPS 32
#define CMDLINE "console=ttyS0 quiet panic=-1 pci=noearly vmmkit.mode=wait"

static char self[4096];
static const char *kernel, *initrd;

static double ms(int64_t ns)
{
    return ns / 1e6;
}

static void die(const char *what)
{
    fprintf(stderr, "bench-snapshot: %s\n", what);
    exit(1);
}

/* Read @fd (non-blocking) into @buf until @want appears or @timeout_ms. */
static bool wait_output(int fd, char *buf, size_t cap, size_t *len, const char *want,
                        int timeout_ms)
{
    int64_t end = bench_now_ns() + (int64_t)timeout_ms * 1000000;
    while (!strstr(buf, want)) {
        if (bench_now_ns() > end) {
            return false;
        }
        struct pollfd p = { .fd = fd, .events = POLLIN };
        poll(&p, 1, 100);
        ssize_t n;
        while ((n = read(fd, buf + *len, cap - 1 - *len)) > 0) {
            *len += (size_t)n;
            buf[*len] = '\0';
        }
        if (n == 0) {
            return strstr(buf, want) != NULL;
        }
    }
    return true;
}

/* ---- vmmkit ------------------------------------------------------------------ */

static int console_pipe(int p[2])
{
    if (pipe2(p, O_CLOEXEC) < 0) {
        return -1;
    }
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    return 0;
}

/* Child: restore FILE (or receive a migration on unix socket SOCK), run
 * it, write 'R' to stdout once it runs, then wait to be killed. */
static int child_main(const char *mode, const char *arg)
{
    int p[2];
    if (console_pipe(p) < 0) {
        return 2;
    }
    VmmMachineOptions o = { .size = sizeof(o), .console_out_fd = p[1] };
    int err = 0, fd;
    VmmMachine *m;
    if (!strcmp(mode, "--restore")) {
        fd = open(arg, O_RDONLY | O_CLOEXEC);
        m = fd < 0 ? NULL : vmm_machine_restore(&o, fd, &err);
    } else {
        int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un a = { .sun_family = AF_UNIX };
        snprintf(a.sun_path, sizeof(a.sun_path), "%s", arg);
        unlink(arg);
        if (bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 1) < 0) {
            return 3;
        }
        if (write(1, "L", 1) != 1) {
            return 4;
        }
        fd = accept(ls, NULL, NULL);
        m = fd < 0 ? NULL : vmm_machine_incoming(&o, fd, &err);
    }
    if (!m || vmm_machine_start(m) < 0) {
        fprintf(stderr, "bench-snapshot: child %s: %s\n", mode, vmm_strerror(err));
        return 5;
    }
    if (write(1, "R", 1) != 1) {
        return 6;
    }
    pause();
    return 0;
}

/* Spawn this program as a child; its stdout is *@out. */
static pid_t spawn_self(const char *mode, const char *arg, int *out)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) {
        die("pipe");
    }
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[1], 1);
        execl(self, self, mode, arg, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    *out = p[0];
    return pid;
}

static bool read_byte(int fd, char want, int timeout_ms)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    char c = 0;
    return poll(&p, 1, timeout_ms) == 1 && read(fd, &c, 1) == 1 && c == want;
}

static void reap(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

typedef struct Results {
    double save[MAX_REPS], restore[MAX_REPS];
    double mig_total[MAX_REPS], mig_down[MAX_REPS], mig_stop_copy[MAX_REPS],
           mig_to_run[MAX_REPS];
    int reps;
} Results;

/* A machine booted to /init's wait. */
static VmmMachine *boot_vmmkit(void)
{
    int p[2];
    if (console_pipe(p) < 0) {
        die("pipe");
    }
    VmmMachineOptions o = { .size = sizeof(o), .kernel = kernel, .initrd = initrd,
                            .cmdline = CMDLINE, .memory = MEM, .cpus = 1,
                            .console_out_fd = p[1] };
    int err = 0;
    VmmMachine *m = vmm_machine_new(&o, &err);
    if (!m || vmm_machine_start(m) < 0) {
        die("vmmkit: boot");
    }
    static char con[1 << 16];
    size_t len = 0;
    if (!wait_output(p[0], con, sizeof(con), &len, "VMMKIT-WAITING", 300000)) {
        die("vmmkit: the guest did not reach /init");
    }
    return m;
}

/* One migration of @m to a new process; its figures into @res[@i]. */
static void migrate_vmmkit(VmmMachine *m, Results *res, int i)
{
    int out;
    pid_t pid = spawn_self("--incoming", "vmmkit-mig.sock", &out);
    if (!read_byte(out, 'L', 60000)) {
        die("vmmkit: migration destination");
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    snprintf(a.sun_path, sizeof(a.sun_path), "vmmkit-mig.sock");
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        die("vmmkit: connect");
    }
    VmmMigrateStats st = { .size = sizeof(st) };
    if (vmm_machine_migrate(m, fd, NULL, &st) < 0 || !read_byte(out, 'R', 60000)) {
        die("vmmkit: migration");
    }
    close(fd);
    reap(pid);
    close(out);
    res->mig_total[i] = ms((int64_t)st.total_ns);
    res->mig_down[i] = ms((int64_t)st.downtime_ns);
    res->mig_stop_copy[i] = ms((int64_t)st.stop_copy_ns);
    res->mig_to_run[i] = st.dest_run_at_ns > st.paused_at_ns
                         ? ms((int64_t)(st.dest_run_at_ns - st.paused_at_ns)) : res->mig_down[i];
    if (getenv("VMM_BENCH_VERBOSE")) {
        fprintf(stderr, "vmmkit: migration: %u rounds, %" PRIu64 " pages (%" PRIu64
                " while paused), %" PRIu64 " bytes; downtime %.2f ms (to run %.2f), "
                "stop-copy %.2f ms\n", st.rounds, st.pages_sent, st.final_pages,
                st.bytes_sent, res->mig_down[i], res->mig_to_run[i], res->mig_stop_copy[i]);
    }
}

static void run_vmmkit(Results *res)
{
    VmmMachine *m = boot_vmmkit();
    for (int i = 0; i < res->reps; i++) {
        if (vmm_machine_pause(m) < 0) {
            die("vmmkit: pause");
        }
        int fd = open("vmmkit.snap", O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        int64_t t0 = bench_now_ns();
        int r = vmm_machine_snapshot(m, fd);
        int64_t t1 = bench_now_ns();
        close(fd);
        if (r < 0 || vmm_machine_resume(m) < 0) {
            die("vmmkit: snapshot");
        }
        res->save[i] = ms(t1 - t0);
        int out;
        t0 = bench_now_ns();
        pid_t pid = spawn_self("--restore", "vmmkit.snap", &out);
        bool ok = read_byte(out, 'R', 60000);
        t1 = bench_now_ns();
        reap(pid);
        close(out);
        if (!ok) {
            die("vmmkit: restore");
        }
        res->restore[i] = ms(t1 - t0);
        if (getenv("VMM_BENCH_VERBOSE")) {
            fprintf(stderr, "vmmkit: snapshot %.1f ms, restore %.1f ms\n", res->save[i],
                    res->restore[i]);
        }
    }
    if (getenv("VMM_BENCH_VERBOSE")) {
        setenv("VMM_MIGRATE_TRACE", "1", 1);    /* both sides' steps, timed */
    }
    /* Each migration from a freshly booted source (the one before ended
     * stopped, its guest in the destination process). */
    for (int i = 0; i < res->reps; i++) {
        if (i > 0) {
            m = boot_vmmkit();
        }
        migrate_vmmkit(m, res, i);
        vmm_machine_free(m);
    }
    unlink("vmmkit.snap");
}

/* ---- QEMU (QMP) ------------------------------------------------------------------ */

static char **qemu_cmd;
static int nqemu;

static pid_t spawn_qemu(const char *qmp, const char *incoming, int *console)
{
    char *argv[96];
    int n = 0;
    for (int i = 0; i < nqemu && n < 80; i++) {
        argv[n++] = qemu_cmd[i];
    }
    static char qarg[2][256];
    static int which;
    char *q = qarg[which++ % 2];
    snprintf(q, 256, "unix:%s,server=on,wait=off", qmp);
    argv[n++] = "-qmp";
    argv[n++] = q;
    if (incoming) {
        argv[n++] = "-incoming";
        argv[n++] = (char *)incoming;
    }
    argv[n] = NULL;
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) {
        die("pipe");
    }
    unlink(qmp);
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_RDONLY);
        dup2(null, 0);
        dup2(p[1], 1);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    *console = p[0];
    return pid;
}

typedef struct Qmp {
    int fd;
    char buf[1 << 16];
    size_t len;
} Qmp;

/* Connect (retrying while QEMU starts) and leave capabilities mode. */
static void qmp_open(Qmp *q, const char *path)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    for (int i = 0;; i++) {
        q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (connect(q->fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
            break;
        }
        close(q->fd);
        if (i > 60000) {
            die("qemu: no QMP socket");
        }
        usleep(1000);
    }
    q->len = 0;
    q->buf[0] = '\0';
}

/* One line of QMP output (events included). */
static const char *qmp_line(Qmp *q)
{
    static char line[1 << 16];
    for (;;) {
        char *nl = memchr(q->buf, '\n', q->len);
        if (nl) {
            size_t n = (size_t)(nl - q->buf) + 1;
            memcpy(line, q->buf, n);
            line[n] = '\0';
            memmove(q->buf, q->buf + n, q->len - n);
            q->len -= n;
            return line;
        }
        ssize_t r = read(q->fd, q->buf + q->len, sizeof(q->buf) - 1 - q->len);
        if (r <= 0) {
            die("qemu: QMP closed");
        }
        q->len += (size_t)r;
    }
}

/* Send @cmd, return the reply line ("return" or "error"). */
static const char *qmp(Qmp *q, const char *cmd)
{
    if (write(q->fd, cmd, strlen(cmd)) != (ssize_t)strlen(cmd)) {
        die("qemu: QMP write");
    }
    for (;;) {
        const char *l = qmp_line(q);
        if (strstr(l, "\"return\"") || strstr(l, "\"error\"")) {
            if (strstr(l, "\"error\"")) {
                fprintf(stderr, "bench-snapshot: QMP %s -> %s", cmd, l);
            }
            return l;
        }
    }
}

static void qmp_start(Qmp *q, const char *path)
{
    qmp_open(q, path);
    qmp_line(q);                                    /* the greeting */
    qmp(q, "{\"execute\":\"qmp_capabilities\"}\n");
}

/* Poll query-migrate until completed; its reply line. */
static const char *qmp_migrate_wait(Qmp *q)
{
    for (;;) {
        const char *l = qmp(q, "{\"execute\":\"query-migrate\"}\n");
        if (strstr(l, "\"completed\"")) {
            return l;
        }
        if (strstr(l, "\"failed\"") || strstr(l, "\"cancelled\"")) {
            fprintf(stderr, "bench-snapshot: %s", l);
            die("qemu: migration failed");
        }
        usleep(1000);
    }
}

static double json_num(const char *l, const char *key)
{
    const char *p = strstr(l, key);
    return p ? strtod(p + strlen(key) + 2, NULL) : -1;    /* "key": N */
}

static void run_qemu(Results *res)
{
    int con;
    pid_t src = spawn_qemu("q-src.qmp", NULL, &con);
    static char out[1 << 16];
    size_t len = 0;
    if (!wait_output(con, out, sizeof(out), &len, "VMMKIT-WAITING", 300000)) {
        die("qemu: the guest did not reach /init");
    }
    Qmp *q = calloc(1, sizeof(*q));
    qmp_start(q, "q-src.qmp");
    for (int i = 0; i < res->reps; i++) {
        qmp(q, "{\"execute\":\"stop\"}\n");
        unlink("qemu.snap");
        int64_t t0 = bench_now_ns();
        qmp(q, "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"exec:cat > qemu.snap\"}}\n");
        qmp_migrate_wait(q);
        int64_t t1 = bench_now_ns();
        res->save[i] = ms(t1 - t0);
        qmp(q, "{\"execute\":\"cont\"}\n");
        int rcon;
        Qmp *r = calloc(1, sizeof(*r));
        t0 = bench_now_ns();
        pid_t pid = spawn_qemu("q-res.qmp", "exec:cat qemu.snap", &rcon);
        qmp_start(r, "q-res.qmp");
        /* The stream says the source was paused: QEMU loads it and stays
         * paused; "cont" then, as part of getting it running. */
        for (;;) {
            const char *l = qmp(r, "{\"execute\":\"query-status\"}\n");
            if (strstr(l, "\"running\": true")) {
                break;
            }
            if (strstr(l, "\"status\": \"paused\"") ||
                strstr(l, "\"status\": \"postmigrate\"")) {
                qmp(r, "{\"execute\":\"cont\"}\n");
                continue;
            }
            usleep(500);
        }
        t1 = bench_now_ns();
        res->restore[i] = ms(t1 - t0);
        close(r->fd);
        free(r);
        reap(pid);
        close(rcon);
        if (getenv("VMM_BENCH_VERBOSE")) {
            fprintf(stderr, "qemu: snapshot %.1f ms, restore %.1f ms\n", res->save[i],
                    res->restore[i]);
        }
    }
    for (int i = 0, tries = 0; i < res->reps; i++, tries++) {
        if (tries > 0) {            /* a fresh source, as vmmkit's */
            src = spawn_qemu("q-src.qmp", NULL, &con);
            len = 0;
            if (!wait_output(con, out, sizeof(out), &len, "VMMKIT-WAITING", 300000)) {
                die("qemu: the guest did not reach /init");
            }
            q = calloc(1, sizeof(*q));
            qmp_start(q, "q-src.qmp");
        }
        int dcon;
        pid_t dst = spawn_qemu("q-dst.qmp", "unix:q-mig.sock", &dcon);
        Qmp *d = calloc(1, sizeof(*d));
        qmp_start(d, "q-dst.qmp");                  /* listening by now */
        qmp(q, "{\"execute\":\"migrate-set-parameters\",\"arguments\":"
               "{\"downtime-limit\":50,\"max-bandwidth\":100000000000}}\n");
        qmp(q, "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"unix:q-mig.sock\"}}\n");
        const char *l = qmp_migrate_wait(q);
        res->mig_total[i] = json_num(l, "\"total-time\"");
        res->mig_down[i] = json_num(l, "\"downtime\"");
        res->mig_stop_copy[i] = res->mig_down[i];   /* QEMU's downtime is measured so */
        res->mig_to_run[i] = res->mig_down[i];
        if (getenv("VMM_BENCH_VERBOSE")) {
            fprintf(stderr, "qemu: %s", l);
        }
        /* A reply without the times (seen: "total-time": 0) is no sample:
         * that migration is made again from a fresh source. */
        if ((res->mig_total[i] <= 0 || res->mig_down[i] <= 0) && tries < 3 * res->reps) {
            if (getenv("VMM_BENCH_VERBOSE")) {
                fprintf(stderr, "qemu: no times in that reply; migrating again\n");
            }
            i--;
        }
        close(d->fd);
        free(d);
        close(q->fd);
        free(q);
        reap(dst);
        reap(src);
        close(con);
        close(dcon);
    }
    unlink("qemu.snap");
}

int main(int argc, char **argv)
{
    ssize_t l = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (l <= 0) {
        return 2;
    }
    self[l] = '\0';
    if (argc == 3 && (!strcmp(argv[1], "--restore") || !strcmp(argv[1], "--incoming"))) {
        return child_main(argv[1], argv[2]);
    }
    if (argc < 3) {
        fprintf(stderr, "usage: bench-snapshot VMLINUZ INITRAMFS [-- QEMU-COMMAND...]\n");
        return 2;
    }
    kernel = argv[1];
    initrd = argv[2];
    if (argc > 4 && !strcmp(argv[3], "--")) {
        qemu_cmd = argv + 4;
        nqemu = argc - 4;
    }
    signal(SIGPIPE, SIG_IGN);
    bool quick = bench_quick() || !nqemu;
    int reps = quick ? 1 : 5;
    if (getenv("VMM_BENCH_REPS")) {
        reps = atoi(getenv("VMM_BENCH_REPS"));
    }
    reps = reps < 1 ? 1 : reps > MAX_REPS ? MAX_REPS : reps;
    static Results v, q;
    v.reps = q.reps = reps;
    run_vmmkit(&v);
    if (quick) {
        q = v;
    } else {
        run_qemu(&q);
    }
    const char *vs = quick ? "vmmkit" : "qemu";
    bench_print("machine-snapshot-save-256m", bench_median(v.save, reps), "ms", vs,
                bench_median(q.save, reps));
    bench_print("machine-restore-to-running-256m", bench_median(v.restore, reps), "ms", vs,
                bench_median(q.restore, reps));
    bench_print("machine-migrate-total-256m", bench_median(v.mig_total, reps), "ms", vs,
                bench_median(q.mig_total, reps));
    /* Paused until the destination runs (vmmkit's downtime_ns); QEMU
     * reports the time paused until its last byte was sent, so the second
     * line compares like with like (vmmkit's stop_copy_ns). */
    bench_print("machine-migrate-downtime-256m", bench_median(v.mig_down, reps), "ms", vs,
                bench_median(q.mig_down, reps));
    bench_print("machine-migrate-downtime-to-run-256m", bench_median(v.mig_to_run, reps), "ms",
                vs, bench_median(q.mig_to_run, reps));
    bench_print("machine-migrate-stop-copy-256m", bench_median(v.mig_stop_copy, reps), "ms",
                vs, bench_median(q.mig_stop_copy, reps));
    return 0;
}
