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
#include <unistd.h>
#include <cmocka.h>

#include "vmmkit/vmmkit.h"

static const char *kernel, *initrd;

#define OUT_MAX (1 << 20)

typedef struct Run {
    char *out;
    size_t len;
    int state;
    char msg[256];
    int paused_output;     /* bytes the guest printed while paused */
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

/* Boot with @mode; pause for a second @pause_at seconds in when > 0. */
static void boot(const char *mode, uint32_t cpus, double pause_at, Run *r)
{
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "console=ttyS0 quiet panic=-1 vmmkit.mode=%s", mode);
    VmmMachineOptions o = { .size = sizeof(o), .kernel = kernel, .initrd = initrd,
                            .cmdline = cmd, .memory = 256ull << 20, .cpus = cpus,
                            .console_out_fd = p[1] };
    int err = 0;
    VmmMachine *m = vmm_machine_new(&o, &err);
    assert_non_null(m);
    assert_int_equal(vmm_machine_state(m), VMM_MACHINE_CREATED);
    memset(r, 0, sizeof(*r));
    r->out = calloc(1, OUT_MAX);
    assert_int_equal(vmm_machine_start(m), 0);
    double t0 = now();
    bool paused_once = false;
    for (;;) {
        struct pollfd pf[2] = { { .fd = p[0], .events = POLLIN },
                                { .fd = vmm_machine_event_fd(m), .events = POLLIN } };
        poll(pf, 2, 100);
        drain(p[0], r);
        if (pf[1].revents) {
            break;
        }
        if (pause_at > 0 && !paused_once && now() - t0 > pause_at) {
            paused_once = true;
            assert_int_equal(vmm_machine_pause(m), 0);
            assert_int_equal(vmm_machine_state(m), VMM_MACHINE_PAUSED);
            drain(p[0], r);
            size_t before = r->len;
            usleep(1000 * 1000);
            drain(p[0], r);
            r->paused_output = (int)(r->len - before);
            assert_int_equal(vmm_machine_resume(m), 0);
            assert_int_equal(vmm_machine_state(m), VMM_MACHINE_RUNNING);
        }
        assert_true(now() - t0 < 300);
    }
    r->state = vmm_machine_wait(m, -1, r->msg, sizeof(r->msg));
    drain(p[0], r);
    vmm_machine_free(m);
    close(p[0]);
    close(p[1]);
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
    boot("init", 1, 3.0, &r);
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
        cmocka_unit_test(test_two_vcpus),
        cmocka_unit_test(test_reboot),
        cmocka_unit_test(test_pause_resume),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
