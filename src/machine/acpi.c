/* SPDX-License-Identifier: MIT */
/* ACPI tables of the x86 machine; see acpi.h and docs/machine.md. */
#include "machine/acpi.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#define HDR_LEN 36

typedef struct Buf {
    uint8_t *p;
    size_t len, pos;
    bool overflow;
} Buf;

static void put8(Buf *b, uint8_t v)
{
    if (b->pos < b->len) {
        b->p[b->pos] = v;
    } else {
        b->overflow = true;
    }
    b->pos++;
}
static void put16(Buf *b, uint16_t v) { put8(b, (uint8_t)v); put8(b, (uint8_t)(v >> 8)); }
static void put32(Buf *b, uint32_t v) { put16(b, (uint16_t)v); put16(b, (uint16_t)(v >> 16)); }
static void put64(Buf *b, uint64_t v) { put32(b, (uint32_t)v); put32(b, (uint32_t)(v >> 32)); }
static void putn(Buf *b, const void *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        put8(b, ((const uint8_t *)s)[i]);
    }
}
static void set32(Buf *b, size_t at, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        if (at + i < b->len) {
            b->p[at + i] = (uint8_t)(v >> (8 * i));
        }
    }
}
static void align(Buf *b, size_t a)
{
    while (b->pos % a) {
        put8(b, 0);
    }
}

uint8_t acpi_checksum(const uint8_t *p, size_t len)
{
    uint8_t s = 0;
    for (size_t i = 0; i < len; i++) {
        s = (uint8_t)(s + p[i]);
    }
    return s;
}

/* Start a table; returns its offset.  Length and checksum come at the end. */
static size_t table_begin(Buf *b, const char sig[4], uint8_t rev)
{
    align(b, 16);
    size_t at = b->pos;
    putn(b, sig, 4);
    put32(b, 0);              /* length */
    put8(b, rev);
    put8(b, 0);               /* checksum */
    putn(b, "VMMKIT", 6);
    putn(b, "VMMKITMC", 8);
    put32(b, 1);              /* OEM revision */
    putn(b, "VMMK", 4);       /* creator */
    put32(b, 1);
    return at;
}

static void table_end(Buf *b, size_t at)
{
    if (b->overflow) {
        return;
    }
    size_t n = b->pos - at;
    set32(b, at + 4, (uint32_t)n);
    b->p[at + 9] = (uint8_t)(0 - acpi_checksum(b->p + at, n));
}

/* A generic address structure in system I/O space, byte access. */
static void put_gas_io(Buf *b, uint16_t port, uint8_t bits)
{
    put8(b, 1);               /* SystemIO */
    put8(b, bits);
    put8(b, 0);
    put8(b, 1);               /* byte access */
    put64(b, port);
}
static void put_gas_none(Buf *b)
{
    for (int i = 0; i < 12; i++) {
        put8(b, 0);
    }
}

static size_t build_fadt(Buf *b, uint64_t dsdt)
{
    size_t at = table_begin(b, "FACP", 6);
    put32(b, 0);                          /* 36 FIRMWARE_CTRL: no FACS */
    put32(b, (uint32_t)dsdt);             /* 40 DSDT */
    put8(b, 0);                           /* 44 reserved */
    put8(b, 0);                           /* 45 preferred PM profile */
    put16(b, 0);                          /* 46 SCI_INT */
    for (int i = 48; i < 109; i++) {      /* SMI_CMD .. CENTURY: unused */
        put8(b, 0);
    }
    put16(b, (1u << 2) | (1u << 5));      /* 109 IAPC_BOOT_ARCH: no VGA, no CMOS RTC */
    put8(b, 0);                           /* 111 reserved */
    /* 112 flags: PWR/SLP buttons absent, reset register, hardware-reduced. */
    put32(b, (1u << 4) | (1u << 5) | (1u << 10) | (1u << 20));
    put_gas_io(b, ACPI_PORT_RESET, 8);    /* 116 RESET_REG */
    put8(b, ACPI_RESET_VALUE);            /* 128 RESET_VALUE */
    put16(b, 0);                          /* 129 ARM_BOOT_ARCH */
    put8(b, 0);                           /* 131 minor version */
    put64(b, 0);                          /* 132 X_FIRMWARE_CTRL */
    put64(b, dsdt);                       /* 140 X_DSDT */
    for (int i = 0; i < 8; i++) {         /* 148..243 X_PM1a_EVT .. X_GPE1 */
        put_gas_none(b);
    }
    put_gas_io(b, ACPI_PORT_SLEEP_CONTROL, 8);  /* 244 SLEEP_CONTROL_REG */
    put_gas_io(b, ACPI_PORT_SLEEP_STATUS, 8);   /* 256 SLEEP_STATUS_REG */
    putn(b, "VMMKIT\0\0", 8);             /* 268 hypervisor vendor */
    table_end(b, at);
    return at;
}

