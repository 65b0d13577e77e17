/* SPDX-License-Identifier: MIT */
/*
 * Real KVM: snapshot a running Linux guest and restore it in new processes.
 *   test-snapshot VMLINUZ INITRAMFS
 *
 * The guest runs /init's `soak` workload, which checks itself: each round
 * writes a block to its disk and reads it back, re-checks a pattern in
 * memory, and prints "VMMKIT-COUNT n".  A source process boots it, pauses
 * it mid-run, writes a snapshot and is killed (SIGKILL).  Three restore
 * processes then build machines from that one file (clones), each on its
 * own copy of the disk as the source left it: the guest must go on from
 * the source's last round (n+1, n+2, ... on the console, the partial line
 * the source printed included), its own checks must pass, the disk must
 * hold what the guest wrote.  Corrupt, truncated and mismatched snapshots
 * are refused with their reason.
 *
 * The child modes (this program, re-executed):
 *   --source VMLINUZ INITRAMFS DISK SNAP   boot, snapshot at round >= 3, die
 *   --restore SNAP DISK ROUNDS             restore, run ROUNDS rounds, stop
 *   --dev-source VMLINUZ INITRAMFS SNAP NETCHECK
 *                                          a guest with virtio-rng, a virtio
 *                                          console and virtio-net on a tap,
 *                                          a TCP stream to it under way,
 *                                          snapshot, die
 *   --dev-restore SNAP NETCHECK            restore it, use the devices
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "vmmkit/vmmkit.h"

#define OUT_MAX (1 << 20)
#define DISK_SIZE (8 << 20)
#define MEM (256ull << 20)

static const char *kernel, *initrd, *netcheck;
static char self[4096];

/* The tap of the devices test, in the test's own network namespace. */
#define DEV_TAP "vms0"
/* The guest's vsock CID before and after the restore: it learns the new
 * one only from the transport reset event (its packets to the host carry
 * the CID it believes, and the kernel drops those with another). */
#define DEV_CID 43
#define DEV_CID_STR "43"
#define DEV_CID_RESTORED 44
#define DEV_CID_RESTORED_STR "44"
/* The stream in flight across the snapshot: long enough to be. */
#define STREAM_LEN "33554432"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- Console bookkeeping (both sides) ---------------------------------------- */

typedef struct Console {
    char buf[OUT_MAX];
    size_t len;
} Console;

/* Read what is there; echo it to @echo_fd (-1: no). */
static void con_drain(int fd, Console *c, int echo_fd)
{
    for (;;) {
        ssize_t n = read(fd, c->buf + c->len, OUT_MAX - 1 - c->len);
        if (n <= 0) {
            break;
        }
        if (echo_fd >= 0) {
            ssize_t w = write(echo_fd, c->buf + c->len, (size_t)n);
            (void)w;
        }
        c->len += (size_t)n;
        c->buf[c->len] = '\0';
    }
}

/* The last complete "VMMKIT-COUNT n" line's n, or -1. */
static long last_count(const char *s)
{
    long last = -1;
    for (const char *p = s; (p = strstr(p, "VMMKIT-COUNT ")); p++) {
        char *end;
        long n = strtol(p + 13, &end, 10);
        if (*end == '\n' || (*end == '\r' && end[1] == '\n')) {
            last = n;
        }
    }
    return last;
}

static int count_lines(const char *s, long *first, long *last, bool *consecutive)
{
    int n = 0;
    long prev = -1;
    *consecutive = true;
    for (const char *p = s; (p = strstr(p, "VMMKIT-COUNT ")); p++) {
        char *end;
        long v = strtol(p + 13, &end, 10);
        if (*end != '\n' && *end != '\r') {
            continue;               /* a partial line at the end */
        }
        if (n == 0) {
            *first = v;
        } else if (v != prev + 1) {
            *consecutive = false;
        }
        prev = v;
        *last = v;
        n++;
    }
    return n;
}

static int open_console(int p[2])
{
    if (pipe2(p, O_CLOEXEC) < 0) {
        return -1;
    }
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    return 0;
}

/* ---- Child: the source ---------------------------------------------------------- */

static VmmMachine *boot_to_round3(const char *vmlinuz, const char *initramfs,
                                  const char *disk, int p[2], Console *con);
static void write_file(const char *path, const char *text);

