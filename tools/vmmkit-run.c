/* SPDX-License-Identifier: MIT */
/*
 * vmmkit-run: boot a Linux kernel under KVM with vmmkit's public API only.
 *
 *   vmmkit-run --kernel K [--initrd I] [--append '...'] [--disk path[,readonly]]...
 *              [--net tap=NAME|fd=N[,mac=MAC]]... [--vsock cid=N]
 *              [--memory 512M] [--cpus N] [--api-socket PATH] [--seccomp on|off|log]
 *              [--kernel-unpack host|guest] [--kvm-check on|off|nocache]
 *              [--console off|tty|null|file=PATH] [--rng[=src=/dev/urandom]]
 *              [--console-timeout SECONDS] [--verbose]
 *   vmmkit-run --restore SNAPSHOT [--disk ...]... [options as above]
 *
 * The serial console (a 16550) is on stdin/stdout.  --console adds a
 * virtio console (Linux's /dev/hvc0): "tty" puts it on stdin (which then
 * feeds it instead of the serial port) and stdout, "file=PATH" writes its
 * output to PATH, "null" discards it; "off" (the default) adds none.
 * --rng adds a virtio entropy device (getrandom(2), i.e. the host's
 * /dev/urandom pool: the only source).  Exit status: 0 when the guest
 * powers off, 130 after Ctrl-C (SIGINT/SIGTERM stop the VM cleanly), 1 when
 * the guest crashes or prints nothing for --console-timeout seconds, 2 on a
 * host error or bad arguments, 3 when the KVM cannot run a stock kernel
 * (vmm_kvm_probe_cached, its verdict kept in /run/vmmkit; --kvm-check off
 * boots anyway, e.g. a PVM guest kernel; nocache probes every start).
 * The guest's console output passes through a pipe that the main loop
 * copies to stdout, counting it: --verbose reports, every two seconds, the
 * console bytes and each vCPU's exits, so a guest that makes no progress is
 * never silent.  A guest reboot
 * builds a fresh machine and boots again.  The control socket takes one
 * command per line: "pause", "resume", "query", "stop", "snapshot PATH"
 * (a running guest is paused for it and resumed after), "migrate ADDRESS"
 * (live migration to a vmmkit-run --incoming ADDRESS; on success this one
 * exits 0); each gets one line back ("ok <state>" or "error <reason>").
 * --restore starts from such a snapshot, --incoming from a migration
 * (ADDRESS: unix:PATH or tcp:HOST:PORT), instead of a kernel: give either
 * the same --disk, --console, --rng, --net and --vsock options, disks in
 * the same order (a tap, a MAC or a vsock CID may differ: the guest keeps
 * its saved MAC and is told its new CID); other devices are refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "vmmkit/vmmkit.h"
#include "seccomp-policy.h"

#define MAX_DISKS 4
#define MAX_NETS 4
#define MAX_CLIENTS 8

/* A --net: the tap's fd (opened once, so the interface outlives a guest
 * reboot that re-creates the device) and the MAC. */
typedef struct NetArg {
    const char *tap;            /* tap=NAME, or NULL for fd=N */
    int fd;
    bool has_mac;
    uint8_t mac[6];
} NetArg;

typedef struct Args {
    VmmMachineOptions mo;
    const char *disk[MAX_DISKS];
    bool disk_ro[MAX_DISKS];
    int ndisks;
    NetArg net[MAX_NETS];
    int nnets;
    uint64_t vsock_cid;         /* 0: no --vsock */
    const char *api_socket;
    const char *restore;        /* a snapshot to start from, or NULL */
    const char *incoming;       /* an address to receive a migration on, or NULL */
    const char *resumed;        /* "snapshot"/"migration" the machine came from, or NULL */
    bool memory_set, cpus_set;
    bool seccomp;
    bool seccomp_log;
    bool kvm_check;
    bool kvm_cache;             /* keep the verdict under /run/vmmkit */
    bool verbose;
    double console_timeout;     /* seconds; 0: none */
    bool rng;                   /* --rng */
    bool vconsole;              /* --console other than off */
    int vconsole_in, vconsole_out;  /* its fds (-1: none) */
} Args;

/* Long options without a letter of their own. */
enum { OPT_RESTORE = 0x100 };

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vmmkit-run --kernel KERNEL [--initrd|--initramfs FILE] [--append CMDLINE]\n"
            "                  [--disk PATH[,readonly]]... [--memory SIZE] [--cpus N]\n"
            "                  [--net tap=NAME|fd=N[,mac=MAC]]... [--vsock cid=N]\n"
            "                  [--api-socket PATH] [--seccomp on|off|log] [--kernel-unpack host|guest]\n"
            "                  [--kvm-check on|off|nocache] [--console off|tty|null|file=PATH]\n"
            "                  [--rng[=src=/dev/urandom]] [--console-timeout SECONDS] [--verbose]\n"
            "       vmmkit-run --restore SNAPSHOT [--disk PATH[,readonly]]... [options]\n"
            "       vmmkit-run --incoming unix:PATH|tcp:HOST:PORT [--disk ...]... [options]\n"
            "KERNEL: a bzImage, or an uncompressed x86-64 vmlinux (ELF; no KASLR).\n"
            "  A bzImage's xz or gzip payload is unpacked by the kernel's own\n"
            "  decompressor (guest, the default) or by the VMM (host: no KASLR).\n"
            "SIZE: bytes with K, M or G (a bare number is MiB); also size=SIZE.\n"
            "--console: a virtio console (/dev/hvc0) on stdin/stdout (tty), into a file,\n"
            "  or discarded (null); the serial port stays on stdout.\n"
            "--rng: a virtio entropy device (/dev/hwrng) fed by getrandom(2).\n"
            "--net: virtio-net on a tap interface (created if missing) or an open tap\n"
            "  fd (IFF_TAP|IFF_NO_PI|IFF_VNET_HDR).  --vsock: vhost-vsock, guest CID N.\n"
            "--kvm-check off: boot even where the KVM cannot run a stock kernel\n"
            "  (kvm_pvm: a kernel built for PVM); a full verdict is kept in /run/vmmkit\n"
            "  (nocache: probe every start).  --console-timeout: stop a guest that\n"
            "  prints nothing for that long.  --verbose: progress every 2 s.\n"
            "Exit: 0 guest powered off, 1 guest crashed or silent, 2 host error,\n"
            "3 the KVM cannot run a stock kernel, 130 stopped.\n");
}