static size_t build_madt(Buf *b, const AcpiConfig *cfg)
{
    size_t at = table_begin(b, "APIC", 5);
    put32(b, ACPI_LAPIC_ADDR);
    put32(b, 0);                          /* flags: no dual 8259 in use */
    for (uint32_t i = 0; i < cfg->ncpus; i++) {
        put8(b, 0);                       /* processor local APIC */
        put8(b, 8);
        put8(b, (uint8_t)i);              /* ACPI processor UID */
        put8(b, (uint8_t)i);              /* APIC id */
        put32(b, 1);                      /* enabled */
    }
    put8(b, 1);                           /* I/O APIC */
    put8(b, 12);
    put8(b, (uint8_t)cfg->ncpus);         /* id after the CPUs' */
    put8(b, 0);
    put32(b, ACPI_IOAPIC_ADDR);
    put32(b, 0);                          /* GSI base */
    put8(b, 2);                           /* ISA IRQ 0 -> GSI 2 (the PIT) */
    put8(b, 10);
    put8(b, 0);
    put8(b, 0);
    put32(b, 2);
    put16(b, 0);
    put8(b, 4);                           /* local APIC NMI on LINT1, all CPUs */
    put8(b, 6);
    put8(b, 0xff);
    put16(b, 0);
    put8(b, 1);
    table_end(b, at);
    return at;
}

/* AML PkgLength for a body of @n bytes that follows it. */
static void aml_pkglen(Buf *b, size_t n)
{
    if (n + 1 <= 63) {
        put8(b, (uint8_t)(n + 1));
    } else {
        size_t t = n + 2;                 /* two bytes cover up to 4095 */
        put8(b, (uint8_t)(0x40 | (t & 0xf)));
        put8(b, (uint8_t)(t >> 4));
    }
}

static void aml_name_int0(Buf *b, const char name[4])
{
    put8(b, 0x08);                        /* NameOp */
    putn(b, name, 4);
    put8(b, 0x00);                        /* ZeroOp */
}

/* Word address space descriptor (bus or I/O range), producer. */
static void res_word(Buf *b, uint8_t type, uint8_t tflags, uint16_t min, uint16_t max)
{
    put8(b, 0x88);
    put16(b, 13);
    put8(b, type);
    put8(b, 0x0c);                        /* min and max fixed */
    put8(b, tflags);
    put16(b, 0);                          /* granularity */
    put16(b, min);
    put16(b, max);
    put16(b, 0);                          /* translation */
    put16(b, (uint16_t)(max - min + 1));
}

static void build_crs(Buf *b, const AcpiConfig *cfg)
{
    res_word(b, 2, 0, 0, 0);              /* bus 0 */
    put8(b, 0x47);                        /* IO: the config ports CF8-CFF */
    put8(b, 1);
    put16(b, 0xcf8);
    put16(b, 0xcf8);
    put8(b, 1);
    put8(b, 8);
    res_word(b, 1, 3, 0x0000, 0x0cf7);    /* I/O windows */
    res_word(b, 1, 3, 0x0d00, 0xffff);
    put8(b, 0x87);                        /* DWord memory window */
    put16(b, 23);
    put8(b, 0);                           /* memory */
    put8(b, 0x0c);
    put8(b, 0x01);                        /* read-write, non-cacheable */
    put32(b, 0);
    put32(b, (uint32_t)cfg->pci_mmio_start);
    put32(b, (uint32_t)(cfg->pci_mmio_end - 1));
    put32(b, 0);
    put32(b, (uint32_t)(cfg->pci_mmio_end - cfg->pci_mmio_start));
    put8(b, 0x79);                        /* end tag */
    put8(b, 0);
}

