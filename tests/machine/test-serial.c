/* SPDX-License-Identifier: MIT */
/* Unit tests: the 16550A register model as Linux's 8250 driver uses it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "machine/serial.h"

static uint8_t outbuf[256];
static size_t outlen;
static int irq_level, irq_edges;
static void out(void *o, uint8_t b) { (void)o; outbuf[outlen++ % 256] = b; }
static void irq(void *o, bool level)
{
    (void)o;
    if (level && !irq_level) {
        irq_edges++;
    }
    irq_level = level;
}

static void setup(Serial *s)
{
    outlen = 0;
    irq_level = 0;
    irq_edges = 0;
    serial_init(s, out, irq, NULL);
}

static void test_probe(void **state)
{
    (void)state;
    Serial s;
    setup(&s);
    /* IER read back, scratch register. */
    serial_write(&s, 1, 0x00);
    assert_int_equal(serial_read(&s, 1), 0);
    serial_write(&s, 1, 0x0f);
    assert_int_equal(serial_read(&s, 1), 0x0f);
    serial_write(&s, 1, 0);
    serial_write(&s, 7, 0xa5);
    assert_int_equal(serial_read(&s, 7), 0xa5);
    /* Loopback: MCR RTS|OUT2 shows as CTS|DCD (what 8250 autoconfig checks). */
    serial_write(&s, 4, 0x10 | 0x0a);
    assert_int_equal(serial_read(&s, 6) & 0xf0, 0x90);
    serial_write(&s, 4, 0x10);
    assert_int_equal(serial_read(&s, 6) & 0xf0, 0x00);
    /* FIFO enabled: IIR's top bits say 16550A. */
    serial_write(&s, 2, 0xe7);
    assert_int_equal(serial_read(&s, 2) & 0xc0, 0xc0);
    /* Divisor latch. */
    serial_write(&s, 3, 0x83);
    serial_write(&s, 0, 0x01);
    serial_write(&s, 1, 0x00);
    assert_int_equal(serial_read(&s, 0), 0x01);
    serial_write(&s, 3, 0x03);
    assert_int_equal(serial_read(&s, 3), 0x03);
    assert_int_equal(outlen, 0);
    assert_int_equal(serial_read(&s, 9), 0xff);
}

static void test_tx_and_thre_irq(void **state)
{
    (void)state;
    Serial s;
    setup(&s);
    serial_write(&s, 0, 'h');
    serial_write(&s, 0, 'i');
    assert_int_equal(outlen, 2);
    assert_memory_equal(outbuf, "hi", 2);
    assert_int_equal(serial_read(&s, 5) & 0x60, 0x60);
    assert_int_equal(irq_level, 0);
    /* Enabling THRI with THR empty interrupts; IIR read acknowledges. */
    serial_write(&s, 1, 0x02);
    assert_int_equal(irq_level, 1);
    assert_int_equal(serial_read(&s, 2) & 0x0f, 0x02);
    assert_int_equal(irq_level, 0);
    assert_int_equal(serial_read(&s, 2) & 0x0f, 0x01);
    serial_write(&s, 0, 'x');
    assert_int_equal(irq_level, 1);
    serial_write(&s, 1, 0);
    assert_int_equal(irq_level, 0);
}

static void test_rx(void **state)
{
    (void)state;
    Serial s;
    setup(&s);
    serial_write(&s, 1, 0x01);
    assert_int_equal(serial_receive(&s, (const uint8_t *)"ab", 2), 2);
    assert_int_equal(irq_level, 1);
    assert_int_equal(serial_read(&s, 5) & 1, 1);
    assert_int_equal(serial_read(&s, 2) & 0x0f, 0x04);
    assert_int_equal(serial_read(&s, 0), 'a');
    assert_int_equal(irq_level, 1);
    assert_int_equal(serial_read(&s, 0), 'b');
    assert_int_equal(irq_level, 0);
    assert_int_equal(serial_read(&s, 5) & 1, 0);
    assert_int_equal(serial_read(&s, 0), 0);
    /* Full FIFO: the host is told how much fit; overrun shows in LSR. */
    uint8_t big[SERIAL_FIFO + 10];
    memset(big, 'z', sizeof(big));
    assert_int_equal(serial_receive(&s, big, sizeof(big)), SERIAL_FIFO);
    assert_int_equal(serial_rx_room(&s), 0);
    /* FCR clears the receive FIFO. */
    serial_write(&s, 2, 0x03);
    assert_int_equal(serial_rx_room(&s), SERIAL_FIFO);
    assert_int_equal(irq_level, 0);
    /* Loopback: transmitted bytes come back, nothing goes out. */
    serial_write(&s, 4, 0x10);
    serial_write(&s, 0, 'L');
    assert_int_equal(outlen, 0);
    assert_int_equal(serial_read(&s, 0), 'L');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_probe),
        cmocka_unit_test(test_tx_and_thre_irq),
        cmocka_unit_test(test_rx),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