static int run_source(const char *vmlinuz, const char *initramfs, const char *disk,
                      const char *snap)
{
    static Console con;
    int p[2];
    VmmMachine *m = boot_to_round3(vmlinuz, initramfs, disk, p, &con);
    if (!m) {
        return 11;
    }
    if (vmm_machine_pause(m) < 0) {
        printf("\nSOURCE-ERROR pause\n");
        return 13;
    }
    con_drain(p[0], &con, STDOUT_FILENO);
    int fd = open(snap, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    double t1 = now();
    int r = fd < 0 ? -errno : vmm_machine_snapshot(m, fd);
    double t2 = now();
    if (r < 0) {
        printf("\nSOURCE-ERROR snapshot: %s\n", vmm_strerror(r));
        return 14;
    }
    close(fd);
    /* The partial line the guest was printing when it stopped. */
    const char *nl = strrchr(con.buf, '\n');
    const char *tail = nl ? nl + 1 : con.buf;
    char tpath[4200];
    snprintf(tpath, sizeof(tpath), "%s.tail", snap);
    FILE *tf = fopen(tpath, "w");
    if (!tf) {
        return 15;
    }
    fputs(tail, tf);
    fclose(tf);
    printf("\nSOURCE-SNAPSHOT count=%ld ms=%.1f\n", last_count(con.buf), (t2 - t1) * 1e3);
    fflush(stdout);
    raise(SIGKILL);                         /* the source dies, no clean-up */
    return 16;
}

/* Run @m until the console shows @rounds more complete rounds (0: one
 * poll), a failure or a timeout; stop it when @rounds > 0.  0 or a code. */
static int run_rounds(VmmMachine *m, int con_fd, Console *con, int rounds)
{
    long first = -1, last = -1;
    bool consecutive;
    double t1 = now();
    int ret = 0;
    do {
        struct pollfd pf[2] = { { .fd = con_fd, .events = POLLIN },
                                { .fd = vmm_machine_event_fd(m), .events = POLLIN } };
        poll(pf, 2, 200);
        con_drain(con_fd, con, STDOUT_FILENO);
        if (pf[1].revents || strstr(con->buf, "VMMKIT-FAIL")) {
            ret = 23;
            break;
        }
        if (now() - t1 > 150) {
            ret = 24;
            break;
        }
    } while (rounds > 0 && count_lines(con->buf, &first, &last, &consecutive) < rounds);
    if (rounds > 0) {
        vmm_machine_stop(m);
        vmm_machine_wait(m, -1, NULL, 0);
        con_drain(con_fd, con, STDOUT_FILENO);
        vmm_machine_free(m);
    }
    return ret;
}

/* ---- Child: a restore ----------------------------------------------------------- */

static int run_restore(const char *snap, const char *disk, int rounds)
{
    static Console con;
    int p[2];
    if (open_console(p) < 0) {
        return 20;
    }
    double t0 = now();
    int fd = open(snap, O_RDONLY | O_CLOEXEC);
    VmmMachineOptions o = { .size = sizeof(o), .console_out_fd = p[1] };
    int err = 0;
    VmmMachine *m = fd < 0 ? NULL : vmm_machine_restore(&o, fd, &err);
    if (fd >= 0) {
        close(fd);
    }
    if (!m) {
        printf("\nRESTORE-ERROR restore: %s\n", vmm_strerror(err));
        return 21;
    }
    int r = vmm_machine_add_disk(m, disk, false);
    if (r == 0) {
        r = vmm_machine_start(m);
    }
    double t1 = now();
    if (r < 0) {
        printf("\nRESTORE-ERROR start: %s\n", vmm_strerror(r));
        return 22;
    }
    int ret = run_rounds(m, p[0], &con, rounds);
    printf("\nRESTORE-DONE status=%d restore_ms=%.1f\n", ret, (t1 - t0) * 1e3);
    return ret;
}

/* ---- Children: virtio-rng and virtio-console across a snapshot ------------------- */

/* Poll the serial console (@p0) and, if @hvc >= 0, the virtio console's
 * output into @hcon, until @want is on the serial console or @secs pass. */
static bool wait_for(VmmMachine *m, int p0, Console *con, int hvc, Console *hcon,
                     const char *want, double secs)
{
    double t0 = now();
    while (!strstr(con->buf, want)) {
        struct pollfd pf[3] = { { .fd = p0, .events = POLLIN },
                                { .fd = vmm_machine_event_fd(m), .events = POLLIN },
                                { .fd = hvc, .events = POLLIN } };
        poll(pf, hvc >= 0 ? 3 : 2, 200);
        con_drain(p0, con, STDOUT_FILENO);
        if (hvc >= 0) {
            con_drain(hvc, hcon, -1);
        }
        if (pf[1].revents || now() - t0 > secs || strstr(con->buf, "VMMKIT-FAIL")) {
            return false;
        }
    }
    return true;
}

/* The machine's virtio devices: an RNG, a console reading @in[0] and
 * writing @out[1], virtio-net on the tap DEV_TAP (the parent made it
 * persistent in the test's network namespace), then vhost-vsock with CID
 * @cid, their queues in @io. */
static int add_devices(VmmMachine *m, int in[2], int out[2], VmmIOThread **io,
                       VmmVirtioNet **net, VmmVhostVsock **vs, uint64_t cid)
{
    if (pipe2(in, O_CLOEXEC) < 0 || open_console(out) < 0) {
        return -errno;
    }
    int r = vmm_machine_add_rng(m);
    r = r ?: vmm_machine_add_console(m, in[0], out[1]);
    if (r < 0) {
        return r;
    }
    *io = vmm_iothread_new("snap-net", NULL, &r);
    if (!*io) {
        return r;
    }
    VmmAioContext *ctx = vmm_iothread_get_context(*io);
    VmmVirtioNetOptions no = { .size = sizeof(no), .name = "net0", .tap_name = DEV_TAP,
                               .has_mac = true, .mac = { 0x52, 0x54, 0, 0x7e, 0x57, 2 },
                               .ctx = ctx };
    *net = vmm_virtio_net_new(vmm_machine_guest_memory(m), &no, &r);
    if (!*net) {
        return r;
    }
    VmmMachineVirtioOptions vo = { .size = sizeof(vo), .pci_class = 0x020000, .context = ctx };
    r = vmm_machine_add_virtio(m, vmm_virtio_net_get_virtio(*net), &vo);
    if (r < 0) {
        return r;
    }
    VmmVhostVsockOptions so = { .size = sizeof(so), .guest_cid = cid, .ctx = ctx };
    *vs = vmm_vhost_vsock_new(vmm_machine_guest_memory(m), &so, &r);
    if (!*vs) {
        return r;
    }
    vo.pci_class = 0;
    return vmm_machine_add_virtio(m, vmm_vhost_vsock_get_virtio(*vs), &vo);
}

/* netcheck on the host side (its output in @log), in this namespace. */
static pid_t spawn_netcheck(const char *log, char *const args[])
{
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0) {
            _exit(127);
        }
        execv(netcheck, args);
        _exit(127);
    }
    return pid;
}

/* @pid (a netcheck) exited 0 within @secs and its log says OK. */
static bool netcheck_ok(pid_t pid, const char *log, double secs)
{
    int st = -1;
    double t0 = now();
    while (waitpid(pid, &st, WNOHANG) == 0) {
        if (now() - t0 > secs) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            break;
        }
        usleep(50 * 1000);
    }
    char text[512] = "";
    FILE *f = fopen(log, "r");
    if (f) {
        text[fread(text, 1, sizeof(text) - 1, f)] = '\0';
        fclose(f);
    }
    printf("\nDEV-HOST-NETCHECK %s", text);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 && strstr(text, " OK ");
}

