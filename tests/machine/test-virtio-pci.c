/* SPDX-License-Identifier: MIT */
/* Unit tests: the virtio-pci modern transport driven the way Linux's
 * virtio_pci_modern driver drives it, and MSI-X masking. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "machine/virtio-pci.h"

typedef struct Fake {
    uint64_t features, accepted;
    int resets, driver_ok, notifies[4], enabled[4];
    uint64_t desc[4], avail[4], used[4];
    unsigned size[4];
    int fired[8], updates;
    bool live[8];
    uint8_t cfg[8];
    int refuse_queue;
} Fake;

static uint64_t f_features(void *o) { return ((Fake *)o)->features; }
static int f_set_features(void *o, uint64_t f) { ((Fake *)o)->accepted = f; return 0; }
static void f_reset(void *o) { ((Fake *)o)->resets++; }
static void f_driver_ok(void *o) { ((Fake *)o)->driver_ok++; }
static int f_queue_enable(void *o, unsigned q, unsigned size, uint64_t d, uint64_t a,
                          uint64_t u)
{
    Fake *f = o;
    if (f->refuse_queue) {
        return -EINVAL;
    }
    f->enabled[q]++;
    f->size[q] = size;
    f->desc[q] = d;
    f->avail[q] = a;
    f->used[q] = u;
    return 0;
}
static void f_notify(void *o, unsigned q) { ((Fake *)o)->notifies[q]++; }
static uint32_t f_cfg_read(void *o, uint32_t off, uint32_t size)
{
    uint32_t v = 0;
    for (uint32_t i = 0; i < size; i++) {
        v |= (uint32_t)((Fake *)o)->cfg[off + i] << (8 * i);
    }
    return v;
}
static void f_cfg_write(void *o, uint32_t off, uint32_t size, uint32_t val)
{
    for (uint32_t i = 0; i < size; i++) {
        ((Fake *)o)->cfg[off + i] = (uint8_t)(val >> (8 * i));
    }
}
static void f_update(void *o, unsigned v, uint64_t a, uint32_t d, bool en)
{
    (void)a; (void)d;
    ((Fake *)o)->updates++;
    ((Fake *)o)->live[v] = en;
}
static void f_fire(void *o, unsigned v) { ((Fake *)o)->fired[v]++; }
static uint64_t bell[4];
static int bell_calls;
static void f_doorbell(void *o, unsigned q, uint64_t gpa)
{
    (void)o;
    assert_true(gpa != bell[q]);            /* told about changes only */
    bell[q] = gpa;
    bell_calls++;
}

static const VirtioPciOps ops = {
    .features = f_features, .set_features = f_set_features, .reset = f_reset,
    .driver_ok = f_driver_ok, .queue_enable = f_queue_enable, .queue_notify = f_notify,
    .config_read = f_cfg_read, .config_write = f_cfg_write, .msix_update = f_update,
    .msix_fire = f_fire, .doorbell = f_doorbell,
};

static VirtioPci t;
static Fake fake;

static void init(void)
{
    memset(&fake, 0, sizeof(fake));
    for (int i = 0; i < 4; i++) {
        bell[i] = UINT64_MAX;
    }
    bell_calls = 0;
    fake.features = (1ull << 32) | (1ull << 6) | 1;    /* VERSION_1, two others */
    memcpy(fake.cfg, "\x00\x10\x00\x00\x00\x00\x00\x00", 8);
    VirtioPciConfig cfg = { .virtio_id = 2, .class_code = 0x018000, .num_queues = 2,
                            .queue_max_size = 256, .devcfg_len = 8,
                            .bar0_addr = 0xc0000000, .bar1_addr = 0xc0004000 };
    assert_int_equal(virtio_pci_init(&t, &cfg, &ops, &fake), 0);
}

static void w(uint64_t off, unsigned size, uint64_t v) { virtio_pci_bar0_write(&t, off, size, v); }
static uint64_t r(uint64_t off, unsigned size) { return virtio_pci_bar0_read(&t, off, size); }

