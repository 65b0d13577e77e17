/* SPDX-License-Identifier: MIT */
/*
 * Real KVM: boot Debian's kernel with the demo initramfs through the public
 * machine API and read what the guest's /init reports on the console.
 *   test-boot-linux VMLINUZ INITRAMFS
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <inttypes.h>
#include <cmocka.h>

#include "vmmkit/vmmkit.h"

static const char *kernel, *initrd;

#define OUT_MAX (1 << 20)

typedef struct Run {
    char *out;
    size_t len;
    int state;
    bool tsc_deadline;     /* KVM offered KVM_CAP_TSC_DEADLINE_TIMER */
    char msg[256];
    int paused_output;     /* bytes the guest printed while paused */
    bool paused;           /* the pause happened (before the guest ended) */
    VmmMachineStats stats; /* the disk's interrupt and doorbell paths */
    char *hvc;             /* what the guest wrote on its virtio console */
    size_t hvc_len;
    uint64_t mmio_exits;   /* all vCPUs' MMIO exits */
} Run;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void drain(int fd, Run *r)
{
    for (;;) {
        ssize_t n = read(fd, r->out + r->len, OUT_MAX - 1 - r->len);
        if (n <= 0) {
            break;
        }
        fwrite(r->out + r->len, 1, (size_t)n, stderr);
        r->len += (size_t)n;
        r->out[r->len] = '\0';
    }
}

/*
 * A boot that stops making progress fails in seconds, not at the test's
 * timeout: SILENCE_S without console output (the kernel is quiet until
 * /init, which takes 10-50 s in the emulated machine) stops the machine and
 * fails with the reason, the vCPUs' exit counts and the last lines printed.
 */
#define SILENCE_S 150
#define BOOT_MAX_S 300

static void give_up(VmmMachine *m, Run *r, int fd, int wfd, const char *why)
{
    VmmVm *vm = vmm_machine_vm(m);
    uint64_t exits = 0;
    for (unsigned i = 0; i < vmm_vm_nr_vcpus(vm); i++) {
        VmmVcpuStats vs;
        vmm_vcpu_get_stats(vmm_vm_get_vcpu(vm, i), &vs);
        exits += vs.exits_io + vs.exits_mmio + vs.exits_hlt + vs.exits_intr + vs.exits_other;
    }
    vmm_machine_stop(m);
    vmm_machine_wait(m, -1, NULL, 0);
    drain(fd, r);
    vmm_machine_free(m);
    close(fd);
    close(wfd);
    const char *tail = r->len > 600 ? r->out + r->len - 600 : r->out;
    fail_msg("%s (%zu console bytes, %llu exits); last console output:\n%s", why, r->len,
             (unsigned long long)exits, r->len ? tail : "(nothing)");
}

static const char *disk_opts;   /* block options of the next boot's disk */
static const VmmKvmOps *kvm_ops; /* the next boot's KVM interface (NULL: kernel) */
static uint32_t boot_flags;     /* the next boot's VMM_MACHINE_BOOT_* */
static bool with_devices;       /* the next boot has virtio-rng and virtio-console */
#define HVC_LINE "ping-from-host-42"

/* The virtio console's output, kept apart from the UART's. */
static void drain_hvc(int fd, Run *r)
{
    for (;;) {
        ssize_t n = read(fd, r->hvc + r->hvc_len, OUT_MAX - 1 - r->hvc_len);
        if (n <= 0) {
            break;
        }
        r->hvc_len += (size_t)n;
        r->hvc[r->hvc_len] = '\0';
    }
}

