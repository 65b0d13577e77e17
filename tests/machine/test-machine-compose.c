/* SPDX-License-Identifier: MIT */
/*
 * Composing a machine (vmmkit/machine.h), in-process on the fake KVM
 * (tests/accel/fake-kvm.c): a virtio device of the test's own on the
 * machine's virtio-pci bus and PIO/MMIO regions, driven by a scripted
 * "guest" - one vCPU whose every KVM_RUN performs the next access the test
 * hands it, as a port I/O or MMIO exit the machine dispatches.  The guest
 * finds the device by scanning PCI config space, programs MSI-X and a
 * queue, kicks it, and the test checks the request was served in the
 * machine's iothread and the interrupt went out through an irqfd; then a
 * queue with rings outside RAM breaks the device and the host goes on.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/virtio_ring.h>
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

#include "../accel/fake-kvm.h"
#include "../device/vq-driver.h"
#include "boot-images.h"
#include "vmmkit/aio.h"
#include "vmmkit/machine.h"
#include "vmmkit/memory.h"
#include "vmmkit/virtio.h"

/* ---- The scripted guest ---------------------------------------------------- */

typedef struct Access {
    bool pio, write;
    uint64_t addr, val;
    unsigned size;
} Access;

typedef struct Guest {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool pending;       /* test -> vCPU: perform @a */
    bool issued;        /* the vCPU returned @a as an exit */
    bool done;          /* vCPU -> test: @result holds a read's value */
    Access a;
    uint64_t result;
} Guest;

static Guest guest = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

static int guest_run(FakeVcpu *fv, struct kvm_run *run, void *opaque)
{
    Guest *g = opaque;
    pthread_mutex_lock(&g->lock);
    if (g->issued) {        /* the machine handled the previous exit */
        if (!g->a.write) {
            uint64_t v = 0;
            memcpy(&v, g->a.pio ? (uint8_t *)run + run->io.data_offset : run->mmio.data,
                   g->a.size);
            g->result = v;
        }
        g->issued = false;
        g->done = true;
        pthread_cond_broadcast(&g->cond);
    }
    while (!g->pending) {
        if (__atomic_load_n(&fv->run->immediate_exit, __ATOMIC_SEQ_CST)) {
            pthread_mutex_unlock(&g->lock);
            return -EINTR;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 2000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&g->cond, &g->lock, &ts);
    }
    g->pending = false;
    g->issued = true;
    if (g->a.pio) {
        run->exit_reason = KVM_EXIT_IO;
        run->io.direction = g->a.write ? KVM_EXIT_IO_OUT : KVM_EXIT_IO_IN;
        run->io.size = (uint8_t)g->a.size;
        run->io.port = (uint16_t)g->a.addr;
        run->io.count = 1;
        run->io.data_offset = 4096;
        memcpy((uint8_t *)run + 4096, &g->a.val, g->a.size);
    } else {
        run->exit_reason = KVM_EXIT_MMIO;
        run->mmio.phys_addr = g->a.addr;
        run->mmio.len = g->a.size;
        run->mmio.is_write = g->a.write;
        memcpy(run->mmio.data, &g->a.val, g->a.size);
    }
    pthread_mutex_unlock(&g->lock);
    return 0;
}

static uint64_t guest_access(bool pio, bool write, uint64_t addr, unsigned size, uint64_t val)
{
    Guest *g = &guest;
    pthread_mutex_lock(&g->lock);
    g->a = (Access){ .pio = pio, .write = write, .addr = addr, .val = val, .size = size };
    g->done = false;
    g->pending = true;
    pthread_cond_broadcast(&g->cond);
    while (!g->done) {
        pthread_cond_wait(&g->cond, &g->lock);
    }
    uint64_t r = g->result;
    pthread_mutex_unlock(&g->lock);
    return r;
}

static uint64_t mmio_rd(uint64_t a, unsigned size) { return guest_access(false, false, a, size, 0); }
static void mmio_wr(uint64_t a, unsigned size, uint64_t v) { guest_access(false, true, a, size, v); }
static uint64_t pio_rd(uint64_t a, unsigned size) { return guest_access(true, false, a, size, 0); }
static void pio_wr(uint64_t a, unsigned size, uint64_t v) { guest_access(true, true, a, size, v); }

/* A 64-bit register as Linux writes it: two 32-bit halves. */
static void wr64(uint64_t a, uint64_t v)
{
    mmio_wr(a, 4, (uint32_t)v);
    mmio_wr(a + 4, 4, v >> 32);
}

static uint32_t cfg_rd(unsigned slot, unsigned off)
{
    pio_wr(0xcf8, 4, 0x80000000u | (slot << 11) | (off & 0xfc));
    return (uint32_t)pio_rd(0xcfc, 4);
}

