/* SPDX-License-Identifier: MIT */
/*
 * Real KVM, a Linux guest on the network: virtio-net on a tap and
 * vhost-vsock, put into the machine with vmm_machine_add_virtio().
 *   test-net-linux VMLINUZ INITRAMFS NETCHECK
 *
 * The test moves into a network namespace of its own first, so the tap
 * and the addresses (fd00:7e57::1 here, ::2 in the guest, a /64 that no
 * route leads out of) exist only there.  The guest's /init (mode net, see
 * tools/guest/init) and this program take turns, each step a console line:
 * ping both ways, 4 MiB over TCP each way and 1 MiB over vsock each way
 * with the checksum checked by both ends (tools/guest/netcheck.c runs on
 * both sides), the link taken down and up from the host (the guest sees
 * its carrier go and come back), then a guest reboot with a TCP stream in
 * flight.  The second boot (mode net-reboot) has a fresh device on the
 * same tap: a hostile driver (tools/guest/virtio-poke.c net) sends a frame
 * shorter than the virtio-net header on proper rings - the device must ask
 * for a reset, and after it work again for Linux (ping both ways, 1 MiB
 * over TCP).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "vmmkit/vmmkit.h"

#define TAP "vmt0"
#define GUEST_CID 42
#define OUT_MAX (1 << 20)

extern char **environ;

static const char *kernel, *initrd, *netcheck;
static int tap_fd = -1;
static VmmIOThread *io;

typedef struct Boot {
    VmmMachine *m;
    VmmVirtioNet *net;
    VmmVhostVsock *vs;
    int con[2];
    char *out;
    size_t len;
    int state;
    char msg[256];
    uint64_t mmio_doorbells;        /* the machine's stats at the end */
    uint64_t irqfd_signals;
} Boot;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void drain(Boot *b)
{
    for (;;) {
        ssize_t n = read(b->con[0], b->out + b->len, OUT_MAX - 1 - b->len);
        if (n <= 0) {
            break;
        }
        fwrite(b->out + b->len, 1, (size_t)n, stderr);
        b->len += (size_t)n;
        b->out[b->len] = '\0';
    }
}

static void boot_start(Boot *b, const char *mode)
{
    memset(b, 0, sizeof(*b));
    b->out = calloc(1, OUT_MAX);
    assert_int_equal(pipe2(b->con, O_CLOEXEC), 0);
    fcntl(b->con[0], F_SETFL, O_NONBLOCK);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "console=ttyS0 quiet panic=-1 vmmkit.mode=%s", mode);
    VmmMachineOptions o = { .size = sizeof(o), .kernel = kernel, .initrd = initrd,
                            .cmdline = cmd, .memory = 256ull << 20, .cpus = 1,
                            .console_out_fd = b->con[1] };
    int err = 0;
    b->m = vmm_machine_new(&o, &err);
    assert_non_null(b->m);
    VmmAioContext *ctx = vmm_iothread_get_context(io);
    VmmVirtioNetOptions no = { .size = sizeof(no), .name = "net0", .tap_fd = tap_fd,
                               .has_mac = true, .mac = { 0x52, 0x54, 0, 0x7e, 0x57, 2 },
                               .ctx = ctx };
    b->net = vmm_virtio_net_new(vmm_machine_guest_memory(b->m), &no, &err);
    assert_non_null(b->net);
    VmmMachineVirtioOptions vo = { .size = sizeof(vo), .pci_class = 0x020000, .context = ctx };
    assert_int_equal(vmm_machine_add_virtio(b->m, vmm_virtio_net_get_virtio(b->net), &vo), 0);
    VmmVhostVsockOptions so = { .size = sizeof(so), .guest_cid = GUEST_CID, .ctx = ctx };
    b->vs = vmm_vhost_vsock_new(vmm_machine_guest_memory(b->m), &so, &err);
    if (!b->vs) {
        fail_msg("vhost-vsock: %s", vmm_strerror(err));
    }
    vo.pci_class = 0;
    assert_int_equal(vmm_machine_add_virtio(b->m, vmm_vhost_vsock_get_virtio(b->vs), &vo), 0);
    assert_int_equal(vmm_machine_start(b->m), 0);
}

/* Until the console shows @marker (true) or the machine ends or @timeout
 * seconds pass (false). */
static bool wait_for(Boot *b, const char *marker, double timeout)
{
    double end = now() + timeout;
    while (now() < end) {
        drain(b);
        if (strstr(b->out, marker)) {
            return true;
        }
        struct pollfd p[2] = { { .fd = b->con[0], .events = POLLIN },
                               { .fd = vmm_machine_event_fd(b->m), .events = POLLIN } };
        poll(p, 2, 100);
        if (p[1].revents) {
            drain(b);
            return strstr(b->out, marker) != NULL;
        }
    }
    fprintf(stderr, "# no '%s' after %.0f s\n", marker, timeout);
    return false;
}