/* Boot with @mode; pause for a second @pause_at seconds in when > 0. */
static void boot(const char *mode, uint32_t cpus, double pause_at, Run *r)
{
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "console=ttyS0 quiet panic=-1 vmmkit.tag=t42 vmmkit.mode=%s",
             mode);
    VmmMachineOptions o = { .size = sizeof(o), .kernel = kernel, .initrd = initrd,
                            .cmdline = cmd, .memory = 256ull << 20, .cpus = cpus,
                            .console_out_fd = p[1], .kvm_ops = kvm_ops,
                            .boot_flags = boot_flags };
    int err = 0;
    VmmMachine *m = vmm_machine_new(&o, &err);
    assert_non_null(m);
    assert_int_equal(vmm_machine_state(m), VMM_MACHINE_CREATED);
    if (disk_opts) {
        assert_int_equal(vmm_machine_add_block(m, disk_opts, false), 0);
    }
    memset(r, 0, sizeof(*r));
    r->out = calloc(1, OUT_MAX);
    r->hvc = with_devices ? calloc(1, OUT_MAX) : NULL;
    int cin[2] = { -1, -1 }, cout[2] = { -1, -1 };
    bool hvc_sent = false;
    if (with_devices) {
        assert_int_equal(pipe2(cin, O_CLOEXEC), 0);
        assert_int_equal(pipe2(cout, O_CLOEXEC), 0);
        fcntl(cout[0], F_SETFL, O_NONBLOCK);
        assert_int_equal(vmm_machine_add_rng(m), 0);
        assert_int_equal(vmm_machine_add_console(m, cin[0], cout[1]), 0);
    }
    r->tsc_deadline = vmm_vm_check_extension(vmm_machine_vm(m), KVM_CAP_TSC_DEADLINE_TIMER) > 0;
    assert_int_equal(vmm_machine_start(m), 0);
    double t0 = now(), last_output = t0;
    bool paused_once = false;
    for (;;) {
        struct pollfd pf[2] = { { .fd = p[0], .events = POLLIN },
                                { .fd = vmm_machine_event_fd(m), .events = POLLIN } };
        poll(pf, 2, 100);
        size_t before_drain = r->len;
        drain(p[0], r);
        if (r->len != before_drain) {
            last_output = now();
        }
        if (with_devices) {
            drain_hvc(cout[0], r);
            /* The guest reads one line once its /dev/hvc0 is open. */
            if (!hvc_sent && strstr(r->out, "VMMKIT-HVC-READY")) {
                assert_int_equal(write(cin[1], HVC_LINE "\n", sizeof(HVC_LINE)),
                                 (ssize_t)sizeof(HVC_LINE));
                hvc_sent = true;
            }
        }
        if (pf[1].revents) {
            break;
        }
        if (pause_at > 0 && !paused_once && now() - t0 > pause_at) {
            paused_once = true;
            r->paused = vmm_machine_state(m) == VMM_MACHINE_RUNNING;
            assert_int_equal(vmm_machine_pause(m), 0);
            assert_int_equal(vmm_machine_state(m), VMM_MACHINE_PAUSED);
            drain(p[0], r);
            size_t before = r->len;
            usleep(1000 * 1000);
            drain(p[0], r);
            r->paused_output = (int)(r->len - before);
            assert_int_equal(vmm_machine_resume(m), 0);
            assert_int_equal(vmm_machine_state(m), VMM_MACHINE_RUNNING);
            last_output = now();
        }
        char why[96];
        if (now() - last_output > SILENCE_S) {
            snprintf(why, sizeof(why), "the guest printed nothing for %d s", SILENCE_S);
            give_up(m, r, p[0], p[1], why);
        }
        if (now() - t0 > BOOT_MAX_S) {
            snprintf(why, sizeof(why), "the guest still runs after %d s", BOOT_MAX_S);
            give_up(m, r, p[0], p[1], why);
        }
    }
    r->state = vmm_machine_wait(m, -1, r->msg, sizeof(r->msg));
    drain(p[0], r);
    r->stats.size = sizeof(r->stats);
    assert_int_equal(vmm_machine_get_stats(m, &r->stats), 0);
    for (uint32_t i = 0; i < cpus; i++) {
        VmmVcpuStats vs;
        vmm_vcpu_get_stats(vmm_vm_get_vcpu(vmm_machine_vm(m), i), &vs);
        r->mmio_exits += vs.exits_mmio;
    }
    fprintf(stderr, "# stats: irqfd_signals=%" PRIu64 " msi_injections=%" PRIu64
            " msix_pended=%" PRIu64 " mmio_doorbells=%" PRIu64 " irqfd_vectors=%u"
            " ioeventfd_queues=%u mmio_exits=%" PRIu64 " kernel_unpacked=%u\n",
            r->stats.irqfd_signals, r->stats.msi_injections, r->stats.msix_pended,
            r->stats.mmio_doorbells, r->stats.irqfd_vectors, r->stats.ioeventfd_queues,
            r->mmio_exits, r->stats.kernel_unpacked);
    vmm_machine_free(m);
    close(p[0]);
    close(p[1]);
    if (with_devices) {
        drain_hvc(cout[0], r);
        fprintf(stderr, "# virtio console output: %s\n", r->hvc);
        for (int i = 0; i < 2; i++) {
            close(cin[i]);
            close(cout[i]);
        }
    }
    fprintf(stderr, "# boot %s: %s after %.1f s\n", mode, r->msg, now() - t0);
}

