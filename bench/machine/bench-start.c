/* SPDX-License-Identifier: MIT */
/*
 * Benchmark: the VMM's own start.  vmmkit-run and QEMU (-M microvm, PVH)
 * boot the same minimal kernel (tools/guest/mini-kernel.S: one byte to
 * COM1, then power off) on the same KVM; for each start this program takes
 *   t0     just before fork(),
 *   first  when the guest's first byte arrives on the VMM's stdout pipe,
 *   exit   when waitpid() returns,
 * and, in separate starts of the image that halts after its byte (built
 * with -DMINI_STAY), the VMM's resident memory at the first byte beyond
 * guest RAM: the Rss of /proc/PID/smaps minus the mappings that hold guest
 * RAM (vmmkit's "vmmkit-ram" memfd, or any mapping at least RAM_MIB large,
 * QEMU's RAM), and of that the anonymous part (heap, stacks, the VMM's own
 * data: what the process adds beyond shared library pages).  Needs a kernel KVM: run it through run-bench-start.
 *
 *   bench-start VMMKIT-RUN KERNEL STAY-KERNEL [-- QEMU-COMMAND...]
 *
 * Series: vmmkit-run as it starts by default (it first asks
 * vmm_kvm_probe_cached whether the KVM runs a stock kernel: the verdict
 * kept in /run/vmmkit, warmed by one untimed start before the rounds),
 * vmmkit-run --kvm-check off, --kvm-check nocache (the probe VM on every
 * start), and QEMU (the command, with "-kernel KERNEL" appended).  VMM_BENCH_REPS
 * rounds (default 7; 1 when VMM_BENCH_QUICK=1, which also leaves QEMU
 * out and compares vmmkit with itself) start every series once, each
 * round starting one series further.  BENCH lines compare medians.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../bench-util.h"

#define RAM_MIB 64
#define MAX_ARGS 64
#define MAX_REPS 64
#define TIMEOUT_MS 120000

enum { S_VMMKIT, S_VMMKIT_NOCHECK, S_VMMKIT_NOCACHE, S_QEMU, NSERIES };
static const char *const series_name[NSERIES] = { "vmmkit", "vmmkit-kvm-check-off",
                                                  "vmmkit-kvm-check-nocache", "qemu" };

typedef struct {
    double first_ms, exit_ms;
    double rss_mib, rss_beyond_mib, anon_beyond_mib;
    int status;
    bool ok;
} Start;

/* Start @argv once.  @stay: the kernel halts after its byte; read the
 * memory then and kill the VMM.  Else time the first byte and the exit. */
static Start start_once(char **argv, bool stay)
{
    Start r = { .ok = false, .status = -1 };
    int out[2];
    if (pipe2(out, O_CLOEXEC) < 0) {
        perror("bench-start: pipe");
        return r;
    }
    int64_t t0 = bench_now_ns();
    pid_t pid = fork();
    if (pid < 0) {
        perror("bench-start: fork");
        close(out[0]);
        close(out[1]);
        return r;
    }
    if (pid == 0) {
        int null = open("/dev/null", O_RDONLY);
        if (null < 0 || dup2(null, 0) < 0 || dup2(out[1], 1) < 0) {
            _exit(126);
        }
        execvp(argv[0], argv);
        _exit(127);
    }
    close(out[1]);
    char c = 0;
    bool got = false;
    for (;;) {
        struct pollfd p = { .fd = out[0], .events = POLLIN };
        int n = poll(&p, 1, TIMEOUT_MS);
        if (n <= 0) {
            fprintf(stderr, "# %s: no output in %d s\n", argv[0], TIMEOUT_MS / 1000);
            kill(pid, SIGKILL);
            break;
        }
        char buf[256];
        ssize_t k = read(out[0], buf, sizeof(buf));
        if (k < 0 && errno == EINTR) {
            continue;
        }
        if (k <= 0) {
            break;                           /* EOF: the VMM is ending */
        }
        if (!got) {
            r.first_ms = (double)(bench_now_ns() - t0) / 1e6;
            c = buf[0];
            got = true;
            if (stay) {
                long total, beyond, anon;
                if (bench_smaps_rss(pid, (unsigned long)RAM_MIB << 20, &total, &beyond, &anon) == 0) {
                    r.rss_mib = total / 1024.0;
                    r.rss_beyond_mib = beyond / 1024.0;
                    r.anon_beyond_mib = anon / 1024.0;
                }
                kill(pid, SIGKILL);
            }
        }
    }
    close(out[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    r.exit_ms = (double)(bench_now_ns() - t0) / 1e6;
    r.status = st;
    if (!got || c != 'V') {
        fprintf(stderr, "# %s: first byte %s (0x%02x), not 'V'\n", argv[0],
                got ? "wrong" : "missing", (unsigned char)c);
    } else if (stay) {
        r.ok = r.rss_mib > 0;
    } else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "# %s: ended with status 0x%x\n", argv[0], (unsigned)st);
    } else {
        r.ok = true;
    }
    return r;
}

static int build_argv(char **v, int s, const char *run, const char *kernel,
                      char **qemu, int nqemu)
{
    int n = 0;
    if (s == S_QEMU) {
        for (int i = 0; i < nqemu && n < MAX_ARGS - 3; i++) {
            v[n++] = qemu[i];
        }
        v[n++] = "-kernel";
        v[n++] = (char *)kernel;
    } else {
        static char *base[] = { NULL, "--kernel", NULL, "--memory", "64M", "--cpus", "1",
                                "--seccomp", "on" };
        for (size_t i = 0; i < sizeof(base) / sizeof(base[0]); i++) {
            v[n++] = base[i];
        }
        v[0] = (char *)run;
        v[2] = (char *)kernel;
        if (s == S_VMMKIT_NOCHECK || s == S_VMMKIT_NOCACHE) {
            v[n++] = "--kvm-check";
            v[n++] = s == S_VMMKIT_NOCHECK ? "off" : "nocache";
        }
    }
    v[n] = NULL;
    return n;
}