/*
 * Device (COM1) { _HID PNP0501, _CRS { IO 0x3F8/8, IRQNoFlags {4} } }.
 * In hardware-reduced mode Linux maps no ISA IRQ by itself (there is no
 * legacy PIC): the serial port's interrupt reaches the I/O APIC only
 * because ACPI describes it here.
 */
static void build_com1(Buf *b)
{
    static const uint8_t crs[] = {
        0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08,   /* IO */
        0x22, 0x10, 0x00,                                 /* IRQNoFlags {4} */
        0x79, 0x00,
    };
    uint8_t dev[64];
    Buf db = { .p = dev, .len = sizeof(dev) };
    putn(&db, "COM1", 4);
    put8(&db, 0x08);
    putn(&db, "_HID", 4);
    put8(&db, 0x0c);
    put32(&db, 0x0105d041);               /* EisaId ("PNP0501") */
    aml_name_int0(&db, "_UID");
    put8(&db, 0x08);
    putn(&db, "_CRS", 4);
    put8(&db, 0x11);
    aml_pkglen(&db, 2 + sizeof(crs));
    put8(&db, 0x0a);
    put8(&db, sizeof(crs));
    putn(&db, crs, sizeof(crs));
    put8(b, 0x5b);
    put8(b, 0x82);
    aml_pkglen(b, db.pos);
    putn(b, dev, db.pos);
}

/*
 * Device (RESn) { _HID PNP0C02, _UID n, _CRS { one consumer Word I/O or
 * QWord memory range } }: a region of the VMM's outside PCI, reserved.
 */
static void build_region(Buf *b, unsigned n, const AcpiRegion *r)
{
    uint8_t crs[64], dev[128];
    Buf cb = { .p = crs, .len = sizeof(crs) };
    if (r->pio) {
        put8(&cb, 0x88);                  /* Word address space descriptor */
        put16(&cb, 13);
        put8(&cb, 1);                     /* I/O */
        put8(&cb, 0x0d);                  /* min, max fixed; consumer */
        put8(&cb, 3);                     /* ISA and non-ISA ranges */
        put16(&cb, 0);
        put16(&cb, (uint16_t)r->base);
        put16(&cb, (uint16_t)(r->base + r->len - 1));
        put16(&cb, 0);
        put16(&cb, (uint16_t)r->len);
    } else {
        put8(&cb, 0x8a);                  /* QWord address space descriptor */
        put16(&cb, 43);
        put8(&cb, 0);                     /* memory */
        put8(&cb, 0x0d);                  /* min, max fixed; consumer */
        put8(&cb, 0x01);                  /* read-write, non-cacheable */
        put64(&cb, 0);
        put64(&cb, r->base);
        put64(&cb, r->base + r->len - 1);
        put64(&cb, 0);
        put64(&cb, r->len);
    }
    put8(&cb, 0x79);                      /* end tag */
    put8(&cb, 0);
    Buf db = { .p = dev, .len = sizeof(dev) };
    static const char hex[] = "0123456789ABCDEF";
    char name[4] = { 'R', 'E', 'S', hex[n & 15] };
    putn(&db, name, 4);
    put8(&db, 0x08);                      /* Name (_HID, EisaId ("PNP0C02")) */
    putn(&db, "_HID", 4);
    put8(&db, 0x0c);
    put32(&db, 0x020cd041);
    put8(&db, 0x08);                      /* Name (_UID, n) */
    putn(&db, "_UID", 4);
    put8(&db, 0x0a);
    put8(&db, (uint8_t)n);
    put8(&db, 0x08);                      /* Name (_CRS, Buffer () {...}) */
    putn(&db, "_CRS", 4);
    put8(&db, 0x11);
    aml_pkglen(&db, 2 + cb.pos);
    put8(&db, 0x0a);
    put8(&db, (uint8_t)cb.pos);
    putn(&db, crs, cb.pos);
    put8(b, 0x5b);                        /* DeviceOp */
    put8(b, 0x82);
    aml_pkglen(b, db.pos);
    putn(b, dev, db.pos);
}