static int run_dev_source(const char *vmlinuz, const char *initramfs, const char *snap)
{
    static Console con;
    int p[2], in[2], out[2];
    if (open_console(p) < 0) {
        return 50;
    }
    VmmMachineOptions o = { .size = sizeof(o), .kernel = vmlinuz, .initrd = initramfs,
                            .cmdline = "console=ttyS0 quiet panic=-1 vmmkit.mode=devices-snap",
                            .memory = MEM, .cpus = 2, .console_out_fd = p[1] };
    int err = 0;
    VmmMachine *m = vmm_machine_new(&o, &err);
    VmmIOThread *io = NULL;
    VmmVirtioNet *net = NULL;
    VmmVhostVsock *vs = NULL;
    if (!m || (err = add_devices(m, in, out, &io, &net, &vs, DEV_CID)) < 0 ||
        (err = vmm_machine_start(m)) < 0) {
        printf("\nDEV-ERROR build or start: %s\n", vmm_strerror(err));
        return 51;
    }
    if (!wait_for(m, p[0], &con, -1, NULL, "VMMKIT-HVC-READY", 400) ||
        !wait_for(m, p[0], &con, -1, NULL, "NETCHECK tcp-recv LISTENING port=5013", 60) ||
        !wait_for(m, p[0], &con, -1, NULL, "NETCHECK vsock-recv LISTENING port=6013", 60)) {
        printf("\nDEV-ERROR the guest did not get to its console read\n");
        return 52;
    }
    /* A TCP stream to the guest, saved mid-way: its sender is not this
     * process's to end, it outlives the source and waits out the gap. */
    char *send_args[] = { (char *)netcheck, "tcp-send", "fd00:7e57::2", "5013", STREAM_LEN,
                          NULL };
    spawn_netcheck("dev-nc-5013.log", send_args);
    /* A vsock stream too: its connection lives in this host's kernel and
     * dies with the source; the restored guest must learn it (transport
     * reset) rather than wait on it forever. */
    char *vsend_args[] = { (char *)netcheck, "vsock-send", DEV_CID_STR, "6013", "1073741824",
                           NULL };
    pid_t vsend = spawn_netcheck("dev-nc-6013.log", vsend_args);
    char pidtext[32];
    snprintf(pidtext, sizeof(pidtext), "%d", (int)vsend);
    write_file("dev-nc-6013.pid", pidtext);
    VmmVirtioNetStats ns = { .size = sizeof(ns) };
    double t0 = now();
    while (vmm_virtio_net_get_stats(net, &ns) == 0 && ns.rx_bytes < (2u << 20) &&
           now() - t0 < 120) {
        usleep(20 * 1000);
    }
    con_drain(p[0], &con, STDOUT_FILENO);
    printf("\nDEV-STREAM-AT-SAVE rx_bytes=%llu\n", (unsigned long long)ns.rx_bytes);
    int fd = open(snap, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int r = vmm_machine_pause(m);
    r = r ?: (fd < 0 ? -errno : vmm_machine_snapshot(m, fd));
    if (r < 0) {
        printf("\nDEV-ERROR snapshot: %s\n", vmm_strerror(r));
        return 53;
    }
    printf("\nDEV-SNAPSHOT-OK\n");
    fflush(stdout);
    kill(getpid(), SIGKILL);        /* the source dies: nothing of it survives */
    return 54;
}

static int run_dev_restore(const char *snap)
{
    static Console con, hcon;
    int p[2], in[2], out[2];
    if (open_console(p) < 0) {
        return 60;
    }
    int fd = open(snap, O_RDONLY | O_CLOEXEC);
    VmmMachineOptions o = { .size = sizeof(o), .console_out_fd = p[1] };
    int err = 0;
    VmmMachine *m = fd < 0 ? NULL : vmm_machine_restore(&o, fd, &err);
    VmmIOThread *io = NULL;
    VmmVirtioNet *net = NULL;
    VmmVhostVsock *vs = NULL;
    if (!m || (err = add_devices(m, in, out, &io, &net, &vs, DEV_CID_RESTORED)) < 0 ||
        (err = vmm_machine_start(m)) < 0) {
        printf("\nDEV-ERROR restore or start: %s\n", vmm_strerror(err));
        return 61;
    }
    char *vrecv_args[] = { (char *)netcheck, "vsock-recv", "6011", NULL };
    pid_t vrx = spawn_netcheck("dev-nc-6011.log", vrecv_args);
    /* The host's end of the guest's stream, listening before it comes. */
    char *recv_args[] = { (char *)netcheck, "tcp-recv", "5012", NULL };
    pid_t rx = spawn_netcheck("dev-nc-5012.log", recv_args);
    static const char line[] = "line-after-restore\n";
    if (write(in[1], line, sizeof(line) - 1) != (ssize_t)sizeof(line) - 1 ||
        !wait_for(m, p[0], &con, out[0], &hcon, "VMMKIT-HVC-GOT line-after-restore", 120)) {
        printf("\nDEV-ERROR the guest did not answer on its consoles\n");
        return 62;
    }
    for (int i = 0; i < 50 && !strstr(hcon.buf, "VMMKIT-HVC-ECHO"); i++) {
        usleep(100 * 1000);
        con_drain(out[0], &hcon, -1);
    }
    printf("\nDEV-HVC-OUT %s\n", hcon.buf);
    /* virtio-net: the guest pinged the host; now the host pings the guest,
     * then 1 MiB each way over TCP, checksummed at both ends. */
    if (!wait_for(m, p[0], &con, -1, NULL, "VMMKIT-PING-AFTER-OK", 120)) {
        printf("\nDEV-ERROR the guest's ping after the restore\n");
        return 63;
    }
    int r = system("ping6 -c 2 -w 60 fd00:7e57::2 >/dev/null");
    printf("\nDEV-HOST-PING %d\n", r);
    if (r != 0 || !wait_for(m, p[0], &con, -1, NULL, "NETCHECK tcp-recv LISTENING port=5011", 120)) {
        printf("\nDEV-ERROR host to guest after the restore\n");
        return 64;
    }
    char *send_args[] = { (char *)netcheck, "tcp-send", "fd00:7e57::2", "5011", "1048576", NULL };
    pid_t tx = spawn_netcheck("dev-nc-5011.log", send_args);
    bool tx_ok = netcheck_ok(tx, "dev-nc-5011.log", 180);
    bool rx_ok = netcheck_ok(rx, "dev-nc-5012.log", 180);
    if (!tx_ok || !rx_ok ||
        !wait_for(m, p[0], &con, -1, NULL, "NETCHECK tcp-send OK len=1048576", 60) ||
        !strstr(con.buf, "NETCHECK tcp-recv OK len=1048576")) {
        printf("\nDEV-ERROR TCP after the restore\n");
        return 65;
    }
    /* The stream saved mid-way went on to its end, its checksum right. */
    const char *want = "NETCHECK tcp-send OK len=" STREAM_LEN;
    char text[512] = "";
    for (double t0 = now(); !strstr(text, want) && !strstr(text, "FAIL") && now() - t0 < 300;) {
        wait_for(m, p[0], &con, -1, NULL, "NETCHECK tcp-recv OK len=" STREAM_LEN, 1);
        FILE *f = fopen("dev-nc-5013.log", "r");
        if (f) {
            text[fread(text, 1, sizeof(text) - 1, f)] = '\0';
            fclose(f);
        }
    }
    printf("\nDEV-HOST-NETCHECK %s", text);
    if (!strstr(text, want) ||
        !wait_for(m, p[0], &con, -1, NULL, "NETCHECK tcp-recv OK len=" STREAM_LEN, 60)) {
        printf("\nDEV-ERROR the stream across the snapshot\n");
        return 66;
    }
    /* vhost-vsock, with another CID now: the connection from before the
     * save was reset, new ones carry 1 MiB each way, checksummed. */
    if (!wait_for(m, p[0], &con, -1, NULL, "NETCHECK vsock-recv FAIL", 60) ||
        !wait_for(m, p[0], &con, -1, NULL, "NETCHECK vsock-recv LISTENING port=6012", 120)) {
        printf("\nDEV-ERROR vsock after the restore\n");
        return 67;
    }
    char *vsend2_args[] = { (char *)netcheck, "vsock-send", DEV_CID_RESTORED_STR, "6012",
                            "1048576", NULL };
    pid_t vtx = spawn_netcheck("dev-nc-6012.log", vsend2_args);
    tx_ok = netcheck_ok(vtx, "dev-nc-6012.log", 180);
    rx_ok = netcheck_ok(vrx, "dev-nc-6011.log", 180);
    if (!tx_ok || !rx_ok ||
        !wait_for(m, p[0], &con, -1, NULL, "NETCHECK vsock-send OK len=1048576", 60) ||
        !wait_for(m, p[0], &con, -1, NULL, "NETCHECK vsock-recv OK len=1048576", 60)) {
        printf("\nDEV-ERROR vsock data after the restore\n");
        return 68;
    }
    printf("\nDEV-VSOCK-OK\n");
    VmmVirtioNetStats ns = { .size = sizeof(ns) };
    vmm_virtio_net_get_stats(net, &ns);
    printf("\nDEV-NET-OK rx_packets=%llu tx_packets=%llu\n",
           (unsigned long long)ns.rx_packets, (unsigned long long)ns.tx_packets);
    vmm_machine_stop(m);
    vmm_machine_free(m);
    vmm_virtio_net_free(net);
    vmm_vhost_vsock_free(vs);
    vmm_iothread_destroy(io);
    return 0;
}

/* ---- Children: live migration ------------------------------------------------ */

#include <pthread.h>
#include <sys/socket.h>
#include <sys/un.h>

/* Boot the soak guest and run it to round 3. */
static VmmMachine *boot_to_round3(const char *vmlinuz, const char *initramfs,
                                  const char *disk, int p[2], Console *con)
{
    if (open_console(p) < 0) {
        return NULL;
    }
    VmmMachineOptions o = { .size = sizeof(o), .kernel = vmlinuz, .initrd = initramfs,
                            .cmdline = "console=ttyS0 quiet panic=-1 vmmkit.mode=soak",
                            .memory = MEM, .cpus = 2, .console_out_fd = p[1] };
    int err = 0;
    VmmMachine *m = vmm_machine_new(&o, &err);
    if (!m || vmm_machine_add_disk(m, disk, false) < 0 || vmm_machine_start(m) < 0) {
        printf("\nCHILD-ERROR build or start: %s\n", vmm_strerror(err));
        return NULL;
    }
    double t0 = now();
    while (last_count(con->buf) < 3) {
        struct pollfd pf[2] = { { .fd = p[0], .events = POLLIN },
                                { .fd = vmm_machine_event_fd(m), .events = POLLIN } };
        poll(pf, 2, 200);
        con_drain(p[0], con, STDOUT_FILENO);
        if (pf[1].revents || now() - t0 > 400 || strstr(con->buf, "VMMKIT-FAIL")) {
            printf("\nCHILD-ERROR the guest ended or stalled before round 3\n");
            return NULL;
        }
    }
    return m;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static int run_mig_source(const char *vmlinuz, const char *initramfs, const char *disk,
                          const char *sock)
{
    static Console con;
    int p[2];
    VmmMachine *m = boot_to_round3(vmlinuz, initramfs, disk, p, &con);
    if (!m) {
        return 30;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", sock);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        printf("\nCHILD-ERROR connect: %s\n", strerror(errno));
        return 31;
    }
    VmmMigrateStats st = { .size = sizeof(st) };
    int r = vmm_machine_migrate(m, fd, NULL, &st);
    double t_end = now();
    con_drain(p[0], &con, STDOUT_FILENO);
    const char *nl = strrchr(con.buf, '\n');
    char tpath[4200];
    snprintf(tpath, sizeof(tpath), "%s.tail", sock);
    write_file(tpath, nl ? nl + 1 : con.buf);
    VmmMachineState ms = vmm_machine_state(m);
    printf("\nMIG-SOURCE r=%d state=%s rounds=%u pages=%llu final=%llu bytes=%llu "
           "total_ms=%.1f downtime_ms=%.1f t_end=%.6f count=%ld\n", r,
           vmm_machine_state_name(ms), st.rounds, (unsigned long long)st.pages_sent,
           (unsigned long long)st.final_pages, (unsigned long long)st.bytes_sent,
           st.total_ns / 1e6, st.downtime_ns / 1e6, t_end, last_count(con.buf));
    fflush(stdout);
    vmm_machine_free(m);
    return r == 0 && ms == VMM_MACHINE_STOPPED ? 0 : 32;
}

static int run_mig_dest(const char *sock, const char *disk, int rounds)
{
    static Console con;
    int p[2];
    if (open_console(p) < 0) {
        return 40;
    }
    int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", sock);
    unlink(sock);
    if (bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 1) < 0) {
        return 41;
    }
    int fd = accept(ls, NULL, NULL);
    if (fd < 0) {
        return 42;
    }
    VmmMachineOptions o = { .size = sizeof(o), .console_out_fd = p[1] };
    int err = 0;
    VmmMachine *m = vmm_machine_incoming(&o, fd, &err);
    if (!m) {
        printf("\nDEST-ERROR incoming: %s\n", vmm_strerror(err));
        return 43;
    }
    int r = vmm_machine_add_disk(m, disk, false);
    if (r == 0) {
        r = vmm_machine_start(m);
    }
    double t_start = now();
    if (r < 0) {
        printf("\nDEST-ERROR start: %s\n", vmm_strerror(r));
        return 44;
    }
    char path[4200], t[64];
    snprintf(path, sizeof(path), "%s.started", sock);
    snprintf(t, sizeof(t), "%.6f", t_start);
    write_file(path, t);
    int ret = run_rounds(m, p[0], &con, rounds);
    printf("\nDEST-DONE status=%d\n", ret);
    close(fd);
    return ret;
}

/* The far end of a migration that gives up: reads @limit bytes, then
 * cancels (@cancel) or closes, and drains the rest. */
typedef struct Sink {
    VmmMachine *m;
    int fd;
    size_t limit;
    bool cancel;
} Sink;

static void *sink_main(void *opaque)
{
    Sink *k = opaque;
    static char buf[1 << 16];
    size_t got = 0;
    ssize_t n;
    while ((n = read(k->fd, buf, sizeof(buf))) > 0) {
        got += (size_t)n;
        if (got >= k->limit) {
            if (k->cancel) {
                vmm_machine_migrate_cancel(k->m);
                k->limit = SIZE_MAX;
            } else {
                break;
            }
        }
    }
    close(k->fd);
    return NULL;
}

static int migrate_and_give_up(VmmMachine *m, bool cancel)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        return -errno;
    }
    Sink k = { .m = m, .fd = sv[1], .limit = 16 << 20, .cancel = cancel };
    pthread_t th;
    pthread_create(&th, NULL, sink_main, &k);
    VmmMigrateStats st = { .size = sizeof(st) };
    int r = vmm_machine_migrate(m, sv[0], NULL, &st);
    close(sv[0]);
    pthread_join(th, NULL);
    printf("\nMIG-GIVE-UP cancel=%d r=%d bytes=%llu state=%s\n", cancel, r,
           (unsigned long long)st.bytes_sent, vmm_machine_state_name(vmm_machine_state(m)));
    return r;
}

