/* SPDX-License-Identifier: MIT */
/*
 * A hostile virtio driver for the test guest (statically linked): it
 * unbinds Linux's driver from the virtio-blk PCI function, drives the
 * modern transport's common configuration itself through the BAR mapped
 * from sysfs, and breaks the protocol the way a malicious guest would -
 * enabling a queue after DRIVER_OK, with rings outside guest RAM.  The
 * device must answer DEVICE_NEEDS_RESET (and raise its config interrupt
 * from inside that register write), come back to 0 on reset, and work
 * again for Linux's driver once it is bound back.
 *
 *   vmmkit-virtio-poke
 *   -> "VMMKIT-POKE status=0x.. after-reset=0x.." and "VMMKIT-POKE-OK",
 *      or "VMMKIT-POKE-FAIL <why>"; the device is left bound to virtio-pci.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define PCI_DEVS "/sys/bus/pci/devices"

/* Common configuration (virtio 1.x, 4.1.4.3). */
#define CC_DRIVER_FEATURE_SELECT 0x08
#define CC_DRIVER_FEATURE        0x0c
#define CC_DEVICE_STATUS         0x14
#define CC_QUEUE_SELECT          0x16
#define CC_QUEUE_ENABLE          0x1c
#define CC_QUEUE_DESC            0x20
#define CC_QUEUE_DRIVER          0x28
#define CC_QUEUE_DEVICE          0x30

#define ST_ACK          0x01
#define ST_DRIVER       0x02
#define ST_DRIVER_OK    0x04
#define ST_FEATURES_OK  0x08
#define ST_NEEDS_RESET  0x40

static int fail(const char *why)
{
    printf("VMMKIT-POKE-FAIL %s\n", why);
    fflush(stdout);
    return 1;
}

static long read_hex(const char *dev, const char *name)
{
    char path[600], buf[32] = "";
    snprintf(path, sizeof(path), PCI_DEVS "/%s/%s", dev, name);
    FILE *f = fopen(path, "r");
    if (!f) {
        return -1;
    }
    if (!fgets(buf, sizeof(buf), f)) {
        buf[0] = '\0';
    }
    fclose(f);
    return strtol(buf, NULL, 16);
}

static int write_str(const char *path, const char *s)
{
    int fd = open(path, O_WRONLY);
    if (fd < 0) {
        return -1;
    }
    ssize_t n = write(fd, s, strlen(s));
    close(fd);
    return n == (ssize_t)strlen(s) ? 0 : -1;
}

/* The modern virtio-blk function (1af4:1042), by its sysfs name. */
static int find_blk(char *out, size_t len)
{
    DIR *d = opendir(PCI_DEVS);
    struct dirent *e;
    int found = -1;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] != '.' && read_hex(e->d_name, "vendor") == 0x1af4 &&
            read_hex(e->d_name, "device") == 0x1042) {
            snprintf(out, len, "%s", e->d_name);
            found = 0;
            break;
        }
    }
    if (d) {
        closedir(d);
    }
    return found;
}

/* The common configuration's BAR and offset, from the capability list. */
static int find_common(int cfg, int *bar, uint32_t *off)
{
    uint8_t c[256];
    if (pread(cfg, c, sizeof(c), 0) != (ssize_t)sizeof(c) || !(c[6] & 0x10)) {
        return -1;
    }
    for (unsigned p = c[0x34] & ~3u, n = 0; p && p < 0xf0 && n < 48; p = c[p + 1] & ~3u, n++) {
        if (c[p] == 0x09 && c[p + 3] == 1) {        /* vendor cap, COMMON_CFG */
            *bar = c[p + 4];
            memcpy(off, &c[p + 8], 4);
            return *bar < 6 ? 0 : -1;
        }
    }
    return -1;
}

static volatile uint8_t *cc;

static void w8(unsigned o, uint8_t v) { *(volatile uint8_t *)(cc + o) = v; }
static void w16(unsigned o, uint16_t v) { *(volatile uint16_t *)(cc + o) = v; }
static void w32(unsigned o, uint32_t v) { *(volatile uint32_t *)(cc + o) = v; }
static uint8_t r8(unsigned o) { return *(volatile uint8_t *)(cc + o); }