static size_t build_dsdt(Buf *b, const AcpiConfig *cfg)
{
    size_t at = table_begin(b, "DSDT", 2);
    /* Name (_S5, Package (4) { 5, 0, 0, 0 }) */
    static const uint8_t s5[] = { 0x08, '_', 'S', '5', '_', 0x12, 0x07, 0x04,
                                  0x0a, ACPI_S5_TYPE, 0x00, 0x00, 0x00 };
    putn(b, s5, sizeof(s5));

    /* Device (PCI0) { _HID, _UID, _SEG, _BBN, _CRS }: body built first so
     * its PkgLength is known. */
    uint8_t crs[128], dev[256];
    Buf cb = { .p = crs, .len = sizeof(crs) };
    build_crs(&cb, cfg);
    Buf db = { .p = dev, .len = sizeof(dev) };
    putn(&db, "PCI0", 4);
    put8(&db, 0x08);                      /* Name (_HID, EisaId ("PNP0A03")) */
    putn(&db, "_HID", 4);
    put8(&db, 0x0c);
    put32(&db, 0x030ad041);
    aml_name_int0(&db, "_UID");
    aml_name_int0(&db, "_SEG");
    aml_name_int0(&db, "_BBN");
    put8(&db, 0x08);                      /* Name (_CRS, Buffer () {...}) */
    putn(&db, "_CRS", 4);
    put8(&db, 0x11);
    aml_pkglen(&db, 2 + cb.pos);
    put8(&db, 0x0a);                      /* buffer size */
    put8(&db, (uint8_t)cb.pos);
    putn(&db, crs, cb.pos);
    if (cb.overflow || db.overflow) {
        b->overflow = true;
        return at;
    }
    put8(b, 0x5b);                        /* DeviceOp */
    put8(b, 0x82);
    aml_pkglen(b, db.pos);
    putn(b, dev, db.pos);
    build_com1(b);
    for (unsigned i = 0; i < cfg->nregions; i++) {
        build_region(b, i, &cfg->regions[i]);
    }
    table_end(b, at);
    return at;
}

long acpi_build(uint8_t *p, size_t len, uint64_t gpa, const AcpiConfig *cfg)
{
    if (!cfg || cfg->ncpus == 0 || cfg->ncpus > ACPI_MAX_CPUS ||
        cfg->pci_mmio_start >= cfg->pci_mmio_end ||
        cfg->pci_mmio_end > (1ull << 32) || gpa + len > (1ull << 32) ||
        cfg->nregions > ACPI_MAX_REGIONS || (cfg->nregions && !cfg->regions)) {
        return -EINVAL;
    }
    for (unsigned i = 0; i < cfg->nregions; i++) {
        const AcpiRegion *r = &cfg->regions[i];
        if (r->len == 0 || r->base + r->len < r->base ||
            (r->pio && r->base + r->len > 0x10000)) {
            return -EINVAL;
        }
    }
    memset(p, 0, len);
    Buf b = { .p = p, .len = len };
    /* RSDP (revision 2); XSDT address filled in below. */
    putn(&b, "RSD PTR ", 8);
    put8(&b, 0);                          /* checksum of the first 20 bytes */
    putn(&b, "VMMKIT", 6);
    put8(&b, 2);
    put32(&b, 0);                         /* no RSDT */
    put32(&b, 36);
    put64(&b, 0);                         /* XSDT address */
    put8(&b, 0);                          /* extended checksum */
    putn(&b, "\0\0\0", 3);

    size_t dsdt = build_dsdt(&b, cfg);
    size_t fadt = build_fadt(&b, gpa + dsdt);
    size_t madt = build_madt(&b, cfg);
    size_t xsdt = table_begin(&b, "XSDT", 1);
    put64(&b, gpa + fadt);
    put64(&b, gpa + madt);
    table_end(&b, xsdt);
    if (b.overflow) {
        return -ENOSPC;
    }
    uint64_t xa = gpa + xsdt;
    for (int i = 0; i < 8; i++) {
        p[24 + i] = (uint8_t)(xa >> (8 * i));
    }
    p[8] = (uint8_t)(0 - acpi_checksum(p, 20));
    p[32] = (uint8_t)(0 - acpi_checksum(p, 36));
    return (long)b.pos;
}

AcpiSleepRequest acpi_decode_sleep_control(uint8_t value)
{
    if ((value & ACPI_SLP_EN) && ((value >> 2) & 7) == ACPI_S5_TYPE) {
        return ACPI_SLEEP_POWEROFF;
    }
    return ACPI_SLEEP_NONE;
}
