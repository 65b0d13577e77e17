/* SPDX-License-Identifier: MIT */
/* VM-wide quiesce: vCPU gate, devices (with a timeout naming the laggard),
 * extra stages, and unwinding on failure. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "util/atomic.h"
#include "vmmkit/accel.h"
#include "vmmkit/aio.h"
#include "vmmkit/device.h"

typedef struct D {
    VmmDevice *dev;
    int answer;             /* quiesce callback's answer */
    int resumes;
    int delay_ms;           /* with -EBUSY: finish from a thread after this */
    pthread_t th;
    bool th_started;
} D;

static void *finisher(void *arg)
{
    D *d = arg;
    struct timespec ts = { 0, d->delay_ms * 1000000L };
    nanosleep(&ts, NULL);
    vmm_device_quiesced(d->dev, 0);
    return NULL;
}

static int d_quiesce(VmmDevice *dev, void *opaque)
{
    D *d = opaque;
    (void)dev;
    if (d->answer == -EBUSY && d->delay_ms >= 0) {
        d->th_started = true;
        pthread_create(&d->th, NULL, finisher, d);
    }
    return d->answer;
}

static void d_resume(VmmDevice *dev, void *opaque)
{
    D *d = opaque;
    (void)dev;
    vk_atomic_inc(&d->resumes);
}

static const VmmDeviceOps d_ops = {
    .size = sizeof(VmmDeviceOps), .quiesce = d_quiesce, .resume = d_resume,
};

typedef struct Stage {
    int begun, ended, answer;
} Stage;

static int st_begin(void *opaque)
{
    Stage *s = opaque;
    s->begun++;
    return s->answer;
}

static void st_end(void *opaque)
{
    Stage *s = opaque;
    s->ended++;
}

typedef struct F {
    D a, b;
    Stage st;
    VmmAccelGate *gate;
    VmmQuiesceGroup *g;
} F;

static int setup(void **state)
{
    F *f = calloc(1, sizeof(*f));
    f->a.dev = vmm_device_new("disk-a", &d_ops, &f->a, NULL, NULL);
    f->b.dev = vmm_device_new("net-b", &d_ops, &f->b, NULL, NULL);
    f->gate = vmm_accel_gate_new(NULL);
    f->g = vmm_quiesce_group_new(NULL);
    assert_non_null(f->gate);
    assert_int_equal(vmm_quiesce_group_add_gate(f->g, f->gate), 0);
    assert_int_equal(vmm_quiesce_group_add_device(f->g, f->a.dev), 0);
    assert_int_equal(vmm_quiesce_group_add_device(f->g, f->b.dev), 0);
    assert_int_equal(vmm_quiesce_group_add_stage(f->g, "block-drain", st_begin, st_end,
                                                 &f->st), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    F *f = *state;
    if (f->b.th_started) {
        pthread_join(f->b.th, NULL);
    }
    vmm_quiesce_group_free(f->g);
    assert_int_equal(vmm_device_free(f->a.dev), 0);
    assert_int_equal(vmm_device_free(f->b.dev), 0);
    vmm_accel_gate_free(f->gate);
    free(f);
    return 0;
}

static void test_quiesce_all(void **state)
{
    F *f = *state;
    const char *who = NULL;

    f->b.answer = -EBUSY;
    f->b.delay_ms = 20;
    assert_int_equal(vmm_quiesce_group_begin(f->g, 5000000000LL, &who), 0);
    assert_null(who);
    assert_true(vmm_device_is_quiesced(f->a.dev));
    assert_true(vmm_device_is_quiesced(f->b.dev));
    assert_true(vmm_accel_ioctl_inhibited(f->gate));
    assert_int_equal(f->st.begun, 1);
    assert_int_equal(vmm_quiesce_group_add_device(f->g, f->a.dev), -EBUSY);
    vmm_quiesce_group_end(f->g);
    assert_false(vmm_device_is_quiesced(f->a.dev));
    assert_false(vmm_device_is_quiesced(f->b.dev));
    assert_false(vmm_accel_ioctl_inhibited(f->gate));
    assert_int_equal(f->st.ended, 1);
    assert_int_equal(f->a.resumes, 1);
    assert_int_equal(vk_atomic_read(&f->b.resumes), 1);
}

static void test_timeout_names_device(void **state)
{
    F *f = *state;
    const char *who = NULL;

    f->b.answer = -EBUSY;
    f->b.delay_ms = -1;                 /* never finishes on its own */
    assert_int_equal(vmm_quiesce_group_begin(f->g, 30000000, &who), -ETIMEDOUT);
    assert_non_null(who);
    assert_string_equal(who, "net-b");
    /* Everything was unwound. */
    assert_false(vmm_device_is_quiesced(f->a.dev));
    assert_false(vmm_accel_ioctl_inhibited(f->gate));
    assert_int_equal(f->st.begun, 0);
    /* The laggard finishes late: it is unpaused at once. */
    vmm_device_quiesced(f->b.dev, 0);
    assert_false(vmm_device_is_quiesced(f->b.dev));
    assert_int_equal(f->b.resumes, 1);
}

static void test_refusal_and_stage_failure(void **state)
{
    F *f = *state;
    const char *who = NULL;

    f->a.answer = -EPERM;
    assert_int_equal(vmm_quiesce_group_begin(f->g, -1, &who), -EPERM);
    assert_string_equal(who, "disk-a");
    assert_false(vmm_device_is_quiesced(f->b.dev));
    f->a.answer = 0;
    f->st.answer = -EIO;
    assert_int_equal(vmm_quiesce_group_begin(f->g, -1, &who), -EIO);
    assert_string_equal(who, "block-drain");
    assert_false(vmm_device_is_quiesced(f->a.dev));
    assert_false(vmm_accel_ioctl_inhibited(f->gate));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_quiesce_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_names_device, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusal_and_stage_failure, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
