/* SPDX-License-Identifier: MIT */
/*
 * Benchmark: time from "start the VMM" to the guest's /init, and the VMM's
 * memory beyond guest RAM, for vmmkit's machine against QEMU
 * (-accel kvm -machine microvm) booting the same kernel and initramfs in the
 * same (possibly emulated) machine.  Needs a kernel KVM: run it through
 * bench/machine/run-bench-boot (which uses scripts/vm-run where /dev/kvm is
 * missing).
 *
 *   bench-boot VMLINUZ INITRAMFS [--vmlinux VMLINUX] [-- QEMU-COMMAND...]
 *   bench-boot VMLINUZ INITRAMFS [--vmlinux VMLINUX] --only SERIES --round N
 *              [--disk-bench] [-- QEMU-COMMAND...]
 *   bench-boot --report RESULTS
 *
 * The first form boots every series in this process's machine; the second
 * boots one series once and prints a "# result" line (and with
 * --disk-bench a "# disk" line), for run-bench-boot, which runs each boot
 * in a fresh emulated machine and hands the collected lines to the third.
 *
 * Without a QEMU command (VMM_BENCH_QUICK=1) only vmmkit's boot runs and
 * the comparator is that same boot (ratio 1): the smoke test.
 *
 * Series of boots, each boot in a fresh process: vmmkit booting the
 * bzImage as it does by default (the kernel decompresses itself, as with
 * QEMU), QEMU booting it, vmmkit with the library unpacking it on the host
 * (VMM_MACHINE_BOOT_HOST_UNPACK), and with --vmlinux the same kernel
 * uncompressed booted by both (QEMU through its PVH entry), where neither
 * guest decompresses itself.  VMM_BENCH_REPS rounds (default 5; 1 when
 * quick) boot every series once, each round starting one series further,
 * so that no VMM always boots first or after the same other (in an
 * emulated machine the first boot is often the fastest and boots are
 * 1-2 s apart from round to round).  The BENCH lines compare medians;
 * a comment line gives the median of the per-round ratios.  vmmkit's
 * first boot also has the guest measure its
 * virtio disk: sequential 1 MiB reads (dd) and random 4 KiB reads at queue
 * depth 1 (tools/guest/randread.c), each against the same file read the
 * same way on the host.
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
#include <time.h>
#include <unistd.h>

#include "vmmkit/vmmkit.h"
#include "../bench-util.h"

#define MARK "VMMKIT-INIT"
#define RAM_MIB 256

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Rss (KiB) of process @pid outside guest RAM (bench_smaps_rss), or -1. */
static long rss_beyond_ram(pid_t pid)
{
    long total, beyond, anon;
    if (bench_smaps_rss(pid, (unsigned long)RAM_MIB << 20, &total, &beyond, &anon) < 0) {
        return -1;
    }
    return beyond;
}

/* Print the init's report line (it carries the guest's own uptime). */
static void show_mark(const char *who, const char *buf)
{
    const char *at = strstr(buf, MARK);
    if (at) {
        fprintf(stderr, "# %s: %.*s\n", who, (int)strcspn(at, "\r\n"), at);
    }
}

/* Read @fd until MARK appears or @deadline; true when seen. */
static bool wait_mark(int fd, double deadline, char *buf, size_t cap, size_t *len)
{
    while (now() < deadline) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        poll(&p, 1, 100);
        ssize_t n = read(fd, buf + *len, cap - 1 - *len);
        if (n > 0) {
            *len += (size_t)n;
            buf[*len] = '\0';
            if (strstr(buf, MARK)) {
                /* The rest of the line, for show_mark(). */
                for (int i = 0; i < 20 && !strchr(strstr(buf, MARK), '\n'); i++) {
                    poll(&p, 1, 50);
                    ssize_t k = read(fd, buf + *len, cap - 1 - *len);
                    if (k > 0) {
                        *len += (size_t)k;
                        buf[*len] = '\0';
                    }
                }
                return true;
            }
            if (*len > cap / 2) {           /* keep the tail only */
                memmove(buf, buf + *len - 64, 64);
                *len = 64;
            }
        } else if (n == 0) {
            return false;
        }
    }
    return false;
}