static int parse_size(const char *s, uint64_t *out)
{
    if (!strncmp(s, "size=", 5)) {
        s += 5;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s) {
        return -1;
    }
    uint64_t mul = 1ull << 20;
    switch (*end) {
    case 'k': case 'K': mul = 1ull << 10; end++; break;
    case 'm': case 'M': mul = 1ull << 20; end++; break;
    case 'g': case 'G': mul = 1ull << 30; end++; break;
    case '\0': break;
    default: return -1;
    }
    if (*end || v > (1ull << 40) / mul) {
        return -1;
    }
    *out = v * mul;
    return 0;
}

/* tap=NAME|fd=N[,mac=aa:bb:cc:dd:ee:ff], cloud-hypervisor's spelling. */
static int parse_net(char *arg, NetArg *n)
{
    memset(n, 0, sizeof(*n));
    n->fd = -1;
    for (char *save = NULL, *kv = strtok_r(arg, ",", &save); kv;
         kv = strtok_r(NULL, ",", &save)) {
        if (!strncmp(kv, "tap=", 4) && kv[4]) {
            n->tap = kv + 4;
        } else if (!strncmp(kv, "fd=", 3)) {
            char *end;
            long fd = strtol(kv + 3, &end, 10);
            if (*end || end == kv + 3 || fd < 0 || fd > 65535) {
                fprintf(stderr, "vmmkit-run: bad --net fd '%s'\n", kv + 3);
                return -1;
            }
            n->fd = (int)fd;
        } else if (!strncmp(kv, "mac=", 4)) {
            unsigned m[6];
            char tail;
            if (sscanf(kv + 4, "%x:%x:%x:%x:%x:%x%c", &m[0], &m[1], &m[2], &m[3], &m[4],
                       &m[5], &tail) != 6) {
                fprintf(stderr, "vmmkit-run: bad --net mac '%s'\n", kv + 4);
                return -1;
            }
            for (int i = 0; i < 6; i++) {
                if (m[i] > 0xff) {
                    fprintf(stderr, "vmmkit-run: bad --net mac '%s'\n", kv + 4);
                    return -1;
                }
                n->mac[i] = (uint8_t)m[i];
            }
            n->has_mac = true;
        } else {
            fprintf(stderr, "vmmkit-run: unknown --net option '%s' (tap=, fd=, mac=)\n", kv);
            return -1;
        }
    }
    if (!n->tap == (n->fd < 0)) {
        fprintf(stderr, "vmmkit-run: --net needs one of tap=NAME or fd=N\n");
        return -1;
    }
    return 0;
}

