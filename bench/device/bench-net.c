/* SPDX-License-Identifier: MIT */
/*
 * virtio-net through a tap, vmmkit-run against QEMU (the same kernel and
 * initramfs, the same tap, one VMM after the other in the same machine):
 * guest-to-host and host-to-guest TCP throughput and 1-byte TCP
 * request/response latency, measured on the host side by netcheck
 * (tools/guest/netcheck.c); the guest's /init runs mode netbench.
 *
 *   bench-net VMLINUZ INITRAMFS NETCHECK VMMKIT-RUN -- QEMU-COMMAND...
 *
 * The tap (in a network namespace of this process's own, fd00:7e57::1
 * here, ::2 in the guest) is opened once and given to each VMM as fd 3:
 * vmmkit-run --net fd=3, QEMU -netdev tap,fd=3,vhost=off (its userspace
 * tap backend, as vmmkit's; vhost-net would be the kernel's data path).
 * Rounds alternate the order; the best round of each figure is reported.
 * Prints BENCH lines (ratio = vmmkit / QEMU: throughput wants it >= 1,
 * latency <= 1).  VMM_BENCH_QUICK=1: one round, vmmkit only, small
 * transfers (a smoke run).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../bench-util.h"
#include "vmmkit/vmmkit.h"

extern char **environ;

#define TAP "vmb0"
#define OUT_MAX (1 << 20)

static const char *netcheck;
static bool quick;

typedef struct Res {
    double g2h_mbps, h2g_mbps, rr_us;
    bool ok;
} Res;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Spawn @argv with stdout (and stderr) to @out_fd, the tap as fd 3. */
static pid_t spawn(char *const argv[], int out_fd, int tap)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
    posix_spawn_file_actions_adddup2(&fa, out_fd, 2);
    if (tap >= 0) {
        posix_spawn_file_actions_adddup2(&fa, tap, 3);
    }
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    pid_t pid = -1;
    if (posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ) != 0) {
        pid = -1;
    }
    posix_spawn_file_actions_destroy(&fa);
    return pid;
}

typedef struct Con {
    int fd;
    char *out;
    size_t len;
} Con;

static void drain(Con *c)
{
    for (;;) {
        ssize_t n = read(c->fd, c->out + c->len, OUT_MAX - 1 - c->len);
        if (n <= 0) {
            break;
        }
        if (getenv("VMM_BENCH_VERBOSE") && *getenv("VMM_BENCH_VERBOSE")) {
            fwrite(c->out + c->len, 1, (size_t)n, stderr);
        }
        c->len += (size_t)n;
        c->out[c->len] = '\0';
    }
}

static bool wait_for(Con *c, const char *marker, double timeout)
{
    double end = now() + timeout;
    while (now() < end) {
        drain(c);
        if (strstr(c->out, marker)) {
            return true;
        }
        struct pollfd p = { .fd = c->fd, .events = POLLIN };
        poll(&p, 1, 100);
    }
    fprintf(stderr, "# no '%s' after %.0f s; console tail: %s\n", marker, timeout,
            c->len > 600 ? c->out + c->len - 600 : c->out);
    return false;
}

/* Run netcheck on the host side; its output line (static) or NULL. */
static pid_t netcheck_spawn(const char *log, char *a1, char *a2, char *a3, char *a4)
{
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    char *argv[] = { (char *)netcheck, a1, a2, a3, a4, NULL };
    pid_t pid = spawn(argv, fd, -1);
    close(fd);
    return pid;
}

static double netcheck_value(pid_t pid, const char *log, const char *key, Con *c)
{
    int st = -1;
    double end = now() + 600;
    while (waitpid(pid, &st, WNOHANG) == 0 && now() < end) {
        drain(c);
        usleep(10000);
    }
    if (now() >= end) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
    }
    char text[512] = "";
    FILE *f = fopen(log, "r");
    if (f) {
        size_t n = fread(text, 1, sizeof(text) - 1, f);
        text[n] = '\0';
        fclose(f);
    }
    const char *p = strstr(text, key);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || !strstr(text, " OK ") || !p) {
        fprintf(stderr, "# netcheck failed: %s\n", text);
        return -1;
    }
    return strtod(p + strlen(key), NULL);
}

/* ---- VMM_BENCH_PROBE=1: where a round trip's time goes ---------------------
 * Around the request/response phase: each VMM thread's run time and time
 * spent runnable but waiting for a CPU (schedstat), its context switches,
 * the machine's idle time, and the VM's KVM counters (debugfs: exits, halt
 * polling); printed per round trip.  VMM_BENCH_STRACE=1 adds strace -c -f. */
#define PROBE_MAX 160

typedef struct ProbeVal {
    char name[48];
    double v;
} ProbeVal;