/* Sequential read of @path on the host, MB/s (1 MB = 10^6 bytes, as dd). */
static double host_seq_read(const char *path)
{
    static char buf[1 << 20];
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        return 0;
    }
    double t0 = now();
    long total = 0;
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0 && total < (32l << 20)) {
        total += n;
    }
    double dt = now() - t0;
    close(fd);
    return dt > 0 ? total / dt / 1e6 : 0;
}

/* The guest's dd line: "N bytes (..) copied, S seconds, ..." -> MB/s. */
static double guest_seq_read(const char *out)
{
    const char *at = strstr(out, "VMMKIT-BENCH-SEQ ");
    double bytes, secs;
    if (!at || sscanf(at, "VMMKIT-BENCH-SEQ %lf bytes", &bytes) != 1) {
        return 0;
    }
    const char *c = strstr(at, "copied, ");
    if (!c || sscanf(c, "copied, %lf seconds", &secs) != 1 || secs <= 0) {
        return 0;
    }
    return bytes / secs / 1e6;
}

/* "VMMKIT-BENCH-RAND N reads of 4096 bytes, S seconds" -> reads/s. */
static double guest_rand_read(const char *out)
{
    const char *at = strstr(out, "VMMKIT-BENCH-RAND ");
    long n;
    double secs;
    if (!at || sscanf(at, "VMMKIT-BENCH-RAND %ld reads of 4096 bytes, %lf seconds",
                      &n, &secs) != 2 || secs <= 0) {
        return 0;
    }
    return (double)n / secs;
}

/* The host's side of the random-read figure: the guest program's sequence
 * of offsets (xorshift64, same seed) on the image file, reads/s. */
static double host_rand_read(const char *path, long count)
{
    static char buf[4096];
    int fd = open(path, O_RDONLY);
    off_t size = fd >= 0 ? lseek(fd, 0, SEEK_END) : -1;
    if (size < 4096) {
        if (fd >= 0) {
            close(fd);
        }
        return 0;
    }
    uint64_t blocks = (uint64_t)size / 4096, x = 0x9e3779b97f4a7c15ull;
    double t0 = now();
    for (long i = 0; i < count; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if (pread(fd, buf, sizeof(buf), (off_t)((x % blocks) * 4096)) != 4096) {
            close(fd);
            return 0;
        }
    }
    double dt = now() - t0;
    close(fd);
    return dt > 0 ? (double)count / dt : 0;
}

static const char *disk_image;
static bool disk_bench_done;
static uint32_t boot_flags;     /* the next vmmkit boot's VMM_MACHINE_BOOT_* */
static double guest_mbs, guest_rps;