static void w64(unsigned o, uint64_t v)
{
    w32(o, (uint32_t)v);
    w32(o + 4, (uint32_t)(v >> 32));
}

int main(void)
{
    char dev[256], path[600];
    if (find_blk(dev, sizeof(dev)) < 0) {
        return fail("no virtio-blk PCI function");
    }
    snprintf(path, sizeof(path), PCI_DEVS "/%s/driver/unbind", dev);
    if (access(path, F_OK) == 0 && write_str(path, dev) < 0) {
        return fail("cannot unbind the driver");
    }
    snprintf(path, sizeof(path), PCI_DEVS "/%s/config", dev);
    int cfg = open(path, O_RDWR);
    int bar;
    uint32_t off;
    if (cfg < 0 || find_common(cfg, &bar, &off) < 0) {
        return fail("no common configuration capability");
    }
    uint16_t cmd;
    if (pread(cfg, &cmd, 2, 4) != 2) {
        return fail("config read");
    }
    cmd |= 0x2;                                     /* memory space decoding */
    if (pwrite(cfg, &cmd, 2, 4) != 2) {
        return fail("config write");
    }
    snprintf(path, sizeof(path), PCI_DEVS "/%s/resource%d", dev, bar);
    int rfd = open(path, O_RDWR | O_SYNC);
    struct stat st;
    if (rfd < 0 || fstat(rfd, &st) < 0 || st.st_size < (off_t)off + 0x38) {
        return fail("cannot open the BAR");
    }
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, rfd, 0);
    if (map == MAP_FAILED) {
        return fail("cannot map the BAR");
    }
    cc = (volatile uint8_t *)map + off;

    /* Reset, then a proper start up to DRIVER_OK (VERSION_1 only) ... */
    w8(CC_DEVICE_STATUS, 0);
    if (r8(CC_DEVICE_STATUS) != 0) {
        return fail("reset did not read back 0");
    }
    w8(CC_DEVICE_STATUS, ST_ACK | ST_DRIVER);
    w32(CC_DRIVER_FEATURE_SELECT, 0);
    w32(CC_DRIVER_FEATURE, 0);
    w32(CC_DRIVER_FEATURE_SELECT, 1);
    w32(CC_DRIVER_FEATURE, 1);                      /* VIRTIO_F_VERSION_1 */
    w8(CC_DEVICE_STATUS, ST_ACK | ST_DRIVER | ST_FEATURES_OK);
    if (!(r8(CC_DEVICE_STATUS) & ST_FEATURES_OK)) {
        return fail("FEATURES_OK refused");
    }
    w8(CC_DEVICE_STATUS, ST_ACK | ST_DRIVER | ST_FEATURES_OK | ST_DRIVER_OK);
    /* ... then queue 0 enabled after DRIVER_OK with rings far outside RAM. */
    w16(CC_QUEUE_SELECT, 0);
    w64(CC_QUEUE_DESC, 0xfff000000000ull);
    w64(CC_QUEUE_DRIVER, 0xfff000010000ull);
    w64(CC_QUEUE_DEVICE, 0xfff000020000ull);
    w16(CC_QUEUE_ENABLE, 1);
    uint8_t broken = r8(CC_DEVICE_STATUS);
    w8(CC_DEVICE_STATUS, 0);
    uint8_t after = r8(CC_DEVICE_STATUS);
    printf("VMMKIT-POKE status=0x%02x after-reset=0x%02x\n", broken, after);
    munmap(map, (size_t)st.st_size);
    close(rfd);
    close(cfg);
    /* Give the device back to Linux: it must probe and work again. */
    if (write_str("/sys/bus/pci/drivers/virtio-pci/bind", dev) < 0) {
        return fail("cannot bind virtio-pci again");
    }
    if (!(broken & ST_NEEDS_RESET)) {
        return fail("the device did not ask for a reset");
    }
    if (after != 0) {
        return fail("reset did not clear the status");
    }
    printf("VMMKIT-POKE-OK\n");
    fflush(stdout);
    return 0;
}
