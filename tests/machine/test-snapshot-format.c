/* SPDX-License-Identifier: MIT */
/* Unit tests: the snapshot file format's loader refuses corrupt, truncated
 * and mismatched files with their reason; the UART's state record. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>
#include <cmocka.h>

#include "machine/serial.h"
#include "machine/snapshot-format.h"

#define RAM (32ull << 20)
#define FILE_SIZE (3 * SNAP_PAGE + RAM)

static uint8_t *img;
static char why[256];

/* A well-formed file: 2 vCPUs, one device, VM, serial, RAM. */
static void build(void)
{
    static uint8_t buf[FILE_SIZE];
    img = buf;
    memset(img, 0, FILE_SIZE);
    SnapHeader h = { 0 };
    h.cfg = (SnapConfig){ .ram_size = RAM, .cpus = 2, .ndevices = 1, .device_ids = { 2 },
                          .vcpu_state_size = 100, .xsave_size = 4096,
                          .tsc_khz = 2611200 };
    uint64_t pos = SNAP_HEADER_SIZE;
    struct { uint32_t type, index, len; } recs[] = {
        { SNAP_SEC_VCPU, 0, 100 }, { SNAP_SEC_VCPU, 1, 100 }, { SNAP_SEC_VM, 0, 300 },
        { SNAP_SEC_SERIAL, 0, SERIAL_STATE_SIZE }, { SNAP_SEC_VIRTIO_PCI, 0, 500 },
    };
    for (unsigned i = 0; i < 5; i++) {
        for (uint32_t b = 0; b < recs[i].len; b++) {
            img[pos + b] = (uint8_t)(i * 7 + b);
        }
        h.sec[h.nsections++] = (SnapSection){
            .type = recs[i].type, .index = recs[i].index, .offset = pos,
            .length = recs[i].len, .crc = (uint32_t)crc32(0, img + pos, recs[i].len) };
        pos += recs[i].len;
    }
    h.sec[h.nsections++] = (SnapSection){ .type = SNAP_SEC_RAM, .offset = 3 * SNAP_PAGE,
                                          .length = RAM };
    snap_header_encode(&h, img);
}

static int parse(uint64_t size, SnapHeader *h)
{
    why[0] = 0;
    return snap_header_parse(img, size < SNAP_HEADER_SIZE ? size : SNAP_HEADER_SIZE, size,
                             h, why, sizeof(why));
}

/* Change the header, keep its CRC right (the structural checks). */
static void edit(void (*fn)(SnapHeader *h))
{
    SnapHeader h;
    memcpy(&h, img, sizeof(h));
    fn(&h);
    snap_header_encode(&h, img);
}

static void test_valid(void **state)
{
    (void)state;
    build();
    SnapHeader h;
    assert_int_equal(parse(FILE_SIZE, &h), 0);
    assert_int_equal(h.cfg.cpus, 2);
    assert_int_equal(h.cfg.tsc_khz, 2611200);
    for (uint32_t i = 0; i < h.nsections; i++) {
        if (h.sec[i].type != SNAP_SEC_RAM) {
            assert_int_equal(snap_section_check(&h.sec[i], img + h.sec[i].offset, why,
                                                sizeof(why)), 0);
        }
    }
    const SnapSection *s = snap_find(&h, SNAP_SEC_VIRTIO_PCI, 0);
    assert_non_null(s);
    img[s->offset + 3] ^= 0x10;
    assert_int_equal(snap_section_check(s, img + s->offset, why, sizeof(why)), -EINVAL);
    assert_string_equal(why, "section virtio-pci 0: checksum mismatch (corrupt data)");
}

static void test_corrupt(void **state)
{
    (void)state;
    SnapHeader h;
    build();
    img[0] = 'X';
    assert_int_equal(parse(FILE_SIZE, &h), -EINVAL);
    assert_string_equal(why, "not a vmmkit snapshot (bad magic)");
    build();
    img[200] ^= 1;                          /* inside the section table */
    assert_int_equal(parse(FILE_SIZE, &h), -EINVAL);
    assert_string_equal(why, "header checksum mismatch (corrupt header)");
    build();
    img[8] = 3;                             /* version */
    assert_int_equal(parse(FILE_SIZE, &h), -EINVAL);
    assert_string_equal(why, "format version 3, this library reads versions 1 and 2");
}

