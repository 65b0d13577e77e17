/* SPDX-License-Identifier: MIT */
/*
 * Concurrency: reader threads DMA from guest memory while the main thread
 * adds and removes a section under them.  A reader sees either the whole
 * section (its fill pattern, never torn or freed memory) or -EFAULT.
 * VMM_STRESS_ITERS bounds the number of map updates (default 2000).
 */
#include <errno.h>
#include <time.h>
#include <sched.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "memory/rcu.h"
#include "util/atomic.h"
#include "vmmkit/memory.h"

#define NREADERS 2

typedef struct Shared {
    VmmGuestMemory *mem;
    int stop;
    long hits, misses;
    int bad;
    int started;            /* readers that made their first read */
} Shared;

static void *reader(void *arg)
{
    Shared *s = arg;
    uint8_t buf[256];
    long hits = 0, misses = 0;

    while (!vk_atomic_load_acquire(&s->stop)) {
        /* Crosses from the fixed section into the moving one. */
        int r = vmm_dma_read(s->mem, 0x10000 - 128, buf, sizeof(buf));
        if (r == -EFAULT) {
            misses++;
        } else {
            if (r != 0 || buf[0] != 0x11 || buf[127] != 0x11 || buf[128] != 0x22 ||
                buf[255] != 0x22) {
                vk_atomic_set(&s->bad, 1);
            }
            hits++;
        }
        if (hits + misses == 1) {
            vk_atomic_inc(&s->started);
        }
    }
    vk_atomic_fetch_add(&s->hits, hits);
    vk_atomic_fetch_add(&s->misses, misses);
    return NULL;
}

static VmmRamRegion *ram(uint8_t fill)
{
    VmmRamRegionOptions o = { .size = sizeof(o), .length = 0x10000 };
    VmmRamRegion *r = vmm_ram_region_new(&o, NULL);
    assert_non_null(r);
    memset(vmm_ram_region_host(r), fill, 0x10000);
    return r;
}

static void test_update_under_readers(void **state)
{
    (void)state;
    const char *env = getenv("VMM_STRESS_ITERS");
    long iters = env ? atol(env) : 2000;
    Shared s = { .mem = vmm_guest_memory_new(NULL) };
    VmmRamRegion *fixed = ram(0x11);
    pthread_t th[NREADERS];

    assert_int_equal(vmm_guest_memory_add(s.mem, 0, fixed, 0, 0x10000, 0), 0);
    for (int i = 0; i < NREADERS; i++) {
        pthread_create(&th[i], NULL, reader, &s);
    }
    /* The updates start once every reader is reading: on a loaded machine
     * the readers could otherwise start after the last update (and the
     * check below, that they read at all, failed by luck). */
    while (vk_atomic_read(&s.started) < NREADERS) {
        sched_yield();
    }
    for (long i = 0; i < iters; i++) {
        /* A fresh region each time: freeing the old one too early would
         * show up as a crash or under AddressSanitizer. */
        VmmRamRegion *moving = ram(0x22);
        assert_int_equal(vmm_guest_memory_add(s.mem, 0x10000, moving, 0, 0x10000, 0), 0);
        vmm_ram_region_unref(moving);
        assert_int_equal(vmm_guest_memory_remove(s.mem, 0x10000, 0x10000), 0);
    }
    vk_atomic_store_release(&s.stop, 1);
    for (int i = 0; i < NREADERS; i++) {
        pthread_join(th[i], NULL);
    }
    assert_int_equal(s.bad, 0);
    /* (Every reader read before the first update: see the wait above.) */
    print_message("# %ld hits, %ld misses\n", s.hits, s.misses);
    vmm_guest_memory_unref(s.mem);
    vmm_ram_region_unref(fixed);
}

/* vk_rcu_call(): a callback waits for a reader that was inside its
 * read-side section when it was queued, and callbacks run in queue order. */
struct rcu_item {
    struct rcu_head rcu;
    int id;
};
static int rcu_order[3];
static int rcu_seen_state[3];
static int rcu_ran;
/* 1: inside the section, 2: release it, 3: leaving (the reader's last
 * store before its read-side unlock, so every callback must see it). */
static int reader_state;

static void rcu_item_done(struct rcu_head *h)
{
    struct rcu_item *it = caa_container_of(h, struct rcu_item, rcu);
    int n = vk_atomic_read(&rcu_ran);
    rcu_order[n] = it->id;
    rcu_seen_state[n] = vk_atomic_read(&reader_state);
    vk_atomic_store_release(&rcu_ran, n + 1);
}

static void *rcu_reader(void *arg)
{
    (void)arg;
    vk_rcu_read_lock();
    vk_atomic_set(&reader_state, 1);
    while (vk_atomic_read(&reader_state) != 2) {
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL);
    }
    vk_atomic_set(&reader_state, 3);
    vk_rcu_read_unlock();
    return NULL;
}

