/* SPDX-License-Identifier: MIT */
/*
 * The doorbell and interrupt path of virtio-pci, measured by the guest:
 * Debian's kernel reads its virtio disk 4 KiB at a time with O_DIRECT in
 * one dd process (one request in flight, so each read costs one doorbell
 * and one interrupt), once with the machine's fast path (ioeventfd
 * doorbells, MSI-X through irqfds) and once with KVM_IRQFD and
 * KVM_IOEVENTFD refused (VmmMachineOptions.kvm_ops), which makes the
 * machine fall back to MMIO doorbell exits and KVM_SIGNAL_MSI.  Same
 * kernel, initramfs, image and run; the two configurations alternate.
 *
 *   bench-doorbell VMLINUZ INITRAMFS      (on /dev/kvm; see meson.build)
 * VMM_BENCH_QUICK=1: one short fast-path boot.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../bench-util.h"
#include "vmmkit/vmmkit.h"

#define OUT_MAX (256 * 1024)

static const char *kernel, *initrd;
static char image[128];

static int no_eventfd_ioctl(void *opaque, int fd, unsigned long req, void *arg)
{
    const VmmKvmOps *k = vmm_kvm_default_ops();
    (void)opaque;
    if (req == KVM_IRQFD || req == KVM_IOEVENTFD) {
        return -ENOSYS;
    }
    return k->ioctl(k->opaque, fd, req, arg);
}

/* One boot; returns the guest's reads per second, or -1. */
static double boot(bool fast, unsigned count, VmmMachineStats *st)
{
    static VmmKvmOps slow_ops;
    static char out[OUT_MAX];
    size_t len = 0;
    char cmd[160];
    int p[2];

    slow_ops = *vmm_kvm_default_ops();
    slow_ops.ioctl = no_eventfd_ioctl;
    if (pipe2(p, O_CLOEXEC) < 0) {
        return -1;
    }
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    snprintf(cmd, sizeof(cmd), "console=ttyS0 quiet panic=-1 pci=noearly "
             "vmmkit.mode=bench4k vmmkit.count=%u", count);
    VmmMachineOptions o = { .size = sizeof(o), .kernel = kernel, .initrd = initrd,
                            .cmdline = cmd, .memory = 256ull << 20, .cpus = 1,
                            .console_out_fd = p[1], .kvm_ops = fast ? NULL : &slow_ops };
    int err = 0;
    VmmMachine *m = vmm_machine_new(&o, &err);
    if (!m || vmm_machine_add_disk(m, image, true) < 0 || vmm_machine_start(m) < 0) {
        fprintf(stderr, "bench-doorbell: cannot boot: %s\n", strerror(-err));
        vmm_machine_free(m);
        close(p[0]);
        close(p[1]);
        return -1;
    }
    int64_t t0 = bench_now_ns();
    for (;;) {
        struct pollfd pf[2] = { { .fd = p[0], .events = POLLIN },
                                { .fd = vmm_machine_event_fd(m), .events = POLLIN } };
        poll(pf, 2, 200);
        ssize_t n;
        while ((n = read(p[0], out + len, OUT_MAX - 1 - len)) > 0) {
            len += (size_t)n;
        }
        out[len] = '\0';
        if (pf[1].revents || bench_now_ns() - t0 > 600 * 1000000000LL) {
            break;
        }
    }
    vmm_machine_stop(m);
    vmm_machine_wait(m, -1, NULL, 0);
    st->size = sizeof(*st);
    vmm_machine_get_stats(m, st);
    vmm_machine_free(m);
    close(p[0]);
    close(p[1]);
    const char *at = strstr(out, "VMMKIT-BENCH-4K ");
    unsigned reads;
    double secs;
    if (!at || sscanf(at, "VMMKIT-BENCH-4K %u reads in %lf seconds", &reads, &secs) != 2 ||
        secs <= 0) {
        fprintf(stderr, "bench-doorbell: no result in the guest's output:\n%s\n", out);
        return -1;
    }
    fprintf(stderr, "# %s: %u reads in %.2f s; irqfd_signals=%" PRIu64
            " msi_injections=%" PRIu64 " mmio_doorbells=%" PRIu64 "\n",
            fast ? "ioeventfd+irqfd" : "mmio-exit+signal-msi", reads, secs,
            st->irqfd_signals, st->msi_injections, st->mmio_doorbells);
    return reads / secs;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s VMLINUZ INITRAMFS\n", argv[0]);
        return 2;
    }
    kernel = argv[1];
    initrd = argv[2];
    unsigned count = bench_quick() ? 64 : 2048;
    int reps = bench_quick() ? 1 : 3;
    snprintf(image, sizeof(image), "bench-doorbell-%d.img", (int)getpid());
    int fd = open(image, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || ftruncate(fd, (off_t)count * 4096 + (1 << 20)) < 0) {
        perror("bench-doorbell: image");
        return 1;
    }
    close(fd);
    double fast[3], slow[3], fast_exits = 0, slow_exits = 0;
    int ok = 1;
    VmmMachineStats st;
    for (int i = 0; i < reps && ok; i++) {
        fast[i] = boot(true, count, &st);
        ok = fast[i] > 0 && st.mmio_doorbells == 0 && st.irqfd_signals > 0;
        fast_exits += (double)st.mmio_doorbells / count / reps;
        if (ok && !bench_quick()) {
            slow[i] = boot(false, count, &st);
            ok = slow[i] > 0 && st.mmio_doorbells > 0 && st.msi_injections > 0;
            slow_exits += (double)st.mmio_doorbells / count / reps;
        }
    }
    unlink(image);
    if (!ok) {
        fprintf(stderr, "bench-doorbell: a boot failed or took the wrong path\n");
        return 1;
    }
    if (bench_quick()) {
        bench_print("virtio-pci-4k-read-iops", fast[0], "IOPS", "none", 0);
        return 0;
    }
    bench_print("virtio-pci-4k-read-iops", bench_median(fast, reps), "IOPS",
                "mmio-exit-signal-msi-4k-read-iops", bench_median(slow, reps));
    /* Doorbells that left KVM_RUN for the VMM, per read (event-index
     * suppression keeps the fallback's figure a little under 1). */
    bench_print("virtio-pci-doorbell-exits-per-read", fast_exits, "exits",
                "mmio-exit-doorbell-exits-per-read", slow_exits);
    return 0;
}
