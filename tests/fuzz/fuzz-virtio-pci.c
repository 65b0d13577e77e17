/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the virtio-pci transport as a guest drives it - PCI
 * config space through ports 0xCF8-0xCFF (BARs moved, decoding and MSI-X
 * switched), BAR 0 (common configuration, ISR, device configuration,
 * doorbells) and BAR 1 (MSI-X table and PBA), at any offset, with the
 * sizes an exit carries (1, 2, 4, 8), interleaved with the device's
 * interrupts.  The input is a sequence of 12-byte operations:
 *   kind (byte 0 % 6), size (1 << (byte 1 & 3)), offset (bytes 2-3, LE),
 *   value (bytes 4-11, LE).
 * Besides crashes and sanitizer reports, the transport's calls into the
 * machine must stay within what it declared: queue and vector numbers in
 * range, queue sizes powers of two no larger than the maximum, device
 * configuration accesses inside it, a fired vector live.  A violation
 * aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "machine/pci.h"
#include "machine/virtio-pci.h"

#define NQ 3
#define QMAX 256
#define DEVCFG 12

static VirtioPci t;

static void check(bool ok)
{
    if (!ok) {
        abort();
    }
}

static uint64_t n_features(void *o) { (void)o; return (1ull << 32) | 0x7; }
static int n_set_features(void *o, uint64_t f) { (void)o; return f & 4 ? -1 : 0; }
static void n_void(void *o) { (void)o; }
static int n_queue_enable(void *o, unsigned q, unsigned size, uint64_t d, uint64_t a,
                          uint64_t u)
{
    (void)o; (void)u;
    check(q < NQ && size && !(size & (size - 1)) && size <= QMAX);
    return (d ^ a) & 0x10 ? -1 : 0;        /* the core refuses some rings */
}
static void n_notify(void *o, unsigned q) { (void)o; check(q < NQ); }
static uint32_t n_cfg_read(void *o, uint32_t off, uint32_t size)
{
    (void)o;
    check(size >= 1 && size <= 4 && off + size <= DEVCFG);
    return off;
}
static void n_cfg_write(void *o, uint32_t off, uint32_t size, uint32_t val)
{
    (void)o; (void)val;
    check(size >= 1 && size <= 4 && off + size <= DEVCFG);
}
static void n_update(void *o, unsigned v, uint64_t a, uint32_t d, bool live)
{
    (void)o; (void)a; (void)d; (void)live;
    check(v < NQ + 1);
}
static void n_fire(void *o, unsigned v)
{
    (void)o;
    check(v < NQ + 1 && virtio_pci_msix_vector_live(&t, v, NULL, NULL));
}
static void n_doorbell(void *o, unsigned q, uint64_t gpa) { (void)o; (void)gpa; check(q < NQ); }

static const VirtioPciOps ops = {
    .features = n_features, .set_features = n_set_features, .reset = n_void,
    .driver_ok = n_void, .queue_enable = n_queue_enable, .queue_notify = n_notify,
    .config_read = n_cfg_read, .config_write = n_cfg_write, .msix_update = n_update,
    .msix_fire = n_fire, .doorbell = n_doorbell,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static PciBus bus;
    VirtioPciConfig cfg = { .virtio_id = 3, .class_code = 0x078000, .num_queues = NQ,
                            .queue_max_size = QMAX, .devcfg_len = DEVCFG,
                            .bar0_addr = 0xc0000000, .bar1_addr = 0xc0004000 };
    memset(&bus, 0, sizeof(bus));
    if (virtio_pci_init(&t, &cfg, &ops, NULL) < 0 || pci_bus_plug(&bus, 1, &t.pci) < 0) {
        abort();
    }
    for (size_t i = 0; i + 12 <= size; i += 12) {
        const uint8_t *op = data + i;
        unsigned sz = 1u << (op[1] & 3);
        uint64_t off = (uint64_t)op[2] | (uint64_t)op[3] << 8;
        uint64_t val;
        memcpy(&val, op + 4, 8);
        switch (op[0] % 6) {
        case 0:
            virtio_pci_bar0_read(&t, off % VPCI_BAR_SIZE, sz);
            break;
        case 1:
            virtio_pci_bar0_write(&t, off % VPCI_BAR_SIZE, sz, val);
            break;
        case 2:
            virtio_pci_msix_read(&t, off % VPCI_MSIX_BAR_SIZE, sz);
            break;
        case 3:
            virtio_pci_msix_write(&t, off % VPCI_MSIX_BAR_SIZE, sz, val);
            break;
        case 4:
            /* 0xCF8-0xCFF; a config address for slot 1 most of the time. */
            if (sz == 8) {
                sz = 4;
            }
            if ((off & 8) && sz == 4) {
                pci_bus_pio_write(&bus, 0xcf8, 4,
                                  0x80000000u | 1u << 11 | ((uint32_t)val & 0xfc));
            } else if (op[1] & 4) {
                pci_bus_pio_read(&bus, (uint16_t)(0xcfc + (off & 3)), sz);
            } else {
                pci_bus_pio_write(&bus, (uint16_t)(0xcfc + (off & 3)), sz, (uint32_t)val);
            }
            break;
        default:
            if (val & 1) {
                virtio_pci_config_interrupt(&t);
            } else {
                virtio_pci_queue_interrupt(&t, (unsigned)(off % (NQ + 2)));
            }
            if (val & 2) {
                virtio_pci_set_broken(&t);
            }
            break;
        }
    }
    /* Save and load back what the guest made of it. */
    size_t n = virtio_pci_state_size(&t);
    uint8_t *st = malloc(n);
    if (st) {
        virtio_pci_save(&t, st);
        check(virtio_pci_load(&t, st, n) == 0);
        free(st);
    }
    return 0;
}
