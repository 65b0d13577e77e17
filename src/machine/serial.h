/* SPDX-License-Identifier: MIT */
/*
 * Internal: a 16550A UART register model (the console at 0x3F8, IRQ 4).
 * Pure state: the machine serialises calls with its device lock and wires
 * @out (transmitted bytes) and @irq (the interrupt line level).
 */
#ifndef VMM_MACHINE_SERIAL_H
#define VMM_MACHINE_SERIAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SERIAL_COM1_PORT 0x3f8
#define SERIAL_COM1_IRQ 4
#define SERIAL_FIFO 64

typedef void SerialOutFunc(void *opaque, uint8_t byte);
typedef void SerialIrqFunc(void *opaque, bool level);

typedef struct Serial {
    uint8_t ier, iir_thre, lcr, mcr, lsr, msr, scr, dll, dlm, fcr;
    bool thre_pending;               /* THR-empty interrupt not yet read */
    uint8_t rx[SERIAL_FIFO];
    unsigned rx_head, rx_count;
    bool irq_level;
    SerialOutFunc *out;
    SerialIrqFunc *irq;
    void *opaque;
} Serial;

void serial_init(Serial *s, SerialOutFunc *out, SerialIrqFunc *irq, void *opaque);
/* A guest access at register @off (0..7).  Other offsets read 0xff. */
uint8_t serial_read(Serial *s, unsigned off);
void serial_write(Serial *s, unsigned off, uint8_t val);
/* Host input: queues up to @len bytes, returns how many fit. */
size_t serial_receive(Serial *s, const uint8_t *buf, size_t len);
/* Free room in the receive FIFO. */
size_t serial_rx_room(const Serial *s);

/* The registers and the receive FIFO as a fixed record (snapshots).
 * serial_save fills SERIAL_STATE_SIZE bytes; serial_load checks a record of
 * @len bytes (-EINVAL: wrong size or impossible FIFO indices, @s unchanged)
 * and takes it over, keeping @s's callbacks; it does not drive the
 * interrupt line (the restored interrupt controller holds its level). */
#define SERIAL_STATE_SIZE (12 + SERIAL_FIFO + 4)
void serial_save(const Serial *s, uint8_t out[SERIAL_STATE_SIZE]);
int serial_load(Serial *s, const uint8_t *in, size_t len);

#endif