typedef struct Probe {
    ProbeVal val[PROBE_MAX];
    int n;
} Probe;

static void probe_add(Probe *p, const char *name, double v)
{
    for (int i = 0; i < p->n; i++) {
        if (!strcmp(p->val[i].name, name)) {
            p->val[i].v += v;
            return;
        }
    }
    if (p->n < PROBE_MAX) {
        snprintf(p->val[p->n].name, sizeof(p->val[p->n].name), "%s", name);
        p->val[p->n++].v = v;
    }
}

static bool read_text(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        return false;
    }
    size_t n = fread(buf, 1, len - 1, f);
    buf[n] = '\0';
    fclose(f);
    return true;
}

static void probe_snap(pid_t pid, Probe *p)
{
    char path[300], buf[4096], key[64];
    p->n = 0;
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.') {
            continue;
        }
        char comm[32] = "?";
        snprintf(path, sizeof(path), "/proc/%d/task/%s/comm", (int)pid, de->d_name);
        if (read_text(path, comm, sizeof(comm))) {
            comm[strcspn(comm, "\n")] = '\0';
        }
        unsigned long long run = 0, wait = 0, slices = 0;
        snprintf(path, sizeof(path), "/proc/%d/task/%s/schedstat", (int)pid, de->d_name);
        if (read_text(path, buf, sizeof(buf))) {
            sscanf(buf, "%llu %llu %llu", &run, &wait, &slices);
        }
        snprintf(key, sizeof(key), "%.15s run_us", comm);
        probe_add(p, key, run / 1e3);
        snprintf(key, sizeof(key), "%.15s wait_us", comm);
        probe_add(p, key, wait / 1e3);
        snprintf(path, sizeof(path), "/proc/%d/task/%s/status", (int)pid, de->d_name);
        if (read_text(path, buf, sizeof(buf))) {
            const char *v = strstr(buf, "\nvoluntary_ctxt_switches:");
            const char *nv = strstr(buf, "\nnonvoluntary_ctxt_switches:");
            snprintf(key, sizeof(key), "%.15s vcsw", comm);
            probe_add(p, key, v ? strtod(strchr(v + 1, ':') + 1, NULL) : 0);
            snprintf(key, sizeof(key), "%.15s ivcsw", comm);
            probe_add(p, key, nv ? strtod(strchr(nv + 1, ':') + 1, NULL) : 0);
        }
    }
    if (d) {
        closedir(d);
    }
    unsigned long long c[8] = { 0 };
    if (read_text("/proc/stat", buf, sizeof(buf)) &&
        sscanf(buf, "cpu %llu %llu %llu %llu %llu %llu %llu", &c[0], &c[1], &c[2], &c[3],
               &c[4], &c[5], &c[6]) == 7) {
        probe_add(p, "machine idle_ms", c[3] * 10.0);
        probe_add(p, "machine busy_ms", (c[0] + c[1] + c[2] + c[5] + c[6]) * 10.0);
    }
    /* The VM's KVM statistics: /sys/kernel/debug/kvm/PID-FD/. */
    d = opendir("/sys/kernel/debug/kvm");
    char prefix[32];
    snprintf(prefix, sizeof(prefix), "%d-", (int)pid);
    while (d && (de = readdir(d))) {
        if (strncmp(de->d_name, prefix, strlen(prefix))) {
            continue;
        }
        static const char *const stats[] = {
            "exits", "io_exits", "mmio_exits", "irq_exits", "halt_exits", "irq_window_exits",
            "signal_exits", "request_irq_exits", "irq_injections", "halt_wakeup",
            "halt_successful_poll", "halt_attempted_poll", "halt_poll_invalid",
            "halt_poll_success_ns", "halt_poll_fail_ns", "halt_wait_ns", "directed_yield_successful",
        };
        for (size_t i = 0; i < sizeof(stats) / sizeof(stats[0]); i++) {
            snprintf(path, sizeof(path), "/sys/kernel/debug/kvm/%s/%s", de->d_name, stats[i]);
            if (read_text(path, buf, sizeof(buf))) {
                snprintf(key, sizeof(key), "kvm %s", stats[i]);
                probe_add(p, key, strtod(buf, NULL));
            }
        }
    }
    if (d) {
        closedir(d);
    }
}

static void probe_print(const char *who, const Probe *a, const Probe *b, double count)
{
    for (int i = 0; i < b->n; i++) {
        double before = 0;
        for (int j = 0; j < a->n; j++) {
            if (!strcmp(a->val[j].name, b->val[i].name)) {
                before = a->val[j].v;
            }
        }
        double d = b->val[i].v - before;
        if (d != 0) {
            fprintf(stderr, "# probe %s %-32s %12.2f per round trip\n", who, b->val[i].name,
                    d / count);
        }
    }
}

