/* SPDX-License-Identifier: MIT */
/* The device model's quiesce protocol. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "misuse.h"
#include "vmmkit/device.h"

typedef struct TDev {
    VmmDevice *dev;
    VmmGuestMemory *mem;
    VmmRamRegion *ram;
    int quiesce_ret;        /* what the quiesce callback answers */
    int quiesce_calls;
    char log[256];          /* callbacks and completions, in order */
    int cb_dma;             /* result of DMA attempted inside callbacks */
} TDev;

static void tlog(TDev *t, const char *s)
{
    strncat(t->log, s, sizeof(t->log) - strlen(t->log) - 1);
}

static int t_quiesce(VmmDevice *dev, void *opaque)
{
    TDev *t = opaque;
    uint8_t b;
    (void)dev;
    t->quiesce_calls++;
    /* Still running: DMA is allowed while the quiesce is being requested. */
    assert_int_equal(vmm_device_dma_read(t->dev, 0, &b, 1), 0);
    tlog(t, "Q");
    return t->quiesce_ret;
}

static void t_resume(VmmDevice *dev, void *opaque)
{
    (void)dev;
    tlog(opaque, "U");
}

static int t_reset(VmmDevice *dev, void *opaque)
{
    TDev *t = opaque;
    uint8_t b = 0x42;
    assert_true(vmm_device_is_quiesced(dev));
    /* A callback delivered while quiesced may do DMA. */
    t->cb_dma = vmm_device_dma_write(dev, 8, &b, 1);
    tlog(t, "R");
    return 0;
}

static int t_dma_map(VmmDevice *dev, void *opaque, const VmmMemorySection *s, bool added)
{
    (void)dev;
    (void)s;
    tlog(opaque, added ? "M+" : "M-");
    return 0;
}

static int t_migration(VmmDevice *dev, void *opaque, VmmMigrationState st)
{
    (void)dev;
    tlog(opaque, st == VMM_MIGRATION_STOP ? "S" : "G");
    return st == VMM_MIGRATION_PRE_COPY ? -ENOTSUP : 0;
}

static void t_done(VmmDevice *dev, int ret, void *opaque)
{
    char buf[16];
    (void)dev;
    snprintf(buf, sizeof(buf), "d%d", ret);
    tlog(opaque, buf);
}

static const VmmDeviceOps t_ops = {
    .size = sizeof(VmmDeviceOps),
    .quiesce = t_quiesce, .resume = t_resume, .reset = t_reset,
    .dma_map = t_dma_map, .migration = t_migration,
};

static int setup(void **state)
{
    TDev *t = calloc(1, sizeof(*t));
    VmmRamRegionOptions o = { .size = sizeof(o), .length = 4096 };
    t->mem = vmm_guest_memory_new(NULL);
    t->ram = vmm_ram_region_new(&o, NULL);
    assert_int_equal(vmm_guest_memory_add(t->mem, 0, t->ram, 0, 4096, 0), 0);
    t->dev = vmm_device_new("tdev", &t_ops, t, t->mem, NULL);
    assert_non_null(t->dev);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    TDev *t = *state;
    assert_int_equal(vmm_device_free(t->dev), 0);
    vmm_guest_memory_unref(t->mem);
    vmm_ram_region_unref(t->ram);
    free(t);
    return 0;
}

static void test_sync_quiesce(void **state)
{
    TDev *t = *state;

    assert_int_equal(vmm_device_reset(t->dev, t_done, t), 0);
    /* Quiesce, the reset delivered quiesced, its completion, resume. */
    assert_string_equal(t->log, "QRd0U");
    assert_int_equal(t->cb_dma, 0);
    assert_int_equal(((uint8_t *)vmm_ram_region_host(t->ram))[8], 0x42);
    assert_false(vmm_device_is_quiesced(t->dev));
}

typedef struct Completer {
    TDev *t;
    pthread_t self;
    char log_at_return[256];
} Completer;

static void *complete_thread(void *arg)
{
    Completer *c = arg;
    vmm_device_quiesced(c->t->dev, 0);
    strcpy(c->log_at_return, c->t->log);
    return NULL;
}

