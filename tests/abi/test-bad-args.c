/* SPDX-License-Identifier: MIT */
/*
 * Every public header's documented errors, walked with the bad arguments
 * each function's comment names, against the public API only (as an
 * embedder builds).  A function that promises an errno for a caller
 * mistake must return it in every build: this program runs in-process, so
 * a debug abort fails it.  The misuse is still logged: a log handler
 * counts the messages and each case checks the library said something
 * where it promises to (VMM_MISUSE_ERR), not only that it returned.
 * The KVM functions run on tests/accel/fake-kvm.c (a VmmKvmOps table).
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <vmmkit/vmmkit.h>

#include "../accel/fake-kvm.h"

/* ---- the log: count misuse reports ------------------------------------- */

static int misuse_logged;

static void count_log(VmmLogLevel level, const char *msg, void *opaque)
{
    (void)opaque;
    if (level == VMM_LOG_ERROR && strstr(msg, "misuse")) {
        __atomic_fetch_add(&misuse_logged, 1, __ATOMIC_RELAXED);
    }
}

static int setup(void **state)
{
    (void)state;
    vmm_set_log_handler(count_log, NULL, VMM_LOG_WARNING);
    return 0;
}

/* @call returns @want, and (with @logs) logs one misuse report. */
#define EXPECT_ERR(want, logs, call) do {                                  \
        int before_ = __atomic_load_n(&misuse_logged, __ATOMIC_RELAXED);   \
        assert_int_equal((call), (want));                                  \
        if (logs) {                                                        \
            assert_true(__atomic_load_n(&misuse_logged, __ATOMIC_RELAXED) > before_); \
        }                                                                  \
    } while (0)

/* A NULL-returning constructor: NULL and *errp == @want. */
#define EXPECT_NULL_ERR(want, call_with_errp) do {                         \
        int err_ = 0;                                                      \
        int *errp = &err_;                                                 \
        assert_null(call_with_errp);                                       \
        assert_int_equal(err_, (want));                                    \
    } while (0)

static void noop(void *opaque)
{
    (void)opaque;
}

/* ---- accel.h ------------------------------------------------------------ */

typedef struct BindArgs {
    VmmAccelCpuSlot *slot;
    int ret;
} BindArgs;

static void *bind_other(void *opaque)
{
    BindArgs *a = opaque;
    a->ret = vmm_accel_cpu_slot_bind(a->slot, true);
    return NULL;
}

static void test_accel(void **state)
{
    (void)state;
    int err = 0;
    VmmAccelGate *g = vmm_accel_gate_new(&err);
    assert_non_null(g);

    EXPECT_NULL_ERR(-EINVAL, vmm_accel_cpu_slot_new(NULL, noop, NULL, "x", errp));
    EXPECT_NULL_ERR(-EINVAL, vmm_accel_cpu_slot_new(g, NULL, NULL, "x", errp));
    EXPECT_ERR(-EINVAL, false, vmm_accel_cpu_slot_bind(NULL, true));

    VmmAccelCpuSlot *a = vmm_accel_cpu_slot_new(g, noop, NULL, "a", &err);
    VmmAccelCpuSlot *b = vmm_accel_cpu_slot_new(g, noop, NULL, "b", &err);
    assert_non_null(a);
    assert_non_null(b);
    EXPECT_ERR(-EPERM, true, vmm_accel_cpu_slot_bind(a, false));      /* not ours */
    assert_int_equal(vmm_accel_cpu_slot_bind(a, true), 0);
    EXPECT_ERR(-EBUSY, true, vmm_accel_cpu_slot_bind(b, true));       /* own one already */
    vmm_accel_cpu_ioctl_begin(a);
    EXPECT_ERR(-EBUSY, true, vmm_accel_cpu_slot_bind(a, false));      /* inside a bracket */
    vmm_accel_cpu_ioctl_end(a);

    BindArgs ba = { .slot = a };
    pthread_t t;
    pthread_create(&t, NULL, bind_other, &ba);
    pthread_join(t, NULL);
    assert_int_equal(ba.ret, -EBUSY);                                   /* owned elsewhere */
    assert_int_equal(vmm_accel_cpu_slot_bind(a, false), 0);

    vmm_accel_ioctl_inhibit_begin(g);
    EXPECT_NULL_ERR(-EDEADLK, vmm_accel_cpu_slot_new(g, noop, NULL, "c", errp));
    EXPECT_ERR(-EDEADLK, true, vmm_accel_cpu_slot_bind(b, true));
    vmm_accel_ioctl_inhibit_end(g);

    vmm_accel_cpu_slot_free(a);
    vmm_accel_cpu_slot_free(b);
    vmm_accel_gate_free(g);
}

/* ---- aio.h -------------------------------------------------------------- */

static bool never(void *opaque)
{
    (void)opaque;
    return false;
}

