/* SPDX-License-Identifier: MIT */
/*
 * vmmkit-run: boot a Linux kernel under KVM with vmmkit's public API only.
 *
 *   vmmkit-run --kernel K [--initrd I] [--append '...'] [--disk path[,readonly]]...
 *              [--memory 512M] [--cpus N] [--api-socket PATH] [--seccomp on|off|log]
 *              [--kernel-unpack host|guest] [--verbose]
 *
 * The console (a 16550) is on stdin/stdout.  Exit status: 0 when the guest
 * powers off, 130 after Ctrl-C (SIGINT/SIGTERM stop the VM cleanly), 1 when
 * the guest crashes, 2 on a host error or bad arguments.  A guest reboot
 * builds a fresh machine and boots again.  The control socket takes one
 * command per line: "pause", "resume", "query", "stop"; each gets one line
 * back ("ok <state>" or "error <reason>").
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#ifdef HAVE_SECCOMP
#include <seccomp.h>
#endif

#include "vmmkit/vmmkit.h"

#define MAX_DISKS 4
#define MAX_CLIENTS 8

typedef struct Args {
    VmmMachineOptions mo;
    const char *disk[MAX_DISKS];
    bool disk_ro[MAX_DISKS];
    int ndisks;
    const char *api_socket;
    bool seccomp;
    bool seccomp_log;
} Args;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vmmkit-run --kernel KERNEL [--initrd|--initramfs FILE] [--append CMDLINE]\n"
            "                  [--disk PATH[,readonly]]... [--memory SIZE] [--cpus N]\n"
            "                  [--api-socket PATH] [--seccomp on|off|log] [--kernel-unpack host|guest]\n"
            "                  [--verbose]\n"
            "KERNEL: a bzImage, or an uncompressed x86-64 vmlinux (ELF; no KASLR).\n"
            "  A bzImage's xz or gzip payload is unpacked by the kernel's own\n"
            "  decompressor (guest, the default) or by the VMM (host: no KASLR).\n"
            "SIZE: bytes with K, M or G (a bare number is MiB); also size=SIZE.\n"
            "Exit: 0 guest powered off, 1 guest crashed, 2 host error, 130 stopped.\n");
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

static int parse_args(int argc, char **argv, Args *a)
{
    static const struct option opts[] = {
        { "kernel", required_argument, NULL, 'k' },
        { "initrd", required_argument, NULL, 'i' },
        { "initramfs", required_argument, NULL, 'i' },
        { "append", required_argument, NULL, 'a' },
        { "cmdline", required_argument, NULL, 'a' },
        { "disk", required_argument, NULL, 'd' },
        { "memory", required_argument, NULL, 'm' },
        { "cpus", required_argument, NULL, 'c' },
        { "api-socket", required_argument, NULL, 's' },
        { "seccomp", required_argument, NULL, 'S' },
        { "kernel-unpack", required_argument, NULL, 'U' },
        { "verbose", no_argument, NULL, 'v' },
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
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'k': a->mo.kernel = optarg; break;
        case 'i': a->mo.initrd = optarg; break;
        case 'a': a->mo.cmdline = optarg; break;
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
        case 'm':
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
        case 'v': vmm_set_log_handler(NULL, NULL, VMM_LOG_INFO); break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return -1;
        }
    }
    if (optind != argc || !a->mo.kernel) {
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

/* ---- Seccomp ---------------------------------------------------------------- */

/*
 * An allow list, installed after the machine is built and applied to every
 * thread (TSYNC), the vCPU threads included: what the VMM does from then on
 * - run vCPUs (KVM ioctls, the kick signal), serve disks (io_uring, or the
 * thread pool's preadv/pwritev/fdatasync), the console and the control
 * socket, rebuild the machine on a guest reboot (open the kernel, the
 * initrd, the images and /dev/kvm again, map RAM) - and nothing else: no
 * exec, fork, ptrace, mount, module or kexec calls, no new sockets or
 * outgoing connections.  Anything else fails with EPERM (the library turns
 * a failed call into an error, never a crash), or with --seccomp log is
 * allowed and logged by the kernel (audit, "type=1326") to find what a new
 * path needs.  The list was taken from strace -f -c of a demo boot with a
 * disk, two vCPUs and the control socket, plus the calls of paths that
 * boot did not take (docs/machine.md).
 */