static int boot_vmmkit(const char *kernel, const char *initrd, double *secs, long *kib)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) {
        return -errno;
    }
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    VmmMachineOptions o = { .size = sizeof(o), .kernel = kernel, .initrd = initrd,
                            .cmdline = disk_image && !disk_bench_done ?
                                "console=ttyS0 quiet panic=-1 pci=noearly vmmkit.mode=bench" :
                                "console=ttyS0 quiet panic=-1 pci=noearly vmmkit.mode=init",
                            .memory = (uint64_t)RAM_MIB << 20, .cpus = 1,
                            .console_out_fd = p[1], .boot_flags = boot_flags };
    double t0 = now();
    int err = 0;
    VmmMachine *m = vmm_machine_new(&o, &err);
    if (m && disk_image && vmm_machine_add_disk(m, disk_image, true) < 0) {
        vmm_machine_free(m);
        m = NULL;
    }
    if (!m || vmm_machine_start(m) < 0) {
        fprintf(stderr, "bench-boot: vmmkit machine: %s\n", strerror(-err));
        return -1;
    }
    static char buf[1 << 16];
    size_t len = 0;
    bool ok = wait_mark(p[0], t0 + 600, buf, sizeof(buf), &len);
    *secs = now() - t0;
    show_mark("vmmkit", buf);
    vmm_machine_pause(m);
    *kib = rss_beyond_ram(getpid());
    if (disk_image && !disk_bench_done && ok) {
        /* Let it run the disk benchmark and power off (the parent marks
         * it done: this runs in a child, boot_vmmkit_child). */
        vmm_machine_resume(m);
        /* The disks' counters when the sequential part is done (the guest
         * pauses a second before the random reads), and at the end: the
         * random reads' time inside the VMM. */
        VmmMachineStats s0 = { .size = sizeof(s0) }, s1 = { .size = sizeof(s1) };
        bool have_s0 = false;
        while (!strstr(buf, "VMMKIT-POWEROFF") && now() - t0 < 900) {
            if (!have_s0 && strstr(buf, "VMMKIT-BENCH-SEQ")) {
                have_s0 = vmm_machine_get_stats(m, &s0) == 0;
            }
            struct pollfd pf = { .fd = p[0], .events = POLLIN };
            poll(&pf, 1, 100);
            ssize_t n = read(p[0], buf + len, sizeof(buf) - 1 - len);
            if (n > 0) {
                len += (size_t)n;
                buf[len] = '\0';
            }
        }
        guest_mbs = guest_seq_read(buf);
        guest_rps = guest_rand_read(buf);
        fprintf(stderr, "# vmmkit: %s\n", strstr(buf, "VMMKIT-BENCH") ?: "no disk result");
        if (have_s0 && vmm_machine_get_stats(m, &s1) == 0 && guest_rps > 0 &&
            s1.blk_requests > s0.blk_requests) {
            double n = (double)(s1.blk_requests - s0.blk_requests);
            double svc = (double)(s1.blk_service_ns - s0.blk_service_ns) / n / 1e3;
            double io = (double)(s1.blk_io_ns - s0.blk_io_ns) / n / 1e3;
            double seen = 1e6 / guest_rps;
            fprintf(stderr, "# vmmkit: random 4 KiB reads: %.0f requests; the guest sees %.0f us "
                    "per read; inside the VMM %.0f us (block layer %.0f us); the other %.0f us "
                    "are doorbell, iothread wake-up, interrupt and the guest's own I/O path\n",
                    n, seen, svc, io, seen - svc);
        }
    }
    vmm_machine_free(m);
    close(p[0]);
    close(p[1]);
    return ok ? 0 : -1;
}

static int boot_qemu(char **argv, double *secs, long *kib)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) {
        return -errno;
    }
    double t0 = now();
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[1], 1);
        int null = open("/dev/null", O_RDONLY);
        dup2(null, 0);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    static char buf[1 << 16];
    size_t len = 0;
    bool ok = wait_mark(p[0], t0 + 600, buf, sizeof(buf), &len);
    *secs = now() - t0;
    show_mark("qemu", buf);
    kill(pid, SIGSTOP);
    *kib = rss_beyond_ram(pid);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(p[0]);
    if (!ok) {
        fprintf(stderr, "bench-boot: QEMU did not reach /init: %s\n", buf);
    }
    return ok ? 0 : -1;
}

/* One vmmkit boot in a fresh child process, as each QEMU boot is: a
 * machine created after others in the same process would find what
 * malloc kept and a fragmented host (transparent huge pages harder to
 * get), which is not what a VMM that boots once sees. */
struct boot_result {
    int ok;
    double secs, mbs, rps;
    long kib;
};

static int boot_vmmkit_child(const char *kernel, const char *initrd, double *secs, long *kib)
{
    int p[2];
    if (pipe(p) < 0) {
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        return -1;
    }
    if (pid == 0) {
        close(p[0]);
        struct boot_result r = { 0 };
        r.ok = boot_vmmkit(kernel, initrd, &r.secs, &r.kib) == 0;
        r.mbs = guest_mbs;
        r.rps = guest_rps;
        ssize_t n = write(p[1], &r, sizeof(r));
        _exit(n == (ssize_t)sizeof(r) ? 0 : 1);
    }
    close(p[1]);
    struct boot_result r = { 0 };
    ssize_t n = read(p[0], &r, sizeof(r));
    close(p[0]);
    waitpid(pid, NULL, 0);
    if (n != (ssize_t)sizeof(r) || !r.ok) {
        return -1;
    }
    *secs = r.secs;
    *kib = r.kib;
    if (!disk_bench_done && disk_image) {
        disk_bench_done = true;         /* the first child ran it */
        guest_mbs = r.mbs;
        guest_rps = r.rps;
    }
    return 0;
}