static void test_aio(void **state)
{
    (void)state;
    int err = 0;
    VmmAioContext *ctx = vmm_aio_context_new(NULL, &err);
    assert_non_null(ctx);

    EXPECT_ERR(-EINVAL, false, vmm_aio_context_set_poll_params(ctx, 1000, 1, 0));
    EXPECT_ERR(-EINVAL, false, vmm_aio_context_set_poll_params(ctx, -1, 0, 0));
    EXPECT_ERR(-EINVAL, true, vmm_aio_context_set_poll_params(NULL, 1000, 0, 0));
    assert_null(vmm_bh_new(ctx, NULL, NULL, "no-cb"));
    assert_null(vmm_bh_new(NULL, noop, NULL, "no-ctx"));
    EXPECT_ERR(-EINVAL, true, vmm_bh_schedule_oneshot(ctx, NULL, NULL, "no-cb"));
    EXPECT_ERR(-EINVAL, true, vmm_bh_schedule_oneshot(NULL, noop, NULL, "no-ctx"));
    assert_null(vmm_timer_new(ctx, NULL, NULL));
    assert_null(vmm_timer_new(NULL, noop, NULL));

    int fds[2];
    assert_int_equal(pipe(fds), 0);
    EXPECT_ERR(-EBADF, false, vmm_aio_set_fd_handler(ctx, -1, noop, NULL, NULL, NULL, NULL));
    EXPECT_ERR(-EINVAL, true, vmm_aio_set_fd_handler(NULL, fds[0], noop, NULL, NULL, NULL,
                                                     NULL));
    EXPECT_ERR(-ENOENT, false, vmm_aio_set_fd_handler(ctx, fds[0], NULL, NULL, NULL, NULL,
                                                      NULL));
    EXPECT_ERR(-EINVAL, false, vmm_aio_set_fd_handler(ctx, fds[0], noop, NULL, NULL, noop,
                                                      NULL));
    VmmAioHandlerOptions o = { .size = offsetof(VmmAioHandlerOptions, io_poll_ready),
                               .io_read = noop };
    EXPECT_ERR(-EINVAL, false, vmm_aio_set_fd_handler_full(ctx, fds[0], &o));
    o = (VmmAioHandlerOptions){ .size = sizeof(o), .io_read = noop, .io_poll_begin = noop };
    EXPECT_ERR(-EINVAL, false, vmm_aio_set_fd_handler_full(ctx, fds[0], &o));

    VmmEventNotifier *n = vmm_event_notifier_new(&err);
    assert_non_null(n);
    o = (VmmAioHandlerOptions){ .size = sizeof(o), .io_read = noop, .io_write = noop };
    EXPECT_ERR(-EINVAL, false, vmm_aio_set_event_notifier_full(ctx, n, &o));
    vmm_event_notifier_free(n);

    EXPECT_ERR(-EINVAL, false, vmm_aio_wait_while_timeout_(NULL, NULL, NULL, 1000));
    EXPECT_ERR(0, false, vmm_aio_wait_while_timeout_(NULL, never, NULL, 1000));
    close(fds[0]);
    close(fds[1]);
    vmm_aio_context_unref(ctx);
}

/* ---- coroutine.h -------------------------------------------------------- */

static int pool_fn(void *opaque)
{
    (void)opaque;
    return 0;
}

static void test_coroutine(void **state)
{
    (void)state;
    VmmAioContext *ctx = vmm_aio_context_main();

    EXPECT_NULL_ERR(-EINVAL, vmm_coroutine_create(NULL, NULL, errp));
    EXPECT_ERR(-EINVAL, true, vmm_co_run_sync(NULL, noop, NULL));
    EXPECT_ERR(-EINVAL, true, vmm_co_run_sync(ctx, NULL, NULL));
    EXPECT_ERR(-EINVAL, true, vmm_thread_pool_submit(ctx, NULL, NULL, NULL, NULL));
    EXPECT_ERR(-EINVAL, true, vmm_thread_pool_submit(NULL, pool_fn, NULL, NULL, NULL));
    EXPECT_ERR(-EINVAL, true, vmm_thread_pool_set_max_workers(ctx, 0));
    EXPECT_ERR(-EINVAL, true, vmm_thread_pool_set_max_workers(NULL, 4));
    EXPECT_ERR(-EINVAL, true, vmm_thread_pool_co_submit(pool_fn, NULL));  /* no coroutine */
    assert_int_equal(vmm_thread_pool_set_max_workers(ctx, 4), 0);
}

/* ---- memory.h ----------------------------------------------------------- */

static void listener(void *opaque, const VmmMemorySection *s, bool added)
{
    (void)opaque;
    (void)s;
    (void)added;
}

static void test_memory(void **state)
{
    (void)state;
    int err = 0;
    VmmRamRegionOptions o = { .size = sizeof(o), .length = 4096 };

    EXPECT_NULL_ERR(-EINVAL, vmm_ram_region_new(NULL, errp));
    o.length = 0;
    EXPECT_NULL_ERR(-EINVAL, vmm_ram_region_new(&o, errp));
    o.length = 4097;
    EXPECT_NULL_ERR(-EINVAL, vmm_ram_region_new(&o, errp));
    o.length = 4096;
    o.flags = 1u << 31;
    EXPECT_NULL_ERR(-EINVAL, vmm_ram_region_new(&o, errp));
    o.flags = VMM_RAM_HUGEPAGES;
    o.hugepage_size = 3 << 20;
    EXPECT_NULL_ERR(-EINVAL, vmm_ram_region_new(&o, errp));
    VmmRamRegionOptions small = { .size = 8, .length = 4096 };
    EXPECT_NULL_ERR(-EINVAL, vmm_ram_region_new(&small, errp));

    o = (VmmRamRegionOptions){ .size = sizeof(o), .length = 3 * 4096 };
    VmmRamRegion *r = vmm_ram_region_new(&o, &err);
    assert_non_null(r);
    VmmGuestMemory *m = vmm_guest_memory_new(&err);
    assert_non_null(m);

    EXPECT_ERR(-EINVAL, false, vmm_guest_memory_add(m, 100, r, 0, 4096, 0));    /* unaligned */
    EXPECT_ERR(-EINVAL, false, vmm_guest_memory_add(m, 0, r, 0, 0, 0));         /* empty */
    EXPECT_ERR(-EINVAL, false, vmm_guest_memory_add(m, 0, r, 4096, 3 * 4096, 0)); /* outside */
    EXPECT_ERR(-EOVERFLOW, false, vmm_guest_memory_add(m, UINT64_MAX - 4095, r, 0, 8192, 0));
    assert_int_equal(vmm_guest_memory_add(m, 0, r, 0, 4096, 0), 0);
    assert_int_equal(vmm_guest_memory_add(m, 8192, r, 8192, 4096, VMM_MEM_READONLY), 0);
    EXPECT_ERR(-EEXIST, false, vmm_guest_memory_add(m, 0, r, 4096, 4096, 0));
    EXPECT_ERR(-ENOENT, false, vmm_guest_memory_remove(m, 4096, 4096));
    EXPECT_ERR(-ENOENT, false, vmm_guest_memory_remove(m, 0, 8192));     /* not exact */
    EXPECT_ERR(-ENOENT, false, vmm_guest_memory_remove_listener(m, listener, NULL));

    VmmMemorySection s;
    uint8_t buf[16];
    struct iovec iov[1];
    EXPECT_ERR(-ENOENT, false, vmm_guest_memory_find(m, 4096, &s));
    EXPECT_ERR(-EOVERFLOW, false, vmm_dma_read(m, UINT64_MAX - 4, buf, 16));
    EXPECT_ERR(-EFAULT, false, vmm_dma_read(m, 4090, buf, 16));        /* into the hole */
    EXPECT_ERR(-EACCES, false, vmm_dma_write(m, 8192, buf, 16));
    EXPECT_ERR(-EOVERFLOW, false, vmm_dma_map(m, UINT64_MAX - 4, 16, 0, iov, 1));
    EXPECT_ERR(-EFAULT, false, vmm_dma_map(m, 4090, 16, 0, iov, 1));
    EXPECT_ERR(-EACCES, false, vmm_dma_map(m, 8192, 16, VMM_DMA_TO_GUEST, iov, 1));
    EXPECT_ERR(0, false, vmm_dma_map(m, 0, 0, 0, iov, 1));

    /* Two adjacent sections: two iovecs needed. */
    VmmRamRegion *r2 = vmm_ram_region_new(&o, &err);
    assert_non_null(r2);
    assert_int_equal(vmm_guest_memory_add(m, 4096, r2, 0, 4096, 0), 0);
    EXPECT_ERR(-ENOBUFS, false, vmm_dma_map(m, 4090, 16, 0, iov, 1));

    vmm_guest_memory_unref(m);
    vmm_ram_region_unref(r);
    vmm_ram_region_unref(r2);
}