static const char *const allowed_calls[] = {
    /* files and descriptors */
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev",
    "preadv2", "pwritev2", "openat", "open", "close", "fstat", "newfstatat", "statx",
    "lseek", "fcntl", "ioctl", "dup", "dup3", "fsync", "fdatasync", "fallocate",
    "ftruncate", "unlink", "unlinkat", "readlink", "readlinkat", "getcwd", "access",
    "faccessat", "faccessat2", "pipe2", "fstatfs",
    /* memory */
    "mmap", "munmap", "mprotect", "madvise", "mremap", "brk", "membarrier",
    /* threads, signals, time */
    "futex", "clone", "clone3", "set_robust_list", "rseq", "set_tid_address", "exit",
    "exit_group", "gettid", "getpid", "tgkill", "tkill", "rt_sigaction", "rt_sigprocmask",
    "rt_sigreturn", "sigaltstack", "sched_yield", "sched_getaffinity", "nanosleep",
    "clock_nanosleep", "clock_gettime", "clock_getres", "gettimeofday", "prctl",
    "getrandom", "prlimit64", "getrlimit", "uname", "getuid", "geteuid", "getgid",
    "getegid",
    /* waiting */
    "poll", "ppoll", "select", "pselect6", "epoll_create1", "epoll_ctl", "epoll_wait",
    "epoll_pwait", "epoll_pwait2", "eventfd2", "signalfd4", "timerfd_create",
    "timerfd_settime", "timerfd_gettime",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    /* the control socket (created before the filter) */
    "accept", "accept4", "recvfrom", "recvmsg", "sendto", "sendmsg", "shutdown",
    "getsockopt", "setsockopt",
};

static int install_seccomp(bool log_only)
{
#ifdef HAVE_SECCOMP
    scmp_filter_ctx ctx = seccomp_init(log_only ? SCMP_ACT_LOG : SCMP_ACT_ERRNO(EPERM));
    if (!ctx) {
        return -ENOMEM;
    }
    int r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
    for (size_t i = 0; r == 0 && i < sizeof(allowed_calls) / sizeof(allowed_calls[0]); i++) {
        int nr = seccomp_syscall_resolve_name(allowed_calls[i]);
        if (nr == __NR_SCMP_ERROR) {
            continue;           /* not a system call on this architecture */
        }
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
    }
    if (r == 0) {
        r = seccomp_load(ctx);
    }
    seccomp_release(ctx);
    return r;
#else
    (void)log_only;
    return -ENOTSUP;
#endif
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

static void control_command(VmmMachine *m, int fd, char *cmd)
{
    int r = 0;
    if (!strcmp(cmd, "pause")) {
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
    int sigfd, listen_fd;
    Client clients[MAX_CLIENTS];
    int nclients;
    bool stdin_open;
    uint8_t pending[256];
    size_t npending;
} Loop;

/* Run one machine until it ends; returns its final state or -errno. */
static int run_machine(VmmMachine *m, Loop *l, char *msg, size_t msglen)
{
    for (;;) {
        struct pollfd p[4 + MAX_CLIENTS];
        int n = 0;
        p[n++] = (struct pollfd){ .fd = vmm_machine_event_fd(m), .events = POLLIN };
        p[n++] = (struct pollfd){ .fd = l->sigfd, .events = POLLIN };
        p[n++] = (struct pollfd){ .fd = l->stdin_open && !l->npending ? STDIN_FILENO : -1,
                                  .events = POLLIN };
        p[n++] = (struct pollfd){ .fd = l->listen_fd, .events = POLLIN };
        for (int i = 0; i < l->nclients; i++) {
            p[n++] = (struct pollfd){ .fd = l->clients[i].fd, .events = POLLIN };
        }
        int r = poll(p, (nfds_t)n, l->npending ? 10 : -1);
        if (r < 0 && errno != EINTR) {
            return -errno;
        }
        if (p[0].revents) {
            return vmm_machine_wait(m, -1, msg, msglen);
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
            if (p[4 + i].revents && !client_read(m, &l->clients[i])) {
                close(l->clients[i].fd);
                l->clients[i] = l->clients[--l->nclients];
                p[4 + i] = p[4 + l->nclients];
                i--;
            }
        }
    }
}

static VmmMachine *build(const Args *a)
{
    int err = 0;
    VmmMachine *m = vmm_machine_new(&a->mo, &err);
    if (!m) {
        fprintf(stderr, "vmmkit-run: cannot create the machine: %s\n", vmm_strerror(err));
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
    return m;
}

int main(int argc, char **argv)
{
    Args a;
    if (parse_args(argc, argv, &a) < 0) {
        return 2;
    }
    Loop l = { .listen_fd = -1, .stdin_open = true };
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
    VmmMachine *m = build(&a);
    if (!m) {
        return 2;
    }
    if (a.seccomp) {
        int r = install_seccomp(a.seccomp_log);
        if (r < 0) {
            fprintf(stderr, "vmmkit-run: seccomp filter: %s\n", vmm_strerror(r));
            vmm_machine_free(m);
            return 2;
        }
        fprintf(stderr, "vmmkit-run: seccomp filter installed%s\n",
                a.seccomp_log ? " (log only)" : "");
    }
    term_raw();
    int status;
    char msg[256] = "";
    for (;;) {
        int r = vmm_machine_start(m);
        int st = r < 0 ? r : run_machine(m, &l, msg, sizeof(msg));
        vmm_machine_free(m);
        m = NULL;
        if (st == VMM_MACHINE_REBOOT) {
            m = build(&a);
            if (m) {
                continue;
            }
            status = 2;
            break;
        }
        if (st == VMM_MACHINE_POWEROFF) {
            status = 0;
        } else if (st == VMM_MACHINE_STOPPED) {
            fprintf(stderr, "vmmkit-run: stopped\n");
            status = 130;
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
    if (a.api_socket) {
        unlink(a.api_socket);
    }
    return status;
}