/* One series of boots: a VMM and a kernel (and for vmmkit its boot flags). */
enum { MAX_REPS = 15 };
struct series {
    const char *name;
    char **qemu;                /* QEMU's command, or NULL: vmmkit */
    const char *kernel;
    uint32_t flags;
    double secs[MAX_REPS], kib[MAX_REPS];
};

static int run_one(struct series *s, const char *initrd, int i)
{
    long k = 0;
    int e;
    if (s->qemu) {
        e = boot_qemu(s->qemu, &s->secs[i], &k);
    } else {
        boot_flags = s->flags;
        e = boot_vmmkit_child(s->kernel, initrd, &s->secs[i], &k);
        boot_flags = 0;
    }
    s->kib[i] = (double)k;
    return e;
}

/* @argv with the argument after "-kernel" replaced by @kernel (leaks: the
 * process is short-lived). */
static char **with_kernel(char **argv, const char *kernel)
{
    int n = 0;
    while (argv[n]) {
        n++;
    }
    char **v = calloc((size_t)n + 1, sizeof(*v));
    if (!v) {
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        v[i] = (i > 0 && !strcmp(argv[i - 1], "-kernel")) ? (char *)kernel : argv[i];
    }
    return v;
}

/* Median of @ours[i] / @theirs[i] over the rounds (the same round's boots
 * ran next to each other, under the same load). */
static double median_ratio(const struct series *ours, const struct series *theirs, int reps)
{
    double r[MAX_REPS];
    for (int i = 0; i < reps; i++) {
        r[i] = ours->secs[i] / theirs->secs[i];
    }
    return bench_median(r, reps);
}

static void print_time(const char *name, struct series *ours, struct series *theirs,
                       const char *vs, int reps)
{
    double pr = median_ratio(ours, theirs, reps);
    double o[MAX_REPS], t[MAX_REPS];
    memcpy(o, ours->secs, sizeof(o));
    memcpy(t, theirs->secs, sizeof(t));
    double om = bench_median(o, reps), tm = bench_median(t, reps);
    printf("# %s: median of the per-round ratios %.3f\n", name, pr);
    printf("BENCH name=%s value=%.2f unit=s vs=%s vs_value=%.2f ratio=%.3f\n",
           name, om, vs, tm, om / tm);
}

/* The series of a run, in their rotation order (bench-boot's own rounds
 * and run-bench-boot's one-boot-per-machine rounds use the same). */
enum { MAX_SERIES = 5 };
typedef struct Run {
    struct series sv[MAX_SERIES];
    int n;
    struct series *ours, *theirs, *unpack, *ours_elf, *theirs_elf;
} Run;

static int setup_series(Run *r, const char *vmlinuz, const char *vmlinux, char **qemu)
{
    memset(r, 0, sizeof(*r));
    r->ours = &r->sv[r->n];
    r->sv[r->n++] = (struct series){ .name = "vmmkit", .kernel = vmlinuz };
    if (!qemu) {
        return 0;
    }
    r->theirs = &r->sv[r->n];
    r->sv[r->n++] = (struct series){ .name = "qemu", .qemu = qemu };
    r->unpack = &r->sv[r->n];
    r->sv[r->n++] = (struct series){ .name = "vmmkit-host-unpack", .kernel = vmlinuz,
                                     .flags = VMM_MACHINE_BOOT_HOST_UNPACK };
    if (vmlinux) {
        r->ours_elf = &r->sv[r->n];
        r->sv[r->n++] = (struct series){ .name = "vmmkit-vmlinux", .kernel = vmlinux };
        r->theirs_elf = &r->sv[r->n];
        r->sv[r->n++] = (struct series){ .name = "qemu-vmlinux",
                                         .qemu = qemu ? with_kernel(qemu, vmlinux) : NULL };
        if (!r->theirs_elf->qemu) {
            return -1;
        }
    }
    return 0;
}

static struct series *find_series(Run *r, const char *name)
{
    for (int i = 0; i < r->n; i++) {
        if (!strcmp(r->sv[i].name, name)) {
            return &r->sv[i];
        }
    }
    return NULL;
}

/* The BENCH lines of a finished run; @have_disk: guest_mbs/guest_rps and
 * @host_mbs/@host_rps hold the disk figures. */