/* ---- device.h ----------------------------------------------------------- */

static int quiesce_now(VmmDevice *dev, void *opaque)
{
    (void)dev;
    (void)opaque;
    return 0;
}

static void test_memory_dirty(void **state)
{
    (void)state;
    uint64_t bm[1];
    EXPECT_ERR(-EINVAL, true, vmm_guest_memory_log_dirty(NULL, true));
    EXPECT_ERR(-EINVAL, true, vmm_guest_memory_get_dirty(NULL, 0, 1, bm));
    VmmGuestMemory *mem = vmm_guest_memory_new(NULL);
    assert_non_null(mem);
    EXPECT_ERR(-EINVAL, true, vmm_guest_memory_get_dirty(mem, 4096, 1, bm));
    EXPECT_ERR(-EINVAL, true, vmm_guest_memory_get_dirty(mem, 0, 1, NULL));
    EXPECT_ERR(-ENOENT, false, vmm_guest_memory_get_dirty(mem, 0, 1, bm));
    vmm_guest_memory_unref(mem);
}

static void test_device(void **state)
{
    (void)state;
    int err = 0;
    const VmmDeviceOps ops = { .size = sizeof(ops), .quiesce = quiesce_now };
    const VmmDeviceOps no_quiesce = { .size = sizeof(ops) };
    const VmmDeviceOps too_small = { .size = 4, .quiesce = quiesce_now };
    uint8_t b;

    EXPECT_NULL_ERR(-EINVAL, vmm_device_new("d", NULL, NULL, NULL, errp));
    EXPECT_NULL_ERR(-EINVAL, vmm_device_new("d", &no_quiesce, NULL, NULL, errp));
    EXPECT_NULL_ERR(-EINVAL, vmm_device_new("d", &too_small, NULL, NULL, errp));

    VmmDevice *d = vmm_device_new("d", &ops, NULL, NULL, &err);
    assert_non_null(d);
    EXPECT_ERR(-EINVAL, true, vmm_device_unpause(d));
    EXPECT_ERR(-EINVAL, false, vmm_device_reset(NULL, NULL, NULL));
    EXPECT_ERR(-EINVAL, false, vmm_device_pause(NULL, NULL, NULL));
    EXPECT_ERR(-EINVAL, false, vmm_device_dma_map_change(d, NULL, true, NULL, NULL));
    EXPECT_ERR(-EINVAL, false, vmm_device_set_migration_state(d, 99, NULL, NULL));
    EXPECT_ERR(-ENODEV, false, vmm_device_dma_read(d, 0, &b, 1));
    EXPECT_ERR(-ENODEV, false, vmm_device_dma_write(d, 0, &b, 1));

    assert_int_equal(vmm_device_pause(d, NULL, NULL), 0);
    EXPECT_ERR(-EBUSY, true, vmm_device_free(d));                      /* still paused */

    VmmQuiesceGroup *g = vmm_quiesce_group_new(&err);
    assert_non_null(g);
    EXPECT_ERR(-EINVAL, false, vmm_quiesce_group_add_device(g, NULL));
    EXPECT_ERR(-EINVAL, false, vmm_quiesce_group_add_device(NULL, d));
    EXPECT_ERR(-EINVAL, false, vmm_quiesce_group_add_gate(g, NULL));
    EXPECT_ERR(-EINVAL, false, vmm_quiesce_group_add_stage(g, "s", NULL, NULL, NULL));
    EXPECT_ERR(-EINVAL, true, vmm_quiesce_group_begin(NULL, -1, NULL));
    assert_int_equal(vmm_quiesce_group_begin(g, -1, NULL), 0);
    EXPECT_ERR(-EINVAL, true, vmm_quiesce_group_begin(g, -1, NULL));   /* already quiesced */
    EXPECT_ERR(-EBUSY, false, vmm_quiesce_group_add_device(g, d));
    vmm_quiesce_group_end(g);
    vmm_quiesce_group_free(g);

    assert_int_equal(vmm_device_unpause(d), 0);
    assert_int_equal(vmm_device_free(d), 0);
    assert_int_equal(vmm_device_free(NULL), 0);
}