/* A version 1 file (its configuration without the TSC rate, the section
 * table 8 bytes sooner) still loads, with tsc_khz 0. */
static void test_version1(void **state)
{
    (void)state;
    build();
    SnapHeader h2;
    assert_int_equal(parse(FILE_SIZE, &h2), 0);
    uint8_t v1[SNAP_HEADER_SIZE] = { 0 };
    size_t cfg_at = offsetof(SnapHeader, cfg), cfg1 = offsetof(SnapConfig, tsc_khz);
    memcpy(v1, img, cfg_at);
    uint32_t version = 1, zero = 0;
    memcpy(v1 + offsetof(SnapHeader, version), &version, 4);
    memcpy(v1 + offsetof(SnapHeader, header_crc), &zero, 4);
    memcpy(v1 + cfg_at, &h2.cfg, cfg1);
    memcpy(v1 + cfg_at + cfg1, h2.sec, h2.nsections * sizeof(SnapSection));
    uint32_t c = (uint32_t)crc32(0, v1, SNAP_HEADER_SIZE);
    memcpy(v1 + offsetof(SnapHeader, header_crc), &c, 4);
    memcpy(img, v1, SNAP_HEADER_SIZE);
    SnapHeader h;
    assert_int_equal(parse(FILE_SIZE, &h), 0);
    assert_int_equal(h.cfg.tsc_khz, 0);
    assert_int_equal(h.cfg.cpus, 2);
    assert_int_equal(h.cfg.xsave_size, 4096);
    assert_int_equal(h.nsections, h2.nsections);
    assert_memory_equal(h.sec, h2.sec, h2.nsections * sizeof(SnapSection));
}

static void test_truncated(void **state)
{
    (void)state;
    SnapHeader h;
    build();
    assert_int_equal(parse(100, &h), -EINVAL);
    assert_string_equal(why, "truncated: 100 bytes, shorter than the 4096-byte header");
    assert_int_equal(parse(FILE_SIZE - 1, &h), -EINVAL);
    assert_non_null(strstr(why, "truncated: section ram 0"));
    assert_int_equal(parse(SNAP_HEADER_SIZE + 150, &h), -EINVAL);
    assert_non_null(strstr(why, "truncated: section vcpu 1"));
}

static void drop_vcpu1(SnapHeader *h) { h->sec[1] = h->sec[--h->nsections]; }
static void dup_serial(SnapHeader *h) { h->sec[4] = h->sec[3]; }
static void big_type(SnapHeader *h) { h->sec[2].type = 77; }
static void ram_short(SnapHeader *h) { h->sec[5].length -= SNAP_PAGE; }
static void ram_unaligned(SnapHeader *h) { h->sec[5].offset -= 8; }
static void huge_record(SnapHeader *h) { h->sec[4].length = SNAP_MAX_RECORD + 1; }
static void many(SnapHeader *h) { h->nsections = SNAP_MAX_SECTIONS + 1; }
static void no_cpus(SnapHeader *h) { h->cfg.cpus = 0; }
static void stray_device(SnapHeader *h) { h->sec[4].index = 5; }
static void wrap(SnapHeader *h) { h->sec[0].offset = UINT64_MAX - 10; }