static int run_mig_cancel(const char *vmlinuz, const char *initramfs, const char *disk)
{
    static Console con;
    int p[2];
    VmmMachine *m = boot_to_round3(vmlinuz, initramfs, disk, p, &con);
    if (!m) {
        return 50;
    }
    int r1 = migrate_and_give_up(m, true);
    int r2 = migrate_and_give_up(m, false);
    bool running = vmm_machine_state(m) == VMM_MACHINE_RUNNING;
    long before = last_count(con.buf);
    /* The guest goes on: three more rounds, its checks passing. */
    int ret = run_rounds(m, p[0], &con, 0);
    long first = -1, last = -1;
    bool consecutive;
    double t0 = now();
    while (ret == 0 && last_count(con.buf) < before + 3 && now() - t0 < 120) {
        ret = run_rounds(m, p[0], &con, 0);
    }
    count_lines(con.buf, &first, &last, &consecutive);
    printf("\nMIG-CANCEL r1=%d r2=%d running=%d first=%ld last=%ld consecutive=%d\n", r1, r2,
           running, first, last, consecutive);
    bool ok = r1 == -ECANCELED && r2 < 0 && running && consecutive && last >= before + 3 &&
              !strstr(con.buf, "VMMKIT-FAIL");
    vmm_machine_stop(m);
    vmm_machine_wait(m, -1, NULL, 0);
    vmm_machine_free(m);
    return ok ? 0 : 51;
}