static void test_caps(void **state)
{
    (void)state;
    init();
    assert_int_equal(pci_config_read(&t.pci, 0, 4), 0x10421af4);
    int types = 0, msix = 0;
    for (uint8_t p = t.pci.config[PCI_CAP_PTR]; p; p = t.pci.config[p + 1]) {
        const uint8_t *c = t.pci.config + p;
        if (c[0] == 0x09) {
            types |= 1 << c[3];
            assert_int_equal(c[4], 0);                      /* BAR 0 */
            uint32_t off = pci_get(c + 8, 4), len = pci_get(c + 12, 4);
            assert_true(off + len <= VPCI_BAR_SIZE);
            if (c[3] == 2) {
                assert_int_equal(pci_get(c + 16, 4), VPCI_NOTIFY_MULT);
            }
        } else if (c[0] == 0x11) {
            msix++;
            assert_int_equal(pci_get(c + 2, 2) & 0x7ff, 2);  /* 3 vectors */
            assert_int_equal(pci_get(c + 4, 4), 1);
            assert_int_equal(pci_get(c + 8, 4), VPCI_MSIX_PBA | 1);
        }
    }
    assert_int_equal(types, 0x1e);
    assert_int_equal(msix, 1);
}

static void test_driver_init(void **state)
{
    (void)state;
    init();
    w(0x14, 1, 0);
    assert_int_equal(fake.resets, 1);
    w(0x14, 1, VIRTIO_STATUS_ACK | VIRTIO_STATUS_DRIVER);
    w(0x00, 4, 0);
    assert_int_equal(r(0x04, 4), 0x41);
    w(0x00, 4, 1);
    assert_int_equal(r(0x04, 4), 1);
    w(0x00, 4, 7);
    assert_int_equal(r(0x04, 4), 0);
    w(0x08, 4, 0);
    w(0x0c, 4, 0x40);
    w(0x08, 4, 1);
    w(0x0c, 4, 1);
    w(0x14, 1, 0x0b);
    assert_int_equal(r(0x14, 1) & VIRTIO_STATUS_FEATURES_OK, VIRTIO_STATUS_FEATURES_OK);
    assert_int_equal(fake.accepted, (1ull << 32) | 0x40);
    assert_int_equal(r(0x12, 2), 2);
    /* Queue 1: size, vector, split 64-bit addresses, enable. */
    w(0x16, 2, 1);
    assert_int_equal(r(0x18, 2), 256);
    assert_int_equal(r(0x1e, 2), 1);
    w(0x18, 2, 128);
    w(0x1a, 2, 1);
    assert_int_equal(r(0x1a, 2), 1);
    w(0x1a, 2, 9);                                   /* no such vector */
    assert_int_equal(r(0x1a, 2), VIRTIO_NO_VECTOR);
    w(0x1a, 2, 1);
    w(0x20, 4, 0x1000);
    w(0x24, 4, 0x1);
    w(0x28, 4, 0x2000);
    w(0x2c, 4, 0);
    w(0x30, 8, 0x3000);
    assert_int_equal(r(0x20, 4), 0x1000);
    assert_int_equal(r(0x24, 4), 0x1);
    w(0x1c, 2, 1);
    assert_int_equal(fake.enabled[1], 1);
    assert_int_equal(fake.size[1], 128);
    assert_int_equal(fake.desc[1], 0x100001000ull);
    assert_int_equal(fake.avail[1], 0x2000);
    assert_int_equal(fake.used[1], 0x3000);
    assert_int_equal(r(0x1c, 2), 1);
    /* A live queue's addresses are frozen. */
    w(0x20, 4, 0x5000);
    assert_int_equal(r(0x20, 4), 0x1000);
    /* Notifications only once DRIVER_OK. */
    w(VPCI_NOTIFY + 4, 2, 1);
    assert_int_equal(fake.notifies[1], 0);
    w(0x14, 1, 0x0f);
    assert_int_equal(fake.driver_ok, 1);
    w(VPCI_NOTIFY + 4, 2, 1);
    assert_int_equal(fake.notifies[1], 1);
    w(VPCI_NOTIFY + 0, 2, 0);                        /* queue 0 not enabled */
    assert_int_equal(fake.notifies[0], 0);
    /* Device config. */
    assert_int_equal(r(VPCI_DEVCFG, 4), 0x1000);
    assert_int_equal(r(VPCI_DEVCFG + 8, 4), 0);      /* past its length */
    /* Out-of-range and odd accesses are harmless. */
    w(VPCI_BAR_SIZE, 4, 1);
    w(3, 4, 1);
    w(0x37, 2, 1);
    assert_int_equal(r(0x3, 4), 0);
    /* Features beyond the offer are refused at FEATURES_OK. */
    w(0x14, 1, 0);
    assert_int_equal(fake.resets, 2);
    assert_int_equal(r(0x1c, 2), 0);
    w(0x08, 4, 0);
    w(0x0c, 4, 0x80);
    w(0x14, 1, 0x0b);
    assert_int_equal(r(0x14, 1) & VIRTIO_STATUS_FEATURES_OK, 0);
}