static Res run_one(char *const vmm[], int tap, const char *bytes, const char *count)
{
    Res r = { 0 };
    Con c = { .out = calloc(1, OUT_MAX) };
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) {
        return r;
    }
    c.fd = p[0];
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    pid_t g2h = netcheck_spawn("/tmp/bn-5101.log", "tcp-recv", "5101", NULL, NULL);
    pid_t pid = spawn(vmm, p[1], tap);
    close(p[1]);
    if (pid < 0 || g2h < 0) {
        fprintf(stderr, "# cannot start %s\n", vmm[0]);
        return r;
    }
    double mb = strtod(bytes, NULL) * 8 / 1e6;
    bool ok = wait_for(&c, "VMMKIT-NETBENCH-UP", 600);
    double s = ok ? netcheck_value(g2h, "/tmp/bn-5101.log", "secs=", &c) : -1;
    r.g2h_mbps = s > 0 ? mb / s : -1;
    ok = ok && s > 0 && wait_for(&c, "NETCHECK tcp-recv LISTENING port=5102", 120);
    if (ok) {
        pid_t h2g = netcheck_spawn("/tmp/bn-5102.log", "tcp-send", "fd00:7e57::2", "5102",
                                   (char *)bytes);
        s = netcheck_value(h2g, "/tmp/bn-5102.log", "secs=", &c);
        r.h2g_mbps = s > 0 ? mb / s : -1;
        ok = s > 0;
    }
    ok = ok && wait_for(&c, "NETCHECK rr-server LISTENING port=5103", 120);
    if (ok) {
        static Probe before, after;
        const char *pe = getenv("VMM_BENCH_PROBE");
        bool probe = pe && *pe == '1';
        pid_t st = -1;
        if (probe) {
            if (access("/sys/kernel/debug/kvm", F_OK) != 0) {
                mount("debugfs", "/sys/kernel/debug", "debugfs", 0, NULL);
            }
            const char *se = getenv("VMM_BENCH_STRACE");
            if (se && (*se == '1' || *se == '2')) {
                char ps[16];
                snprintf(ps, sizeof(ps), "%d", (int)pid);
                char *sargv[] = { "strace", *se == '1' ? "-c" : "-tt", "-f", "-y", "-p", ps,
                                  "-o", "/tmp/bn-strace.txt", NULL };
                int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
                st = spawn(sargv, fd, -1);
                close(fd);
                usleep(500000);
            }
            probe_snap(pid, &before);
        }
        double t0 = now();
        pid_t rr = netcheck_spawn("/tmp/bn-5103.log", "rr-client", "fd00:7e57::2", "5103",
                                  (char *)count);
        r.rr_us = netcheck_value(rr, "/tmp/bn-5103.log", "usecs=", &c);
        ok = r.rr_us > 0;
        if (probe) {
            probe_snap(pid, &after);
            double n = strtod(count, NULL);
            fprintf(stderr, "# probe %s: %.0f round trips in %.2f s\n", vmm[0], n, now() - t0);
            probe_print(strstr(vmm[0], "qemu") ? "qemu" : "vmmkit", &before, &after, n);
            if (st > 0) {
                kill(st, SIGINT);
                waitpid(st, NULL, 0);
                static char text[1 << 16];
                FILE *sf = fopen("/tmp/bn-strace.txt", "r");
                if (sf) {
                    /* The summary, or a full trace's last 64 KiB. */
                    fseek(sf, 0, SEEK_END);
                    long sz = ftell(sf);
                    fseek(sf, sz > (long)sizeof(text) - 1 ? sz - (long)sizeof(text) + 1 : 0,
                          SEEK_SET);
                    size_t tn = fread(text, 1, sizeof(text) - 1, sf);
                    text[tn] = '\0';
                    fclose(sf);
                    fprintf(stderr, "# strace -f of %s:\n%s", vmm[0], text);
                }
            }
        }
    }
    ok = ok && wait_for(&c, "VMMKIT-POWEROFF", 120);
    double end = now() + 60;
    int st;
    while (waitpid(pid, &st, WNOHANG) == 0) {
        drain(&c);
        if (now() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            ok = false;
            break;
        }
        usleep(10000);
    }
    kill(g2h, SIGKILL);
    waitpid(g2h, NULL, WNOHANG);
    close(p[0]);
    free(c.out);
    r.ok = ok;
    return r;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: bench-net VMLINUZ INITRAMFS NETCHECK VMMKIT-RUN "
                        "[-- QEMU-COMMAND...]\n");
        return 2;
    }
    quick = getenv("VMM_BENCH_QUICK") && !strcmp(getenv("VMM_BENCH_QUICK"), "1");
    const char *kernel = argv[1], *initrd = argv[2], *vmmkit_run = argv[4];
    netcheck = argv[3];
    char **qemu = argc > 6 && !strcmp(argv[5], "--") ? argv + 6 : NULL;
    const char *bytes = quick ? "1048576" : "33554432";
    const char *count = quick ? "200" : "3000";
    char append[160];
    snprintf(append, sizeof(append),
             "console=ttyS0 quiet panic=-1 vmmkit.mode=netbench vmmkit.count=%s", bytes);

    if (unshare(CLONE_NEWNET) < 0) {
        perror("bench-net: unshare(CLONE_NEWNET)");
        return 2;
    }
    FILE *f = fopen("/proc/sys/net/ipv6/conf/default/accept_dad", "w");
    if (f) {
        fputs("0", f);
        fclose(f);
    }
    int tap = vmm_virtio_net_open_tap(TAP);
    if (tap < 0) {
        fprintf(stderr, "bench-net: tap: %s\n", vmm_strerror(tap));
        return 2;
    }
    if (system("ip link set lo up && ip link set " TAP " up && "
               "ip -6 addr add fd00:7e57::1/64 dev " TAP) != 0) {
        fprintf(stderr, "bench-net: cannot configure the tap\n");
        return 2;
    }
    char *vmmkit[] = { (char *)vmmkit_run, "--kernel", (char *)kernel, "--initramfs",
                       (char *)initrd, "--memory", "256M", "--cpus", "1", "--net",
                       "fd=3,mac=52:54:00:7e:57:02", "--append", append, NULL };
    /* QEMU: its command line, then the kernel, initramfs, append and tap. */
    char *qcmd[64];
    int n = 0;
    if (qemu) {
        for (; qemu[n] && n < 48; n++) {
            qcmd[n] = qemu[n];
        }
        char *tail[] = { "-kernel", (char *)kernel, "-initrd", (char *)initrd, "-append",
                         append, "-netdev", "tap,id=n0,fd=3,vhost=off", "-device",
                         "virtio-net-pci,netdev=n0,romfile=,mac=52:54:00:7e:57:02", NULL };
        for (int i = 0; tail[i]; i++) {
            qcmd[n++] = tail[i];
        }
    }
    qcmd[n] = NULL;

    int rounds = quick || !qemu ? 1 : 3;
    if (getenv("VMM_BENCH_ROUNDS")) {
        rounds = atoi(getenv("VMM_BENCH_ROUNDS")) > 0 ? atoi(getenv("VMM_BENCH_ROUNDS")) : 1;
    }
    Res best[2] = { { .g2h_mbps = -1, .h2g_mbps = -1, .rr_us = 1e30 },
                    { .g2h_mbps = -1, .h2g_mbps = -1, .rr_us = 1e30 } };
    for (int i = 0; i < rounds; i++) {
        for (int j = 0; j < 2; j++) {
            int w = (i + j) % 2;            /* 0 vmmkit, 1 qemu; alternate the order */
            if (w == 1 && !qemu) {
                continue;
            }
            Res r = run_one(w == 0 ? vmmkit : qcmd, tap, bytes, count);
            fprintf(stderr, "# round %d %s: %s g2h %.1f Mbit/s h2g %.1f Mbit/s rr %.1f us\n",
                    i + 1, w ? "qemu" : "vmmkit", r.ok ? "ok" : "FAILED", r.g2h_mbps,
                    r.h2g_mbps, r.rr_us);
            if (!r.ok) {
                return 1;
            }
            if (r.g2h_mbps > best[w].g2h_mbps) {
                best[w].g2h_mbps = r.g2h_mbps;
            }
            if (r.h2g_mbps > best[w].h2g_mbps) {
                best[w].h2g_mbps = r.h2g_mbps;
            }
            if (r.rr_us < best[w].rr_us) {
                best[w].rr_us = r.rr_us;
            }
        }
    }
    if (!qemu) {
        printf("# quick run: vmmkit g2h %.1f Mbit/s h2g %.1f Mbit/s rr %.1f us\n",
               best[0].g2h_mbps, best[0].h2g_mbps, best[0].rr_us);
        return 0;
    }
    /* ratio = value / vs_value: above 1 is better for throughput, below 1
     * for latency. */
    bench_print("virtio_net_tcp_guest_to_host", best[0].g2h_mbps, "Mbit/s", "qemu",
                best[1].g2h_mbps);
    bench_print("virtio_net_tcp_host_to_guest", best[0].h2g_mbps, "Mbit/s", "qemu",
                best[1].h2g_mbps);
    bench_print("virtio_net_tcp_rr_latency", best[0].rr_us, "us", "qemu", best[1].rr_us);
    close(tap);
    return 0;
}