/* ---- The test (parent) ------------------------------------------------------------ */

typedef struct Child {
    pid_t pid;
    int out;
    Console con;
    int status;
} Child;

static void spawn(Child *c, char *const argv[])
{
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    c->pid = fork();
    assert_true(c->pid >= 0);
    if (c->pid == 0) {
        dup2(p[1], STDOUT_FILENO);
        execv(self, argv);
        _exit(127);
    }
    close(p[1]);
    c->out = p[0];
    c->con.len = 0;
    c->con.buf[0] = '\0';
}

/* Collect the children's output until all have exited. */
static void reap(Child *c, int n, double timeout_s)
{
    double t0 = now();
    int left = n;
    for (int i = 0; i < n; i++) {
        fcntl(c[i].out, F_SETFL, O_NONBLOCK);
    }
    while (left) {
        struct pollfd pf[8];
        for (int i = 0; i < n; i++) {
            pf[i] = (struct pollfd){ .fd = c[i].out, .events = POLLIN };
        }
        poll(pf, (nfds_t)n, 200);
        for (int i = 0; i < n; i++) {
            con_drain(c[i].out, &c[i].con, STDERR_FILENO);
            if (c[i].pid > 0 && waitpid(c[i].pid, &c[i].status, WNOHANG) == c[i].pid) {
                con_drain(c[i].out, &c[i].con, STDERR_FILENO);
                c[i].pid = 0;
                left--;
            }
        }
        if (now() - t0 > timeout_s) {
            for (int i = 0; i < n; i++) {
                if (c[i].pid > 0) {
                    kill(c[i].pid, SIGKILL);
                }
            }
            fail_msg("children still running after %.0f s", timeout_s);
        }
    }
}