static void report(Run *r, bool quick, int reps, bool have_disk, double host_mbs,
                   double host_rps)
{
    struct series *theirs = r->theirs ? r->theirs : r->ours; /* quick: ratio 1 */
    const char *vs = quick ? "self-start-to-init" : "qemu-microvm-start-to-init";
    print_time("machine-start-to-init", r->ours, theirs, vs, reps);
    if (r->unpack) {
        print_time("machine-start-to-init-host-unpack", r->unpack, theirs, vs, reps);
    }
    if (r->ours_elf) {
        print_time("machine-start-to-init-vmlinux", r->ours_elf, r->theirs_elf,
                   "qemu-microvm-pvh-start-to-init", reps);
    }
    double ok = bench_median(r->ours->kib, reps), qk = bench_median(theirs->kib, reps);
    const char *vm = quick ? "self" : "qemu-microvm";
    printf("BENCH name=machine-vmm-memory value=%.2f unit=MiB vs=%s-vmm-memory "
           "vs_value=%.2f ratio=%.3f\n", ok / 1024.0, vm, qk / 1024.0, ok / (qk ? qk : 1));
    if (have_disk) {
        printf("BENCH name=machine-disk-seq-read value=%.1f unit=MB/s vs=host-file-seq-read "
               "vs_value=%.1f ratio=%.3f\n", guest_mbs, host_mbs,
               host_mbs > 0 ? guest_mbs / host_mbs : 0);
        printf("BENCH name=machine-disk-rand-read-4k value=%.0f unit=reads/s "
               "vs=host-file-rand-read-4k vs_value=%.0f ratio=%.3f\n", guest_rps, host_rps,
               host_rps > 0 ? guest_rps / host_rps : 0);
    }
}

/* --report FILE: the BENCH lines from the "result" and "disk" lines that
 * --only boots printed (run-bench-boot collects them, one boot per fresh
 * emulated machine).  A round counts when every series booted in it. */
static int report_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        perror(path);
        return 1;
    }
    Run r;
    static char *fake_qemu[] = { "qemu", "-kernel", "k", NULL };
    if (setup_series(&r, "vmlinuz", "vmlinux", fake_qemu) < 0) {
        fclose(f);
        return 1;
    }
    bool seen[MAX_SERIES][MAX_REPS] = { { false } };
    bool have_disk = false, have_elf = false;
    double host_mbs = 0, host_rps = 0;
    char line[512], name[64];
    while (fgets(line, sizeof(line), f)) {
        int round;
        double secs, kib, a, b, c, d;
        if (sscanf(line, "# result %63s round=%d secs=%lf kib=%lf", name, &round, &secs,
                   &kib) == 4) {
            struct series *s = find_series(&r, name);
            if (!s || round < 0 || round >= MAX_REPS) {
                continue;
            }
            s->secs[round] = secs;
            s->kib[round] = kib;
            seen[s - r.sv][round] = true;
            have_elf |= s == r.ours_elf;
        } else if (sscanf(line, "# disk guest_mbs=%lf guest_rps=%lf host_mbs=%lf host_rps=%lf",
                          &a, &b, &c, &d) == 4) {
            have_disk = true;
            guest_mbs = a, guest_rps = b, host_mbs = c, host_rps = d;
        }
    }
    fclose(f);
    if (!have_elf) {
        r.n -= 2;
        r.ours_elf = r.theirs_elf = NULL;
    }
    /* Keep the complete rounds, packed to the front. */
    int reps = 0;
    for (int i = 0; i < MAX_REPS; i++) {
        bool all = true;
        for (int j = 0; j < r.n; j++) {
            all &= seen[j][i];
        }
        if (!all) {
            continue;
        }
        for (int j = 0; j < r.n; j++) {
            r.sv[j].secs[reps] = r.sv[j].secs[i];
            r.sv[j].kib[reps] = r.sv[j].kib[i];
        }
        reps++;
    }
    if (reps == 0) {
        fprintf(stderr, "bench-boot: no complete round in %s\n", path);
        return 1;
    }
    printf("# %d rounds, each boot in a fresh emulated machine\n", reps);
    report(&r, false, reps, have_disk, host_mbs, host_rps);
    return 0;
}

/* The disk image for the throughput figure (64 MiB of non-zero data so the
 * guest reads real blocks). */
