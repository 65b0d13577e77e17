/* SPDX-License-Identifier: MIT */
/*
 * Guest-side random-read benchmark for the demo initramfs (statically
 * linked, so it needs nothing from the guest): 4 KiB reads at random
 * 4 KiB-aligned offsets of a block device, O_DIRECT (no guest page cache),
 * one at a time (queue depth 1), for a fixed count.
 *
 *   vmmkit-randread DEVICE COUNT
 *   -> "VMMKIT-BENCH-RAND <count> reads of 4096 bytes, <seconds> seconds"
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>
#include <linux/fs.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: vmmkit-randread DEVICE COUNT\n");
        return 2;
    }
    long count = atol(argv[2]);
    int fd = open(argv[1], O_RDONLY | O_DIRECT);
    uint64_t bytes = 0;
    void *buf = NULL;
    if (fd < 0 || ioctl(fd, BLKGETSIZE64, &bytes) < 0 || bytes < 4096 ||
        count <= 0 || posix_memalign(&buf, 4096, 4096)) {
        perror("vmmkit-randread");
        return 1;
    }
    uint64_t blocks = bytes / 4096, x = 0x9e3779b97f4a7c15ull;
    double t0 = now();
    for (long i = 0; i < count; i++) {
        x ^= x << 13;           /* xorshift64: a fixed, repeatable sequence */
        x ^= x >> 7;
        x ^= x << 17;
        if (pread(fd, buf, 4096, (off_t)((x % blocks) * 4096)) != 4096) {
            perror("vmmkit-randread: pread");
            return 1;
        }
    }
    printf("VMMKIT-BENCH-RAND %ld reads of 4096 bytes, %.6f seconds\n", count, now() - t0);
    return 0;
}