static int parse_args(int argc, char **argv, Args *a)
{
    static const struct option opts[] = {
        { "kernel", required_argument, NULL, 'k' },
        { "initrd", required_argument, NULL, 'i' },
        { "initramfs", required_argument, NULL, 'i' },
        { "append", required_argument, NULL, 'a' },
        { "cmdline", required_argument, NULL, 'a' },
        { "disk", required_argument, NULL, 'd' },
        { "net", required_argument, NULL, 'n' },
        { "vsock", required_argument, NULL, 'V' },
        { "memory", required_argument, NULL, 'm' },
        { "cpus", required_argument, NULL, 'c' },
        { "api-socket", required_argument, NULL, 's' },
        { "seccomp", required_argument, NULL, 'S' },
        { "kernel-unpack", required_argument, NULL, 'U' },
        { "kvm-check", required_argument, NULL, 'K' },
        { "console-timeout", required_argument, NULL, 'T' },
        { "console", required_argument, NULL, 'C' },
        { "rng", optional_argument, NULL, 'R' },
        { "verbose", no_argument, NULL, 'v' },
        { "restore", required_argument, NULL, OPT_RESTORE },
        { "incoming", required_argument, NULL, 'I' },
        { "help", no_argument, NULL, 'h' },
        { 0, 0, 0, 0 },
    };
    memset(a, 0, sizeof(*a));
    a->mo.size = sizeof(a->mo);
    a->mo.memory = 512ull << 20;
    a->mo.cpus = 1;
    a->mo.cmdline = "console=ttyS0";
    a->mo.console_out_fd = STDOUT_FILENO;
    a->seccomp = true;
    a->kvm_check = true;
    a->kvm_cache = true;
    a->vconsole_in = a->vconsole_out = -1;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'k': a->mo.kernel = optarg; break;
        case 'i': a->mo.initrd = optarg; break;
        case 'a': a->mo.cmdline = optarg; break;
        case OPT_RESTORE: a->restore = optarg; break;
        case 'I': a->incoming = optarg; break;
        case 'd': {
            if (a->ndisks == MAX_DISKS) {
                fprintf(stderr, "vmmkit-run: at most %d disks\n", MAX_DISKS);
                return -1;
            }
            char *comma = strchr(optarg, ',');
            if (comma) {
                *comma = '\0';
                if (strcmp(comma + 1, "readonly") && strcmp(comma + 1, "readonly=on") &&
                    strcmp(comma + 1, "ro")) {
                    fprintf(stderr, "vmmkit-run: unknown disk option '%s'\n", comma + 1);
                    return -1;
                }
                a->disk_ro[a->ndisks] = true;
            }
            if (!strncmp(optarg, "path=", 5)) {
                optarg += 5;
            }
            a->disk[a->ndisks++] = optarg;
            break;
        }
        case 'n':
            if (a->nnets == MAX_NETS) {
                fprintf(stderr, "vmmkit-run: at most %d --net\n", MAX_NETS);
                return -1;
            }
            if (parse_net(optarg, &a->net[a->nnets]) < 0) {
                return -1;
            }
            a->nnets++;
            break;
        case 'V': {
            const char *s = !strncmp(optarg, "cid=", 4) ? optarg + 4 : optarg;
            char *end;
            errno = 0;
            unsigned long long cid = strtoull(s, &end, 0);
            if (errno || *end || cid < 3 || cid > 0xfffffffeull) {
                fprintf(stderr, "vmmkit-run: --vsock cid=N with 3 <= N < 2^32 - 1\n");
                return -1;
            }
            a->vsock_cid = cid;
            break;
        }
        case 'm':
            a->memory_set = true;
            if (parse_size(optarg, &a->mo.memory) < 0) {
                fprintf(stderr, "vmmkit-run: bad memory size '%s'\n", optarg);
                return -1;
            }
            break;
        case 'c': {
            const char *s = !strncmp(optarg, "boot=", 5) ? optarg + 5 : optarg;
            char *end;
            long n = strtol(s, &end, 10);
            if (*end || n < 1 || n > VMM_MACHINE_MAX_CPUS) {
                fprintf(stderr, "vmmkit-run: bad cpu count '%s'\n", optarg);
                return -1;
            }
            a->mo.cpus = (uint32_t)n;
            a->cpus_set = true;
            break;
        }
        case 's': a->api_socket = optarg; break;
        case 'S':
            if (!strcmp(optarg, "on") || !strcmp(optarg, "true")) {
                a->seccomp = true;
            } else if (!strcmp(optarg, "off") || !strcmp(optarg, "false")) {
                a->seccomp = false;
            } else if (!strcmp(optarg, "log")) {
                a->seccomp = true;
                a->seccomp_log = true;
            } else {
                fprintf(stderr, "vmmkit-run: --seccomp on|off|log\n");
                return -1;
            }
            break;
        case 'U':
            if (!strcmp(optarg, "guest")) {
                a->mo.boot_flags &= ~VMM_MACHINE_BOOT_HOST_UNPACK;
            } else if (!strcmp(optarg, "host")) {
                a->mo.boot_flags |= VMM_MACHINE_BOOT_HOST_UNPACK;
            } else {
                fprintf(stderr, "vmmkit-run: --kernel-unpack host|guest\n");
                return -1;
            }
            break;
        case 'K':
            if (!strcmp(optarg, "on") || !strcmp(optarg, "off") || !strcmp(optarg, "nocache")) {
                a->kvm_check = strcmp(optarg, "off") != 0;
                a->kvm_cache = !strcmp(optarg, "on");
            } else {
                fprintf(stderr, "vmmkit-run: --kvm-check on|off|nocache\n");
                return -1;
            }
            break;
        case 'T': {
            char *end;
            a->console_timeout = strtod(optarg, &end);
            if (*end || !(a->console_timeout > 0) || a->console_timeout > 1e6) {
                fprintf(stderr, "vmmkit-run: bad --console-timeout '%s'\n", optarg);
                return -1;
            }
            break;
        }
        case 'C':
            if (a->vconsole_out > STDOUT_FILENO) {
                close(a->vconsole_out);
            }
            a->vconsole = true;
            a->vconsole_in = a->vconsole_out = -1;
            if (!strcmp(optarg, "off")) {
                a->vconsole = false;
            } else if (!strcmp(optarg, "tty")) {
                a->vconsole_in = STDIN_FILENO;
                a->vconsole_out = STDOUT_FILENO;
            } else if (!strncmp(optarg, "file=", 5) && optarg[5]) {
                a->vconsole_out = open(optarg + 5, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                                       0644);
                if (a->vconsole_out < 0) {
                    fprintf(stderr, "vmmkit-run: --console %s: %s\n", optarg, strerror(errno));
                    return -1;
                }
            } else if (strcmp(optarg, "null")) {
                fprintf(stderr, "vmmkit-run: --console off|tty|null|file=PATH\n");
                return -1;
            }
            break;
        case 'R':
            if (optarg && strcmp(optarg, "src=/dev/urandom")) {
                fprintf(stderr, "vmmkit-run: --rng takes only src=/dev/urandom "
                        "(the device reads getrandom(2))\n");
                return -1;
            }
            a->rng = true;
            break;
        case 'v':
            a->verbose = true;
            vmm_set_log_handler(NULL, NULL, VMM_LOG_INFO);
            break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return -1;
        }
    }
    if (optind != argc || (!a->mo.kernel && !a->restore && !a->incoming)) {
        usage(stderr);
        return -1;
    }
    return 0;
}

/* ---- Terminal ------------------------------------------------------------- */

static struct termios saved_tio;
static bool tio_saved;

static void term_raw(void)
{
    if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &saved_tio) < 0) {
        return;
    }
    struct termios t = saved_tio;
    /* The guest echoes and edits; Ctrl-C still signals us (ISIG kept). */
    t.c_lflag &= (tcflag_t)~(ICANON | ECHO);
    t.c_iflag &= (tcflag_t)~(ICRNL | IXON);
    t.c_cc[VMIN] = 1;
    t.c_cc[VTIME] = 0;
    if (tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0) {
        tio_saved = true;
    }
}