static void test_boot_to_init(void **state)
{
    (void)state;
    Run r;
    boot("init", 1, 0, &r);
    assert_int_equal(r.state, VMM_MACHINE_POWEROFF);
    assert_non_null(strstr(r.out, "VMMKIT-INIT mode=init"));
    assert_non_null(strstr(r.out, "VMMKIT-POWEROFF"));
    /* The guest sees the TSC-deadline timer exactly when KVM offers it. */
    assert_non_null(strstr(r.out, r.tsc_deadline ? "tscdl=1" : "tscdl=0"));
    /* The standard protocol: the kernel decompressed itself. */
    assert_int_equal(r.stats.kernel_unpacked, 0);
    free(r.out);
}

/* virtio-rng and virtio-console in one boot (vmmkit.mode=devices): the
 * guest reads /dev/hwrng through virtio_rng (64 bytes, not all equal), and
 * echoes over /dev/hvc0 the line the host writes into the console's input
 * once the guest says it listens. */
static void test_rng_and_console(void **state)
{
    (void)state;
    Run r;
    with_devices = true;
    boot("devices", 1, 0, &r);
    with_devices = false;
    assert_int_equal(r.state, VMM_MACHINE_POWEROFF);
    assert_null(strstr(r.out, "VMMKIT-FAIL"));
    const char *rng = strstr(r.out, "VMMKIT-RNG current=virtio_rng");
    assert_non_null(rng);
    unsigned bytes = 0, distinct = 0;
    const char *b = strstr(rng, "bytes=");
    assert_non_null(b);
    assert_int_equal(sscanf(b, "bytes=%u distinct=%u", &bytes, &distinct), 2);
    assert_int_equal(bytes, 64);
    assert_true(distinct > 1);
    assert_non_null(strstr(r.out, "VMMKIT-HVC-GOT " HVC_LINE));
    assert_non_null(strstr(r.hvc, "VMMKIT-HVC-ECHO " HVC_LINE));
    /* Their interrupts and doorbells took the fast paths too. */
    assert_true(r.stats.irqfd_signals > 0);
    assert_int_equal(r.stats.msi_injections, 0);
    free(r.out);
    free(r.hvc);
}

/* Debian's bzImage carries an xz payload: unpacked by the library. */
static void test_boot_host_unpack(void **state)
{
    (void)state;
    Run r;
    boot_flags = VMM_MACHINE_BOOT_HOST_UNPACK;
    boot("init", 1, 0, &r);
    boot_flags = 0;
    assert_int_equal(r.state, VMM_MACHINE_POWEROFF);
    assert_non_null(strstr(r.out, "VMMKIT-INIT mode=init"));
    assert_int_equal(r.stats.kernel_unpacked, 1);
    free(r.out);
}

static void test_two_vcpus(void **state)
{
    (void)state;
    Run r;
    boot("init", 2, 0, &r);
    assert_int_equal(r.state, VMM_MACHINE_POWEROFF);
    assert_non_null(strstr(r.out, "cpus=2"));
    free(r.out);
}

static void test_reboot(void **state)
{
    (void)state;
    Run r;
    boot("reboot", 1, 0, &r);
    assert_int_equal(r.state, VMM_MACHINE_REBOOT);
    assert_non_null(strstr(r.out, "VMMKIT-REBOOTING"));
    free(r.out);
}

static void test_pause_resume(void **state)
{
    (void)state;
    Run r;
    /* 50 ms in: the kernel is still booting even on real hardware (it
     * has not decompressed itself yet), under nesting by seconds. */
    boot("init", 1, 0.05, &r);
    assert_true(r.paused);
    assert_int_equal(r.paused_output, 0);
    assert_int_equal(r.state, VMM_MACHINE_POWEROFF);
    assert_non_null(strstr(r.out, "VMMKIT-INIT"));
    free(r.out);
}