/* ---- virtio.h ----------------------------------------------------------- */

static void handle_queue(VmmVirtioDevice *vdev, VmmVirtqueue *vq, void *opaque)
{
    (void)vdev;
    (void)vq;
    (void)opaque;
}

static void test_virtio(void **state)
{
    (void)state;
    int err = 0;
    VmmVirtioDeviceOps ops = {
        .size = sizeof(ops), .device_id = 2, .config_size = 8, .num_queues = 1,
        .queue_max_size = 16, .handle_queue = handle_queue,
    };
    VmmVirtioDeviceOps bad = ops;
    uint8_t cfg[8] = { 0 };

    bad.handle_queue = NULL;
    EXPECT_NULL_ERR(-EINVAL, vmm_virtio_device_new("v", &bad, NULL, NULL, NULL, errp));
    bad = ops;
    bad.queue_max_size = 12;    /* not a power of two */
    EXPECT_NULL_ERR(-EINVAL, vmm_virtio_device_new("v", &bad, NULL, NULL, NULL, errp));

    VmmVirtioDevice *v = vmm_virtio_device_new("v", &ops, NULL, NULL, NULL, &err);
    assert_non_null(v);
    EXPECT_ERR(-EINVAL, false, vmm_virtio_config_read(v, 4, cfg, 8));
    EXPECT_ERR(-EINVAL, false, vmm_virtio_config_write(v, 8, cfg, 1));
    EXPECT_ERR(-EINVAL, false, vmm_virtio_config_update(v, 0, cfg, 9));
    assert_null(vmm_virtio_get_queue(v, 1));
    assert_int_equal(vmm_virtio_queue_get_max_size(v, 1), 0);
    assert_int_equal(vmm_virtio_queue_get_size(v, 1), 0);
    assert_int_equal(vmm_virtio_queue_get_max_size(v, 0), 16);
    assert_int_equal(vmm_virtio_queue_get_size(v, 0), 16);
    EXPECT_ERR(-EINVAL, false, vmm_virtio_queue_set_size(v, 1, 8));
    EXPECT_ERR(-EINVAL, false, vmm_virtio_queue_set_size(v, 0, 12));
    EXPECT_ERR(-EINVAL, false, vmm_virtio_queue_set_size(v, 0, 32));
    EXPECT_ERR(-EINVAL, false, vmm_virtio_queue_set_size(v, 0, 0));
    EXPECT_ERR(-EINVAL, false, vmm_virtio_queue_set_addr(v, 1, 0, 0, 0));
    EXPECT_ERR(-EINVAL, false, vmm_virtio_queue_enable(v, 1));
    EXPECT_ERR(-EINVAL, true, vmm_virtio_queue_set_host_notifier(v, 0, NULL));  /* no ctx */

    /* State records: NULLs, short buffers, another device's record. */
    uint8_t rec[512];
    size_t n = vmm_virtio_state_size(v);
    assert_true(n > 0 && n <= sizeof(rec));
    assert_int_equal(vmm_virtio_state_size(NULL), 0);
    EXPECT_ERR(-EINVAL, true, vmm_virtio_save_state(NULL, rec, sizeof(rec)));
    EXPECT_ERR(-EINVAL, true, vmm_virtio_save_state(v, rec, n - 1));
    EXPECT_ERR(-EINVAL, true, vmm_virtio_load_state(v, NULL, n));
    assert_int_equal(vmm_virtio_save_state(v, rec, n), 0);      /* not set up */
    EXPECT_ERR(-EINVAL, false, vmm_virtio_load_state(v, rec, n - 1));
    rec[8] ^= 1;                                                /* device id */
    EXPECT_ERR(-EINVAL, false, vmm_virtio_load_state(v, rec, n));
    rec[8] ^= 1;
    /* Queue 0 enabled with its rings nowhere (the device has no memory, the
     * descriptor table is misaligned): -EFAULT, the device stays reset. */
    uint8_t ring[512];
    memcpy(ring, rec, n);
    const size_t q0 = 40 + 8;                                   /* fixed part, config */
    ring[q0 + 2] = 1;                                           /* ready */
    ring[q0 + 4] = 0x08;                                        /* desc 0x1008 */
    ring[q0 + 5] = 0x10;
    EXPECT_ERR(-EFAULT, false, vmm_virtio_load_state(v, ring, n));
    assert_false(vmm_virtio_queue_is_enabled(v, 0));
    assert_int_equal(vmm_virtio_get_status(v), 0);
    assert_int_equal(vmm_virtio_load_state(v, rec, n), 0);

    VmmVirtqueue *vq = vmm_virtio_get_queue(v, 0);
    EXPECT_NULL_ERR(-EINVAL, vmm_virtqueue_pop(vq, sizeof(VmmVirtqElem) - 1, errp));
    assert_int_equal(vmm_virtio_config_size(v), 8);
    vmm_virtio_device_free(v);

    /* virtio-rng.h, virtio-console.h */
    EXPECT_NULL_ERR(-EINVAL, vmm_virtio_rng_new(NULL, errp));
    EXPECT_NULL_ERR(-EINVAL, vmm_virtio_console_new(NULL, NULL, -1, -1, errp));
    VmmAioContext *ctx = vmm_aio_context_new(NULL, &err);
    assert_non_null(ctx);
    VmmGuestMemory *mem = vmm_guest_memory_new(&err);
    assert_non_null(mem);
    EXPECT_NULL_ERR(-EINVAL, vmm_virtio_console_new(mem, ctx, -2, -1, errp));
    EXPECT_NULL_ERR(-EINVAL, vmm_virtio_console_new(mem, ctx, -1, -5, errp));
    vmm_guest_memory_unref(mem);
    vmm_aio_context_unref(ctx);
}

