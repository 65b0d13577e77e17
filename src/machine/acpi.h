/* SPDX-License-Identifier: MIT */
/*
 * Internal: the ACPI tables of the x86 machine (RSDP, XSDT, FADT, MADT and a
 * DSDT in hand-assembled AML), built into a plain buffer.
 *
 * The machine is "hardware-reduced" ACPI: no PM timer, no fixed events, no
 * SCI.  Power-off is the FADT's sleep control register and reboot its reset
 * register, both I/O ports of the machine's power device, so the VMM sees
 * both.  The DSDT declares the PCI root bridge (PNP0A03) with its windows;
 * devices interrupt by MSI-X only, so there is no _PRT.
 */
#ifndef VMM_MACHINE_ACPI_H
#define VMM_MACHINE_ACPI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The power device's ports (FADT sleep control/status and reset). */
#define ACPI_PORT_SLEEP_CONTROL 0x600
#define ACPI_PORT_SLEEP_STATUS  0x601
#define ACPI_PORT_RESET         0x602
#define ACPI_PORT_COUNT         3
#define ACPI_RESET_VALUE        0x0f
/* \_S5 says SLP_TYP 5; the kernel writes SLP_EN | SLP_TYP << 2. */
#define ACPI_S5_TYPE            5
#define ACPI_SLP_EN             0x20

#define ACPI_MAX_CPUS 128
#define ACPI_IOAPIC_ADDR 0xfec00000u
#define ACPI_LAPIC_ADDR  0xfee00000u

/* A range a device of the VMM decodes outside PCI: the DSDT describes it
 * as a motherboard resource (Device RESn, _HID PNP0C02) so that the OS
 * puts nothing else there. */
typedef struct AcpiRegion {
    bool pio;                  /* port I/O (base + len <= 0x10000), else memory */
    uint64_t base, len;        /* len >= 1 */
} AcpiRegion;
#define ACPI_MAX_REGIONS 16

typedef struct AcpiConfig {
    uint32_t ncpus;            /* 1..ACPI_MAX_CPUS; APIC ids 0..ncpus-1 */
    uint64_t pci_mmio_start;   /* the 32-bit PCI memory window */
    uint64_t pci_mmio_end;     /* exclusive, at most 4 GiB */
    const AcpiRegion *regions; /* nregions entries (<= ACPI_MAX_REGIONS) */
    unsigned nregions;
} AcpiConfig;

/*
 * Build the tables for guest address @gpa into @buf (@len bytes), RSDP
 * first at @gpa.  Returns the bytes used, or -EINVAL / -ENOSPC.
 */
long acpi_build(uint8_t *buf, size_t len, uint64_t gpa, const AcpiConfig *cfg);

/* Sum of @len bytes mod 256 (0 for a table with a correct checksum). */
uint8_t acpi_checksum(const uint8_t *p, size_t len);

/* What a write to the sleep control register asks for. */
typedef enum AcpiSleepRequest {
    ACPI_SLEEP_NONE,
    ACPI_SLEEP_POWEROFF,
} AcpiSleepRequest;
AcpiSleepRequest acpi_decode_sleep_control(uint8_t value);

#endif