static void term_restore(void)
{
    if (tio_saved) {
        tcsetattr(STDIN_FILENO, TCSANOW, &saved_tio);
    }
}

/* ---- Control socket ------------------------------------------------------------ */

static int listen_unix(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof(sa.sun_path)) {
        return -ENAMETOOLONG;
    }
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        return -errno;
    }
    unlink(path);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

/*
 * HOST and PORT of "tcp:HOST:PORT" as a socket address: HOST is a numeric
 * IPv4 address, an IPv6 one in brackets, "localhost" (127.0.0.1), or empty
 * (listening: every IPv4 address).  Names are not resolved: the static
 * vmmkit-run loads no NSS modules (docs/dependencies.md).  @out has room
 * for either family.  0 or -EINVAL.
 */
static int parse_tcp_address(const char *host, const char *port, bool listening,
                             struct sockaddr_in6 *out, socklen_t *len)
{
    char *end;
    errno = 0;
    unsigned long p = strtoul(port, &end, 10);
    if (errno || end == port || *end || p == 0 || p > 65535) {
        return -EINVAL;
    }
    memset(out, 0, sizeof(*out));
    size_t hl = strlen(host);
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        char v6[INET6_ADDRSTRLEN];
        if (hl - 2 >= sizeof(v6)) {
            return -EINVAL;
        }
        memcpy(v6, host + 1, hl - 2);
        v6[hl - 2] = '\0';
        out->sin6_family = AF_INET6;
        out->sin6_port = htons((uint16_t)p);
        if (inet_pton(AF_INET6, v6, &out->sin6_addr) != 1) {
            return -EINVAL;
        }
        *len = sizeof(*out);
        return 0;
    }
    struct sockaddr_in *in = (struct sockaddr_in *)out;
    in->sin_family = AF_INET;
    in->sin_port = htons((uint16_t)p);
    if (!host[0] && listening) {
        in->sin_addr.s_addr = htonl(INADDR_ANY);
    } else if (!strcmp(host, "localhost")) {
        in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    } else if (inet_pton(AF_INET, host, &in->sin_addr) != 1) {
        return -EINVAL;
    }
    *len = sizeof(*in);
    return 0;
}

/* A stream socket for "unix:PATH" or "tcp:HOST:PORT": connected, or (with
 * @listening) the first connection accepted on it.  -errno on failure. */