/* ---- block.h ------------------------------------------------------------ */

static void test_block(void **state)
{
    (void)state;
    int err = 0;
    GError *gerr = NULL;
    char buf[512];

    assert_null(vmm_block_open("driver=nosuchdriver", 0, &gerr));
    assert_non_null(gerr);
    g_clear_error(&gerr);
    assert_null(vmm_block_open("node-name=x", 0, &gerr));               /* no driver */
    assert_non_null(gerr);
    g_clear_error(&gerr);

    VmmBlockBackend *blk = vmm_blk_new(NULL, &err);
    assert_non_null(blk);
    VmmBlockDevOps ops = { .size = 0 };
    EXPECT_ERR(-EINVAL, true, vmm_blk_set_dev_ops(blk, &ops, NULL));
    EXPECT_ERR(-ENOMEDIUM, false, vmm_blk_getlength(blk));
    EXPECT_ERR(-EINVAL, true, vmm_block_drained_begin_timeout(NULL, 1000));
    EXPECT_ERR(-EINVAL, false, vmm_blk_set_dev_ops(NULL, NULL, NULL));

    VmmBlockNode *n = vmm_block_open("driver=null,size=1M,node-name=bad-args-null", 0,
                                     &gerr);
    assert_non_null(n);
    assert_int_equal(vmm_blk_insert(blk, n, NULL), 0);
    EXPECT_ERR(-EINVAL, true, vmm_block_drained_begin_timeout(n, -1));
    EXPECT_ERR(-EINVAL, false, vmm_blk_pread(blk, -512, 512, buf, 0));
    EXPECT_ERR(-ERANGE, false, vmm_blk_pread(blk, 1 << 20, 512, buf, 0));
    struct iovec iov = { buf, 256 };
    EXPECT_ERR(-EINVAL, false, vmm_blk_preadv(blk, 0, 512, &iov, 1, 0)); /* iov too short */
    EXPECT_ERR(-ENOENT, false, vmm_block_detach_child(n, "nosuchchild"));
    EXPECT_ERR(-ENOTSUP, false, vmm_block_fault_add_rule(n, "op=read", &gerr));
    g_clear_error(&gerr);
    EXPECT_ERR(-ENOTSUP, false, vmm_block_fault_remove_rule(n, 0));
    EXPECT_ERR(-ENOTSUP, false, vmm_block_fault_rule_hits(n, 0));

    /* Edges: a name taken, a driver without such a child, a cycle. */
    VmmBlockNode *f = vmm_block_open("driver=fault,node-name=bad-args-flt,file.driver=null",
                                     0, &gerr);
    assert_non_null(f);
    VmmBlockNode *other = vmm_block_open("driver=null,node-name=bad-args-other", 0, &gerr);
    assert_non_null(other);
    EXPECT_ERR(-EEXIST, false, vmm_block_attach_child(f, other, "file", VMM_CHILD_DATA,
                                                      &gerr));
    g_clear_error(&gerr);
    EXPECT_ERR(-EPERM, false, vmm_block_attach_child(other, f, "file", VMM_CHILD_DATA,
                                                     &gerr));
    g_clear_error(&gerr);
    EXPECT_ERR(-EINVAL, false, vmm_block_fault_add_rule(f, "op=munch", &gerr));
    g_clear_error(&gerr);
    EXPECT_ERR(-ENOENT, false, vmm_block_fault_remove_rule(f, 5));
    EXPECT_ERR(-ENOENT, false, vmm_block_fault_rule_hits(f, 5));
    vmm_block_node_unref(other);
    vmm_block_node_unref(f);
    vmm_blk_unref(blk);
    vmm_block_node_unref(n);
}

/* ---- kvm.h (on the fake KVM) -------------------------------------------- */

/* On the vCPU's own thread: what would deadlock there says so. */
static int on_vcpu(VmmVcpu *vcpu, void *opaque)
{
    (void)opaque;
    EXPECT_ERR(-EDEADLK, true, vmm_vm_wait(vmm_vcpu_vm(vcpu), 1000, NULL));
    EXPECT_ERR(-EDEADLK, true, vmm_vm_pause(vmm_vcpu_vm(vcpu)));
    EXPECT_ERR(-EDEADLK, true, vmm_vcpu_pause(vcpu));
    return 42;
}

