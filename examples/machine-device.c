/* SPDX-License-Identifier: MIT */
/*
 * A device of your own in vmmkit's x86 machine: a port-I/O "hasher" that
 * a program inside the guest feeds bytes to and reads a hash from.
 *
 *   machine-device KERNEL INITRD [KERNEL ARGUMENTS...]
 *
 * The device decodes ports 0x510-0x517, added with
 * vmm_machine_add_io_region() before the machine starts:
 *   0x510  write 1 byte: hash it in (FNV-1a, 32 bits)
 *   0x511  write: start again
 *   0x514  read 4 bytes: the hash so far
 * The machine calls the callbacks on the vCPU thread that made the access,
 * one at a time for this region, and tells the guest through ACPI that
 * the ports are taken (a PNP0C02 device: /proc/ioports shows them).
 *
 * The guest program (machine-device-guest.c, in the demo initramfs, run by
 * its `vmmkit.mode=userdev`) writes a message to the device and prints
 * "VMMKIT-USERDEV hash=XXXXXXXX" with the hash it read back.  This program
 * copies the serial console to stdout and exits 0 when the guest powered
 * off after printing the hash the device computed.  Needs /dev/kvm.
 *
 * Build: cc machine-device.c $(pkg-config --cflags --libs vmmkit) -o machine-device
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vmmkit/vmmkit.h>

#define HASHER_PORT 0x510
#define FNV_BASIS 0x811c9dc5u

typedef struct Hasher {
    uint32_t hash;
    uint64_t bytes;
} Hasher;

/* vCPU threads, one at a time (the machine holds the region's lock). */
static uint64_t hasher_read(void *opaque, uint64_t off, unsigned size)
{
    Hasher *h = opaque;
    (void)size;
    return off == 4 ? h->hash : 0;
}

static void hasher_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
    Hasher *h = opaque;
    (void)size;
    if (off == 0) {
        h->hash = (h->hash ^ (uint8_t)val) * 16777619u;
        h->bytes++;
    } else if (off == 1) {
        h->hash = FNV_BASIS;
        h->bytes = 0;
    }
}

static const VmmMachineIoOps hasher_ops = {
    .size = sizeof(hasher_ops), .read = hasher_read, .write = hasher_write,
};

/* The serial console, copied to stdout and kept for the final check. */
typedef struct Console {
    int fd;
    char out[65536];
    size_t len;
} Console;

static void *console_main(void *opaque)
{
    Console *c = opaque;
    char buf[1024];
    ssize_t n;
    while ((n = read(c->fd, buf, sizeof(buf))) > 0) {
        fwrite(buf, 1, (size_t)n, stdout);
        fflush(stdout);
        size_t take = (size_t)n < sizeof(c->out) - 1 - c->len ? (size_t)n
                                                              : sizeof(c->out) - 1 - c->len;
        memcpy(c->out + c->len, buf, take);
        c->len += take;
        c->out[c->len] = '\0';
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s KERNEL INITRD [KERNEL ARGS...]\n", argv[0]);
        return 2;
    }
    char cmdline[1024] = "console=ttyS0 quiet panic=-1 pci=noearly";
    for (int i = 3; i < argc; i++) {
        strncat(cmdline, " ", sizeof(cmdline) - strlen(cmdline) - 1);
        strncat(cmdline, argv[i], sizeof(cmdline) - strlen(cmdline) - 1);
    }
    int pipefd[2];
    if (pipe(pipefd) < 0) {
        return 1;
    }
    static Console con;
    con.fd = pipefd[0];
    pthread_t console_thread;
    pthread_create(&console_thread, NULL, console_main, &con);

    VmmMachineOptions opts = {
        .size = sizeof(opts), .kernel = argv[1], .initrd = argv[2], .cmdline = cmdline,
        .memory = 256ull << 20, .cpus = 1, .console_out_fd = pipefd[1],
    };
    int err = 0;
    VmmMachine *m = vmm_machine_new(&opts, &err);
    if (!m) {
        fprintf(stderr, "machine-device: %s\n", vmm_strerror(err));
        return 1;
    }
    /* The device: eight ports, before start. */
    Hasher h = { .hash = FNV_BASIS };
    err = vmm_machine_add_io_region(m, true, HASHER_PORT, 8, &hasher_ops, &h);
    err = err ?: vmm_machine_start(m);
    if (err) {
        fprintf(stderr, "machine-device: %s\n", vmm_strerror(err));
        vmm_machine_free(m);
        return 1;
    }
    char why[256];
    int st = vmm_machine_wait(m, -1, why, sizeof(why));
    vmm_machine_free(m);                    /* no vCPU calls the device any more */
    close(pipefd[1]);
    pthread_join(console_thread, NULL);
    close(pipefd[0]);

    char expect[64];
    snprintf(expect, sizeof(expect), "VMMKIT-USERDEV hash=%08" PRIx32, h.hash);
    fprintf(stderr, "machine-device: the machine ended: %s (%s); the device hashed %" PRIu64
            " bytes to %08" PRIx32 "\n",
            st < 0 ? vmm_strerror(st) : vmm_machine_state_name(st), why, h.bytes, h.hash);
    if (h.bytes == 0 || !strstr(con.out, expect)) {
        fprintf(stderr, "machine-device: the guest never printed '%s'\n", expect);
        return 1;
    }
    /* The demo guest also shows /proc/ioports: the ACPI tables told Linux
     * the ports are taken (by a "pnp" motherboard-resource device). */
    if (strstr(con.out, "VMMKIT-IOPORTS") && !strstr(con.out, "0510-0517 : pnp")) {
        fprintf(stderr, "machine-device: the guest did not see the ports reserved\n");
        return 1;
    }
    return st == VMM_MACHINE_POWEROFF ? 0 : 1;
}