static void test_async_quiesce(void **state)
{
    TDev *t = *state;
    VmmMemorySection sec;
    uint8_t b;

    t->quiesce_ret = -EBUSY;
    assert_int_equal(vmm_device_reset(t->dev, t_done, t), 0);
    assert_int_equal(vmm_guest_memory_find(t->mem, 0, &sec), 0);
    assert_int_equal(vmm_device_dma_map_change(t->dev, &sec, false, t_done, t), 0);
    assert_int_equal(vmm_device_set_migration_state(t->dev, VMM_MIGRATION_STOP, t_done, t), 0);
    /* Quiescing: nothing delivered yet, the device still runs and DMAs. */
    assert_string_equal(t->log, "Q");
    assert_false(vmm_device_is_quiesced(t->dev));
    assert_int_equal(vmm_device_dma_read(t->dev, 0, &b, 1), 0);
    /* Another thread finishes the quiesce: everything queued is delivered
     * inside that call, in order, under one quiesce, then resume. */
    Completer c = { .t = t };
    pthread_create(&c.self, NULL, complete_thread, &c);
    pthread_join(c.self, NULL);
    assert_string_equal(c.log_at_return, "QRd0M-d0Sd0U");
    assert_true(vmm_device_is_idle(t->dev));
    assert_int_equal(t->quiesce_calls, 1);
}

/*
 * The completion races the request: a device worker calls
 * vmm_device_quiesced() while (or before) the quiesce callback returns
 * -EBUSY in the requesting thread.  Whatever the interleaving, once the
 * call returns the queued callbacks ran and the device runs again (a
 * device restarts its DMA right then).
 */
typedef struct Racer {
    TDev *t;
    pthread_t worker;
    int worker_spin;        /* delay before the worker's call */
    int cb_spin;            /* delay before the callback returns -EBUSY */
    int cb_sleep_us;
    char log_at_return[256];
    bool quiesced_at_return;
    int dma_at_return;
} Racer;

static Racer racer;

static void spin(int n)
{
    for (volatile int i = 0; i < n; i++) {
    }
}

static void *race_worker(void *arg)
{
    Racer *r = arg;
    uint8_t b;
    spin(r->worker_spin);
    vmm_device_quiesced(r->t->dev, 0);
    strcpy(r->log_at_return, r->t->log);
    r->quiesced_at_return = vmm_device_is_quiesced(r->t->dev);
    /* The device restarts DMA right away: it must be allowed. */
    r->dma_at_return = vmm_device_dma_read(r->t->dev, 0, &b, 1);
    return NULL;
}

static int race_quiesce(VmmDevice *dev, void *opaque)
{
    TDev *t = opaque;
    (void)dev;
    tlog(t, "Q");
    pthread_create(&racer.worker, NULL, race_worker, &racer);
    spin(racer.cb_spin);
    if (racer.cb_sleep_us) {
        usleep(racer.cb_sleep_us);  /* the worker's call lands in here */
    }
    return -EBUSY;
}

static const VmmDeviceOps race_ops = {
    .size = sizeof(VmmDeviceOps),
    .quiesce = race_quiesce, .resume = t_resume, .reset = t_reset,
};

/* Join with a guard: a deadlock fails the test instead of hanging it. */
static void join_guarded(pthread_t t)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 10;
    assert_int_equal(pthread_timedjoin_np(t, NULL, &ts), 0);
}

static void race_once(TDev *t, int worker_spin, int cb_spin, int cb_sleep_us)
{
    VmmDevice *dev = vmm_device_new("race", &race_ops, t, t->mem, NULL);

    assert_non_null(dev);
    t->dev = dev;
    t->log[0] = 0;
    memset(&racer, 0, sizeof(racer));
    racer.t = t;
    racer.worker_spin = worker_spin;
    racer.cb_spin = cb_spin;
    racer.cb_sleep_us = cb_sleep_us;
    assert_int_equal(vmm_device_reset(dev, t_done, t), 0);
    join_guarded(racer.worker);
    assert_string_equal(racer.log_at_return, "QRd0U");
    assert_false(racer.quiesced_at_return);
    assert_int_equal(racer.dma_at_return, 0);
    assert_true(vmm_device_is_idle(dev));
    assert_int_equal(vmm_device_free(dev), 0);
}

static void test_quiesced_races_request(void **state)
{
    TDev *t = *state;
    VmmDevice *orig = t->dev;

    /* The worker's call lands while the callback still runs. */
    race_once(t, 0, 0, 50000);
    /* Every interleaving around the callback's return. */
    for (int i = 0; i < 200; i++) {
        race_once(t, (i % 20) * 500, (i / 20) * 500, 0);
    }
    t->dev = orig;
}

/* Reported from inside the quiesce callback itself: delivery follows the
 * callback's return, in the requesting thread. */
static int self_report_quiesce(VmmDevice *dev, void *opaque)
{
    tlog(opaque, "Q");
    vmm_device_quiesced(dev, 0);
    return -EBUSY;
}