static void test_kvm(void **state)
{
    (void)state;
    FakeKvm f;
    int err = 0;

    fake_kvm_init(&f);
    VmmVmOptions o = fake_vm_options(&f);
    o.kick_signal = SIGSEGV;
    EXPECT_NULL_ERR(-EINVAL, vmm_vm_new(&o, errp));
    o.kick_signal = SIGKILL;
    EXPECT_NULL_ERR(-EINVAL, vmm_vm_new(&o, errp));

    o = fake_vm_options(&f);
    VmmVm *vm = vmm_vm_new(&o, &err);
    assert_non_null(vm);
    void *host = aligned_alloc(4096, 8192);
    EXPECT_ERR(-EINVAL, false, vmm_vm_map_memory(vm, 100, 4096, host, 0));
    EXPECT_ERR(-EINVAL, false, vmm_vm_map_memory(vm, 0, 0, host, 0));
    EXPECT_ERR(-EINVAL, false, vmm_vm_map_memory(vm, 0, 4096, (char *)host + 1, 0));
    assert_int_equal(vmm_vm_map_memory(vm, 0, 8192, host, 0), 0);
    EXPECT_ERR(-EEXIST, false, vmm_vm_map_memory(vm, 4096, 4096, host, 0));
    EXPECT_ERR(-ENOENT, false, vmm_vm_unmap_memory(vm, 4096));

    static const VmmIoOps io = { 0 };
    assert_int_equal(vmm_vm_register_io(vm, true, 0x100, 8, &io, NULL), 0);
    EXPECT_ERR(-EEXIST, false, vmm_vm_register_io(vm, true, 0x104, 8, &io, NULL));
    EXPECT_ERR(-ENODEV, false, vmm_vm_add_msi_route(vm, 0xfee00000, 0));  /* no irqchip */

    EXPECT_ERR(-ETIMEDOUT, false, vmm_vm_wait(vm, 1000, NULL));
    VmmVcpu *c = vmm_vcpu_new(vm, 0, "c0", &err);
    assert_non_null(c);
    EXPECT_ERR(-EBUSY, true, vmm_vm_create_irqchip(vm, false));      /* after vCPUs */
    uint64_t v;
    EXPECT_ERR(-ENOENT, false, vmm_vcpu_get_msr(c, 0xdeadbeef, &v));
    assert_int_equal(vmm_vcpu_run_on(c, on_vcpu, NULL), 42);
    EXPECT_ERR(-EINVAL, true, vmm_vcpu_ioctl(NULL, KVM_KVMCLOCK_CTRL, NULL));
    vmm_vm_free(vm);
    free(host);
}

/* ---- machine.h, virtio-blk.h -------------------------------------------- */

static void test_machine(void **state)
{
    (void)state;
    VmmMachineOptions o = { .size = sizeof(o) };   /* no kernel */

    EXPECT_NULL_ERR(-EINVAL, vmm_machine_new(&o, errp));
    EXPECT_NULL_ERR(-EINVAL, vmm_machine_new(NULL, errp));
    /* A flag the library does not know, with everything else right. */
    VmmMachineOptions f = { .size = sizeof(f), .kernel = "/nonexistent", .memory = 64 << 20,
                            .cpus = 1, .console_out_fd = -1, .boot_flags = 1u << 30 };
    EXPECT_NULL_ERR(-EINVAL, vmm_machine_new(&f, errp));

    /* Snapshots: NULLs, files that are not regular, files that are not
     * snapshots. */
    EXPECT_ERR(-EINVAL, true, vmm_machine_snapshot(NULL, 1));
    EXPECT_NULL_ERR(-EINVAL, vmm_machine_restore(NULL, 0, errp));
    EXPECT_NULL_ERR(-EINVAL, vmm_machine_restore(&f, -1, errp));
    int p[2];
    assert_int_equal(pipe(p), 0);
    close(p[1]);
    EXPECT_NULL_ERR(-EPIPE, vmm_machine_restore(&f, p[0], errp));   /* empty stream */
    close(p[0]);
    int dn = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_true(dn >= 0);
    EXPECT_NULL_ERR(-ESPIPE, vmm_machine_restore(&f, dn, errp));    /* neither */
    close(dn);
    FILE *tf = tmpfile();
    assert_non_null(tf);
    char junk[8192];
    memset(junk, 'x', sizeof(junk));
    assert_int_equal(fwrite(junk, 1, sizeof(junk), tf), sizeof(junk));
    fflush(tf);
    EXPECT_NULL_ERR(-EINVAL, vmm_machine_restore(&f, fileno(tf), errp));
    fclose(tf);

    /* Migration: NULLs, a stream that is not one, one that ends early. */
    EXPECT_ERR(-EINVAL, true, vmm_machine_migrate(NULL, 1, NULL, NULL));
    vmm_machine_migrate_cancel(NULL);
    EXPECT_NULL_ERR(-EINVAL, vmm_machine_incoming(NULL, 0, errp));
    EXPECT_NULL_ERR(-EINVAL, vmm_machine_incoming(&f, -1, errp));
    assert_int_equal(pipe(p), 0);
    assert_int_equal(write(p[1], junk, 100), 100);
    EXPECT_NULL_ERR(-EINVAL, vmm_machine_incoming(&f, p[0], errp));    /* bad magic */
    close(p[0]);
    close(p[1]);
    assert_int_equal(pipe(p), 0);
    assert_int_equal(write(p[1], "VMMKMIG1", 8), 8);
    close(p[1]);
    EXPECT_NULL_ERR(-EPIPE, vmm_machine_incoming(&f, p[0], errp));     /* cut short */
    close(p[0]);
}

/* ---- machine.h: composing (on the fake KVM) ------------------------------ */

static void tdev_handle(VmmVirtioDevice *vdev, VmmVirtqueue *vq, void *opaque)
{
    (void)vdev;
    (void)vq;
    (void)opaque;
}

static uint64_t io_rd(void *opaque, uint64_t off, unsigned size)
{
    (void)opaque;
    (void)off;
    (void)size;
    return 0;
}

/* A one-segment ELF vmlinux the machine loads (never runs: no start). */
static void write_elf_kernel(char *path)
{
    uint8_t img[0x1100] = { 0 };
    Elf64_Ehdr eh = { .e_type = ET_EXEC, .e_machine = EM_X86_64, .e_version = EV_CURRENT,
                      .e_entry = 0x1000000, .e_phoff = sizeof(Elf64_Ehdr),
                      .e_ehsize = sizeof(Elf64_Ehdr), .e_phentsize = sizeof(Elf64_Phdr),
                      .e_phnum = 1 };
    memcpy(eh.e_ident, ELFMAG, SELFMAG);
    eh.e_ident[EI_CLASS] = ELFCLASS64;
    eh.e_ident[EI_DATA] = ELFDATA2LSB;
    eh.e_ident[EI_VERSION] = EV_CURRENT;
    Elf64_Phdr ph = { .p_type = PT_LOAD, .p_offset = 0x1000, .p_vaddr = 0x1000000,
                      .p_paddr = 0x1000000, .p_filesz = 16, .p_memsz = 16,
                      .p_flags = PF_R | PF_X, .p_align = 0x1000 };
    memcpy(img, &eh, sizeof(eh));
    memcpy(img + sizeof(eh), &ph, sizeof(ph));
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, img, sizeof(img)), (ssize_t)sizeof(img));
    close(fd);
}