static void cfg_wr(unsigned slot, unsigned off, uint32_t v)
{
    pio_wr(0xcf8, 4, 0x80000000u | (slot << 11) | (off & 0xfc));
    pio_wr(0xcfc, 4, v);
}

/* ---- The test's own device -------------------------------------------------- */

#define TDEV_ID 42
static pthread_t iothread_id;
static int handled;

/* Answer every request with "pong" in its writable part. */
static void tdev_handle(VmmVirtioDevice *vdev, VmmVirtqueue *vq, void *opaque)
{
    (void)vdev;
    (void)opaque;
    iothread_id = pthread_self();
    VmmVirtqElem *e;
    int err = 0;
    bool any = false;
    while ((e = vmm_virtqueue_pop(vq, sizeof(*e), &err))) {
        any = true;
        uint32_t len = 0;
        if (e->in_num && e->iov[e->out_num].iov_len >= 4) {
            memcpy(e->iov[e->out_num].iov_base, "pong", 4);
            len = 4;
        }
        vmm_virtqueue_push(vq, e, len);
        free(e);
        __atomic_fetch_add(&handled, 1, __ATOMIC_SEQ_CST);
    }
    if (any) {
        vmm_virtqueue_notify(vq);
    }
}

static const VmmVirtioDeviceOps tdev_ops = {
    .size = sizeof(VmmVirtioDeviceOps), .device_id = TDEV_ID, .config_size = 8,
    .num_queues = 2, .queue_max_size = 16, .handle_queue = tdev_handle,
};

/* ---- A PIO counter and an MMIO scratch page ------------------------------------ */

static uint64_t counter;
static uint64_t ctr_read(void *o, uint64_t off, unsigned size)
{
    (void)o; (void)size;
    return off == 0 ? counter : 0;
}
static void ctr_write(void *o, uint64_t off, uint64_t val, unsigned size)
{
    (void)o; (void)size;
    if (off == 0) {
        counter += val;
    }
}
static const VmmMachineIoOps ctr_ops = { .size = sizeof(VmmMachineIoOps),
                                         .read = ctr_read, .write = ctr_write };

/* ---- The test ------------------------------------------------------------------ */

static char kernel_path[] = "/tmp/vmmkit-compose-kernelXXXXXX";

static void write_kernel(void)
{
    assert_int_equal(test_write_tiny_kernel(kernel_path), 0);
}

static bool wait_for(int *what, int want)
{
    for (int i = 0; i < 5000; i++) {
        if (__atomic_load_n(what, __ATOMIC_SEQ_CST) >= want) {
            return true;
        }
        usleep(1000);
    }
    return false;
}

