/* SPDX-License-Identifier: MIT */
/*
 * Boot a Linux kernel with a disk through vmmkit's x86 machine (machine.h).
 *
 *   machine-boot KERNEL INITRD DISK [--expect TEXT] [KERNEL ARGUMENTS...]
 *
 * KERNEL is a bzImage or an uncompressed vmlinux; DISK is a raw image file
 * (created with 64 MiB if it does not exist) that the guest sees as
 * /dev/vda (virtio-blk over PCI).  The guest's serial console is copied to
 * stdout.  The program exits 0 when the guest powered off - and, with
 * --expect, printed TEXT on its console.  Needs /dev/kvm.
 *
 * Build: cc machine-boot.c $(pkg-config --cflags --libs vmmkit) -o machine-boot
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vmmkit/vmmkit.h>

/* Copies the console from a pipe to stdout and looks for a text in it. */
typedef struct Console {
    int fd;
    const char *expect;
    bool seen;
    char tail[4096];        /* the end of the output so far */
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
        if (!c->expect || c->seen) {
            continue;
        }
        /* Keep the last bytes, so a text split over two reads is found. */
        if (c->len + (size_t)n >= sizeof(c->tail)) {
            size_t keep = 512 < c->len ? 512 : c->len;
            memmove(c->tail, c->tail + c->len - keep, keep);
            c->len = keep;
        }
        size_t take = (size_t)n < sizeof(c->tail) - c->len - 1 ? (size_t)n
                                                                : sizeof(c->tail) - c->len - 1;
        memcpy(c->tail + c->len, buf + n - take, take);
        c->len += take;
        c->tail[c->len] = '\0';
        c->seen = strstr(c->tail, c->expect) != NULL;
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s KERNEL INITRD DISK [--expect TEXT] [KERNEL ARGS...]\n",
                argv[0]);
        return 2;
    }
    Console con = { 0 };
    int argi = 4;
    if (argc > 5 && strcmp(argv[4], "--expect") == 0) {
        con.expect = argv[5];
        argi = 6;
    }
    /* The kernel command line: a serial console, no reboot on panic. */
    char cmdline[1024] = "console=ttyS0 quiet panic=-1 pci=noearly";
    for (; argi < argc; argi++) {
        strncat(cmdline, " ", sizeof(cmdline) - strlen(cmdline) - 1);
        strncat(cmdline, argv[argi], sizeof(cmdline) - strlen(cmdline) - 1);
    }

    /* A raw disk image, created sparse when missing. */
    int dfd = open(argv[3], O_RDWR | O_CREAT, 0644);
    if (dfd < 0 || (lseek(dfd, 0, SEEK_END) == 0 && ftruncate(dfd, 64 << 20) < 0)) {
        perror(argv[3]);
        return 1;
    }
    close(dfd);

    int pipefd[2];
    if (pipe(pipefd) < 0) {
        return 1;
    }
    con.fd = pipefd[0];
    pthread_t console_thread;
    pthread_create(&console_thread, NULL, console_main, &con);

    /* The machine: 256 MiB, one vCPU, the console into our pipe. */
    VmmMachineOptions opts = {
        .size = sizeof(opts),
        .kernel = argv[1],
        .initrd = argv[2],
        .cmdline = cmdline,
        .memory = 256ull << 20,
        .cpus = 1,
        .console_out_fd = pipefd[1],
    };
    int err = 0;
    VmmMachine *m = vmm_machine_new(&opts, &err);
    if (!m) {
        fprintf(stderr, "machine-boot: %s\n", vmm_strerror(err));
        return 1;
    }
    err = vmm_machine_add_disk(m, argv[3], false);
    err = err ?: vmm_machine_start(m);
    if (err) {
        fprintf(stderr, "machine-boot: %s\n", vmm_strerror(err));
        vmm_machine_free(m);
        return 1;
    }

    /* Wait until the guest powers off, reboots or crashes. */
    char why[256];
    int st = vmm_machine_wait(m, -1, why, sizeof(why));
    vmm_machine_free(m);
    close(pipefd[1]);                       /* the console thread sees EOF */
    pthread_join(console_thread, NULL);
    close(pipefd[0]);

    fprintf(stderr, "machine-boot: the machine ended: %s (%s)\n",
            st < 0 ? vmm_strerror(st) : vmm_machine_state_name(st), why);
    if (con.expect && !con.seen) {
        fprintf(stderr, "machine-boot: the guest never printed '%s'\n", con.expect);
        return 1;
    }
    return st == VMM_MACHINE_POWEROFF ? 0 : 1;
}
