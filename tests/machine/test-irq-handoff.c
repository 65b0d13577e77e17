/* SPDX-License-Identifier: MIT */
/* Unit and stress tests: interrupts handed to the device lock's holder
 * (src/machine/irq-handoff.c), raised with the lock free, from inside a
 * locked "register write" (the raiser holds it), and from racing threads. */
#include <pthread.h>
#include <semaphore.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "machine/irq-handoff.h"

#define NSRC 4

static VmmMutex lock;
static IrqHandoff h;
/* Written by deliver() only, under the lock. */
static unsigned delivered[NSRC], deliveries;
static unsigned long seen[NSRC];
static int unlocked_deliveries;     /* atomic: deliver() found the lock free */
static unsigned long raised[NSRC];  /* atomic: raises per source */

static void (*deliver_hook)(unsigned src);

static void deliver(void *opaque, unsigned src)
{
    (void)opaque;
    if (deliver_hook) {
        deliver_hook(src);
    }
    /* The lock is held (by the caller): taking it must fail. */
    if (vk_mutex_trylock(&lock)) {
        vk_mutex_unlock(&lock);
        __atomic_add_fetch(&unlocked_deliveries, 1, __ATOMIC_RELAXED);
    }
    delivered[src]++;
    deliveries++;
    /* Everything raised before the bit we took is visible now. */
    seen[src] = __atomic_load_n(&raised[src], __ATOMIC_SEQ_CST);
}

static int setup(void **state)
{
    (void)state;
    vk_mutex_init(&lock);
    irq_handoff_init(&h, deliver, NULL);
    memset(delivered, 0, sizeof(delivered));
    memset(seen, 0, sizeof(seen));
    memset(raised, 0, sizeof(raised));
    deliveries = 0;
    unlocked_deliveries = 0;
    deliver_hook = NULL;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    vk_mutex_destroy(&lock);
    return 0;
}

static void raise_src(unsigned src)
{
    __atomic_add_fetch(&raised[src], 1, __ATOMIC_SEQ_CST);
    irq_handoff_raise(&h, &lock, src);
}

static void assert_lock_free(void)
{
    if (vk_mutex_trylock(&lock)) {
        vk_mutex_unlock(&lock);
    } else {
        fail_msg("the lock was left held");
    }
}

/* Lock free: the raiser delivers at once and leaves the lock free. */
static void test_free_lock_delivers_now(void **state)
{
    (void)state;
    raise_src(2);
    assert_int_equal(delivered[2], 1);
    assert_int_equal(deliveries, 1);
    assert_int_equal(__atomic_load_n(&h.pending, __ATOMIC_SEQ_CST), 0);
    assert_lock_free();
    assert_int_equal(unlocked_deliveries, 0);
}

/* Raised inside a locked register write (the raiser holds the lock, which
 * is not recursive): nothing is delivered until the write leaves through
 * irq_handoff_unlock, which delivers with the lock still held - once per
 * source however often it was raised. */
static void test_reentrant_raise_deferred(void **state)
{
    (void)state;
    vk_mutex_lock(&lock);
    raise_src(1);
    raise_src(3);
    raise_src(1);
    assert_int_equal(deliveries, 0);
    irq_handoff_unlock(&h, &lock);
    assert_int_equal(delivered[1], 1);
    assert_int_equal(delivered[3], 1);
    assert_int_equal(deliveries, 2);
    assert_int_equal(seen[1], 2);
    assert_int_equal(__atomic_load_n(&h.pending, __ATOMIC_SEQ_CST), 0);
    assert_int_equal(unlocked_deliveries, 0);
    assert_lock_free();
}

static sem_t go_b, b_done;

/* Another thread raises source 1 while we hold the lock and deliver. */
static void *late_raiser(void *arg)
{
    (void)arg;
    sem_wait(&go_b);
    raise_src(1);               /* the trylock fails: the holder must deliver */
    sem_post(&b_done);
    return NULL;
}

static void raise_behind_holder(unsigned src)
{
    if (src == 0) {
        sem_post(&go_b);
        sem_wait(&b_done);
    }
}

/* A raise that lands after the holder delivered but before it released:
 * the holder's look after unlocking ([U]) finds it and delivers it. */
static void test_raise_during_unlock(void **state)
{
    (void)state;
    pthread_t t;
    sem_init(&go_b, 0, 0);
    sem_init(&b_done, 0, 0);
    deliver_hook = raise_behind_holder;
    assert_int_equal(pthread_create(&t, NULL, late_raiser, NULL), 0);
    vk_mutex_lock(&lock);
    raise_src(0);
    irq_handoff_unlock(&h, &lock);
    pthread_join(t, NULL);
    assert_int_equal(delivered[0], 1);
    assert_int_equal(delivered[1], 1);
    assert_int_equal(__atomic_load_n(&h.pending, __ATOMIC_SEQ_CST), 0);
    assert_int_equal(unlocked_deliveries, 0);
    sem_destroy(&go_b);
    sem_destroy(&b_done);
}

static unsigned long iters(void)
{
    const char *v = getenv("VMM_IRQ_HANDOFF_ITERS");
    unsigned long n = v ? strtoul(v, NULL, 0) : 0;
    return n ? n : 20000;
}

/* An iothread: raises with the lock not held. */
static void *raiser(void *arg)
{
    unsigned src = (unsigned)(uintptr_t)arg;
    for (unsigned long i = 0, n = iters(); i < n; i++) {
        raise_src(src);
    }
    return NULL;
}

/* A vCPU: register writes that hold the lock, some raising inside. */
static void *vcpu(void *arg)
{
    unsigned src = (unsigned)(uintptr_t)arg;
    for (unsigned long i = 0, n = iters(); i < n; i++) {
        vk_mutex_lock(&lock);
        if (i & 1) {
            raise_src(src);
        }
        irq_handoff_unlock(&h, &lock);
    }
    return NULL;
}

/* Racing raisers and lock holders: every interrupt is delivered under the
 * lock, and none is left pending once everybody has left. */
static void test_stress(void **state)
{
    (void)state;
    pthread_t t[NSRC];
    for (unsigned i = 0; i < NSRC; i++) {
        assert_int_equal(pthread_create(&t[i], NULL, i < 2 ? raiser : vcpu,
                                        (void *)(uintptr_t)i), 0);
    }
    for (unsigned i = 0; i < NSRC; i++) {
        pthread_join(t[i], NULL);
    }
    assert_int_equal(__atomic_load_n(&h.pending, __ATOMIC_SEQ_CST), 0);
    assert_int_equal(unlocked_deliveries, 0);
    vk_mutex_lock(&lock);
    for (unsigned s = 0; s < NSRC; s++) {
        unsigned long r = __atomic_load_n(&raised[s], __ATOMIC_SEQ_CST);
        assert_true(r > 0);
        assert_true(delivered[s] >= 1 && delivered[s] <= r);
        assert_int_equal(seen[s], r);           /* the last raise was delivered */
    }
    vk_mutex_unlock(&lock);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_free_lock_delivers_now, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reentrant_raise_deferred, setup, teardown),
        cmocka_unit_test_setup_teardown(test_raise_during_unlock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stress, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