static void boot_end(Boot *b, double timeout)
{
    double end = now() + timeout;
    for (;;) {
        struct pollfd p = { .fd = vmm_machine_event_fd(b->m), .events = POLLIN };
        poll(&p, 1, 100);
        drain(b);
        if (p.revents) {
            break;
        }
        if (now() > end) {
            vmm_machine_stop(b->m);
            break;
        }
    }
    b->state = vmm_machine_wait(b->m, -1, b->msg, sizeof(b->msg));
    drain(b);
    VmmMachineStats ms = { .size = sizeof(ms) };
    assert_int_equal(vmm_machine_get_stats(b->m, &ms), 0);
    fprintf(stderr, "# machine: irqfd_signals=%" PRIu64 " msi_injections=%" PRIu64
            " msix_pended=%" PRIu64 " mmio_doorbells=%" PRIu64 " irqfd_vectors=%u"
            " ioeventfd_queues=%u\n", ms.irqfd_signals, ms.msi_injections, ms.msix_pended,
            ms.mmio_doorbells, ms.irqfd_vectors, ms.ioeventfd_queues);
    b->mmio_doorbells = ms.mmio_doorbells;
    b->irqfd_signals = ms.irqfd_signals;
    VmmVirtioNetStats st = { .size = sizeof(st) };
    vmm_virtio_net_get_stats(b->net, &st);
    fprintf(stderr, "# boot ended: %s; net: tx %" PRIu64 " pkts %" PRIu64 " B (%" PRIu64
            " dropped), rx %" PRIu64 " pkts %" PRIu64 " B (%" PRIu64 " dropped, %" PRIu64
            " stalls)\n", b->msg, st.tx_packets, st.tx_bytes, st.tx_dropped, st.rx_packets,
            st.rx_bytes, st.rx_dropped, st.rx_stalls);
    vmm_machine_free(b->m);
    vmm_virtio_net_free(b->net);
    vmm_vhost_vsock_free(b->vs);
    close(b->con[0]);
    close(b->con[1]);
}

