/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the snapshot loader.  The input is the start of a
 * snapshot file whose remaining bytes (up to 64 MiB more, enough for the
 * smallest RAM image) are zeros, as a sparse file's would be.  The header
 * is parsed as vmm_machine_restore() parses it; when only its CRCs are
 * wrong it is parsed once more with the CRCs made right, so the fuzzer
 * gets past them to the structural checks.  Every section the header
 * accepts is read as the loader would (CRC check), and the state records
 * go to their loaders: the UART's, and the virtio-pci transport's (as
 * found, and with the device identity made right).  Any crash, sanitizer
 * report or abort is a bug.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "machine/serial.h"
#include "machine/snapshot-format.h"
#include "machine/virtio-pci.h"
#include "vmmkit/common.h"

#define TAIL (64ull << 20)

static uint64_t n_features(void *o) { (void)o; return 1ull << 32; }
static int n_set_features(void *o, uint64_t f) { (void)o; (void)f; return 0; }
static void n_void(void *o) { (void)o; }
static int n_queue_enable(void *o, unsigned q, unsigned size, uint64_t d, uint64_t a,
                          uint64_t u)
{
    (void)o; (void)q; (void)size; (void)d; (void)a; (void)u;
    return 0;
}
static void n_notify(void *o, unsigned q) { (void)o; (void)q; }
static uint32_t n_cfg_read(void *o, uint32_t off, uint32_t size)
{
    (void)o; (void)off; (void)size;
    return 0;
}
static void n_cfg_write(void *o, uint32_t off, uint32_t size, uint32_t val)
{
    (void)o; (void)off; (void)size; (void)val;
}
static void n_update(void *o, unsigned v, uint64_t a, uint32_t d, bool en)
{
    (void)o; (void)v; (void)a; (void)d; (void)en;
}
static void n_fire(void *o, unsigned v) { (void)o; (void)v; }
static void n_doorbell(void *o, unsigned q, uint64_t gpa) { (void)o; (void)q; (void)gpa; }

static const VirtioPciOps ops = {
    .features = n_features, .set_features = n_set_features, .reset = n_void,
    .driver_ok = n_void, .queue_enable = n_queue_enable, .queue_notify = n_notify,
    .config_read = n_cfg_read, .config_write = n_cfg_write, .msix_update = n_update,
    .msix_fire = n_fire, .doorbell = n_doorbell,
};

static void quiet(VmmLogLevel l, const char *m, void *o)
{
    (void)l; (void)m; (void)o;
}

/* The section's bytes: from the input, zeros past its end. */
static uint8_t *section_bytes(const uint8_t *data, size_t size, const SnapSection *s)
{
    uint8_t *b = calloc(1, s->length ? (size_t)s->length : 1);
    if (b && s->offset < size) {
        size_t n = size - (size_t)s->offset;
        memcpy(b, data + s->offset, n < s->length ? n : (size_t)s->length);
    }
    return b;
}

static void load_records(const uint8_t *data, size_t size, const SnapHeader *h)
{
    char why[256];
    for (uint32_t i = 0; i < h->nsections; i++) {
        const SnapSection *s = &h->sec[i];
        if (s->type == SNAP_SEC_RAM) {
            continue;
        }
        uint8_t *b = section_bytes(data, size, s);
        if (!b) {
            continue;
        }
        snap_section_check(s, b, why, sizeof(why));
        if (s->type == SNAP_SEC_SERIAL) {
            Serial ser;
            serial_init(&ser, NULL, NULL, NULL);
            if (serial_load(&ser, b, (size_t)s->length) == 0) {
                for (unsigned r = 0; r < 8; r++) {
                    serial_read(&ser, r);
                }
            }
        } else if (s->type == SNAP_SEC_VIRTIO_PCI) {
            static VirtioPci t;
            VirtioPciConfig cfg = { .virtio_id = 2, .class_code = 0x018000, .num_queues = 1,
                                    .queue_max_size = 256, .devcfg_len = 8,
                                    .bar0_addr = 0xc0000000, .bar1_addr = 0xc0004000 };
            for (int pass = 0; pass < 2; pass++) {
                virtio_pci_init(&t, &cfg, &ops, NULL);
                if (pass == 1 && s->length >= 4 + PCI_CONFIG_SIZE) {
                    memcpy(b + 4, t.pci.config, 4);
                    b[4 + PCI_CAP_PTR] = t.pci.config[PCI_CAP_PTR];
                }
                if (virtio_pci_load(&t, b, (size_t)s->length) == 0) {
                    virtio_pci_queue_interrupt(&t, 0);
                    virtio_pci_config_interrupt(&t);
                    virtio_pci_bar0_read(&t, 0x14, 1);
                }
            }
        }
        free(b);
    }
    SnapConfig want = { .ram_size = 32ull << 20, .cpus = 1, .vcpu_state_size = 100 };
    snap_config_match(&h->cfg, &want, why, sizeof(why));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool once;
    if (!once) {
        vmm_set_log_handler(quiet, NULL, VMM_LOG_ERROR);
        once = true;
    }
    SnapHeader h;
    char why[256];
    uint8_t hdr[SNAP_HEADER_SIZE] = { 0 };
    memcpy(hdr, data, size < sizeof(hdr) ? size : sizeof(hdr));
    uint64_t file_size = size + TAIL;
    if (snap_header_parse(hdr, sizeof(hdr), file_size, &h, why, sizeof(why)) == 0) {
        load_records(data, size, &h);
        return 0;
    }
    /* The CRCs made right: the structure behind them. */
    SnapHeader fix;
    memcpy(&fix, hdr, sizeof(fix));
    for (uint32_t i = 0; i < fix.nsections && i < SNAP_MAX_SECTIONS; i++) {
        SnapSection *s = &fix.sec[i];
        if (s->type != SNAP_SEC_RAM && s->length <= SNAP_MAX_RECORD &&
            s->offset <= file_size && s->length <= file_size - s->offset) {
            uint8_t *b = section_bytes(data, size, s);
            if (b) {
                s->crc = (uint32_t)crc32(0, b, (uInt)s->length);
                free(b);
            }
        }
    }
    uint32_t version = fix.version;
    snap_header_encode(&fix, hdr);
    /* encode sets the current version: keep the input's to test that check */
    memcpy(hdr + offsetof(SnapHeader, version), &version, sizeof(version));
    memset(hdr + offsetof(SnapHeader, header_crc), 0, 4);
    uint32_t c = (uint32_t)crc32(0, hdr, sizeof(hdr));
    memcpy(hdr + offsetof(SnapHeader, header_crc), &c, 4);
    if (snap_header_parse(hdr, sizeof(hdr), file_size, &h, why, sizeof(why)) == 0) {
        load_records(data, size, &h);
    }
    return 0;
}