static void test_rcu_call_waits_for_readers(void **state)
{
    (void)state;
    struct rcu_item items[3] = { { .id = 1 }, { .id = 2 }, { .id = 3 } };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, rcu_reader, NULL), 0);
    while (vk_atomic_read(&reader_state) != 1) {
        sched_yield();
    }
    for (int i = 0; i < 3; i++) {
        vk_rcu_call(&items[i].rcu, rcu_item_done);
    }
    /* The reader holds the grace period open: nothing may run. */
    struct timespec ts = { 0, 50 * 1000000 };
    nanosleep(&ts, NULL);
    assert_int_equal(vk_atomic_read(&rcu_ran), 0);
    vk_atomic_set(&reader_state, 2);
    while (vk_atomic_load_acquire(&rcu_ran) != 3) {
        sched_yield();
    }
    /* Checking reader_state here raced: the grace period may end between
     * the reader's unlock and any store it makes after it. */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(rcu_seen_state[i], 3);
    }
    assert_int_equal(rcu_order[0], 1);
    assert_int_equal(rcu_order[1], 2);
    assert_int_equal(rcu_order[2], 3);
    pthread_join(th, NULL);
}

/* The device-write log under concurrent writers: each writer marks its
 * own pages (vmm_dma_write) while the main thread fetches and clears the
 * log and switches it off and on; a page written while logging is on is
 * fetched at least once after its write, and no page nobody wrote ever
 * shows up.  Stress for TSan (the log's publication, the fetch_and). */
#define DL_PAGES 1024
#define DL_WRITERS 3

typedef struct DirtyStress {
    VmmGuestMemory *mem;
    int stop;
    uint64_t written[DL_PAGES / 64];      /* pages some writer wrote */
} DirtyStress;

typedef struct DirtyWriter {
    DirtyStress *s;
    unsigned id;
    unsigned cycles;                        /* atomic: passes over its pages */
} DirtyWriter;

static void *dirty_writer(void *opaque)
{
    DirtyWriter *w = opaque;
    uint8_t b = 1;
    unsigned n = 0;
    while (!__atomic_load_n(&w->s->stop, __ATOMIC_ACQUIRE)) {
        /* Pages id, id + WRITERS, ...: the low part of RAM only. */
        unsigned page = w->id + DL_WRITERS * (n % (DL_PAGES / 2 / DL_WRITERS));
        assert_int_equal(vmm_dma_write(w->s->mem, (uint64_t)page * 4096, &b, 1), 0);
        __atomic_fetch_or(&w->s->written[page / 64], 1ull << (page % 64), __ATOMIC_RELAXED);
        if (++n % (DL_PAGES / 2 / DL_WRITERS) == 0) {
            __atomic_fetch_add(&w->cycles, 1, __ATOMIC_RELEASE);
        }
    }
    return NULL;
}

static void test_dirty_log_writers(void **state)
{
    (void)state;
    VmmRamRegionOptions o = { .size = sizeof(o), .length = DL_PAGES * 4096ull };
    VmmRamRegion *r = vmm_ram_region_new(&o, NULL);
    DirtyStress s = { .mem = vmm_guest_memory_new(NULL) };
    assert_int_equal(vmm_guest_memory_add(s.mem, 0, r, 0, DL_PAGES * 4096ull, 0), 0);
    assert_int_equal(vmm_guest_memory_log_dirty(s.mem, true), 0);
    pthread_t th[DL_WRITERS];
    DirtyWriter w[DL_WRITERS];
    for (unsigned i = 0; i < DL_WRITERS; i++) {
        w[i] = (DirtyWriter){ .s = &s, .id = i, .cycles = 0 };
        assert_int_equal(pthread_create(&th[i], NULL, dirty_writer, &w[i]), 0);
    }
    uint64_t seen[DL_PAGES / 64] = { 0 }, bm[DL_PAGES / 64];
    for (int round = 0; round < 2000; round++) {
        if (round % 500 == 250) {
            assert_int_equal(vmm_guest_memory_log_dirty(s.mem, false), 0);
            assert_int_equal(vmm_guest_memory_log_dirty(s.mem, true), 0);
        }
        if (vmm_guest_memory_get_dirty(s.mem, 0, DL_PAGES, bm) == 0) {
            for (unsigned k = 0; k < DL_PAGES / 64; k++) {
                seen[k] |= bm[k];
            }
        }
    }
    /* Two more passes of every writer with the log on: a page written
     * only while it was off is written again, and seen. */
    for (unsigned i = 0; i < DL_WRITERS; i++) {
        unsigned c0 = __atomic_load_n(&w[i].cycles, __ATOMIC_ACQUIRE);
        while (__atomic_load_n(&w[i].cycles, __ATOMIC_ACQUIRE) < c0 + 2) {
            sched_yield();
        }
    }
    __atomic_store_n(&s.stop, 1, __ATOMIC_RELEASE);
    for (unsigned i = 0; i < DL_WRITERS; i++) {
        pthread_join(th[i], NULL);
    }
    /* Writes after the last fetch: one more. */
    assert_int_equal(vmm_guest_memory_get_dirty(s.mem, 0, DL_PAGES, bm), 0);
    for (unsigned k = 0; k < DL_PAGES / 64; k++) {
        seen[k] |= bm[k];
        assert_int_equal(seen[k] & ~s.written[k], 0);    /* nobody wrote those */
    }
    /* Everything written was seen (every page was written again while
     * logging was on at the end). */
    for (unsigned k = 0; k < DL_PAGES / 64; k++) {
        assert_int_equal(seen[k], s.written[k]);
    }
    vmm_guest_memory_unref(s.mem);
    vmm_ram_region_unref(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_update_under_readers),
        cmocka_unit_test(test_rcu_call_waits_for_readers),
        cmocka_unit_test(test_dirty_log_writers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