static void make_disk_image(void)
{
    static char img[] = "bench-disk.img";
    int ifd = open(img, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (ifd < 0) {
        return;
    }
    /* Heap (an mmap freed before the boot), so that the benchmark's own
     * buffer is not counted as the VMM's memory. */
    size_t bsz = 1 << 20;
    char *blk = malloc(bsz);
    if (!blk) {
        close(ifd);
        return;
    }
    memset(blk, 0x5a, bsz);
    for (int i = 0; i < 64; i++) {
        if (write(ifd, blk, bsz) != (ssize_t)bsz) {
            break;
        }
    }
    free(blk);
    fsync(ifd);
    close(ifd);
    disk_image = img;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--report")) {
        return report_file(argv[2]);
    }
    if (argc < 3) {
        fprintf(stderr, "usage: bench-boot VMLINUZ INITRAMFS [--vmlinux VMLINUX] "
                "[--only SERIES --round N [--disk-bench]] [-- QEMU-COMMAND...]\n"
                "       bench-boot --report RESULTS\n");
        return 2;
    }
    char **qemu = NULL;
    const char *vmlinux = NULL, *only = NULL;
    int a = 3, round = 0;
    bool disk_bench = true;
    if (argc > a + 1 && !strcmp(argv[a], "--vmlinux")) {
        vmlinux = argv[a + 1];
        a += 2;
    }
    if (argc > a + 3 && !strcmp(argv[a], "--only") && !strcmp(argv[a + 2], "--round")) {
        only = argv[a + 1];
        round = atoi(argv[a + 3]);
        a += 4;
        disk_bench = argc > a && !strcmp(argv[a], "--disk-bench");
        a += disk_bench;
    }
    if (argc > a + 1 && !strcmp(argv[a], "--")) {
        qemu = argv + a + 1;
    }
    make_disk_image();
    disk_bench_done = !disk_bench;
    bool quick = bench_quick();
    if (quick) {
        qemu = NULL;
    }
    Run run;
    if (setup_series(&run, argv[1], vmlinux, qemu) < 0) {
        return 1;
    }
    if (only) {
        /* One boot of one series, for run-bench-boot's fresh machines. */
        struct series *s = find_series(&run, only);
        if (!s || round < 0 || round >= MAX_REPS || run_one(s, argv[2], 0) < 0) {
            fprintf(stderr, "bench-boot: series %s failed or unknown\n", only);
            return 1;
        }
        printf("# result %s round=%d secs=%.3f kib=%.0f\n", s->name, round, s->secs[0],
               s->kib[0]);
        if (disk_image && disk_bench && !s->qemu) {
            printf("# disk guest_mbs=%.1f guest_rps=%.0f host_mbs=%.1f host_rps=%.0f\n",
                   guest_mbs, guest_rps, host_seq_read(disk_image),
                   host_rand_read(disk_image, 2000));
        }
        if (disk_image) {
            unlink(disk_image);
        }
        return 0;
    }
    const char *r = getenv("VMM_BENCH_REPS");
    int reps = r ? atoi(r) : (qemu ? 5 : 1);
    if (reps < 1 || reps > MAX_REPS) {
        reps = 1;
    }
    /* Each round boots every series once, starting one series further
     * than the round before, so that no VMM always boots first (or right
     * after the same other) in a round. */
    for (int i = 0; i < reps; i++) {
        char line[256];
        int len = snprintf(line, sizeof(line), "# round %d:", i + 1);
        for (int j = 0; j < run.n; j++) {
            struct series *s = &run.sv[(i + j) % run.n];
            if (run_one(s, argv[2], i) < 0) {
                return 1;
            }
            if (len < (int)sizeof(line)) {
                len += snprintf(line + len, sizeof(line) - (size_t)len, " %s %.2f s%s",
                                s->name, s->secs[i], j + 1 < run.n ? "," : "");
            }
        }
        fprintf(stderr, "%s\n", line);
    }
    double host_mbs = 0, host_rps = 0;
    if (disk_image) {
        host_mbs = host_seq_read(disk_image);
        host_rps = host_rand_read(disk_image, 2000);
    }
    report(&run, quick, reps, disk_image != NULL, host_mbs, host_rps);
    if (disk_image) {
        unlink(disk_image);
    }
    return 0;
}