static void spread(const char *what, const char *unit, double *v, int n)
{
    double s[MAX_REPS];
    memcpy(s, v, sizeof(double) * (size_t)n);
    double med = bench_median(s, n);
    fprintf(stderr, "# %-34s median %8.2f %s  min %8.2f  max %8.2f  (n=%d)\n",
            what, med, unit, s[0], s[n - 1], n);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: bench-start VMMKIT-RUN KERNEL STAY-KERNEL [-- QEMU-COMMAND...]\n");
        return 2;
    }
    const char *run = argv[1], *kernel = argv[2], *stay = argv[3];
    char **qemu = NULL;
    int nqemu = 0;
    if (argc > 5 && strcmp(argv[4], "--") == 0) {
        qemu = argv + 5;
        nqemu = argc - 5;
    }
    bool quick = bench_quick() || nqemu == 0;
    int reps = quick ? 1 : 7;
    const char *e = getenv("VMM_BENCH_REPS");
    if (e && atoi(e) > 0) {
        reps = atoi(e) < MAX_REPS ? atoi(e) : MAX_REPS;
    }
    int nseries = quick ? S_QEMU : NSERIES;
    static double first[NSERIES][MAX_REPS], ex[NSERIES][MAX_REPS];
    static double rss[NSERIES][MAX_REPS], beyond[NSERIES][MAX_REPS], anon[NSERIES][MAX_REPS];
    {
        /* Warm the verdict cache as any earlier start on this host would. */
        char *v[MAX_ARGS];
        build_argv(v, S_VMMKIT, run, kernel, qemu, nqemu);
        if (!start_once(v, false).ok) {
            fprintf(stderr, "bench-start: vmmkit failed in the warm-up start\n");
            return 1;
        }
    }
    for (int i = 0; i < reps; i++) {
        for (int j = 0; j < nseries; j++) {
            int s = (i + j) % nseries;
            char *v[MAX_ARGS];
            build_argv(v, s, run, kernel, qemu, nqemu);
            Start t = start_once(v, false);
            build_argv(v, s, run, stay, qemu, nqemu);
            Start m = start_once(v, true);
            if (!t.ok || !m.ok) {
                fprintf(stderr, "bench-start: %s failed in round %d\n", series_name[s], i + 1);
                return 1;
            }
            first[s][i] = t.first_ms;
            ex[s][i] = t.exit_ms;
            rss[s][i] = m.rss_mib;
            beyond[s][i] = m.rss_beyond_mib;
            anon[s][i] = m.anon_beyond_mib;
            fprintf(stderr, "# round %d %-22s first byte %8.2f ms  exit %8.2f ms  "
                    "rss %6.2f MiB  beyond RAM %6.2f MiB (anonymous %5.2f)\n", i + 1,
                    series_name[s], t.first_ms, t.exit_ms, m.rss_mib, m.rss_beyond_mib,
                    m.anon_beyond_mib);
        }
    }
    double med[NSERIES][5];
    for (int s = 0; s < nseries; s++) {
        char what[96];
        snprintf(what, sizeof(what), "%s first byte", series_name[s]);
        spread(what, "ms", first[s], reps);
        snprintf(what, sizeof(what), "%s exit", series_name[s]);
        spread(what, "ms", ex[s], reps);
        snprintf(what, sizeof(what), "%s rss beyond RAM", series_name[s]);
        spread(what, "MiB", beyond[s], reps);
        snprintf(what, sizeof(what), "%s rss", series_name[s]);
        spread(what, "MiB", rss[s], reps);
        snprintf(what, sizeof(what), "%s anonymous beyond RAM", series_name[s]);
        spread(what, "MiB", anon[s], reps);
        med[s][0] = bench_median(first[s], reps);
        med[s][1] = bench_median(ex[s], reps);
        med[s][2] = bench_median(beyond[s], reps);
        med[s][3] = bench_median(rss[s], reps);
        med[s][4] = bench_median(anon[s], reps);
    }
    /* Quick: vmmkit against itself (ratio 1), the smoke test's form. */
    int cmp = quick ? S_VMMKIT : S_QEMU;
    const char *vs = quick ? "vmmkit" : "qemu-microvm";
    bench_print("start-first-byte", med[S_VMMKIT][0], "ms", vs, med[cmp][0]);
    bench_print("start-first-byte-kvm-check-off", med[S_VMMKIT_NOCHECK][0], "ms", vs, med[cmp][0]);
    bench_print("start-first-byte-kvm-check-nocache", med[S_VMMKIT_NOCACHE][0], "ms", vs,
                med[cmp][0]);
    bench_print("start-exit", med[S_VMMKIT][1], "ms", vs, med[cmp][1]);
    bench_print("start-exit-kvm-check-off", med[S_VMMKIT_NOCHECK][1], "ms", vs, med[cmp][1]);
    bench_print("start-rss-beyond-ram", med[S_VMMKIT][2], "MiB", vs, med[cmp][2]);
    bench_print("start-rss", med[S_VMMKIT][3], "MiB", vs, med[cmp][3]);
    bench_print("start-anon-beyond-ram", med[S_VMMKIT][4], "MiB", vs, med[cmp][4]);
    /* The target for the VMM's own memory: 2 MiB beyond guest RAM. */
    bench_print("start-rss-beyond-ram-target", med[S_VMMKIT][2], "MiB", "target", 2.0);
    return 0;
}