static void test_quiesced_inside_callback(void **state)
{
    TDev *t = *state;
    const VmmDeviceOps ops = {
        .size = sizeof(VmmDeviceOps),
        .quiesce = self_report_quiesce, .resume = t_resume, .reset = t_reset,
    };
    VmmDevice *dev = vmm_device_new("self", &ops, t, t->mem, NULL);

    assert_non_null(dev);
    assert_int_equal(vmm_device_reset(dev, t_done, t), 0);
    assert_string_equal(t->log, "QRd0U");
    assert_true(vmm_device_is_idle(dev));
    assert_int_equal(vmm_device_free(dev), 0);
}

static void test_quiesce_refused(void **state)
{
    TDev *t = *state;

    t->quiesce_ret = -EIO;
    assert_int_equal(vmm_device_reset(t->dev, t_done, t), 0);
    assert_string_equal(t->log, "Qd-5");     /* no reset, no resume */
    t->log[0] = 0;
    t->quiesce_ret = -EBUSY;
    assert_int_equal(vmm_device_reset(t->dev, t_done, t), 0);
    assert_int_equal(vmm_device_set_migration_state(t->dev, VMM_MIGRATION_STOP, t_done, t), 0);
    vmm_device_quiesced(t->dev, -ETIMEDOUT);
    assert_string_equal(t->log, "Qd-110d-110");
    assert_false(vmm_device_is_quiesced(t->dev));
}

static void test_callback_error(void **state)
{
    TDev *t = *state;

    assert_int_equal(vmm_device_set_migration_state(t->dev, VMM_MIGRATION_PRE_COPY,
                                                    t_done, t), 0);
    assert_string_equal(t->log, "QGd-95U");
    assert_int_equal(vmm_device_set_migration_state(t->dev, 99, t_done, t), -EINVAL);
}

static void unpause_done(VmmDevice *dev, int ret, void *opaque)
{
    t_done(dev, ret, opaque);
    assert_int_equal(vmm_device_unpause(dev), 0);
}

static void test_pause(void **state)
{
    TDev *t = *state;

    assert_true(vmm_device_is_idle(t->dev));
    assert_int_equal(vmm_device_pause(t->dev, t_done, t), 0);
    assert_false(vmm_device_is_idle(t->dev));
    assert_int_equal(vmm_device_pause(t->dev, t_done, t), 0);   /* nests */
    assert_true(vmm_device_is_quiesced(t->dev));
    /* Requests while paused run at once, with no new quiesce or resume. */
    assert_int_equal(vmm_device_reset(t->dev, t_done, t), 0);
    assert_string_equal(t->log, "Qd0d0Rd0");
    assert_int_equal(vmm_device_unpause(t->dev), 0);
    assert_true(vmm_device_is_quiesced(t->dev));
    assert_int_equal(vmm_device_unpause(t->dev), 0);
    assert_string_equal(t->log, "Qd0d0Rd0U");
    assert_false(vmm_device_is_quiesced(t->dev));
    /* A completion may unpause right away. */
    assert_int_equal(vmm_device_pause(t->dev, unpause_done, t), 0);
    assert_string_equal(t->log, "Qd0d0Rd0UQd0U");
}

static void illegal_dma(void *arg)
{
    TDev *t = arg;
    uint8_t b;
    assert_int_equal(vmm_device_pause(t->dev, NULL, NULL), 0);
    /* The device's own thread, outside any callback, while quiesced. */
    int r = vmm_device_dma_read(t->dev, 0, &b, 1);
    if (r != -EBUSY) {
        _exit(3);
    }
}

static void test_dma_while_quiesced_caught(void **state)
{
    expect_misuse(illegal_dma, *state, "vmm_device_dma_read");
}

static void free_paused(void *arg)
{
    TDev *t = arg;
    assert_int_equal(vmm_device_pause(t->dev, NULL, NULL), 0);
    if (vmm_device_free(t->dev) != -EBUSY) {
        _exit(3);
    }
}

static void bare_unpause(void *arg)
{
    TDev *t = arg;
    if (vmm_device_unpause(t->dev) != -EINVAL) {
        _exit(3);
    }
}

static void test_misuse(void **state)
{
    TDev *t = *state;

    /* Both promise an errno: logged, returned, no abort. */
    expect_misuse_errno(free_paused, t, "freed while");
    expect_misuse_errno(bare_unpause, t, "without a pause");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sync_quiesce, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_quiesce, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quiesced_races_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quiesced_inside_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quiesce_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_callback_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dma_while_quiesced_caught, setup, teardown),
        cmocka_unit_test_setup_teardown(test_misuse, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