static void test_broken_queue(void **state)
{
    (void)state;
    init();
    fake.refuse_queue = 1;
    w(0x14, 1, 0x0f);
    w(0x1c, 2, 1);
    assert_int_equal(r(0x14, 1) & VIRTIO_STATUS_NEEDS_RESET, VIRTIO_STATUS_NEEDS_RESET);
    /* A size that is not a power of two also breaks it. */
    init();
    w(0x18, 2, 100);
    w(0x1c, 2, 1);
    assert_int_equal(fake.enabled[0], 0);
    assert_true(r(0x14, 1) & VIRTIO_STATUS_NEEDS_RESET);
}

static void test_msix(void **state)
{
    (void)state;
    init();
    w(0x16, 2, 0);
    w(0x1a, 2, 1);
    /* MSI-X off: the interrupt waits in the PBA. */
    virtio_pci_queue_interrupt(&t, 0);
    assert_int_equal(fake.fired[1], 0);
    assert_int_equal(virtio_pci_msix_read(&t, VPCI_MSIX_PBA, 8), 2);
    assert_int_equal(t.msix_pended, 1);
    /* Program vector 1 and enable MSI-X with the function masked. */
    virtio_pci_msix_write(&t, 16, 4, 0xfee00000);
    virtio_pci_msix_write(&t, 20, 4, 0);
    virtio_pci_msix_write(&t, 24, 4, 0x4041);
    int ctl = t.msix_cap + 2;
    pci_config_write(&t.pci, ctl, 2, 0xc000);
    assert_int_equal(fake.fired[1], 0);
    /* Unmask the vector: still function-masked. */
    virtio_pci_msix_write(&t, 28, 4, 0);
    assert_int_equal(fake.fired[1], 0);
    /* Function unmasked: the pending interrupt is delivered. */
    pci_config_write(&t.pci, ctl, 2, 0x8000);
    assert_int_equal(fake.fired[1], 1);
    assert_true(fake.live[1]);
    assert_int_equal(virtio_pci_msix_read(&t, VPCI_MSIX_PBA, 8), 0);
    uint64_t a;
    uint32_t d;
    assert_true(virtio_pci_msix_vector_live(&t, 1, &a, &d));
    assert_int_equal(a, 0xfee00000);
    assert_int_equal(d, 0x4041);
    virtio_pci_queue_interrupt(&t, 0);
    assert_int_equal(fake.fired[1], 2);
    /* Masking the entry: pending again, the machine told. */
    virtio_pci_msix_write(&t, 28, 4, 1);
    assert_false(fake.live[1]);
    virtio_pci_queue_interrupt(&t, 0);
    assert_int_equal(fake.fired[1], 2);
    virtio_pci_msix_write(&t, 28, 4, 0);
    assert_int_equal(fake.fired[1], 3);
    /* Table reads, the PBA is read-only, out of range is ignored. */
    assert_int_equal(virtio_pci_msix_read(&t, 24, 4), 0x4041);
    virtio_pci_msix_write(&t, VPCI_MSIX_PBA, 8, ~0ull);
    assert_int_equal(virtio_pci_msix_read(&t, VPCI_MSIX_PBA, 8), 0);
    virtio_pci_msix_write(&t, 16 * 3, 4, 1);
    virtio_pci_msix_write(&t, 2, 4, 1);
    assert_int_equal(virtio_pci_msix_read(&t, 0x1000, 4), 0);
    /* A queue without a vector interrupts nobody; the ISR says so. */
    virtio_pci_queue_interrupt(&t, 1);
    assert_int_equal(r(VPCI_ISR, 1), 1);
    assert_int_equal(r(VPCI_ISR, 1), 0);
    virtio_pci_queue_interrupt(&t, 99);
}