static int open_address(const char *addr, bool listening)
{
    int fd = -1, ls = -1, r = 0;
    if (!strncmp(addr, "unix:", 5)) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (strlen(addr + 5) >= sizeof(sa.sun_path)) {
            return -ENAMETOOLONG;
        }
        strcpy(sa.sun_path, addr + 5);
        int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (s < 0) {
            return -errno;
        }
        if (listening) {
            unlink(sa.sun_path);
            r = bind(s, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(s, 1) < 0 ? -errno : 0;
            ls = s;
        } else {
            r = connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? -errno : 0;
            fd = s;
        }
    } else if (!strncmp(addr, "tcp:", 4)) {
        char host[256];
        const char *colon = strrchr(addr + 4, ':');
        if (!colon || (size_t)(colon - addr - 4) >= sizeof(host)) {
            return -EINVAL;
        }
        memcpy(host, addr + 4, (size_t)(colon - addr - 4));
        host[colon - addr - 4] = '\0';
        union {
            struct sockaddr sa;
            struct sockaddr_in in;
            struct sockaddr_in6 in6;
        } sa;
        socklen_t salen;
        if (parse_tcp_address(host, colon + 1, listening, &sa.in6, &salen) < 0) {
            return -EINVAL;
        }
        int s = socket(sa.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (s < 0) {
            return -errno;
        }
        int one = 1;
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (listening) {
            r = bind(s, &sa.sa, salen) < 0 || listen(s, 1) < 0 ? -errno : 0;
            ls = s;
        } else {
            r = connect(s, &sa.sa, salen) < 0 ? -errno : 0;
            fd = s;
        }
    } else {
        return -EINVAL;
    }
    if (r == 0 && listening) {
        fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
        r = fd < 0 ? -errno : 0;
    }
    if (ls >= 0) {
        close(ls);
        if (!strncmp(addr, "unix:", 5)) {
            unlink(addr + 5);
        }
    }
    if (r < 0 && fd >= 0) {
        close(fd);
    }
    return r < 0 ? r : fd;
}

typedef struct Client {
    int fd;
    char buf[128];
    size_t len;
} Client;

static void reply(int fd, const char *fmt, const char *arg)
{
    char line[160];
    int n = snprintf(line, sizeof(line), fmt, arg);
    if (n > 0) {
        ssize_t w = write(fd, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
        (void)w;
    }
}

/* "snapshot PATH": a running machine is paused for it, then resumed. */
static int snapshot_to(VmmMachine *m, const char *path)
{
    bool was_running = vmm_machine_state(m) == VMM_MACHINE_RUNNING;
    int r = was_running ? vmm_machine_pause(m) : 0;
    if (r < 0) {
        return r;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    r = fd < 0 ? -errno : vmm_machine_snapshot(m, fd);
    if (fd >= 0) {
        close(fd);
    }
    if (was_running) {
        int e = vmm_machine_resume(m);
        r = r < 0 ? r : e;
    }
    return r;
}

static bool migrated;               /* "migrate" succeeded: exit 0 */

/* "migrate ADDRESS": blocks the main loop until the destination runs or
 * the migration failed (the guest then goes on here, or stays paused
 * when the failure came after the commit: docs/machine.md "The
 * hand-over"). */
static int migrate_to(VmmMachine *m, const char *addr)
{
    int fd = open_address(addr, false);
    if (fd < 0) {
        return fd;
    }
    VmmMigrateStats st = { .size = sizeof(st) };
    int r = vmm_machine_migrate(m, fd, NULL, &st);
    close(fd);
    if (r == 0) {
        migrated = true;
        fprintf(stderr, "vmmkit-run: migrated to %s: %.1f ms in all, %.1f ms paused, "
                "%u rounds, %llu pages\n", addr, st.total_ns / 1e6, st.downtime_ns / 1e6,
                st.rounds, (unsigned long long)st.pages_sent);
    } else if (r == -ENOLINK || r == -ECONNABORTED) {
        /* After the commit: never resumed here by itself. */
        fprintf(stderr, "vmmkit-run: migration to %s: %s; the guest stays paused here: "
                "'resume' only if it does not run there\n", addr,
                r == -ENOLINK ? "the destination's fate is unknown" : "it runs nowhere");
    }
    return r;
}

static void control_command(VmmMachine *m, int fd, char *cmd)
{
    int r = 0;
    if (!strncmp(cmd, "snapshot ", 9) && cmd[9]) {
        r = snapshot_to(m, cmd + 9);
    } else if (!strncmp(cmd, "migrate ", 8) && cmd[8]) {
        r = migrate_to(m, cmd + 8);
    } else if (!strcmp(cmd, "pause")) {
        r = vmm_machine_pause(m);
    } else if (!strcmp(cmd, "resume")) {
        r = vmm_machine_resume(m);
    } else if (!strcmp(cmd, "stop")) {
        vmm_machine_stop(m);
    } else if (strcmp(cmd, "query")) {
        reply(fd, "error unknown command %s\n", cmd);
        return;
    }
    if (r < 0) {
        reply(fd, "error %s\n", vmm_strerror(r));
    } else {
        reply(fd, "ok %s\n", vmm_machine_state_name(vmm_machine_state(m)));
    }
}

/* Returns false when the client is gone. */
static bool client_read(VmmMachine *m, Client *c)
{
    ssize_t n = read(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len);
    if (n <= 0) {
        return n < 0 && errno == EAGAIN;
    }
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    char *nl;
    while ((nl = strchr(c->buf, '\n'))) {
        *nl = '\0';
        if (nl > c->buf && nl[-1] == '\r') {
            nl[-1] = '\0';
        }
        control_command(m, c->fd, c->buf);
        size_t rest = c->len - (size_t)(nl + 1 - c->buf);
        memmove(c->buf, nl + 1, rest + 1);
        c->len = rest;
    }
    return c->len < sizeof(c->buf) - 1;      /* an endless line: drop it */
}

/* ---- Main loop ---------------------------------------------------------------- */

typedef struct Loop {
    const Args *args;
    int sigfd, listen_fd;
    int console_rd;             /* the guest's console output (a pipe) */
    Client clients[MAX_CLIENTS];
    int nclients;
    bool stdin_open;
    uint8_t pending[256];
    size_t npending;
    /* What the guest printed: a count and the last bytes, for --verbose and
     * for the message of a guest that goes silent. */
    uint64_t console_bytes;
    char tail[2048];
    size_t tail_len;
    double last_output;         /* when the guest last printed (or started) */
    double started, next_report;
} Loop;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Copy the guest's console to stdout; false once the pipe has no more. */
static bool console_drain(Loop *l)
{
    char buf[4096];
    ssize_t n = read(l->console_rd, buf, sizeof(buf));
    if (n <= 0) {
        return false;
    }
    for (ssize_t off = 0; off < n;) {
        ssize_t w = write(STDOUT_FILENO, buf + off, (size_t)(n - off));
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            break;              /* stdout gone: keep counting, drop the bytes */
        }
        off += w;
    }
    l->console_bytes += (uint64_t)n;
    l->last_output = now_s();
    size_t keep = (size_t)n < sizeof(l->tail) ? (size_t)n : sizeof(l->tail);
    if (l->tail_len + keep > sizeof(l->tail)) {
        size_t drop = l->tail_len + keep - sizeof(l->tail);
        memmove(l->tail, l->tail + drop, l->tail_len - drop);
        l->tail_len -= drop;
    }
    memcpy(l->tail + l->tail_len, buf + n - keep, keep);
    l->tail_len += keep;
    return true;
}

static uint64_t total_exits(VmmMachine *m, char *detail, size_t len)
{
    VmmVm *vm = vmm_machine_vm(m);
    uint64_t sum = 0;
    size_t off = 0;
    detail[0] = '\0';
    for (unsigned i = 0; i < vmm_vm_nr_vcpus(vm); i++) {
        VmmVcpuStats st;
        vmm_vcpu_get_stats(vmm_vm_get_vcpu(vm, i), &st);
        uint64_t n = st.exits_io + st.exits_mmio + st.exits_hlt + st.exits_intr +
                     st.exits_other;
        sum += n;
        if (off < len) {
            int w = snprintf(detail + off, len - off,
                             "%svCPU%u %" PRIu64 " (io %" PRIu64 ", mmio %" PRIu64
                             ", hlt %" PRIu64 ", intr %" PRIu64 ", other %" PRIu64 ")",
                             i ? "; " : "", i, n, st.exits_io, st.exits_mmio,
                             st.exits_hlt, st.exits_intr, st.exits_other);
            off += w > 0 ? (size_t)w : 0;
        }
    }
    return sum;
}

/* The last lines the guest printed, each prefixed, on stderr. */
static void print_tail(const Loop *l)
{
    if (!l->tail_len) {
        fprintf(stderr, "vmmkit-run: the guest printed nothing at all\n");
        return;
    }
    int lines = 0;
    size_t start = l->tail_len;
    while (start > 0 && lines < 10) {
        start--;
        if (l->tail[start] == '\n' && start + 1 < l->tail_len) {
            lines++;
        }
    }
    fprintf(stderr, "vmmkit-run: its last console lines:\n");
    const char *p = l->tail + start, *end = l->tail + l->tail_len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (n || nl) {
            fprintf(stderr, "vmmkit-run: | %.*s\n", (int)n, p);
        }
        p += n + (nl ? 1 : 0);
    }
}

/* Once a poll: progress for --verbose, the --console-timeout bound.
 * Returns true when the guest is to be stopped as silent. */
static bool watch(VmmMachine *m, Loop *l)
{
    double t = now_s();
    if (l->args->verbose && t >= l->next_report) {
        char detail[512];
        uint64_t exits = total_exits(m, detail, sizeof(detail));
        fprintf(stderr, "vmmkit-run: %.1f s: %s, console %" PRIu64 " bytes, %" PRIu64
                " exits: %s\n", t - l->started,
                vmm_machine_state_name(vmm_machine_state(m)), l->console_bytes, exits, detail);
        l->next_report = t + 2.0;
    }
    double limit = l->args->console_timeout;
    if (vmm_machine_state(m) != VMM_MACHINE_RUNNING) {
        l->last_output = t;         /* a paused guest is not a silent one */
    } else if (limit > 0 && t - l->last_output > limit) {
        char detail[512];
        uint64_t exits = total_exits(m, detail, sizeof(detail));
        fprintf(stderr, "vmmkit-run: the guest printed nothing for %.0f s (%" PRIu64
                " console bytes in all; %" PRIu64 " exits: %s): stopping it\n", limit,
                l->console_bytes, exits, detail);
        print_tail(l);
        return true;
    }
    return false;
}

/* Run one machine until it ends; returns its final state or -errno, or
 * -ETIMEDOUT when --console-timeout stopped it. */
static int run_machine(VmmMachine *m, Loop *l, char *msg, size_t msglen)
{
    l->started = l->last_output = now_s();
    l->next_report = l->started + 2.0;
    bool timed = l->args->verbose || l->args->console_timeout > 0;
    for (;;) {
        struct pollfd p[5 + MAX_CLIENTS];
        int n = 0;
        p[n++] = (struct pollfd){ .fd = vmm_machine_event_fd(m), .events = POLLIN };
        p[n++] = (struct pollfd){ .fd = l->sigfd, .events = POLLIN };
        p[n++] = (struct pollfd){ .fd = l->stdin_open && !l->npending ? STDIN_FILENO : -1,
                                  .events = POLLIN };
        p[n++] = (struct pollfd){ .fd = l->listen_fd, .events = POLLIN };
        p[n++] = (struct pollfd){ .fd = l->console_rd, .events = POLLIN };
        for (int i = 0; i < l->nclients; i++) {
            p[n++] = (struct pollfd){ .fd = l->clients[i].fd, .events = POLLIN };
        }
        int r = poll(p, (nfds_t)n, l->npending ? 10 : timed ? 500 : -1);
        if (r < 0 && errno != EINTR) {
            return -errno;
        }
        if (p[4].revents) {
            console_drain(l);
        }
        if (p[0].revents) {
            /* What the guest printed before it ended, then the end. */
            while (console_drain(l)) {
            }
            return vmm_machine_wait(m, -1, msg, msglen);
        }
        if (watch(m, l)) {
            vmm_machine_stop(m);
            vmm_machine_wait(m, -1, msg, msglen);
            return -ETIMEDOUT;
        }
        if (p[1].revents & POLLIN) {
            struct signalfd_siginfo si;
            if (read(l->sigfd, &si, sizeof(si)) == sizeof(si)) {
                vmm_machine_stop(m);
            }
        }
        if (p[2].revents) {
            ssize_t got = read(STDIN_FILENO, l->pending, sizeof(l->pending));
            if (got <= 0) {
                l->stdin_open = false;
            } else {
                l->npending = (size_t)got;
            }
        }
        if (l->npending) {
            size_t took = vmm_machine_console_input(m, l->pending, l->npending);
            memmove(l->pending, l->pending + took, l->npending - took);
            l->npending -= took;
        }
        if (l->listen_fd >= 0 && (p[3].revents & POLLIN) && l->nclients < MAX_CLIENTS) {
            int fd = accept4(l->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
            if (fd >= 0) {
                l->clients[l->nclients++] = (Client){ .fd = fd };
            }
        }
        for (int i = 0; i < l->nclients; i++) {
            if (p[5 + i].revents && !client_read(m, &l->clients[i])) {
                close(l->clients[i].fd);
                l->clients[i] = l->clients[--l->nclients];
                p[5 + i] = p[5 + l->nclients];
                i--;
            }
        }
    }
}

/*
 * Whether this KVM can boot a stock kernel (vmm_kvm_probe), said in one
 * sentence when it cannot.  Returns 0 to go on, else the exit status.
 */
static int check_kvm(const Args *a)
{
    VmmVmOptions vo = { .size = sizeof(vo), .dev_path = a->mo.kvm_path };
    VmmKvmInfo info = { .size = sizeof(info) };
    int r = vmm_kvm_probe_cached(&vo, a->kvm_cache ? "/run/vmmkit" : NULL, &info);
    if (r < 0) {
        fprintf(stderr, "vmmkit-run: no usable KVM: %s\n", info.reason);
        return 2;
    }
    if (a->verbose) {
        fprintf(stderr, "vmmkit-run: KVM: %s, %s (%.3g guest instructions/s%s)\n",
                info.module[0] ? info.module : "unknown module",
                info.full ? "runs stock kernels" : "partial", info.insns_per_sec,
                r == 1 ? ", verdict from /run/vmmkit" : "");
    }
    if (!info.full) {
        fprintf(stderr, "vmmkit-run: this KVM (%s) cannot run a stock Linux kernel at "
                "hardware speed (%s); --kvm-check off boots anyway, for a kernel built "
                "for it\n", info.module[0] ? info.module : "unknown module", info.reason);
        return 3;
    }
    return 0;
}

/* The devices of one machine that vmmkit-run creates itself (a reboot
 * builds a fresh machine, and fresh devices with it). */
typedef struct Devices {
    VmmIOThread *io;            /* their queues, tap and vhost handlers */
    VmmVirtioNet *net[MAX_NETS];
    VmmVhostVsock *vsock;
} Devices;

/* After vmm_machine_free(), which reset and detached them. */
static void free_devices(Devices *d)
{
    for (int i = 0; i < MAX_NETS; i++) {
        vmm_virtio_net_free(d->net[i]);
        d->net[i] = NULL;
    }
    vmm_vhost_vsock_free(d->vsock);
    d->vsock = NULL;
}

static int add_devices(const Args *a, VmmMachine *m, Devices *d)
{
    int err = 0;
    VmmGuestMemory *mem = vmm_machine_guest_memory(m);

    if ((a->nnets || a->vsock_cid) && !d->io) {
        /* As the machine's own device context: ppoll, no busy polling (a
         * poller competes with the vCPUs where CPUs are few; with one
         * emulated CPU it brought no measurable gain in bench-net). */
        VmmAioContextOptions o = { .size = sizeof(o), .fdmon = VMM_FDMON_POLL };
        d->io = vmm_iothread_new("vmmkit-net", &o, &err);
        if (!d->io) {
            fprintf(stderr, "vmmkit-run: network iothread: %s\n", vmm_strerror(err));
            return err;
        }
    }
    VmmMachineVirtioOptions vo = { .size = sizeof(vo),
                                   .context = d->io ? vmm_iothread_get_context(d->io) : NULL };
    for (int i = 0; i < a->nnets; i++) {
        char name[16];
        snprintf(name, sizeof(name), "net%d", i);
        VmmVirtioNetOptions no = { .size = sizeof(no), .name = name, .tap_fd = a->net[i].fd,
                                   .has_mac = a->net[i].has_mac, .ctx = vo.context };
        memcpy(no.mac, a->net[i].mac, 6);
        d->net[i] = vmm_virtio_net_new(mem, &no, &err);
        if (!d->net[i]) {
            fprintf(stderr, "vmmkit-run: --net %d: %s\n", i, vmm_strerror(err));
            return err;
        }
        vo.pci_class = 0x020000;                    /* Ethernet controller */
        err = vmm_machine_add_virtio(m, vmm_virtio_net_get_virtio(d->net[i]), &vo);
        if (err < 0) {
            fprintf(stderr, "vmmkit-run: --net %d: %s\n", i, vmm_strerror(err));
            return err;
        }
    }
    if (a->vsock_cid) {
        VmmVhostVsockOptions so = { .size = sizeof(so), .name = "vsock",
                                    .guest_cid = a->vsock_cid, .ctx = vo.context };
        d->vsock = vmm_vhost_vsock_new(mem, &so, &err);
        if (!d->vsock) {
            fprintf(stderr, "vmmkit-run: --vsock cid=%" PRIu64 ": %s\n", a->vsock_cid,
                    vmm_strerror(err));
            return err;
        }
        vo.pci_class = 0;
        err = vmm_machine_add_virtio(m, vmm_vhost_vsock_get_virtio(d->vsock), &vo);
        if (err < 0) {
            fprintf(stderr, "vmmkit-run: --vsock: %s\n", vmm_strerror(err));
            return err;
        }
    }
    return 0;
}

/* The options of a machine from a snapshot or a migration: its size and
 * vCPUs are the sender's unless --memory/--cpus say otherwise (then they
 * must match). */
static VmmMachineOptions saved_options(const Args *a)
{
    VmmMachineOptions o = a->mo;
    o.memory = a->memory_set ? o.memory : 0;
    o.cpus = a->cpus_set ? o.cpus : 0;
    return o;
}

/* The machine from the snapshot --restore names; its size and vCPUs
 * are the snapshot's unless --memory/--cpus say otherwise (then they must
 * match). */
static VmmMachine *restore(const Args *a)
{
    int err = 0;
    int fd = open(a->restore, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "vmmkit-run: %s: %s\n", a->restore, strerror(errno));
        return NULL;
    }
    VmmMachineOptions o = saved_options(a);
    VmmMachine *m = vmm_machine_restore(&o, fd, &err);
    close(fd);
    if (!m) {
        fprintf(stderr, "vmmkit-run: cannot restore %s: %s\n", a->restore, vmm_strerror(err));
    }
    return m;
}

static VmmMachine *build(Args *a, Devices *d)
{
    int err = 0;
    VmmMachine *m;
    if (a->restore) {
        m = restore(a);
        a->restore = NULL;          /* a reboot boots the kernel, if any */
        a->resumed = "snapshot";
    } else if (a->incoming) {
        int fd = open_address(a->incoming, true);
        if (fd < 0) {
            fprintf(stderr, "vmmkit-run: --incoming %s: %s\n", a->incoming, vmm_strerror(fd));
            return NULL;
        }
        VmmMachineOptions o = saved_options(a);
        m = vmm_machine_incoming(&o, fd, &err);
        close(fd);                  /* the machine keeps what it needs */
        a->incoming = NULL;
        a->resumed = "migration";
        if (!m) {
            fprintf(stderr, "vmmkit-run: incoming migration: %s\n", vmm_strerror(err));
        }
    } else if (!a->mo.kernel) {
        fprintf(stderr, "vmmkit-run: the restored guest rebooted and there is no --kernel\n");
        return NULL;
    } else {
        m = vmm_machine_new(&a->mo, &err);
        if (!m) {
            fprintf(stderr, "vmmkit-run: cannot create the machine: %s\n",
                    vmm_strerror(err));
        }
    }
    if (!m) {
        return NULL;
    }
    for (int i = 0; i < a->ndisks; i++) {
        err = vmm_machine_add_disk(m, a->disk[i], a->disk_ro[i]);
        if (err < 0) {
            fprintf(stderr, "vmmkit-run: disk %s: %s\n", a->disk[i], vmm_strerror(err));
            vmm_machine_free(m);
            return NULL;
        }
    }
    if (a->vconsole) {
        err = vmm_machine_add_console(m, a->vconsole_in, a->vconsole_out);
    }
    if (err == 0 && a->rng) {
        err = vmm_machine_add_rng(m);
    }
    if (err < 0) {
        fprintf(stderr, "vmmkit-run: %s: %s\n", a->vconsole ? "console or rng" : "rng",
                vmm_strerror(err));
        vmm_machine_free(m);
        return NULL;
    }
    if (add_devices(a, m, d) < 0) {
        vmm_machine_free(m);
        free_devices(d);
        return NULL;
    }
    return m;
}

/* Taps named on the command line, opened once for every boot. */
static int open_taps(Args *a)
{
    for (int i = 0; i < a->nnets; i++) {
        if (a->net[i].tap) {
            a->net[i].fd = vmm_virtio_net_open_tap(a->net[i].tap);
            if (a->net[i].fd < 0) {
                fprintf(stderr, "vmmkit-run: tap %s: %s\n", a->net[i].tap,
                        vmm_strerror(a->net[i].fd));
                return -1;
            }
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    Args a;
    if (parse_args(argc, argv, &a) < 0) {
        return 2;
    }
    /* With a virtio console on the terminal, stdin feeds it (in the
     * device's thread), not the serial port. */
    Loop l = { .listen_fd = -1, .stdin_open = a.vconsole_in != STDIN_FILENO };
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    l.sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (l.sigfd < 0) {
        perror("vmmkit-run: signalfd");
        return 2;
    }
    if (a.api_socket) {
        l.listen_fd = listen_unix(a.api_socket);
        if (l.listen_fd < 0) {
            fprintf(stderr, "vmmkit-run: api socket %s: %s\n", a.api_socket,
                    vmm_strerror(l.listen_fd));
            return 2;
        }
    }
    if (a.kvm_check) {
        int st = check_kvm(&a);
        if (st) {
            return st;
        }
    }
    a.mo.boot_flags |= VMM_MACHINE_BOOT_ANY_KVM;     /* checked above, or not wanted */
    /* The console goes through a pipe the main loop copies to stdout. */
    int cp[2];
    if (pipe2(cp, O_CLOEXEC) < 0) {
        perror("vmmkit-run: pipe");
        return 2;
    }
    fcntl(cp[0], F_SETFL, O_NONBLOCK);
    fcntl(cp[1], F_SETPIPE_SZ, 1 << 20);    /* a blocked vCPU is rare; best effort */
    a.mo.console_out_fd = cp[1];
    l.console_rd = cp[0];
    l.args = &a;
    if (open_taps(&a) < 0) {
        return 2;
    }
    Devices devs = { 0 };
    VmmMachine *m = build(&a, &devs);
    if (!m) {
        return 2;
    }
    if (a.seccomp) {
        int r = run_seccomp_install(a.seccomp_log);
        if (r < 0) {
            fprintf(stderr, "vmmkit-run: seccomp filter: %s\n", vmm_strerror(r));
            vmm_machine_free(m);
            free_devices(&devs);
            return 2;
        }
        fprintf(stderr, "vmmkit-run: seccomp filter installed%s\n",
                a.seccomp_log ? " (log only)" : "");
    }
    /* What building the machine and compiling the filter allocated and
     * freed goes back to the kernel (free heap pages are madvised away). */
    malloc_trim(0);
    term_raw();
    int status;
    char msg[256] = "";
    for (;;) {
        int r = vmm_machine_start(m);
        if (r == -EINVAL && a.resumed) {
            /* The library's message said what differs (the devices). */
            fprintf(stderr, "vmmkit-run: the machine from the %s did not start: its devices "
                    "must match the saved ones (the same --disk, --console, --rng, --net and "
                    "--vsock options; a --vsock cid may differ)\n", a.resumed);
        }
        a.resumed = NULL;           /* a reboot is a fresh machine */
        int st = r < 0 ? r : run_machine(m, &l, msg, sizeof(msg));
        vmm_machine_free(m);
        free_devices(&devs);
        m = NULL;
        if (st == VMM_MACHINE_REBOOT) {
            m = build(&a, &devs);
            if (m) {
                continue;
            }
            status = 2;
            break;
        }
        if (st == VMM_MACHINE_POWEROFF) {
            status = 0;
        } else if (st == VMM_MACHINE_STOPPED && migrated) {
            status = 0;             /* the guest runs elsewhere now */
        } else if (st == VMM_MACHINE_STOPPED) {
            fprintf(stderr, "vmmkit-run: stopped\n");
            status = 130;
        } else if (st == -ETIMEDOUT) {
            status = 1;             /* watch() said why */
        } else if (st == VMM_MACHINE_CRASHED) {
            fprintf(stderr, "vmmkit-run: %s\n", msg);
            status = 1;
        } else {
            fprintf(stderr, "vmmkit-run: %s\n", st < 0 ? vmm_strerror(st) : msg);
            status = 2;
        }
        break;
    }
    term_restore();
    if (devs.io) {
        vmm_iothread_destroy(devs.io);
    }
    if (a.api_socket) {
        unlink(a.api_socket);
    }
    return status;
}