static void copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(in >= 0 && out >= 0);
    static char buf[1 << 16];
    ssize_t n;
    while ((n = read(in, buf, sizeof(buf))) > 0) {
        assert_int_equal(write(out, buf, (size_t)n), n);
    }
    close(in);
    close(out);
}

/* The disk's block for round @n names round @n (what the guest wrote). */
static void check_disk_block(const char *disk, long n)
{
    int fd = open(disk, O_RDONLY);
    assert_true(fd >= 0);
    char got[32] = "", want[32];
    assert_int_equal(pread(fd, got, 14, (n % 16) * 4096), 14);
    close(fd);
    snprintf(want, sizeof(want), "SOAK-%08ld-", n);
    if (memcmp(got, want, 14) != 0) {
        fail_msg("%s: block %ld holds '%.14s', expected '%s'", disk, n % 16, got, want);
    }
}

static char log_msgs[8192];

static void capture_log(VmmLogLevel level, const char *msg, void *opaque)
{
    (void)level;
    (void)opaque;
    size_t l = strlen(log_msgs);
    snprintf(log_msgs + l, sizeof(log_msgs) - l, "%s\n", msg);
}

/* vmm_machine_restore refuses @path with errno @want and a message
 * containing @why. */
static void expect_refused(const char *path, const VmmMachineOptions *o, int want,
                           const char *why)
{
    log_msgs[0] = '\0';
    vmm_set_log_handler(capture_log, NULL, VMM_LOG_ERROR);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    int err = 0;
    VmmMachine *m = vmm_machine_restore(o, fd, &err);
    close(fd);
    vmm_set_log_handler(NULL, NULL, VMM_LOG_WARNING);
    assert_null(m);
    assert_int_equal(err, want);
    if (!strstr(log_msgs, why)) {
        fail_msg("%s: refused with '%s', expected '%s'", path, log_msgs, why);
    }
    fprintf(stderr, "# %s refused: %s", path, log_msgs);
}

static void test_snapshot_restore_clones(void **state)
{
    (void)state;
    /* The disk the guest writes. */
    int fd = open("soak-disk.img", O_RDWR | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, DISK_SIZE), 0);
    close(fd);

    Child src;
    char *sargv[] = { self, "--source", (char *)kernel, (char *)initrd, "soak-disk.img",
                      "soak.snap", NULL };
    spawn(&src, sargv);
    reap(&src, 1, 500);
    assert_true(WIFSIGNALED(src.status) && WTERMSIG(src.status) == SIGKILL);
    const char *s = strstr(src.con.buf, "SOURCE-SNAPSHOT count=");
    assert_non_null(s);
    long c = strtol(s + 22, NULL, 10);
    assert_true(c >= 3);
    /* The console before the snapshot (the guest's lines only). */
    size_t guest_len = (size_t)(s - src.con.buf);
    char *before = strndup(src.con.buf, guest_len);
    assert_int_equal(last_count(before), c);
    free(before);
    check_disk_block("soak-disk.img", c);
    FILE *tf = fopen("soak.snap.tail", "r");
    assert_non_null(tf);
    char tail[256] = "";
    size_t tl = fread(tail, 1, sizeof(tail) - 1, tf);
    tail[tl] = '\0';
    fclose(tf);
    struct stat st;
    assert_int_equal(stat("soak.snap", &st), 0);
    fprintf(stderr, "# snapshot at round %ld: %lld bytes, %lld allocated\n", c,
            (long long)st.st_size, (long long)st.st_blocks * 512);
    /* Zero pages are holes: far less is allocated than the file's length. */
    assert_true((uint64_t)st.st_blocks * 512 < (uint64_t)st.st_size);

    /* Refusals, with their reasons. */
    VmmMachineOptions o = { .size = sizeof(o), .console_out_fd = -1 };
    copy_file("soak.snap", "bad.snap");
    assert_int_equal(truncate("bad.snap", st.st_size / 2), 0);
    expect_refused("bad.snap", &o, -EINVAL, "truncated: section ram 0");
    copy_file("soak.snap", "bad.snap");
    fd = open("bad.snap", O_RDWR);
    char b;
    assert_int_equal(pread(fd, &b, 1, 4096 + 100), 1);
    b ^= 0x40;
    assert_int_equal(pwrite(fd, &b, 1, 4096 + 100), 1);
    close(fd);
    expect_refused("bad.snap", &o, -EINVAL, "section vcpu 0: checksum mismatch");
    VmmMachineOptions big = o;
    big.memory = 2 * MEM;
    expect_refused("soak.snap", &big, -EINVAL, "RAM size mismatch");
    VmmMachineOptions cpus = o;
    cpus.cpus = 1;
    expect_refused("soak.snap", &cpus, -EINVAL, "vCPU count mismatch");
    unlink("bad.snap");
    /* Restored without its disk: start refuses, naming the difference. */
    fd = open("soak.snap", O_RDONLY);
    int err = 0;
    VmmMachine *m = vmm_machine_restore(&o, fd, &err);
    close(fd);
    assert_non_null(m);
    log_msgs[0] = '\0';
    vmm_set_log_handler(capture_log, NULL, VMM_LOG_ERROR);
    assert_int_equal(vmm_machine_start(m), -EINVAL);
    vmm_set_log_handler(NULL, NULL, VMM_LOG_WARNING);
    assert_non_null(strstr(log_msgs, "the snapshot has 1 devices, the machine 0"));
    vmm_machine_free(m);

    /* Three clones at once, each on its copy of the disk. */
    Child kids[3];
    char disk[3][32];
    for (int i = 0; i < 3; i++) {
        snprintf(disk[i], sizeof(disk[i]), "clone%d.img", i);
        copy_file("soak-disk.img", disk[i]);
        char *rargv[] = { self, "--restore", "soak.snap", disk[i], "4", NULL };
        spawn(&kids[i], rargv);
    }
    reap(kids, 3, 400);
    for (int i = 0; i < 3; i++) {
        Child *k = &kids[i];
        assert_true(WIFEXITED(k->status));
        if (WEXITSTATUS(k->status) != 0 || strstr(k->con.buf, "VMMKIT-FAIL") ||
            strstr(k->con.buf, "soft lockup") || strstr(k->con.buf, "BUG:")) {
            fail_msg("clone %d failed (exit %d):\n%s", i, WEXITSTATUS(k->status), k->con.buf);
        }
        /* The source's partial line, then the clone's output. */
        size_t n = strlen(tail) + k->con.len + 1;
        char *all = malloc(n);
        snprintf(all, n, "%s%s", tail, k->con.buf);
        long first = -1, last = -1;
        bool consecutive;
        int lines = count_lines(all, &first, &last, &consecutive);
        free(all);
        fprintf(stderr, "# clone %d: rounds %ld..%ld (%d lines) %s\n", i, first, last, lines,
                strstr(k->con.buf, "RESTORE-DONE"));
        assert_true(lines >= 4);
        assert_int_equal(first, c + 1);
        assert_true(consecutive);
        check_disk_block(disk[i], last);
        unlink(disk[i]);
    }
    unlink("soak-disk.img");
    unlink("soak.snap");
    unlink("soak.snap.tail");
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        return NULL;
    }
    static char buf[4][4096];
    static int next;
    char *b = buf[next++ % 4];
    size_t n = fread(b, 1, sizeof(buf[0]) - 1, f);
    b[n] = '\0';
    fclose(f);
    return b;
}

