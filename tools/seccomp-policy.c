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
#ifdef HAVE_SECCOMP
/* Numbers from libseccomp's headers (negative: not a system call here). */
#define S(name) SCMP_SYS(name)
static const int allowed_calls[] = {
    /* files and descriptors */
    S(read), S(write), S(readv), S(writev), S(pread64), S(pwrite64), S(preadv), S(pwritev),
    S(preadv2), S(pwritev2), S(openat), S(open), S(close), S(fstat), S(newfstatat), S(statx),
    S(lseek), S(fcntl), S(ioctl), S(dup), S(dup3), S(fsync), S(fdatasync), S(fallocate),
    S(ftruncate), S(unlink), S(unlinkat), S(readlink), S(readlinkat), S(getcwd), S(access),
    S(faccessat), S(faccessat2), S(pipe2), S(fstatfs),
    /* memory */
    S(mmap), S(munmap), S(mprotect), S(madvise), S(mremap), S(brk), S(membarrier),
    /* threads, signals, time */
    S(futex), S(clone), S(clone3), S(set_robust_list), S(rseq), S(set_tid_address), S(exit),
    S(exit_group), S(gettid), S(getpid), S(tgkill), S(tkill), S(rt_sigaction),
    S(rt_sigprocmask), S(rt_sigreturn), S(sigaltstack), S(sched_yield), S(sched_getaffinity),
    S(nanosleep),
    S(clock_nanosleep), S(clock_gettime), S(clock_getres), S(gettimeofday), S(prctl),
    S(getrandom), S(prlimit64), S(getrlimit), S(uname), S(getuid), S(geteuid), S(getgid),
    S(getegid), S(restart_syscall),
    /* waiting */
    S(poll), S(ppoll), S(select), S(pselect6), S(epoll_create1), S(epoll_ctl), S(epoll_wait),
    S(epoll_pwait), S(epoll_pwait2), S(eventfd2), S(signalfd4), S(timerfd_create),
    S(timerfd_settime), S(timerfd_gettime),
    S(io_uring_setup), S(io_uring_enter), S(io_uring_register),
    /* the control socket (created before the filter) */
    S(accept), S(accept4), S(recvfrom), S(recvmsg), S(sendto), S(sendmsg), S(shutdown),
    S(getsockopt), S(setsockopt),
};
#undef S
#endif

int run_seccomp_install(bool log_only)
{
#ifdef HAVE_SECCOMP
    scmp_filter_ctx ctx = seccomp_init(log_only ? SCMP_ACT_LOG : SCMP_ACT_ERRNO(EPERM));
    if (!ctx) {
        return -ENOMEM;
    }
    int r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
    for (size_t i = 0; r == 0 && i < sizeof(allowed_calls) / sizeof(allowed_calls[0]); i++) {
        int nr = allowed_calls[i];
        if (nr < 0) {
            continue;           /* not a system call on this architecture */
        }
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
    }
    /* An outgoing stream connection (the migration's): argument-checked. */
    static const int families[] = { AF_UNIX, AF_INET, AF_INET6 };
    int nr_socket = SCMP_SYS(socket);
    for (size_t i = 0; r == 0 && i < sizeof(families) / sizeof(families[0]); i++) {
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr_socket, 3,
                             SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)families[i]),
                             SCMP_A1(SCMP_CMP_EQ, (scmp_datum_t)(SOCK_STREAM | SOCK_CLOEXEC)),
                             SCMP_A2(SCMP_CMP_EQ, 0));
    }
    if (r == 0) {
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(connect), 0);
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
