/*
 * Raw KVM, several threads: two vCPUs of one VM each on its own thread,
 * a signal kicking a vCPU out of a spinning guest, and the cost of a
 * port-I/O exit round trip (reported, not asserted).
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "kvm-raw.h"

static unsigned env_uint(const char *name, unsigned dflt)
{
    const char *s = getenv(name);

    return s && *s ? (unsigned)strtoul(s, NULL, 0) : dflt;
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct {
    RawVcpu vcpu;
    unsigned iters;
    uint16_t port;
    unsigned seen;              /* exits checked by the thread */
    char error[200];            /* set when the thread saw something wrong */
} Counter;

/* Runs guest_count to HLT, checking each OUT; cmocka asserts are not
 * thread-safe, so the thread records the first problem for main to fail on. */
static void *counter_thread(void *opaque)
{
    Counter *c = opaque;
    struct kvm_run *run = c->vcpu.run;

    for (;;) {
        if (ioctl(c->vcpu.fd, KVM_RUN, 0) < 0) {
            if (errno == EINTR) {
                continue;
            }
            snprintf(c->error, sizeof(c->error), "KVM_RUN: %s", strerror(errno));
            return NULL;
        }
        if (run->exit_reason == KVM_EXIT_HLT) {
            return NULL;
        }
        if (run->exit_reason != KVM_EXIT_IO || run->io.port != c->port ||
            run->io.size != 2 || run->io.direction != KVM_EXIT_IO_OUT) {
            snprintf(c->error, sizeof(c->error), "unexpected exit %s port 0x%x",
                     raw_exit_name(run->exit_reason), run->io.port);
            return NULL;
        }
        uint16_t v;
        memcpy(&v, (uint8_t *)run + run->io.data_offset, 2);
        if (v != c->seen + 1) {
            snprintf(c->error, sizeof(c->error), "OUT %u after %u", v, c->seen);
            return NULL;
        }
        c->seen++;
    }
}

static void test_two_vcpus_two_threads(void **state)
{
    unsigned iters = env_uint("VMM_RAW_SMP_ITERS", 3000);
    RawVm vm;
    Counter c[2];
    pthread_t th[2];
    uint16_t stored;

    (void)state;
    assert_true(iters >= 1 && iters <= 0xffff);
    raw_vm_init(&vm);
    raw_load(&vm, RAW_PROGRAM(guest_count));
    for (int i = 0; i < 2; i++) {
        memset(&c[i], 0, sizeof(c[i]));
        raw_vcpu_init(&c[i].vcpu, &vm, i);
        c[i].iters = iters + (unsigned)i;   /* different counts per vCPU */
        c[i].port = (uint16_t)(0x20 + i);
        raw_vcpu_set_bx_dx_si(&c[i].vcpu, (uint16_t)c[i].iters, c[i].port,
                              (uint16_t)(RAW_OUT + 2 * i));
    }
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_create(&th[i], NULL, counter_thread, &c[i]), 0);
    }
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
    }
    for (int i = 0; i < 2; i++) {
        if (c[i].error[0]) {
            fail_msg("vCPU %d: %s", i, c[i].error);
        }
        assert_int_equal(c[i].seen, c[i].iters);
        /* Each vCPU's last store is in the shared guest memory. */
        memcpy(&stored, vm.ram + RAW_OUT + 2 * i, 2);
        assert_int_equal(stored, c[i].iters);
        raw_vcpu_destroy(&c[i].vcpu);
    }
    raw_vm_destroy(&vm);
}

/* ---- kick: a signal gets a vCPU out of a guest that never exits ---- */

typedef struct {
    RawVcpu vcpu;
    atomic_int entering;        /* the thread is about to enter KVM_RUN */
    int result;                 /* KVM_RUN's return */
    int err;
    uint32_t reason;
} Spinner;

static void on_kick(int sig)
{
    (void)sig;
}

static void *spin_thread(void *opaque)
{
    Spinner *s = opaque;

    atomic_store(&s->entering, 1);
    s->result = ioctl(s->vcpu.fd, KVM_RUN, 0);
    s->err = errno;
    s->reason = s->vcpu.run->exit_reason;
    /* Pairs with main's atomic_load: result/err/reason are set. */
    atomic_store(&s->entering, 2);
    return NULL;
}

static void test_signal_kick(void **state)
{
    struct sigaction sa = { .sa_handler = on_kick };   /* no SA_RESTART */
    RawVm vm;
    Spinner s = { 0 };
    pthread_t th;
    double deadline;

    (void)state;
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGUSR1, &sa, NULL), 0);
    raw_vm_init(&vm);
    raw_load(&vm, RAW_PROGRAM(guest_spin));
    raw_vcpu_init(&s.vcpu, &vm, 0);
    assert_int_equal(pthread_create(&th, NULL, spin_thread, &s), 0);
    while (atomic_load(&s.entering) == 0) {
        usleep(1000);
    }
    /* The thread may not be inside KVM_RUN yet: kick until it comes out. */
    deadline = now_s() + 10;
    while (atomic_load(&s.entering) != 2 && now_s() < deadline) {
        usleep(20000);
        pthread_kill(th, SIGUSR1);
    }
    assert_int_equal(atomic_load(&s.entering), 2);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(s.result, -1);
    assert_int_equal(s.err, EINTR);
    assert_int_equal(s.reason, KVM_EXIT_INTR);
    raw_vcpu_destroy(&s.vcpu);
    raw_vm_destroy(&vm);
}

/* ---- the cost of one exit to user space and back ---- */

static void test_pio_round_trip(void **state)
{
    unsigned iters = env_uint("VMM_RAW_RTT_ITERS", 10000);
    RawVm vm;
    RawVcpu v;
    double t0, dt;

    (void)state;
    assert_true(iters >= 1 && iters <= 0xffff);
    raw_vm_init(&vm);
    raw_load(&vm, RAW_PROGRAM(guest_count));
    raw_vcpu_init(&v, &vm, 0);
    raw_vcpu_set_bx_dx_si(&v, (uint16_t)iters, 0x20, RAW_OUT);
    t0 = now_s();
    for (unsigned i = 1; i <= iters; i++) {
        uint16_t val;

        memcpy(&val, raw_expect_io(&v, KVM_EXIT_IO_OUT, 2, 0x20), 2);
        if (val != i) {
            fail_msg("OUT %u, want %u", val, i);
        }
    }
    dt = now_s() - t0;
    raw_expect_hlt(&v);
    printf("# pio exit round trip: %.2f us (%u exits in %.3f s)\n",
           dt * 1e6 / iters, iters, dt);
    raw_vcpu_destroy(&v);
    raw_vm_destroy(&vm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_vcpus_two_threads),
        cmocka_unit_test(test_signal_kick),
        cmocka_unit_test(test_pio_round_trip),
    };

    return cmocka_run_group_tests_name("kvm-raw-smp", tests, NULL, NULL);
}