static void new_disk(const char *path)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, DISK_SIZE), 0);
    close(fd);
}

/* Live migration to another process over a Unix socket, mid-run: the
 * guest goes on from its last round on the destination, its checks pass,
 * and the source ends only after the destination runs. */
static void test_migrate(void **state)
{
    (void)state;
    new_disk("mig-disk.img");
    unlink("mig.sock");
    unlink("mig.sock.started");
    Child kids[2];
    char *dargv[] = { self, "--mig-dest", "mig.sock", "mig-disk.img", "4", NULL };
    spawn(&kids[0], dargv);
    struct stat st;
    for (int i = 0; i < 300 && stat("mig.sock", &st) < 0; i++) {
        usleep(100 * 1000);
    }
    assert_int_equal(stat("mig.sock", &st), 0);
    char *sargv[] = { self, "--mig-source", (char *)kernel, (char *)initrd, "mig-disk.img",
                      "mig.sock", NULL };
    spawn(&kids[1], sargv);
    reap(kids, 2, 500);
    Child *d = &kids[0], *s = &kids[1];
    if (!WIFEXITED(s->status) || WEXITSTATUS(s->status) != 0 || !WIFEXITED(d->status) ||
        WEXITSTATUS(d->status) != 0) {
        fail_msg("source (status 0x%x):\n%s\ndestination (status 0x%x):\n%s", s->status,
                 s->con.buf, d->status, d->con.buf);
    }
    const char *m = strstr(s->con.buf, "MIG-SOURCE ");
    assert_non_null(m);
    long c = strtol(strstr(m, "count=") + 6, NULL, 10);
    double t_end = strtod(strstr(m, "t_end=") + 6, NULL);
    const char *started = read_text("mig.sock.started");
    const char *tail = read_text("mig.sock.tail");
    assert_non_null(started);
    assert_non_null(tail);
    /* The source returned only once the destination ran. */
    assert_true(strtod(started, NULL) <= t_end);
    size_t n = strlen(tail) + d->con.len + 1;
    char *all = malloc(n);
    snprintf(all, n, "%s%s", tail, d->con.buf);
    long first = -1, last = -1;
    bool consecutive;
    int lines = count_lines(all, &first, &last, &consecutive);
    free(all);
    fprintf(stderr, "# source: %.*s\n# destination: rounds %ld..%ld (%d lines)\n",
            (int)strcspn(m, "\n"), m, first, last, lines);
    assert_true(c >= 3);
    assert_int_equal(first, c + 1);
    assert_true(consecutive);
    assert_true(lines >= 4);
    assert_null(strstr(d->con.buf, "VMMKIT-FAIL"));
    assert_null(strstr(d->con.buf, "soft lockup"));
    check_disk_block("mig-disk.img", last);
    unlink("mig-disk.img");
    unlink("mig.sock");
    unlink("mig.sock.started");
    unlink("mig.sock.tail");
}

/* A migration cancelled half-way, and one whose destination goes away:
 * the source goes on, its guest's checks passing. */
static void test_migrate_cancel(void **state)
{
    (void)state;
    new_disk("cancel-disk.img");
    Child k;
    char *argv[] = { self, "--mig-cancel", (char *)kernel, (char *)initrd, "cancel-disk.img",
                     NULL };
    spawn(&k, argv);
    reap(&k, 1, 500);
    const char *m = strstr(k.con.buf, "MIG-CANCEL ");
    if (!WIFEXITED(k.status) || WEXITSTATUS(k.status) != 0 || !m) {
        fail_msg("cancel child (status 0x%x):\n%s", k.status, k.con.buf);
    }
    fprintf(stderr, "# %.*s\n", (int)strcspn(m, "\n"), m);
    unlink("cancel-disk.img");
}

/* A guest using virtio-rng, a virtio console and virtio-net (its eth0 up,
 * the host pinged), snapshotted while it waits for a console line, the
 * source killed, restored in a new process with the same devices on the
 * same tap: the line the restored machine sends arrives, the guest echoes
 * it on the virtio console, /dev/hwrng gives fresh random bytes, and the
 * network works again: ping both ways, 1 MiB over TCP each way with the
 * checksum checked at both ends, and the stream that was under way at the
 * save (its sender on the host outlives the source) ends with the right
 * checksum. */
