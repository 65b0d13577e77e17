/* SPDX-License-Identifier: MIT */
/*
 * netcheck: a byte stream with a checksum checked on both ends, over TCP
 * (IPv6) or AF_VSOCK.  Static, for the test guest's initramfs and for the
 * host side of the networking tests.
 *
 *   netcheck tcp-recv PORT            accept one connection on [::]:PORT
 *   netcheck tcp-send ADDR6 PORT N    send N random bytes to [ADDR6]:PORT
 *   netcheck vsock-recv PORT          accept one connection on vsock PORT
 *   netcheck vsock-send CID PORT N    send N random bytes to CID:PORT
 *   netcheck rr-server PORT           echo 1-byte requests on [::]:PORT until EOF
 *   netcheck rr-client ADDR6 PORT N   N 1-byte request/response round trips
 *
 * The receiver reads to the end of the stream, prints and sends back
 * "sum=<FNV-1a 64 of the bytes> len=<count>"; the sender computes the same
 * over what it sent, reads the receiver's line and checks it.  Both print
 * "NETCHECK <role> OK len=... sum=... secs=..." (exit 0; secs: from the
 * connection to the end of the stream, for the receiver, or to the
 * checksum's arrival, for the sender) or "NETCHECK <role> FAIL <why>"
 * (exit 1).  rr-client prints "NETCHECK rr-client OK n=N usecs=<mean round
 * trip>".  Connections are retried for up to 60 seconds.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/vm_sockets.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *role = "?";

static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("NETCHECK %s FAIL ", role);
    vprintf(fmt, ap);
    printf(" (errno %d: %s)\n", errno, strerror(errno));
    va_end(ap);
    exit(1);
}

static uint64_t fnv(uint64_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h = (h ^ p[i]) * 0x100000001b3ull;
    }
    return h;
}

#define FNV_INIT 0xcbf29ce484222325ull

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int listen_on(int family, uint32_t port)
{
    int s = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) {
        fail("socket");
    }
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (family == AF_VSOCK) {
        struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY,
                                 .svm_port = port };
        if (bind(s, (struct sockaddr *)&a, sizeof(a)) < 0) {
            fail("bind vsock port %u", port);
        }
    } else {
        struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port),
                                  .sin6_addr = IN6ADDR_ANY_INIT };
        if (bind(s, (struct sockaddr *)&a, sizeof(a)) < 0) {
            fail("bind [::]:%u", port);
        }
    }
    if (listen(s, 1) < 0) {
        fail("listen");
    }
    printf("NETCHECK %s LISTENING port=%u\n", role, port);
    fflush(stdout);
    int c = accept4(s, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0) {
        fail("accept");
    }
    close(s);
    return c;
}

static int recv_main(int family, uint32_t port)
{
    int c = listen_on(family, port);
    double t0 = now();
    static uint8_t buf[65536];
    uint64_t h = FNV_INIT, len = 0;
    for (;;) {
        ssize_t r = read(c, buf, sizeof(buf));
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            fail("read after %" PRIu64 " bytes", len);
        }
        if (r == 0) {
            break;
        }
        h = fnv(h, buf, (size_t)r);
        len += (uint64_t)r;
    }
    char line[128];
    int n = snprintf(line, sizeof(line), "sum=%016" PRIx64 " len=%" PRIu64 "\n", h, len);
    if (write(c, line, (size_t)n) != n) {
        fail("write the checksum");
    }
    double secs = now() - t0;
    close(c);
    printf("NETCHECK %s OK len=%" PRIu64 " sum=%016" PRIx64 " secs=%.6f\n", role, len, h, secs);
    return 0;
}

static int connect_to(int family, const char *addr, uint32_t port)
{
    struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port) };
    struct sockaddr_vm av = { .svm_family = AF_VSOCK, .svm_port = port };
    if (family == AF_VSOCK) {
        av.svm_cid = (unsigned)strtoul(addr, NULL, 0);
    } else if (inet_pton(AF_INET6, addr, &a6.sin6_addr) != 1) {
        fail("bad address %s", addr);
    }
    for (int tries = 0;; tries++) {
        int s = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (s < 0) {
            fail("socket");
        }
        int r = family == AF_VSOCK ? connect(s, (struct sockaddr *)&av, sizeof(av)) :
                                     connect(s, (struct sockaddr *)&a6, sizeof(a6));
        if (r == 0) {
            return s;
        }
        if (tries == 600) {
            fail("connect to %s port %u", addr, port);
        }
        close(s);
        usleep(100 * 1000);
    }
}

static int send_main(int family, const char *addr, uint32_t port, uint64_t total)
{
    int s = connect_to(family, addr, port);
    double t0 = now();
    static uint8_t buf[65536];
    uint64_t x = (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
    uint64_t h = FNV_INIT, sent = 0;
    while (sent < total) {
        size_t n = total - sent < sizeof(buf) ? (size_t)(total - sent) : sizeof(buf);
        for (size_t i = 0; i < n; i += 8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            memcpy(buf + i, &x, n - i < 8 ? n - i : 8);
        }
        h = fnv(h, buf, n);
        for (size_t off = 0; off < n;) {
            ssize_t w = write(s, buf + off, n - off);
            if (w < 0 && errno == EINTR) {
                continue;
            }
            if (w <= 0) {
                fail("write after %" PRIu64 " bytes", sent + off);
            }
            off += (size_t)w;
        }
        sent += n;
    }
    shutdown(s, SHUT_WR);
    char line[128] = "";
    size_t got = 0;
    while (got < sizeof(line) - 1) {
        ssize_t r = read(s, line + got, sizeof(line) - 1 - got);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            break;
        }
        got += (size_t)r;
    }
    line[got] = '\0';
    char want[128];
    snprintf(want, sizeof(want), "sum=%016" PRIx64 " len=%" PRIu64 "\n", h, total);
    if (strcmp(line, want)) {
        errno = 0;
        fail("the receiver saw '%.*s', sent %s", (int)strcspn(line, "\n"), line, want);
    }
    double secs = now() - t0;
    close(s);
    printf("NETCHECK %s OK len=%" PRIu64 " sum=%016" PRIx64 " secs=%.6f\n", role, total, h,
           secs);
    return 0;
}

static int nodelay(int s)
{
    int one = 1;
    return setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static int rr_server(uint32_t port)
{
    int c = listen_on(AF_INET6, port);
    uint8_t b;
    uint64_t n = 0;
    nodelay(c);
    for (;;) {
        ssize_t r = read(c, &b, 1);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            break;
        }
        if (write(c, &b, 1) != 1) {
            fail("echo");
        }
        n++;
    }
    close(c);
    printf("NETCHECK %s OK n=%" PRIu64 "\n", role, n);
    return 0;
}

static int rr_client(const char *addr, uint32_t port, uint64_t count)
{
    int s = connect_to(AF_INET6, addr, port);
    nodelay(s);
    uint8_t b = 0;
    double t0 = 0;
    for (uint64_t i = 0; i < count + 100; i++) {
        if (i == 100) {
            t0 = now();             /* after 100 warm-up round trips */
        }
        b++;
        uint8_t got;
        if (write(s, &b, 1) != 1 || read(s, &got, 1) != 1 || got != b) {
            fail("round trip %" PRIu64, i);
        }
    }
    double us = (now() - t0) * 1e6 / (double)count;
    close(s);
    printf("NETCHECK %s OK n=%" PRIu64 " usecs=%.2f\n", role, count, us);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 3 && !strcmp(argv[1], "tcp-recv")) {
        role = argv[1];
        return recv_main(AF_INET6, (uint32_t)atoi(argv[2]));
    }
    if (argc >= 3 && !strcmp(argv[1], "vsock-recv")) {
        role = argv[1];
        return recv_main(AF_VSOCK, (uint32_t)atoi(argv[2]));
    }
    if (argc >= 5 && !strcmp(argv[1], "tcp-send")) {
        role = argv[1];
        return send_main(AF_INET6, argv[2], (uint32_t)atoi(argv[3]),
                         strtoull(argv[4], NULL, 0));
    }
    if (argc >= 5 && !strcmp(argv[1], "vsock-send")) {
        role = argv[1];
        return send_main(AF_VSOCK, argv[2], (uint32_t)atoi(argv[3]),
                         strtoull(argv[4], NULL, 0));
    }
    if (argc >= 3 && !strcmp(argv[1], "rr-server")) {
        role = argv[1];
        return rr_server((uint32_t)atoi(argv[2]));
    }
    if (argc >= 5 && !strcmp(argv[1], "rr-client")) {
        role = argv[1];
        return rr_client(argv[2], (uint32_t)atoi(argv[3]), strtoull(argv[4], NULL, 0));
    }
    fprintf(stderr, "usage: netcheck tcp-recv PORT | tcp-send ADDR6 PORT N | "
                    "vsock-recv PORT | vsock-send CID PORT N | rr-server PORT | "
                    "rr-client ADDR6 PORT N\n");
    return 2;
}