static void test_machine_compose(void **state)
{
    (void)state;
    FakeKvm f;
    fake_kvm_init(&f);
    fake_msrs_any = true;
    char kernel[] = "/tmp/vmmkit-bad-args-XXXXXX";
    write_elf_kernel(kernel);
    VmmMachineOptions o = { .size = sizeof(o), .kernel = kernel, .memory = 64 << 20,
                            .cpus = 1, .console_out_fd = -1, .kvm_ops = &f.ops };
    int err = 0;
    VmmMachine *m = vmm_machine_new(&o, &err);
    unlink(kernel);
    assert_non_null(m);
    VmmGuestMemory *mem = vmm_machine_guest_memory(m);
    assert_non_null(mem);

    /* vmm_machine_add_virtio */
    static const VmmVirtioDeviceOps ops = {
        .size = sizeof(ops), .device_id = 0x7f, .num_queues = 1, .queue_max_size = 16,
        .handle_queue = tdev_handle,
    };
    VmmVirtioDevice *vdev = vmm_virtio_device_new("bad-args", &ops, NULL, mem, NULL, &err);
    assert_non_null(vdev);
    EXPECT_ERR(-EINVAL, true, vmm_machine_add_virtio(m, NULL, NULL));
    VmmMachineVirtioOptions vo = { .size = 1 };
    EXPECT_ERR(-EINVAL, true, vmm_machine_add_virtio(m, vdev, &vo));
    vo = (VmmMachineVirtioOptions){ .size = sizeof(vo), .pci_class = 0x1000000 };
    EXPECT_ERR(-EINVAL, true, vmm_machine_add_virtio(m, vdev, &vo));
    VmmVirtioDeviceOps many = ops;
    many.num_queues = 65;
    VmmVirtioDevice *wide = vmm_virtio_device_new("wide", &many, NULL, mem, NULL, &err);
    assert_non_null(wide);
    EXPECT_ERR(-EINVAL, true, vmm_machine_add_virtio(m, wide, NULL));    /* > 64 queues */
    vmm_virtio_device_free(wide);
    VmmGuestMemory *other = vmm_guest_memory_new(&err);
    assert_non_null(other);
    VmmVirtioDevice *elsewhere = vmm_virtio_device_new("elsewhere", &ops, NULL, other, NULL,
                                                       &err);
    assert_non_null(elsewhere);
    EXPECT_ERR(-EINVAL, true, vmm_machine_add_virtio(m, elsewhere, NULL)); /* other memory */
    vmm_virtio_device_free(elsewhere);
    vmm_guest_memory_unref(other);
    /* A queue with a host notifier already: -EBUSY. */
    VmmVirtioDevice *busy = vmm_virtio_device_new("busy", &ops, NULL, mem, NULL, &err);
    assert_non_null(busy);
    VmmAioContext *ctx = vmm_machine_device_context(m, &err);
    assert_non_null(ctx);
    VmmEventNotifier *n = vmm_event_notifier_new(&err);
    assert_non_null(n);
    assert_int_equal(vmm_virtio_queue_set_context(busy, 0, ctx), 0);
    assert_int_equal(vmm_virtio_queue_set_host_notifier(busy, 0, n), 0);
    EXPECT_ERR(-EBUSY, false, vmm_machine_add_virtio(m, busy, NULL));
    assert_int_equal(vmm_virtio_queue_set_host_notifier(busy, 0, NULL), 0);
    vmm_virtio_device_free(busy);
    vmm_event_notifier_free(n);
    assert_int_equal(vmm_machine_add_virtio(m, vdev, NULL), 0);
    EXPECT_ERR(-EINVAL, true, vmm_machine_add_virtio(m, vdev, NULL));    /* twice */

    /* vmm_machine_add_io_region */
    VmmMachineIoOps io = { .size = sizeof(io), .read = io_rd };
    VmmMachineIoOps small = { .size = 1 };
    EXPECT_ERR(-EINVAL, true, vmm_machine_add_io_region(m, true, 0x700, 1, NULL, NULL));
    EXPECT_ERR(-EINVAL, true, vmm_machine_add_io_region(m, true, 0x700, 1, &small, NULL));
    EXPECT_ERR(-EINVAL, true, vmm_machine_add_io_region(m, true, 0x700, 0, &io, NULL));
    EXPECT_ERR(-EINVAL, true, vmm_machine_add_io_region(m, true, 0xfff0, 0x20, &io, NULL));
    EXPECT_ERR(-EINVAL, true, vmm_machine_add_io_region(m, false, UINT64_MAX - 0xff, 0x200,
                                                        &io, NULL));     /* wraps */
    EXPECT_ERR(-EEXIST, false, vmm_machine_add_io_region(m, true, 0x3f8, 1, &io, NULL));
    EXPECT_ERR(-EEXIST, false, vmm_machine_add_io_region(m, true, 0x61, 1, &io, NULL));
    EXPECT_ERR(-EEXIST, false, vmm_machine_add_io_region(m, false, 0x1000, 16, &io, NULL));
    EXPECT_ERR(-EEXIST, false, vmm_machine_add_io_region(m, false, 0xfec00000, 4, &io, NULL));
    for (unsigned i = 0; i < 16; i++) {
        assert_int_equal(vmm_machine_add_io_region(m, true, 0x700 + i, 1, &io, NULL), 0);
        if (i == 5) {       /* another region's port */
            EXPECT_ERR(-EEXIST, false, vmm_machine_add_io_region(m, true, 0x705, 1, &io, NULL));
        }
    }
    EXPECT_ERR(-ENOSPC, false, vmm_machine_add_io_region(m, true, 0x800, 1, &io, NULL));

    /* vmm_machine_add_console */
    EXPECT_ERR(-EINVAL, true, vmm_machine_add_console(m, -2, -1));
    EXPECT_ERR(-EINVAL, true, vmm_machine_add_console(m, -1, -7));

    /* The bus is full: every add says -ENOSPC. */
    VmmVirtioDevice *more[32];
    unsigned nmore = 0;
    for (; nmore < 32; nmore++) {
        more[nmore] = vmm_virtio_device_new("more", &ops, NULL, mem, NULL, &err);
        assert_non_null(more[nmore]);
        int r = vmm_machine_add_virtio(m, more[nmore], NULL);
        if (r == -ENOSPC) {
            vmm_virtio_device_free(more[nmore]);
            break;
        }
        assert_int_equal(r, 0);
    }
    assert_true(nmore < 32);
    EXPECT_ERR(-ENOSPC, false, vmm_machine_add_rng(m));
    EXPECT_ERR(-ENOSPC, false, vmm_machine_add_console(m, -1, -1));
    char disk[] = "/tmp/vmmkit-bad-args-disk-XXXXXX";
    int dfd = mkstemp(disk);
    assert_true(dfd >= 0);
    assert_int_equal(ftruncate(dfd, 1 << 20), 0);
    close(dfd);
    EXPECT_ERR(-ENOSPC, false, vmm_machine_add_disk(m, disk, true));
    unlink(disk);

    vmm_machine_free(m);
    for (unsigned i = 0; i < nmore; i++) {
        vmm_virtio_device_free(more[i]);
    }
    vmm_virtio_device_free(vdev);
}

