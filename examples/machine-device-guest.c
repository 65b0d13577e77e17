/* SPDX-License-Identifier: MIT */
/*
 * The guest side of machine-device.c (statically linked, in the demo
 * initramfs): feed a message to the hasher's ports and print the hash the
 * device computed, after checking it against the same hash computed here.
 *
 *   vmmkit-device-guest [MESSAGE]
 *   -> "VMMKIT-USERDEV hash=XXXXXXXX bytes=N", or "VMMKIT-USERDEV-FAIL <why>"
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/io.h>

#define HASHER_PORT 0x510

int main(int argc, char **argv)
{
    const char *msg = argc > 1 ? argv[1] : "hello from inside the guest";
    if (ioperm(HASHER_PORT, 8, 1) < 0) {
        perror("VMMKIT-USERDEV-FAIL ioperm");
        return 1;
    }
    outb(0, HASHER_PORT + 1);                       /* start again */
    uint32_t mine = 0x811c9dc5u;
    size_t n = strlen(msg);
    for (size_t i = 0; i < n; i++) {
        outb((uint8_t)msg[i], HASHER_PORT);
        mine = (mine ^ (uint8_t)msg[i]) * 16777619u;
    }
    uint32_t dev = inl(HASHER_PORT + 4);
    if (dev != mine) {
        printf("VMMKIT-USERDEV-FAIL the device says %08x, expected %08x\n", dev, mine);
        return 1;
    }
    printf("VMMKIT-USERDEV hash=%08x bytes=%zu\n", dev, n);
    return 0;
}
