/* SPDX-License-Identifier: MIT */
/* A 16550A UART; see serial.h. */
#include "machine/serial.h"

#include <errno.h>
#include <string.h>

#define IER_RDI 0x01   /* received data available */
#define IER_THRI 0x02  /* transmitter holding register empty */
#define IER_RLSI 0x04  /* receiver line status */
#define IER_MSI 0x08   /* modem status */
#define IIR_NONE 0x01
#define IIR_RLSI 0x06
#define IIR_RDI 0x04
#define IIR_THRI 0x02
#define IIR_FIFO 0xc0
#define LCR_DLAB 0x80
#define LSR_DR 0x01
#define LSR_OE 0x02
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define MCR_LOOP 0x10
#define FCR_ENABLE 0x01
#define FCR_CLEAR_RX 0x02

static uint8_t iir(const Serial *s)
{
    uint8_t fifo = (s->fcr & FCR_ENABLE) ? IIR_FIFO : 0;
    if ((s->ier & IER_RLSI) && (s->lsr & LSR_OE)) {
        return IIR_RLSI | fifo;
    }
    if ((s->ier & IER_RDI) && s->rx_count) {
        return IIR_RDI | fifo;
    }
    if ((s->ier & IER_THRI) && s->thre_pending) {
        return IIR_THRI | fifo;
    }
    return IIR_NONE | fifo;
}

static void update_irq(Serial *s)
{
    bool level = !(iir(s) & IIR_NONE);
    /* In loopback the interrupt is not wired out (OUT2 gates it). */
    if (s->mcr & MCR_LOOP) {
        level = false;
    }
    if (level != s->irq_level) {
        s->irq_level = level;
        if (s->irq) {
            s->irq(s->opaque, level);
        }
    }
}

void serial_init(Serial *s, SerialOutFunc *out, SerialIrqFunc *irq, void *opaque)
{
    memset(s, 0, sizeof(*s));
    s->lsr = LSR_THRE | LSR_TEMT;
    s->msr = 0xb0;                  /* DCD, DSR, CTS */
    s->dll = 0x0c;                  /* 9600 baud */
    s->out = out;
    s->irq = irq;
    s->opaque = opaque;
}

static void rx_push(Serial *s, uint8_t b)
{
    if (s->rx_count == SERIAL_FIFO) {
        s->lsr |= LSR_OE;
        return;
    }
    s->rx[(s->rx_head + s->rx_count) % SERIAL_FIFO] = b;
    s->rx_count++;
    s->lsr |= LSR_DR;
}

size_t serial_rx_room(const Serial *s)
{
    return SERIAL_FIFO - s->rx_count;
}

size_t serial_receive(Serial *s, const uint8_t *buf, size_t len)
{
    size_t n = 0;
    while (n < len && s->rx_count < SERIAL_FIFO) {
        rx_push(s, buf[n++]);
    }
    update_irq(s);
    return n;
}

static uint8_t loop_msr(const Serial *s)
{
    /* Loopback: RTS->CTS, DTR->DSR, OUT1->RI, OUT2->DCD. */
    return (uint8_t)(((s->mcr & 0x02) << 3) | ((s->mcr & 0x01) << 5) |
                     ((s->mcr & 0x04) << 4) | ((s->mcr & 0x08) << 4));
}

uint8_t serial_read(Serial *s, unsigned off)
{
    uint8_t v;
    switch (off) {
    case 0:
        if (s->lcr & LCR_DLAB) {
            return s->dll;
        }
        v = 0;
        if (s->rx_count) {
            v = s->rx[s->rx_head];
            s->rx_head = (s->rx_head + 1) % SERIAL_FIFO;
            if (--s->rx_count == 0) {
                s->lsr &= (uint8_t)~LSR_DR;
            }
            update_irq(s);
        }
        return v;
    case 1:
        return (s->lcr & LCR_DLAB) ? s->dlm : s->ier;
    case 2:
        v = iir(s);
        /* Reading IIR acknowledges a THR-empty interrupt it reports. */
        if ((v & 0x0f) == IIR_THRI) {
            s->thre_pending = false;
            update_irq(s);
        }
        return v;
    case 3:
        return s->lcr;
    case 4:
        return s->mcr;
    case 5:
        v = s->lsr;
        s->lsr &= (uint8_t)~LSR_OE;
        update_irq(s);
        return v;
    case 6:
        return (s->mcr & MCR_LOOP) ? loop_msr(s) : s->msr;
    case 7:
        return s->scr;
    default:
        return 0xff;
    }
}

void serial_write(Serial *s, unsigned off, uint8_t val)
{
    switch (off) {
    case 0:
        if (s->lcr & LCR_DLAB) {
            s->dll = val;
            return;
        }
        if (s->mcr & MCR_LOOP) {
            rx_push(s, val);
        } else if (s->out) {
            s->out(s->opaque, val);
        }
        /* The byte left at once: THR is empty again. */
        s->thre_pending = true;
        break;
    case 1:
        if (s->lcr & LCR_DLAB) {
            s->dlm = val;
            return;
        }
        /* Enabling THRI while THR is empty raises the interrupt. */
        if ((val & IER_THRI) && !(s->ier & IER_THRI)) {
            s->thre_pending = true;
        }
        s->ier = val & 0x0f;
        break;
    case 2:
        s->fcr = val & 0xc9;
        if (val & FCR_CLEAR_RX) {
            s->rx_count = 0;
            s->rx_head = 0;
            s->lsr &= (uint8_t)~LSR_DR;
        }
        break;
    case 3:
        s->lcr = val;
        return;
    case 4:
        s->mcr = val & 0x1f;
        break;
    case 7:
        s->scr = val;
        return;
    default:
        return;
    }
    update_irq(s);
}

void serial_save(const Serial *s, uint8_t out[SERIAL_STATE_SIZE])
{
    uint8_t *p = out;
    *p++ = s->ier; *p++ = s->iir_thre; *p++ = s->lcr; *p++ = s->mcr;
    *p++ = s->lsr; *p++ = s->msr; *p++ = s->scr; *p++ = s->dll;
    *p++ = s->dlm; *p++ = s->fcr; *p++ = s->thre_pending; *p++ = s->irq_level;
    memcpy(p, s->rx, SERIAL_FIFO);
    p += SERIAL_FIFO;
    *p++ = (uint8_t)s->rx_head;
    *p++ = (uint8_t)s->rx_count;
    *p++ = 0;
    *p++ = 0;
}

int serial_load(Serial *s, const uint8_t *in, size_t len)
{
    if (len != SERIAL_STATE_SIZE) {
        return -EINVAL;
    }
    const uint8_t *f = in + 12 + SERIAL_FIFO;
    if (f[0] >= SERIAL_FIFO || f[1] > SERIAL_FIFO || in[10] > 1 || in[11] > 1) {
        return -EINVAL;
    }
    const uint8_t *p = in;
    s->ier = *p++; s->iir_thre = *p++; s->lcr = *p++; s->mcr = *p++;
    s->lsr = *p++; s->msr = *p++; s->scr = *p++; s->dll = *p++;
    s->dlm = *p++; s->fcr = *p++; s->thre_pending = *p++; s->irq_level = *p++;
    memcpy(s->rx, p, SERIAL_FIFO);
    s->rx_head = f[0];
    s->rx_count = f[1];
    return 0;
}