/* ---- virtio-net.h, vhost-vsock.h (no tap or vhost device needed) -------- */

static void test_virtio_net(void **state)
{
    (void)state;
    VmmGuestMemory *mem = vmm_guest_memory_new(NULL);
    VmmVirtioNetOptions o = { .size = sizeof(o), .tap_fd = -1 };

    EXPECT_NULL_ERR(-EINVAL, vmm_virtio_net_new(NULL, &o, errp));
    EXPECT_NULL_ERR(-EINVAL, vmm_virtio_net_new(mem, NULL, errp));
    VmmVirtioNetOptions small = { .size = sizeof(size_t) };
    EXPECT_NULL_ERR(-EINVAL, vmm_virtio_net_new(mem, &small, errp));
    EXPECT_NULL_ERR(-EINVAL, vmm_virtio_net_new(mem, &o, errp));     /* fd -1 */
    o.queue_size = 100;
    EXPECT_NULL_ERR(-EINVAL, vmm_virtio_net_new(mem, &o, errp));
    o.queue_size = 0;
    o.tap_name = "a-name-longer-than-ifnamsiz";
    EXPECT_NULL_ERR(-EINVAL, vmm_virtio_net_new(mem, &o, errp));
    o.tap_name = NULL;
    int p[2];
    assert_int_equal(pipe(p), 0);
    o.tap_fd = p[0];                                                 /* not a tap */
    EXPECT_NULL_ERR(-EINVAL, vmm_virtio_net_new(mem, &o, errp));
    close(p[0]);
    close(p[1]);
    EXPECT_ERR(-EINVAL, true, vmm_virtio_net_set_link(NULL, true));
    EXPECT_ERR(-EINVAL, true, vmm_virtio_net_open_tap(NULL));
    EXPECT_ERR(-EINVAL, true, vmm_virtio_net_open_tap(""));
    EXPECT_ERR(-EINVAL, true, vmm_virtio_net_open_tap("a-name-longer-than-ifnamsiz"));
    VmmVirtioNetStats st = { .size = sizeof(st) };
    EXPECT_ERR(-EINVAL, false, vmm_virtio_net_get_stats(NULL, &st));
    vmm_virtio_net_free(NULL);

    /* vhost-vsock.h: each case fails before the kernel is asked. */
    VmmVhostVsockOptions v = { .size = sizeof(v), .guest_cid = 2 };
    EXPECT_NULL_ERR(-EINVAL, vmm_vhost_vsock_new(NULL, &v, errp));
    EXPECT_NULL_ERR(-EINVAL, vmm_vhost_vsock_new(mem, NULL, errp));
    EXPECT_NULL_ERR(-EINVAL, vmm_vhost_vsock_new(mem, &v, errp));        /* CID 2: the host */
    v.guest_cid = 1ull << 32;
    EXPECT_NULL_ERR(-EINVAL, vmm_vhost_vsock_new(mem, &v, errp));
    v.guest_cid = 3;
    v.vhost_path = "/nonexistent/vhost-vsock";
    EXPECT_NULL_ERR(-ENOENT, vmm_vhost_vsock_new(mem, &v, errp));
    assert_false(vmm_vhost_vsock_is_running(NULL));
    vmm_vhost_vsock_free(NULL);
    vmm_guest_memory_unref(mem);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accel),
        cmocka_unit_test(test_aio),
        cmocka_unit_test(test_coroutine),
        cmocka_unit_test(test_memory),
        cmocka_unit_test(test_memory_dirty),
        cmocka_unit_test(test_device),
        cmocka_unit_test(test_virtio),
        cmocka_unit_test(test_block),
        cmocka_unit_test(test_kvm),
        cmocka_unit_test(test_machine),
        cmocka_unit_test(test_machine_compose),
        cmocka_unit_test(test_virtio_net),
    };
    if (argc > 1) {
        cmocka_set_test_filter(argv[1]);    /* one header's case, e.g. test_memory */
    }
    return cmocka_run_group_tests(tests, setup, NULL);
}
