/* SPDX-License-Identifier: MIT */
/*
 * Internal: the machine snapshot file format (docs/machine.md, "Snapshots").
 *
 * A file is a 4 KiB header followed by sections.  The header holds the
 * magic, the format version, the machine's configuration (what a restoring
 * machine must match: RAM size, vCPUs, the devices on the PCI bus, the
 * sizes of the state records) and a table of sections, each with its type,
 * an index (vCPU number, PCI slot), offset, length and CRC-32; the header
 * has its own CRC-32.  Sections are state records (vCPU, VM-wide KVM
 * state, UART, virtio-pci slots) and the guest RAM image: a page-aligned
 * copy of RAM in guest order (low RAM then the RAM above 4 GiB), its zero
 * pages left as holes in the file, so a restore maps it privately instead
 * of reading it.  The RAM image carries no checksum (checking it would read
 * every page the mapping is there to leave alone); its length and offset
 * are checked like every other section's.
 *
 * Everything is little-endian (x86 only).  Pure code: no KVM, no I/O; the
 * loader checks every count, offset and length against the file size before
 * use (fuzzed by tests/fuzz/fuzz-snapshot.c).
 */
#ifndef VMM_MACHINE_SNAPSHOT_FORMAT_H
#define VMM_MACHINE_SNAPSHOT_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SNAP_MAGIC "VMMKSNAP"
#define SNAP_VERSION 2
/* Version 1 (still read): the configuration without tsc_khz. */
#define SNAP_VERSION_NO_TSC 1
#define SNAP_HEADER_SIZE 4096u
#define SNAP_PAGE 4096u
#define SNAP_MAX_SECTIONS 100
#define SNAP_MAX_DEVICES 8
/* The largest state record (a RAM image excepted). */
#define SNAP_MAX_RECORD (1u << 20)

enum {
    SNAP_SEC_VCPU = 1,          /* index: vCPU id; a VmmVcpuState */
    SNAP_SEC_VM = 2,            /* irqchip (PIC x2, IOAPIC), PIT, clock */
    SNAP_SEC_SERIAL = 3,        /* the 16550 */
    SNAP_SEC_VIRTIO_PCI = 4,    /* index: device number; transport + core */
    SNAP_SEC_RAM = 5,           /* the RAM image (page aligned, no CRC) */
};

/* What a restoring machine must match. */
typedef struct SnapConfig {
    uint64_t ram_size;
    uint32_t cpus;
    uint32_t ndevices;                  /* virtio-pci devices, in bus order */
    uint16_t device_ids[SNAP_MAX_DEVICES];  /* their virtio device IDs */
    uint32_t vcpu_state_size;           /* sizeof(VmmVcpuState) */
    uint32_t xsave_size;                /* the source VM's XSAVE area */
    /* Version 2: */
    uint32_t tsc_khz;                   /* the vCPUs' TSC rate; 0: not known */
    uint32_t reserved;
} SnapConfig;

typedef struct SnapSection {
    uint32_t type;
    uint32_t index;
    uint64_t offset;
    uint64_t length;
    uint32_t crc;                       /* CRC-32 of the bytes; 0 for RAM */
    uint32_t reserved;
} SnapSection;

typedef struct SnapHeader {
    char magic[8];
    uint32_t version;
    uint32_t header_size;
    uint32_t header_crc;                /* CRC-32 of the header, this field 0 */
    uint32_t nsections;
    SnapConfig cfg;
    SnapSection sec[SNAP_MAX_SECTIONS];
} SnapHeader;

_Static_assert(sizeof(SnapHeader) <= SNAP_HEADER_SIZE, "snapshot header too large");

/* Header in memory <-> its 4 KiB on-disk form (zero padded, CRC set). */
void snap_header_encode(SnapHeader *h, uint8_t out[SNAP_HEADER_SIZE]);

/*
 * Parse and check the header in @buf (@len bytes read from the start of a
 * file of @file_size bytes): magic, version (a version 1 header is taken
 * with tsc_khz 0), CRC, configuration bounds, and
 * every section - a known type, inside the file, no duplicate, a record no
 * larger than SNAP_MAX_RECORD, the RAM image page-aligned and as long as
 * the RAM - and that each needed section is there (one per vCPU and per
 * device, VM, serial, RAM).  0, or -EINVAL with the reason in @why.
 */
int snap_header_parse(const uint8_t *buf, size_t len, uint64_t file_size, SnapHeader *out,
                      char *why, size_t why_len);

/* The section of @type and @index, or NULL. */
const SnapSection *snap_find(const SnapHeader *h, uint32_t type, uint32_t index);

/* Check @data (s->length bytes) against the section's CRC.  0 or -EINVAL
 * naming the section in @why. */
int snap_section_check(const SnapSection *s, const void *data, char *why, size_t why_len);

/* Whether @file (a parsed header's configuration) fits a machine of @want;
 * a field of @want that is 0 is not compared.  0 or -EINVAL naming the
 * first difference in @why. */
int snap_config_match(const SnapConfig *file, const SnapConfig *want, char *why,
                      size_t why_len);

/* "vcpu", "vm", "serial", "virtio-pci", "ram" or "unknown". */
const char *snap_section_name(uint32_t type);

/* A tiny bounds-checked reader and writer for the state records. */
typedef struct SnapBuf {
    uint8_t *p;
    size_t len, pos;
    bool overflow;
} SnapBuf;

void snap_put(SnapBuf *b, const void *v, size_t n);
/* false (and nothing copied, @v zeroed) when fewer than @n bytes remain. */
bool snap_get(SnapBuf *b, void *v, size_t n);

#endif