static void test_devices_snapshot(void **state)
{
    (void)state;
    /* The network: a namespace of this test's own (the children inherit
     * it), a persistent tap DEV_TAP that outlives the source, and
     * fd00:7e57::1/64 on it - addresses no route leads out of. */
    assert_int_equal(unshare(CLONE_NEWNET), 0);
    FILE *f = fopen("/proc/sys/net/ipv6/conf/default/accept_dad", "w");
    assert_non_null(f);
    fputs("0", f);              /* no duplicate address detection (busybox ip has no nodad) */
    assert_int_equal(fclose(f), 0);
    int tap = vmm_virtio_net_open_tap(DEV_TAP);
    assert_true(tap >= 0);
    assert_int_equal(ioctl(tap, TUNSETPERSIST, 1), 0);
    close(tap);
    assert_int_equal(system("ip link set lo up && ip link set " DEV_TAP " up && "
                            "ip -6 addr add fd00:7e57::1/64 dev " DEV_TAP), 0);
    Child k;
    char *sargv[] = { self, "--dev-source", (char *)kernel, (char *)initrd, "dev.snap",
                      (char *)netcheck, NULL };
    spawn(&k, sargv);
    reap(&k, 1, 500);
    if (!strstr(k.con.buf, "DEV-SNAPSHOT-OK")) {
        fail_msg("source (status 0x%x):\n%s", k.status, k.con.buf);
    }
    /* Saved with the guest's interface up, after a ping to the host. */
    assert_non_null(strstr(k.con.buf, "VMMKIT-NET-UP mac=52:54:00:7e:57:02"));
    /* The vsock sender: its connection was reset with the source's vhost
     * (and if it never connected, it must not reach the restored guest). */
    FILE *pf = fopen("dev-nc-6013.pid", "r");
    int vpid = 0;
    assert_non_null(pf);
    assert_int_equal(fscanf(pf, "%d", &vpid), 1);
    fclose(pf);
    kill(vpid, SIGKILL);
    /* ... and a stream to it under way, not finished. */
    const char *at = strstr(k.con.buf, "DEV-STREAM-AT-SAVE rx_bytes=");
    assert_non_null(at);
    fprintf(stderr, "# %.*s\n", (int)strcspn(at, "\r\n"), at);
    assert_null(strstr(k.con.buf, "NETCHECK tcp-recv OK len=" STREAM_LEN));
    char *rargv[] = { self, "--dev-restore", "dev.snap", (char *)netcheck, NULL };
    spawn(&k, rargv);
    reap(&k, 1, 300);
    if (!WIFEXITED(k.status) || WEXITSTATUS(k.status) != 0) {
        fail_msg("restore (status 0x%x):\n%s", k.status, k.con.buf);
    }
    const char *rng = strstr(k.con.buf, "VMMKIT-RNG-AFTER bytes=");
    assert_non_null(rng);
    fprintf(stderr, "# %.*s\n", (int)strcspn(rng, "\r\n"), rng);
    assert_int_equal(strtol(rng + 23, NULL, 10), 4096);
    const char *d = strstr(rng, "distinct=");
    assert_non_null(d);
    assert_true(strtol(d + 9, NULL, 10) > 200);     /* 4 KiB of random bytes */
    assert_non_null(strstr(k.con.buf, "VMMKIT-HVC-GOT line-after-restore"));
    const char *hvc = strstr(k.con.buf, "DEV-HVC-OUT ");
    assert_non_null(hvc);
    assert_non_null(strstr(hvc, "VMMKIT-HVC-ECHO line-after-restore"));
    const char *net = strstr(k.con.buf, "DEV-NET-OK");
    assert_non_null(net);
    fprintf(stderr, "# %.*s\n", (int)strcspn(net, "\r\n"), net);
    assert_non_null(strstr(k.con.buf, "DEV-VSOCK-OK"));
    assert_null(strstr(k.con.buf, "soft lockup"));
    unlink("dev.snap");
    unlink("dev-nc-5011.log");
    unlink("dev-nc-5012.log");
    unlink("dev-nc-5013.log");
    unlink("dev-nc-6011.log");
    unlink("dev-nc-6012.log");
    unlink("dev-nc-6013.log");
    unlink("dev-nc-6013.pid");
}

int main(int argc, char **argv)
{
    ssize_t l = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (l <= 0) {
        return 2;
    }
    self[l] = '\0';
    if (argc == 6 && strcmp(argv[1], "--source") == 0) {
        return run_source(argv[2], argv[3], argv[4], argv[5]);
    }
    if (argc == 5 && strcmp(argv[1], "--restore") == 0) {
        return run_restore(argv[2], argv[3], atoi(argv[4]));
    }
    if (argc == 6 && strcmp(argv[1], "--mig-source") == 0) {
        return run_mig_source(argv[2], argv[3], argv[4], argv[5]);
    }
    if (argc == 5 && strcmp(argv[1], "--mig-dest") == 0) {
        return run_mig_dest(argv[2], argv[3], atoi(argv[4]));
    }
    if (argc == 6 && strcmp(argv[1], "--dev-source") == 0) {
        netcheck = argv[5];
        return run_dev_source(argv[2], argv[3], argv[4]);
    }
    if (argc == 4 && strcmp(argv[1], "--dev-restore") == 0) {
        netcheck = argv[3];
        return run_dev_restore(argv[2]);
    }
    if (argc == 5 && strcmp(argv[1], "--mig-cancel") == 0) {
        return run_mig_cancel(argv[2], argv[3], argv[4]);
    }
    if (argc != 4) {
        fprintf(stderr, "usage: %s VMLINUZ INITRAMFS NETCHECK\n", argv[0]);
        return 2;
    }
    kernel = argv[1];
    initrd = argv[2];
    netcheck = argv[3];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_snapshot_restore_clones),
        cmocka_unit_test(test_migrate),
        cmocka_unit_test(test_migrate_cancel),
        cmocka_unit_test(test_devices_snapshot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