/* netcheck on the host side, its output in @log. */
static pid_t spawn_netcheck(const char *log, const char *a1, const char *a2, const char *a3,
                            const char *a4)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    char *argv[] = { (char *)netcheck, (char *)a1, (char *)a2, (char *)a3, (char *)a4, NULL };
    pid_t pid;
    assert_int_equal(posix_spawn(&pid, netcheck, &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    return pid;
}

/* Wait (<= @timeout s, driving the console) for @pid: true when it exited
 * 0 and its log says OK. */
static bool netcheck_ok(Boot *b, pid_t pid, const char *log, double timeout)
{
    double end = now() + timeout;
    int st = -1;
    while (waitpid(pid, &st, WNOHANG) == 0) {
        if (now() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            break;
        }
        drain(b);
        usleep(20000);
    }
    char text[512] = "";
    FILE *f = fopen(log, "r");
    if (f) {
        size_t n = fread(text, 1, sizeof(text) - 1, f);
        text[n] = '\0';
        fclose(f);
    }
    fprintf(stderr, "# host %s", text);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 && strstr(text, " OK ");
}

static int sh(const char *cmd)
{
    int r = system(cmd);
    fprintf(stderr, "# host: %s -> %d\n", cmd, r);
    return r;
}

/* The tap's carrier as the host sees it: IFF_RUNNING (sysfs shows the
 * namespace it was mounted in, not ours). */
static bool host_carrier(int want)
{
    for (int i = 0; i < 500; i++) {             /* linkwatch may take a second */
        int s = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct ifreq ifr = { .ifr_name = TAP };
        int c = s >= 0 && ioctl(s, SIOCGIFFLAGS, &ifr) == 0 ? !!(ifr.ifr_flags & IFF_RUNNING) : -1;
        if (s >= 0) {
            close(s);
        }
        if (c == want) {
            return true;
        }
        usleep(20000);
    }
    return false;
}

static void test_net_linux(void **state)
{
    (void)state;
    Boot b;
    pid_t rx_tcp = spawn_netcheck("/tmp/nc-5001.log", "tcp-recv", "5001", NULL, NULL);
    pid_t rx_vsock = spawn_netcheck("/tmp/nc-6001.log", "vsock-recv", "6001", NULL, NULL);
    pid_t rx_stream = spawn_netcheck("/tmp/nc-5003.log", "tcp-recv", "5003", NULL, NULL);

    boot_start(&b, "net");
    assert_true(wait_for(&b, "VMMKIT-PING-OK", 400));               /* guest -> host */
    assert_int_equal(sh("ping6 -c 3 -w 60 fd00:7e57::2 >/dev/null"), 0);   /* host -> guest */

    /* 4 MiB each way over TCP, checksums checked at both ends. */
    assert_true(wait_for(&b, "NETCHECK tcp-recv LISTENING port=5002", 120));
    pid_t tx_tcp = spawn_netcheck("/tmp/nc-5002.log", "tcp-send", "fd00:7e57::2", "5002",
                                  "4194304");
    assert_true(netcheck_ok(&b, tx_tcp, "/tmp/nc-5002.log", 300));
    assert_true(netcheck_ok(&b, rx_tcp, "/tmp/nc-5001.log", 300));
    assert_true(wait_for(&b, "NETCHECK tcp-send OK len=4194304", 60));
    assert_true(wait_for(&b, "NETCHECK tcp-recv OK len=4194304", 60));

    /* 1 MiB each way over vsock. */
    assert_true(wait_for(&b, "NETCHECK vsock-recv LISTENING port=6002", 120));
    char cid[16];
    snprintf(cid, sizeof(cid), "%d", GUEST_CID);
    pid_t tx_vsock = spawn_netcheck("/tmp/nc-6002.log", "vsock-send", cid, "6002", "1048576");
    assert_true(netcheck_ok(&b, tx_vsock, "/tmp/nc-6002.log", 300));
    assert_true(netcheck_ok(&b, rx_vsock, "/tmp/nc-6001.log", 300));
    assert_true(wait_for(&b, "NETCHECK vsock-send OK len=1048576", 60));
    assert_true(wait_for(&b, "NETCHECK vsock-recv OK len=1048576", 60));

    /* Link down and up from the host: the guest's carrier and the tap's follow. */
    assert_true(wait_for(&b, "VMMKIT-LINK-WAIT", 60));
    assert_int_equal(vmm_virtio_net_set_link(b.net, false), 0);
    assert_true(wait_for(&b, "VMMKIT-CARRIER-DOWN", 120));
    assert_true(host_carrier(0));
    assert_int_equal(vmm_virtio_net_set_link(b.net, true), 0);
    assert_true(wait_for(&b, "VMMKIT-CARRIER-UP", 120));
    assert_true(host_carrier(1));
    assert_true(wait_for(&b, "VMMKIT-PING2-OK", 120));

    /* A reboot with a stream in flight on the device. */
    assert_true(wait_for(&b, "VMMKIT-REBOOTING", 60));
    boot_end(&b, 120);
    assert_int_equal(b.state, VMM_MACHINE_REBOOT);
    assert_null(strstr(b.out, "VMMKIT-FAIL"));
    /* The fast paths: no doorbell exited to the VMM (all ioeventfds), the
     * interrupts went through irqfds. */
    assert_int_equal(b.mmio_doorbells, 0);
    assert_true(b.irqfd_signals > 0);
    free(b.out);
    kill(rx_stream, SIGKILL);
    waitpid(rx_stream, NULL, 0);

    /* The second boot: a fresh device on the same tap. */
    boot_start(&b, "net-reboot");
    assert_true(wait_for(&b, "VMMKIT-POKE-NET-OK", 400));          /* hostile driver */
    assert_true(wait_for(&b, "VMMKIT-PING-OK", 120));
    assert_int_equal(sh("ping6 -c 2 -w 60 fd00:7e57::2 >/dev/null"), 0);
    assert_true(wait_for(&b, "NETCHECK tcp-recv LISTENING port=5004", 120));
    pid_t tx2 = spawn_netcheck("/tmp/nc-5004.log", "tcp-send", "fd00:7e57::2", "5004",
                               "1048576");
    assert_true(netcheck_ok(&b, tx2, "/tmp/nc-5004.log", 300));
    assert_true(wait_for(&b, "NETCHECK tcp-recv OK len=1048576", 60));
    boot_end(&b, 120);
    assert_int_equal(b.state, VMM_MACHINE_POWEROFF);
    assert_null(strstr(b.out, "VMMKIT-FAIL"));
    free(b.out);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: test-net-linux VMLINUZ INITRAMFS NETCHECK\n");
        return 2;
    }
    kernel = argv[1];
    initrd = argv[2];
    netcheck = argv[3];
    /* Everything network below lives in a namespace of our own. */
    if (unshare(CLONE_NEWNET) < 0) {
        perror("unshare(CLONE_NEWNET)");
        return 1;
    }
    /* No duplicate address detection on the tap (busybox ip has no nodad). */
    FILE *f = fopen("/proc/sys/net/ipv6/conf/default/accept_dad", "w");
    if (!f || fputs("0", f) < 0 || fclose(f) != 0) {
        perror("accept_dad");
        return 1;
    }
    tap_fd = vmm_virtio_net_open_tap(TAP);
    if (tap_fd < 0) {
        fprintf(stderr, "tap %s: %s\n", TAP, vmm_strerror(tap_fd));
        return 1;
    }
    if (sh("ip link set lo up && ip link set " TAP " up && "
           "ip -6 addr add fd00:7e57::1/64 dev " TAP) != 0) {
        return 1;
    }
    io = vmm_iothread_new("net-io", NULL, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_net_linux),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    vmm_iothread_destroy(io);
    close(tap_fd);
    return r;
}
