/* SPDX-License-Identifier: MIT */
/*
 * A hostile virtio driver for the test guest (statically linked): it
 * unbinds Linux's driver from a virtio PCI function, drives the modern
 * transport's common configuration itself through the BAR mapped from
 * sysfs, and breaks the protocol the way a malicious guest would.  The
 * device must answer DEVICE_NEEDS_RESET (and raise its config interrupt),
 * come back to 0 on reset, and work again for Linux's driver once it is
 * bound back.
 *
 *   vmmkit-virtio-poke        virtio-blk: queue 0 enabled after DRIVER_OK,
 *                             with rings outside guest RAM
 *   vmmkit-virtio-poke net    virtio-net: proper rings (in a page of this
 *                             process, its guest-physical address from
 *                             /proc/self/pagemap) on the transmit queue,
 *                             then a frame of 4 bytes, shorter than the
 *                             virtio-net header, and the doorbell
 *   -> "VMMKIT-POKE[-NET] status=0x.. after-reset=0x.." and
 *      "VMMKIT-POKE[-NET]-OK", or "VMMKIT-POKE-FAIL <why>"; the device is
 *      left bound to virtio-pci.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
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
#define CC_QUEUE_SIZE            0x18
#define CC_QUEUE_ENABLE          0x1c
#define CC_QUEUE_NOTIFY_OFF      0x1e
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

/* The modern virtio function 1af4:@id, by its sysfs name. */
static int find_fn(long id, char *out, size_t len)
{
    DIR *d = opendir(PCI_DEVS);
    struct dirent *e;
    int found = -1;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] != '.' && read_hex(e->d_name, "vendor") == 0x1af4 &&
            read_hex(e->d_name, "device") == id) {
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

/* A virtio capability's BAR and offset (@type 1 common, 2 notify, whose
 * multiplier goes to *@mult), from the capability list. */
static int find_cap(int cfg, int type, int *bar, uint32_t *off, uint32_t *mult)
{
    uint8_t c[256];
    if (pread(cfg, c, sizeof(c), 0) != (ssize_t)sizeof(c) || !(c[6] & 0x10)) {
        return -1;
    }
    for (unsigned p = c[0x34] & ~3u, n = 0; p && p < 0xf0 && n < 48; p = c[p + 1] & ~3u, n++) {
        if (c[p] == 0x09 && c[p + 3] == type) {     /* vendor cap of that type */
            *bar = c[p + 4];
            memcpy(off, &c[p + 8], 4);
            if (mult) {
                memcpy(mult, &c[p + 16], 4);
            }
            return *bar < 6 ? 0 : -1;
        }
    }
    return -1;
}

static int find_common(int cfg, int *bar, uint32_t *off)
{
    return find_cap(cfg, 1, bar, off, NULL);
}

/* A locked page of ours and its guest-physical address. */
static uint8_t *phys_page(uint64_t *pa)
{
    uint8_t *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_LOCKED,
                      -1, 0);
    if (p == MAP_FAILED) {
        return NULL;
    }
    memset(p, 0, 4096);
    int fd = open("/proc/self/pagemap", O_RDONLY);
    uint64_t e = 0;
    if (fd < 0 || pread(fd, &e, 8, (off_t)((uintptr_t)p / 4096 * 8)) != 8 ||
        !(e & (1ull << 63)) || !(e & ((1ull << 55) - 1))) {
        return NULL;
    }
    close(fd);
    *pa = (e & ((1ull << 55) - 1)) * 4096;
    return p;
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

static volatile uint8_t *bar_map(const char *dev, int bar, uint32_t need)
{
    char path[600];
    snprintf(path, sizeof(path), PCI_DEVS "/%s/resource%d", dev, bar);
    int rfd = open(path, O_RDWR | O_SYNC);
    struct stat st;
    if (rfd < 0 || fstat(rfd, &st) < 0 || st.st_size < (off_t)need) {
        return NULL;
    }
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, rfd, 0);
    close(rfd);
    return map == MAP_FAILED ? NULL : map;
}

