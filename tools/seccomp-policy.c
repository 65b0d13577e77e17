/* SPDX-License-Identifier: MIT */
/* vmmkit-run's seccomp allow list (seccomp-policy.h). */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#ifdef HAVE_SECCOMP
#include <seccomp.h>
#endif

#include "seccomp-policy.h"

/*
 * An allow list, installed after the machine is built and applied to every
 * thread (TSYNC), the vCPU threads included: what the VMM does from then on
 * - run vCPUs (KVM ioctls, the kick signal), serve disks (io_uring, or the
 * thread pool's preadv/pwritev/fdatasync), the console and the control
 * socket, rebuild the machine on a guest reboot (open the kernel, the
 * initrd, the images and /dev/kvm again, map RAM) - and nothing else: no
 * exec, fork, ptrace, mount, module or kexec calls, no listening or
 * datagram/raw/netlink/packet sockets.  One exception for the control
 * socket's "migrate ADDRESS", whose address comes after the filter is in:
 * socket() only as (AF_UNIX, AF_INET or AF_INET6, SOCK_STREAM|SOCK_CLOEXEC,
 * protocol 0) - the exact call vmmkit-run makes - and connect() (its
 * address is a pointer, which a filter cannot check: any stream peer the
 * process can reach; no bind, listen or other socket kinds).  Anything else fails with EPERM (the library turns
 * a failed call into an error, never a crash), or with --seccomp log is
 * allowed and logged by the kernel (audit, "type=1326") to find what a new
 * path needs.  The list was taken from strace -f -c of a demo boot with a
 * disk, two vCPUs and the control socket, plus the calls of paths that
 * boot did not take (docs/machine.md).
 *
 * restart_syscall belongs with them though no strace of a quiet boot shows
 * it: a poll() with a timeout that is interrupted without a handler running
 * (the io_uring task work of a disk completion, a stop and continue)
 * resumes as restart_syscall, and refusing it turns the main loop's wait
 * into an EPERM.
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
    "getegid", "restart_syscall",
    /* waiting */
    "poll", "ppoll", "select", "pselect6", "epoll_create1", "epoll_ctl", "epoll_wait",
    "epoll_pwait", "epoll_pwait2", "eventfd2", "signalfd4", "timerfd_create",
    "timerfd_settime", "timerfd_gettime",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    /* the control socket (created before the filter) */
    "accept", "accept4", "recvfrom", "recvmsg", "sendto", "sendmsg", "shutdown",
    "getsockopt", "setsockopt",
};

int run_seccomp_install(bool log_only)
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
    /* An outgoing stream connection (the migration's): argument-checked. */
    static const int families[] = { AF_UNIX, AF_INET, AF_INET6 };
    int nr_socket = seccomp_syscall_resolve_name("socket");
    for (size_t i = 0; r == 0 && i < sizeof(families) / sizeof(families[0]); i++) {
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr_socket, 3,
                             SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)families[i]),
                             SCMP_A1(SCMP_CMP_EQ, (scmp_datum_t)(SOCK_STREAM | SOCK_CLOEXEC)),
                             SCMP_A2(SCMP_CMP_EQ, 0));
    }
    if (r == 0) {
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, seccomp_syscall_resolve_name("connect"), 0);
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