static void enable_queue(uint16_t q)
{
    w(0x16, 2, q);
    w(0x20, 8, 0x10000 * (q + 1));
    w(0x28, 8, 0x10000 * (q + 1) + 0x1000);
    w(0x30, 8, 0x10000 * (q + 1) + 0x2000);
    w(0x1c, 2, 1);
}

/* Where each queue's doorbell is (the machine's ioeventfds follow it). */
static void test_doorbell(void **state)
{
    (void)state;
    init();
    w(0x14, 1, 0x0b);
    /* BAR 0 does not decode yet: an enabled queue has no doorbell. */
    enable_queue(0);
    assert_int_equal(fake.enabled[0], 1);
    assert_int_equal(bell_calls, 0);
    pci_config_write(&t.pci, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
    assert_int_equal(bell[0], 0xc0000000 + VPCI_NOTIFY);
    assert_int_equal(bell[1], UINT64_MAX);
    enable_queue(1);
    assert_int_equal(bell[1], 0xc0000000 + VPCI_NOTIFY + VPCI_NOTIFY_MULT);
    assert_int_equal(bell_calls, 2);
    /* The guest moves BAR 0: both doorbells follow. */
    pci_config_write(&t.pci, PCI_BAR0, 4, 0xd0000000);
    assert_int_equal(bell[0], 0xd0000000 + VPCI_NOTIFY);
    assert_int_equal(bell[1], 0xd0000000 + VPCI_NOTIFY + VPCI_NOTIFY_MULT);
    /* Sizing the BAR: no doorbell while the BAR holds the mask. */
    pci_config_write(&t.pci, PCI_BAR0, 4, 0xffffffff);
    assert_int_equal(bell[0], UINT64_MAX);
    pci_config_write(&t.pci, PCI_BAR0, 4, 0xd0000000);
    assert_int_equal(bell[0], 0xd0000000 + VPCI_NOTIFY);
    /* Memory decoding off and on. */
    pci_config_write(&t.pci, PCI_COMMAND, 2, 0);
    assert_int_equal(bell[0], UINT64_MAX);
    assert_int_equal(bell[1], UINT64_MAX);
    pci_config_write(&t.pci, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
    assert_int_equal(bell[1], 0xd0000000 + VPCI_NOTIFY + VPCI_NOTIFY_MULT);
    /* A write that misses the ioeventfd still notifies, and is counted. */
    w(0x14, 1, 0x0f);
    uint64_t before = t.mmio_notifies;
    w(VPCI_NOTIFY + 4, 2, 1);
    assert_int_equal(fake.notifies[1], 1);
    assert_int_equal(t.mmio_notifies, before + 1);
    /* Reset disables every queue: no doorbell left. */
    int calls = bell_calls;
    w(0x14, 1, 0);
    assert_int_equal(bell[0], UINT64_MAX);
    assert_int_equal(bell[1], UINT64_MAX);
    assert_int_equal(bell_calls, calls + 2);
    /* A refused queue gets none. */
    fake.refuse_queue = 1;
    w(0x14, 1, 0x0b);
    enable_queue(0);
    assert_int_equal(bell[0], UINT64_MAX);
}

/* A device that keeps the status itself (as the virtio core does). */
static uint8_t dev_status;
static int dev_status_writes;
static void f_set_status(void *o, uint8_t s)
{
    (void)o;
    dev_status_writes++;
    /* This device refuses FEATURES_OK. */
    dev_status = s & (uint8_t)~VIRTIO_STATUS_FEATURES_OK;
}
static uint8_t f_get_status(void *o) { (void)o; return dev_status; }

static void test_status_forwarding(void **state)
{
    (void)state;
    static VirtioPciOps ops2;
    ops2 = ops;
    ops2.set_status = f_set_status;
    ops2.get_status = f_get_status;
    memset(&fake, 0, sizeof(fake));
    fake.features = 1ull << 32;
    VirtioPciConfig cfg = { .virtio_id = 2, .class_code = 0x018000, .num_queues = 1,
                            .queue_max_size = 256, .bar0_addr = 0xc0000000,
                            .bar1_addr = 0xc0004000 };
    assert_int_equal(virtio_pci_init(&t, &cfg, &ops2, &fake), 0);
    dev_status = 0;
    dev_status_writes = 0;
    w(0x14, 1, VIRTIO_STATUS_ACK | VIRTIO_STATUS_DRIVER);
    assert_int_equal(dev_status_writes, 1);
    assert_int_equal(r(0x14, 1), VIRTIO_STATUS_ACK | VIRTIO_STATUS_DRIVER);
    w(0x08, 4, 1);
    w(0x0c, 4, 1);
    w(0x14, 1, 0x0b);
    /* The device's answer is what the driver reads back. */
    assert_int_equal(r(0x14, 1) & VIRTIO_STATUS_FEATURES_OK, 0);
    /* Reset reaches the device too. */
    w(0x14, 1, 0);
    assert_int_equal(dev_status, 0);
    assert_int_equal(dev_status_writes, 3);
    assert_int_equal(r(0x14, 1), 0);
}

/* Snapshots: a set-up transport saved, loaded into a fresh one, behaves
 * the same and tells the machine its routes and doorbells; bad records
 * are refused and change nothing. */
static void test_save_load(void **state)
{
    (void)state;
    init();
    pci_config_write(&t.pci, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
    w(0x14, 1, 0x0b);
    w(0x16, 2, 0);
    w(0x1a, 2, 1);                          /* queue 0 -> vector 1 */
    enable_queue(0);
    w(0x14, 1, 0x0f);
    virtio_pci_msix_write(&t, 16, 4, 0xfee00000);
    virtio_pci_msix_write(&t, 24, 4, 0x4041);
    virtio_pci_msix_write(&t, 28, 4, 0);
    pci_config_write(&t.pci, t.msix_cap + 2, 2, 0x8000);
    virtio_pci_msix_write(&t, 28, 4, 1);    /* masked: the next one pends */
    virtio_pci_queue_interrupt(&t, 0);
    virtio_pci_msix_write(&t, 28, 4, 0);
    virtio_pci_msix_write(&t, 28, 4, 1);
    virtio_pci_queue_interrupt(&t, 0);      /* pending in the PBA */
    assert_int_equal(virtio_pci_msix_read(&t, VPCI_MSIX_PBA, 8), 2);

    size_t n = virtio_pci_state_size(&t);
    uint8_t buf[4096];
    assert_true(n <= sizeof(buf));
    virtio_pci_save(&t, buf);
    uint8_t common[VPCI_COMMON_LEN];
    for (unsigned i = 0; i < VPCI_COMMON_LEN; i++) {
        common[i] = (uint8_t)r(i, 1);
    }

    init();
    VirtioPci fresh = t;
    /* Wrong sizes and impossible queues are refused, nothing changes. */
    assert_int_equal(virtio_pci_load(&t, buf, n - 1), -EINVAL);
    uint8_t bad[4096];
    memcpy(bad, buf, n);
    bad[4 + PCI_CONFIG_SIZE + 24] = 3;      /* queue 0 size 3 */
    assert_int_equal(virtio_pci_load(&t, bad, n), -EINVAL);
    memcpy(bad, buf, n);
    bad[4] ^= 1;                            /* another vendor */
    assert_int_equal(virtio_pci_load(&t, bad, n), -EINVAL);
    assert_memory_equal(&t, &fresh, sizeof(t));
    assert_int_equal(bell_calls, 0);

    assert_int_equal(virtio_pci_load(&t, buf, n), 0);
    for (unsigned i = 0; i < VPCI_COMMON_LEN; i++) {
        if (i != 0x16) {                    /* queue_select is restored too */
            assert_int_equal(r(i, 1), common[i]);
        }
    }
    assert_int_equal(bell[0], 0xc0000000 + VPCI_NOTIFY);
    assert_int_equal(bell[1], UINT64_MAX);
    assert_int_equal(virtio_pci_msix_read(&t, VPCI_MSIX_PBA, 8), 2);
    assert_false(fake.live[1]);
    /* Unmasking delivers the saved pending interrupt, through a route the
     * machine is told about. */
    virtio_pci_msix_write(&t, 28, 4, 0);
    assert_true(fake.live[1]);
    assert_int_equal(fake.fired[1], 1);
    virtio_pci_queue_interrupt(&t, 0);
    assert_int_equal(fake.fired[1], 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_driver_init),
        cmocka_unit_test(test_broken_queue),
        cmocka_unit_test(test_msix),
        cmocka_unit_test(test_doorbell),
        cmocka_unit_test(test_status_forwarding),
        cmocka_unit_test(test_save_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