/* virtio-net: a well-formed transmit queue carrying a malformed frame. */
static uint8_t poke_net(const char *dev, int cfg)
{
    int bar;
    uint32_t off, mult;
    uint64_t pa;
    uint8_t *page = phys_page(&pa);
    if (find_cap(cfg, 2, &bar, &off, &mult) < 0 || !page) {
        return 0xff;
    }
    volatile uint8_t *nb = bar_map(dev, bar, off + 2);
    if (!nb) {
        return 0xfe;
    }
    w8(CC_DEVICE_STATUS, 0);
    w8(CC_DEVICE_STATUS, ST_ACK | ST_DRIVER);
    w32(CC_DRIVER_FEATURE_SELECT, 0);
    w32(CC_DRIVER_FEATURE, 0);
    w32(CC_DRIVER_FEATURE_SELECT, 1);
    w32(CC_DRIVER_FEATURE, 1);                      /* VIRTIO_F_VERSION_1 */
    w8(CC_DEVICE_STATUS, ST_ACK | ST_DRIVER | ST_FEATURES_OK);
    /* Queue 1 (transmit), 16 entries: descriptors at +0, the available
     * ring at +0x100, the used ring at +0x200, the frame at +0x400. */
    w16(CC_QUEUE_SELECT, 1);
    w16(CC_QUEUE_SIZE, 16);
    w64(CC_QUEUE_DESC, pa);
    w64(CC_QUEUE_DRIVER, pa + 0x100);
    w64(CC_QUEUE_DEVICE, pa + 0x200);
    w16(CC_QUEUE_ENABLE, 1);
    uint16_t noff = *(volatile uint16_t *)(cc + CC_QUEUE_NOTIFY_OFF);
    w8(CC_DEVICE_STATUS, ST_ACK | ST_DRIVER | ST_FEATURES_OK | ST_DRIVER_OK);
    uint64_t addr = pa + 0x400;
    memcpy(page, &addr, 8);                         /* desc[0].addr */
    uint32_t len = 4;                               /* < 12, the header's size */
    memcpy(page + 8, &len, 4);
    uint16_t ring[3] = { 0, 1, 0 };                 /* flags, idx = 1, ring[0] = 0 */
    memcpy(page + 0x100, ring, sizeof(ring));
    __sync_synchronize();
    *(volatile uint16_t *)(nb + off + noff * mult) = 1;
    uint8_t st = 0;
    for (int i = 0; i < 200 && !(st & ST_NEEDS_RESET); i++) {
        usleep(10000);
        st = r8(CC_DEVICE_STATUS);
    }
    return st;
}

/* The status the attack left (@broken), then a reset; the device goes back
 * to Linux, which must probe it and work again. */
static int finish(const char *tag, const char *dev, int cfg, uint8_t broken)
{
    w8(CC_DEVICE_STATUS, 0);
    uint8_t after = r8(CC_DEVICE_STATUS);
    printf("%s status=0x%02x after-reset=0x%02x\n", tag, broken, after);
    close(cfg);
    if (write_str("/sys/bus/pci/drivers/virtio-pci/bind", dev) < 0) {
        return fail("cannot bind virtio-pci again");
    }
    if (!(broken & ST_NEEDS_RESET)) {
        return fail("the device did not ask for a reset");
    }
    if (after != 0) {
        return fail("reset did not clear the status");
    }
    printf("%s-OK\n", tag);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    char dev[256], path[600];
    bool net = argc > 1 && !strcmp(argv[1], "net");
    const char *tag = net ? "VMMKIT-POKE-NET" : "VMMKIT-POKE";
    if (find_fn(net ? 0x1041 : 0x1042, dev, sizeof(dev)) < 0) {
        return fail(net ? "no virtio-net PCI function" : "no virtio-blk PCI function");
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
    volatile uint8_t *map = bar_map(dev, bar, off + 0x38);
    if (!map) {
        return fail("cannot map the BAR");
    }
    cc = map + off;
    if (net) {
        uint8_t broken = poke_net(dev, cfg);
        if (broken == 0xff || broken == 0xfe) {
            return fail("no notify capability, page or BAR");
        }
        return finish(tag, dev, cfg, broken);
    }

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
    return finish(tag, dev, cfg, r8(CC_DEVICE_STATUS));
}