static void test_compose(void **state)
{
    (void)state;
    FakeKvm f;
    fake_kvm_init(&f);
    fake_msrs_any = true;
    f.run_fn = guest_run;
    f.run_opaque = &guest;
    write_kernel();
    VmmMachineOptions o = { .size = sizeof(o), .kernel = kernel_path, .memory = 64 << 20,
                            .cpus = 1, .console_out_fd = -1, .kvm_ops = &f.ops };
    int err = 0;
    VmmMachine *m = vmm_machine_new(&o, &err);
    assert_non_null(m);
    VmmGuestMemory *mem = vmm_machine_guest_memory(m);
    assert_non_null(mem);
    VmmMemorySection sec;
    assert_int_equal(vmm_guest_memory_find(mem, 0, &sec), 0);
    uint8_t *ram = sec.host;

    uint8_t cfg_init[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
    VmmVirtioDevice *vdev = vmm_virtio_device_new("tdev", &tdev_ops, NULL, mem, cfg_init,
                                                  &err);
    assert_non_null(vdev);
    VmmMachineVirtioOptions bad = { .size = 1 };
    assert_int_equal(vmm_machine_add_virtio(m, NULL, NULL), -EINVAL);
    assert_int_equal(vmm_machine_add_virtio(m, vdev, &bad), -EINVAL);
    VmmMachineVirtioOptions vo = { .size = sizeof(vo), .pci_class = 0x0780ff };
    assert_int_equal(vmm_machine_add_virtio(m, vdev, &vo), 0);
    assert_int_equal(vmm_machine_add_virtio(m, vdev, NULL), -EINVAL);      /* twice */
    VmmAioContext *ctx = vmm_machine_device_context(m, &err);
    assert_non_null(ctx);

    /* Regions: the machine's ranges and KVM's ports are refused. */
    assert_int_equal(vmm_machine_add_io_region(m, true, 0x510, 8, &ctr_ops, NULL), 0);
    assert_int_equal(vmm_machine_add_io_region(m, true, 0x514, 2, &ctr_ops, NULL), -EEXIST);
    assert_int_equal(vmm_machine_add_io_region(m, true, 0x3f8, 1, &ctr_ops, NULL), -EEXIST);
    assert_int_equal(vmm_machine_add_io_region(m, true, 0x40, 1, &ctr_ops, NULL), -EEXIST);
    assert_int_equal(vmm_machine_add_io_region(m, true, 0xcfc, 4, &ctr_ops, NULL), -EEXIST);
    assert_int_equal(vmm_machine_add_io_region(m, false, 0x100000, 4096, &ctr_ops, NULL),
                     -EEXIST);                                              /* RAM */
    assert_int_equal(vmm_machine_add_io_region(m, false, 0xc0001000, 4096, &ctr_ops, NULL),
                     -EEXIST);                                              /* PCI */
    assert_int_equal(vmm_machine_add_io_region(m, false, 0xfee00800, 16, &ctr_ops, NULL),
                     -EEXIST);                                              /* LAPIC */
    assert_int_equal(vmm_machine_add_io_region(m, true, 0xffff, 2, &ctr_ops, NULL), -EINVAL);
    assert_int_equal(vmm_machine_add_io_region(m, true, 0x700, 0, &ctr_ops, NULL), -EINVAL);
    assert_int_equal(vmm_machine_add_io_region(m, true, 0x700, 1, NULL, NULL), -EINVAL);
    assert_int_equal(vmm_machine_add_io_region(m, false, 0xfef00000, 0x1000, &ctr_ops, NULL),
                     0);

    /* The library's devices, added the same way (slots 2 and 3). */
    assert_int_equal(vmm_machine_add_rng(m), 0);
    assert_int_equal(vmm_machine_add_console(m, -1, -1), 0);
    assert_int_equal(vmm_machine_add_console(m, -2, -1), -EINVAL);

    /* The bus takes 31 devices: 28 more fill it. */
    VmmVirtioDevice *more[31];
    int added = 0;
    for (int i = 0; i < 31; i++) {
        more[i] = vmm_virtio_device_new("more", &tdev_ops, NULL, mem, NULL, &err);
        assert_non_null(more[i]);
        int r = vmm_machine_add_virtio(m, more[i], NULL);
        if (i < 28) {
            assert_int_equal(r, 0);
            added++;
        } else if (i < 30) {
            assert_int_equal(r, -ENOSPC);
            vmm_virtio_device_free(more[i]);
            more[i] = NULL;
        } else {
            assert_int_equal(r, -ENOSPC);
        }
    }
    assert_int_equal(added, 28);

    assert_int_equal(vmm_machine_start(m), 0);
    assert_int_equal(vmm_machine_add_virtio(m, more[30], NULL), -EINVAL);  /* after start */
    assert_int_equal(vmm_machine_add_io_region(m, true, 0x700, 1, &ctr_ops, NULL), -EINVAL);
    assert_int_equal(vmm_machine_add_rng(m), -EINVAL);
    assert_int_equal(vmm_machine_add_console(m, -1, -1), -EINVAL);

    /* The PIO counter, through the region's callbacks. */
    pio_wr(0x510, 1, 5);
    pio_wr(0x510, 1, 2);
    assert_int_equal(pio_rd(0x510, 1), 7);
    assert_int_equal(mmio_rd(0xfef00000, 4), 7);

    /* PCI: slot 1 is the device (vendor, modern virtio id, class). */
    uint32_t id = cfg_rd(1, 0);
    assert_int_equal(id & 0xffff, 0x1af4);
    assert_int_equal(id >> 16, 0x1040 + TDEV_ID);
    assert_int_equal(cfg_rd(1, 8) >> 8, 0x0780ff);
    assert_int_equal(cfg_rd(2, 0) >> 16, 0x1040 + 4);      /* virtio-rng */
    assert_int_equal(cfg_rd(3, 0) >> 16, 0x1040 + 3);      /* virtio-console */
    assert_int_equal(cfg_rd(3, 8) >> 8, 0x078000);
    assert_int_equal(cfg_rd(31, 0) & 0xffff, 0x1af4);                      /* the last */
    uint64_t bar0 = cfg_rd(1, 0x10) & ~0xfu, bar1 = cfg_rd(1, 0x14) & ~0xfu;
    assert_true(bar0 >= 0xc0000000 && bar1 >= 0xc0000000);
    cfg_wr(1, 4, 0x6);                                      /* memory decode, bus master */
    /* MSI-X on: find the capability (id 0x11). */
    unsigned cap = cfg_rd(1, 0x34) & 0xff;
    while (cap && (cfg_rd(1, cap) & 0xff) != 0x11) {
        cap = (cfg_rd(1, cap) >> 8) & 0xff;
    }
    assert_true(cap != 0);
    cfg_wr(1, cap, cfg_rd(1, cap) | (1u << 31));
    for (unsigned v = 0; v < 2; v++) {                      /* vectors 0, 1 unmasked */
        mmio_wr(bar1 + v * 16, 4, 0xfee00000);
        mmio_wr(bar1 + v * 16 + 4, 4, 0);
        mmio_wr(bar1 + v * 16 + 8, 4, 0x30 + v);
        mmio_wr(bar1 + v * 16 + 12, 4, 0);
    }
    /* The driver's bring-up on queue 0. */
    mmio_wr(bar0 + 0x14, 1, 1);
    mmio_wr(bar0 + 0x14, 1, 3);
    mmio_wr(bar0 + 0x08, 4, 1);
    mmio_wr(bar0 + 0x0c, 4, 1);                             /* VERSION_1 */
    mmio_wr(bar0 + 0x14, 1, 11);
    assert_int_equal(mmio_rd(bar0 + 0x14, 1), 11);
    assert_int_equal(mmio_rd(bar0 + 0x12, 2), 2);           /* num_queues */
    assert_int_equal(mmio_rd(bar0 + 0x2000, 4), 0x04030201);  /* device config */
    mmio_wr(bar0 + 0x10, 2, 0);                             /* config vector 0 */
    TestVq tq;
    tvq_init(&tq, ram, 0x200000, 16);
    mmio_wr(bar0 + 0x16, 2, 0);
    mmio_wr(bar0 + 0x18, 2, 16);
    mmio_wr(bar0 + 0x1a, 2, 1);                             /* queue vector 1 */
    wr64(bar0 + 0x20, tq.desc_gpa);
    wr64(bar0 + 0x28, tq.avail_gpa);
    wr64(bar0 + 0x30, tq.used_gpa);
    mmio_wr(bar0 + 0x1c, 2, 1);
    mmio_wr(bar0 + 0x14, 1, 15);                            /* DRIVER_OK */
    assert_int_equal(mmio_rd(bar0 + 0x14, 1), 15);

    VmmMachineStats st = { .size = sizeof(st) };
    assert_int_equal(vmm_machine_get_stats(m, &st), 0);
    assert_int_equal(st.irqfd_vectors, 2);                  /* routes + irqfds */
    assert_int_equal(st.ioeventfd_queues, 1);               /* queue 0's doorbell */

    /* A request, kicked through the notify area (the fake KVM has no
     * ioeventfd, so the MMIO exit notifies). */
    TestBuf b = { .gpa = 0x300000, .len = 64, .write = true };
    tvq_add(&tq, &b, 1);
    mmio_wr(bar0 + 0x3000, 2, 0);
    assert_true(wait_for(&handled, 1));
    uint32_t uid, ulen;
    for (int i = 0; i < 5000 && !tvq_get_used(&tq, &uid, &ulen); i++) {
        usleep(1000);
    }
    assert_int_equal(ulen, 4);
    assert_memory_equal(ram + 0x300000, "pong", 4);
    assert_false(pthread_equal(iothread_id, pthread_self()));   /* in the iothread */
    for (int i = 0; i < 5000; i++) {
        vmm_machine_get_stats(m, &st);
        if (st.irqfd_signals) {
            break;
        }
        usleep(1000);
    }
    assert_int_equal(st.irqfd_signals, 1);
    assert_true(st.mmio_doorbells >= 1);

    /* Pause and resume quiesce the device; it serves again after. */
    assert_int_equal(vmm_machine_pause(m), 0);
    assert_int_equal(vmm_machine_resume(m), 0);

    /* Queue 1 with rings outside RAM after DRIVER_OK: the device breaks
     * (NEEDS_RESET), the host goes on. */
    mmio_wr(bar0 + 0x16, 2, 1);
    wr64(bar0 + 0x20, 0xf0000000);
    wr64(bar0 + 0x28, 0xf0001000);
    wr64(bar0 + 0x30, 0xf0002000);
    mmio_wr(bar0 + 0x1c, 2, 1);
    assert_true(mmio_rd(bar0 + 0x14, 1) & VMM_VIRTIO_STATUS_DEVICE_NEEDS_RESET);
    for (int i = 0; i < 5000; i++) {
        vmm_machine_get_stats(m, &st);
        if (st.irqfd_signals >= 2) {
            break;
        }
        usleep(1000);
    }
    assert_true(st.irqfd_signals >= 2);                     /* the config interrupt */
    assert_int_equal(pio_rd(0x510, 1), 7);                  /* the machine goes on */

    vmm_machine_stop(m);
    assert_int_equal(vmm_machine_wait(m, -1, NULL, 0), VMM_MACHINE_STOPPED);
    vmm_machine_free(m);
    /* The caller's devices outlive the machine, detached and reset. */
    assert_int_equal(vmm_virtio_get_status(vdev), 0);
    vmm_virtio_device_free(vdev);
    for (int i = 0; i < 31; i++) {
        vmm_virtio_device_free(more[i]);      /* NULL: nothing */
    }
    unlink(kernel_path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compose),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