static void test_bad_kernel(void **state)
{
    (void)state;
    /* The initramfs is not a bzImage: refused, nothing runs. */
    VmmMachineOptions o = { .size = sizeof(o), .kernel = initrd, .memory = 64ull << 20,
                            .cpus = 1, .console_out_fd = -1 };
    int err = 0;
    assert_null(vmm_machine_new(&o, &err));
    assert_int_equal(err, -ENOEXEC);
    o.kernel = "/nonexistent";
    assert_null(vmm_machine_new(&o, &err));
    assert_int_equal(err, -ENOENT);
}

/* ---- Disk ------------------------------------------------------------------ */

static char image[64];

static void new_image(void)
{
    snprintf(image, sizeof(image), "disk-%d.img", (int)getpid());
    int fd = open(image, O_RDWR | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 16 << 20), 0);
    close(fd);
}

static char opts_buf[512];

static const char *raw_opts(void)
{
    snprintf(opts_buf, sizeof(opts_buf),
             "driver=raw,file.driver=file,file.filename=%s", image);
    return opts_buf;
}

/* Does the image start with the guest's 64 KiB pattern for tag t42? */
static bool image_has_pattern(void)
{
    static const char line[] = "VMMKIT-PATTERN-t42\n";
    char buf[65536];
    int fd = open(image, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(read(fd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
    close(fd);
    for (size_t i = 0; i < sizeof(buf); i++) {
        if (buf[i] != line[i % (sizeof(line) - 1)]) {
            return false;
        }
    }
    return true;
}

static void test_disk_write_then_read(void **state)
{
    (void)state;
    Run r;
    new_image();
    assert_false(image_has_pattern());
    disk_opts = raw_opts();
    boot("write", 1, 0, &r);
    assert_int_equal(r.state, VMM_MACHINE_POWEROFF);
    assert_non_null(strstr(r.out, "VMMKIT-WRITE-OK"));
    free(r.out);
    /* The disk's interrupts arrived through irqfds (no KVM_SIGNAL_MSI) and
     * every doorbell through its ioeventfd (no MMIO exit to the VMM). */
    assert_true(r.stats.irqfd_signals > 0);
    assert_int_equal(r.stats.msi_injections, 0);
    assert_int_equal(r.stats.mmio_doorbells, 0);
    /* The host sees what the guest wrote and synced. */
    assert_true(image_has_pattern());
    /* A second boot reads it back. */
    boot("read", 1, 0, &r);
    disk_opts = NULL;
    assert_int_equal(r.state, VMM_MACHINE_POWEROFF);
    assert_non_null(strstr(r.out, "VMMKIT-READ-OK"));
    free(r.out);
    unlink(image);
}

/* The kernel, except that irqfds and ioeventfds cannot be assigned. */
static int no_eventfd_ioctl(void *opaque, int fd, unsigned long req, void *arg)
{
    if (req == KVM_IRQFD || req == KVM_IOEVENTFD) {
        return -ENOSYS;
    }
    const VmmKvmOps *k = vmm_kvm_default_ops();
    (void)opaque;
    return k->ioctl(k->opaque, fd, req, arg);
}

/* Without irqfd and ioeventfd the machine falls back to KVM_SIGNAL_MSI and
 * MMIO doorbell exits, and the disk still works. */
static void test_disk_without_eventfds(void **state)
{
    (void)state;
    static VmmKvmOps ops;
    ops = *vmm_kvm_default_ops();
    ops.ioctl = no_eventfd_ioctl;
    Run r;
    new_image();
    disk_opts = raw_opts();
    kvm_ops = &ops;
    boot("write", 1, 0, &r);
    kvm_ops = NULL;
    disk_opts = NULL;
    assert_int_equal(r.state, VMM_MACHINE_POWEROFF);
    assert_non_null(strstr(r.out, "VMMKIT-WRITE-OK"));
    free(r.out);
    assert_true(image_has_pattern());
    assert_int_equal(r.stats.irqfd_signals, 0);
    assert_int_equal(r.stats.irqfd_vectors, 0);
    assert_true(r.stats.msi_injections > 0);
    assert_true(r.stats.mmio_doorbells > 0);
    unlink(image);
}

static void test_disk_eio(void **state)
{
    (void)state;
    Run r;
    new_image();
    /* Reads of the 4 KiB at 1 MiB fail with EIO below the raw driver. */
    snprintf(opts_buf, sizeof(opts_buf),
             "driver=raw,file.driver=fault,file.inject.0.op=read,file.inject.0.errno=EIO,"
             "file.inject.0.offset=1048576,file.inject.0.len=4096,"
             "file.file.driver=file,file.file.filename=%s", image);
    disk_opts = opts_buf;
    boot("eio", 1, 0, &r);
    disk_opts = NULL;
    assert_int_equal(r.state, VMM_MACHINE_POWEROFF);
    assert_non_null(strstr(r.out, "VMMKIT-EIO-SEEN"));
    assert_non_null(strstr(r.out, "VMMKIT-AFTER-EIO-OK"));
    free(r.out);
    unlink(image);
}

/* A hostile driver in the guest (tools/guest/virtio-poke.c) unbinds Linux's
 * and enables a queue after DRIVER_OK with rings outside guest RAM: the
 * device must ask for a reset - raising its config interrupt from inside
 * the vCPU's register write, under the machine's device lock, the path
 * the lock's interrupt handoff serves (a lock taken again there hangs the
 * vCPU and this test) - reset to 0, and work again for Linux's driver
 * bound back; the machine keeps running and powers off. */
static void test_hostile_driver(void **state)
{
    (void)state;
    Run r;
    new_image();
    disk_opts = raw_opts();
    boot("poke", 1, 0, &r);
    disk_opts = NULL;
    assert_int_equal(r.state, VMM_MACHINE_POWEROFF);
    assert_non_null(strstr(r.out, "VMMKIT-POKE status=0x4f after-reset=0x00"));
    assert_non_null(strstr(r.out, "VMMKIT-POKE-OK"));
    assert_non_null(strstr(r.out, "VMMKIT-POKE-DISK-OK"));
    free(r.out);
    assert_true(image_has_pattern());
    unlink(image);
}

/* The guest writes and flushes, says so, and the VMM is killed at once:
 * the data must be in the image. */
static void test_flush_survives_sigkill(void **state)
{
    (void)state;
    new_image();
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        VmmMachineOptions o = {
            .size = sizeof(o), .kernel = kernel, .initrd = initrd,
            .cmdline = "console=ttyS0 quiet panic=-1 vmmkit.tag=t42 vmmkit.mode=flush",
            .memory = 256ull << 20, .cpus = 1, .console_out_fd = p[1] };
        int err;
        VmmMachine *m = vmm_machine_new(&o, &err);
        if (!m || vmm_machine_add_block(m, raw_opts(), false) < 0 ||
            vmm_machine_start(m) < 0) {
            _exit(3);
        }
        vmm_machine_wait(m, -1, NULL, 0);
        _exit(4);
    }
    close(p[1]);
    Run r = { .out = calloc(1, OUT_MAX) };
    double t0 = now();
    while (!strstr(r.out, "VMMKIT-FLUSHED") && now() - t0 < 300) {
        struct pollfd pf = { .fd = p[0], .events = POLLIN };
        poll(&pf, 1, 100);
        ssize_t n = read(p[0], r.out + r.len, OUT_MAX - 1 - r.len);
        if (n <= 0) {
            break;
        }
        r.len += (size_t)n;
        r.out[r.len] = '\0';
    }
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    close(p[0]);
    fprintf(stderr, "%s# killed after %.1f s\n", r.out, now() - t0);
    assert_non_null(strstr(r.out, "VMMKIT-FLUSHED"));
    assert_true(WIFSIGNALED(st));
    assert_true(image_has_pattern());
    free(r.out);
    unlink(image);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s VMLINUZ INITRAMFS\n", argv[0]);
        return 2;
    }
    kernel = argv[1];
    initrd = argv[2];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_kernel),
        cmocka_unit_test(test_boot_to_init),
        cmocka_unit_test(test_boot_host_unpack),
        cmocka_unit_test(test_rng_and_console),
        cmocka_unit_test(test_two_vcpus),
        cmocka_unit_test(test_reboot),
        cmocka_unit_test(test_pause_resume),
        cmocka_unit_test(test_disk_write_then_read),
        cmocka_unit_test(test_disk_without_eventfds),
        cmocka_unit_test(test_disk_eio),
        cmocka_unit_test(test_hostile_driver),
        cmocka_unit_test(test_flush_survives_sigkill),
    };
    /* VMM_BOOT_TESTS=pattern runs only the matching tests (by hand). */
    if (getenv("VMM_BOOT_TESTS")) {
        cmocka_set_test_filter(getenv("VMM_BOOT_TESTS"));
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
