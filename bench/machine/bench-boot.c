/* SPDX-License-Identifier: MIT */
/*
 * Benchmark: time from "start the VMM" to the guest's /init, and the VMM's
 * memory beyond guest RAM, for vmmkit's machine against QEMU
 * (-accel kvm -machine microvm) booting the same kernel and initramfs in the
 * same (possibly emulated) machine.  Needs a kernel KVM: run it through
 * bench/machine/run-bench-boot (which uses scripts/vm-run where /dev/kvm is
 * missing).
 *
 *   bench-boot VMLINUZ INITRAMFS [-- QEMU-COMMAND...]
 *
 * Without a QEMU command (VMM_BENCH_QUICK=1) only vmmkit's boot runs and
 * the comparator is that same boot (ratio 1): the smoke test.
 *
 * The two VMMs boot alternately VMM_BENCH_REPS times (default 3; 1 when
 * quick), each boot in a fresh process, and the medians are compared, so
 * that load drifting on a shared machine hits both.  vmmkit boots the
 * bzImage as it does by default (the kernel decompresses itself, as with
 * QEMU); with QEMU there, a third series has the library unpack it on the
 * host (VMM_MACHINE_BOOT_HOST_UNPACK) and gets a BENCH line of its own.  vmmkit's first boot also has the guest measure its
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

/* Rss (KiB) of process @pid outside guest RAM: mappings named like the
 * RAM memfd, or at least RAM_MIB large, are guest RAM. */
static long rss_beyond_ram(pid_t pid)
{
    char path[64], line[512];
    snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) {
        return -1;
    }
    long total = 0;
    bool guest = false;
    /* VMM_BENCH_VERBOSE=1: name every mapping that holds 128 KiB or more. */
    bool verbose = getenv("VMM_BENCH_VERBOSE") != NULL;
    char head[512] = "";
    while (fgets(line, sizeof(line), f)) {
        unsigned long lo, hi;
        long kb;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, ' ')) {
            guest = strstr(line, "vmmkit-ram") || (hi - lo) >= ((unsigned long)RAM_MIB << 20);
            snprintf(head, sizeof(head), "%s", line);
        } else if (sscanf(line, "Rss: %ld kB", &kb) == 1 && !guest) {
            total += kb;
            if (verbose && kb >= 128) {
                fprintf(stderr, "# rss %6ld KiB %s", kb, head);
            }
        }
    }
    fclose(f);
    return total;
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

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench-boot VMLINUZ INITRAMFS [-- QEMU-COMMAND...]\n");
        return 2;
    }
    char **qemu = NULL;
    /* A disk image for the throughput figure (created here, 64 MiB of
     * non-zero data so the guest reads real blocks). */
    static char img[] = "bench-disk.img";
    int ifd = open(img, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (ifd >= 0) {
        /* Heap (an mmap freed before the boot), so that the benchmark's
         * own buffer is not counted as the VMM's memory. */
        size_t bsz = 1 << 20;
        char *blk = malloc(bsz);
        if (!blk) {
            return 1;
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
    if (argc > 4 && !strcmp(argv[3], "--")) {
        qemu = argv + 4;
    }
    const char *r = getenv("VMM_BENCH_REPS");
    int reps = r ? atoi(r) : (qemu && !bench_quick() ? 3 : 1);
    if (reps < 1 || reps > 15) {
        reps = 1;
    }
    double os[15], qs[15], gs[15], ok[15], qk[15];
    for (int i = 0; i < reps; i++) {
        long k = 0;
        if (boot_vmmkit_child(argv[1], argv[2], &os[i], &k) < 0) {
            return 1;
        }
        ok[i] = (double)k;
        if (qemu) {
            if (boot_qemu(qemu, &qs[i], &k) < 0) {
                return 1;
            }
            qk[i] = (double)k;
            boot_flags = VMM_MACHINE_BOOT_HOST_UNPACK;
            int e = boot_vmmkit_child(argv[1], argv[2], &gs[i], &k);
            boot_flags = 0;
            if (e < 0) {
                return 1;
            }
            fprintf(stderr, "# boot %d: vmmkit %.2f s, qemu %.2f s, vmmkit host-unpack "
                    "%.2f s\n", i + 1, os[i], qs[i], gs[i]);
        } else {
            qs[i] = os[i];
            qk[i] = ok[i];
            fprintf(stderr, "# boot %d: vmmkit %.2f s\n", i + 1, os[i]);
        }
    }
    double ours_s = bench_median(os, reps), qemu_s = bench_median(qs, reps);
    long ours_k = (long)bench_median(ok, reps), qemu_k = (long)bench_median(qk, reps);
    const char *vs = qemu ? "qemu-microvm" : "self";
    printf("BENCH name=machine-start-to-init value=%.2f unit=s vs=%s-start-to-init "
           "vs_value=%.2f ratio=%.3f\n", ours_s, vs, qemu_s, ours_s / qemu_s);
    if (qemu) {
        double g = bench_median(gs, reps);
        printf("BENCH name=machine-start-to-init-host-unpack value=%.2f unit=s "
               "vs=%s-start-to-init vs_value=%.2f ratio=%.3f\n", g, vs, qemu_s, g / qemu_s);
    }
    printf("BENCH name=machine-vmm-memory value=%.2f unit=MiB vs=%s-vmm-memory "
           "vs_value=%.2f ratio=%.3f\n", ours_k / 1024.0, vs, qemu_k / 1024.0,
           (double)ours_k / (double)(qemu_k ? qemu_k : 1));
    if (disk_image) {
        double host = host_seq_read(disk_image);
        printf("BENCH name=machine-disk-seq-read value=%.1f unit=MB/s vs=host-file-seq-read "
               "vs_value=%.1f ratio=%.3f\n", guest_mbs, host, host > 0 ? guest_mbs / host : 0);
        double hrps = host_rand_read(disk_image, 2000);
        printf("BENCH name=machine-disk-rand-read-4k value=%.0f unit=reads/s "
               "vs=host-file-rand-read-4k vs_value=%.0f ratio=%.3f\n", guest_rps, hrps,
               hrps > 0 ? guest_rps / hrps : 0);
        unlink(disk_image);
    }
    return 0;
}