static void test_structure(void **state)
{
    (void)state;
    static const struct {
        void (*fn)(SnapHeader *);
        const char *msg;
    } cases[] = {
        { drop_vcpu1, "no state for vCPU 1" },
        { dup_serial, "section serial 0 appears twice" },
        { big_type, "section 2 has unknown type 77" },
        { ram_short, "RAM image of 33550336 bytes at 12288 (needs 33554432 bytes, page aligned)" },
        { ram_unaligned, "RAM image of 33554432 bytes at 12280 (needs 33554432 bytes, page aligned)" },
        { huge_record, "section virtio-pci 0 of 1048577 bytes is too large" },
        { many, "101 sections, at most 100" },
        { no_cpus, "impossible configuration (0 vCPUs, 33554432 bytes of RAM, 1 devices)" },
        { stray_device, "no state for device 0" },
        { wrap, "truncated: section vcpu 0" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        SnapHeader h;
        build();
        edit(cases[i].fn);
        assert_int_equal(parse(FILE_SIZE, &h), -EINVAL);
        if (strncmp(why, cases[i].msg, strlen(cases[i].msg)) != 0) {
            fail_msg("case %zu: '%s', expected '%s'", i, why, cases[i].msg);
        }
    }
}

static void test_mismatch(void **state)
{
    (void)state;
    SnapConfig file = { .ram_size = RAM, .cpus = 2, .vcpu_state_size = 100, .xsave_size = 4096 };
    SnapConfig want = { 0 };
    assert_int_equal(snap_config_match(&file, &want, why, sizeof(why)), 0);
    want.ram_size = 2 * RAM;
    assert_int_equal(snap_config_match(&file, &want, why, sizeof(why)), -EINVAL);
    assert_string_equal(why, "RAM size mismatch: the snapshot has 33554432 bytes, the machine 67108864");
    want = (SnapConfig){ .cpus = 4 };
    assert_int_equal(snap_config_match(&file, &want, why, sizeof(why)), -EINVAL);
    assert_string_equal(why, "vCPU count mismatch: the snapshot has 2, the machine 4");
    want = (SnapConfig){ .vcpu_state_size = 99 };
    assert_int_equal(snap_config_match(&file, &want, why, sizeof(why)), -EINVAL);
    assert_string_equal(why, "vCPU state record of 100 bytes, this library's is 99");
    want = (SnapConfig){ .xsave_size = 1024 };
    assert_int_equal(snap_config_match(&file, &want, why, sizeof(why)), -EINVAL);
    assert_string_equal(why, "XSAVE area of 4096 bytes, this KVM takes 1024");
}

static void no_out(void *o, uint8_t b) { (void)o; (void)b; }
static int irqs;
static void count_irq(void *o, bool level) { (void)o; (void)level; irqs++; }

static void test_serial(void **state)
{
    (void)state;
    Serial a, b;
    serial_init(&a, no_out, count_irq, NULL);
    serial_write(&a, 3, 0x83);              /* DLAB */
    serial_write(&a, 0, 0x01);
    serial_write(&a, 3, 0x03);
    serial_write(&a, 1, 0x01);              /* receive interrupt */
    serial_write(&a, 7, 0x5a);
    serial_receive(&a, (const uint8_t *)"hello", 5);
    assert_int_equal(serial_read(&a, 0), 'h');
    uint8_t rec[SERIAL_STATE_SIZE];
    serial_save(&a, rec);

    serial_init(&b, no_out, count_irq, NULL);
    Serial fresh = b;
    assert_int_equal(serial_load(&b, rec, sizeof(rec) - 1), -EINVAL);
    uint8_t bad[SERIAL_STATE_SIZE];
    memcpy(bad, rec, sizeof(bad));
    bad[12 + SERIAL_FIFO + 1] = SERIAL_FIFO + 1;    /* FIFO count */
    assert_int_equal(serial_load(&b, bad, sizeof(bad)), -EINVAL);
    assert_memory_equal(&b, &fresh, sizeof(b));
    int before = irqs;
    assert_int_equal(serial_load(&b, rec, sizeof(rec)), 0);
    assert_int_equal(irqs, before);         /* the line is the irqchip's */
    assert_int_equal(serial_read(&b, 7), 0x5a);
    assert_int_equal(serial_read(&b, 3), 0x03);
    assert_int_equal(serial_read(&b, 2) & 0x0f, 0x04);     /* data interrupt */
    char got[5] = { 0 };
    for (int i = 0; i < 4; i++) {
        got[i] = (char)serial_read(&b, 0);
    }
    assert_string_equal(got, "ello");
    assert_int_equal(serial_read(&b, 5) & 1, 0);            /* FIFO empty */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_version1),
        cmocka_unit_test(test_corrupt),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_structure),
        cmocka_unit_test(test_mismatch),
        cmocka_unit_test(test_serial),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
