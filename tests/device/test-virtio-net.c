/* SPDX-License-Identifier: MIT */
/*
 * virtio-net driven as a guest driver would (rings in guest memory, the
 * queues in an iothread) on a real tap interface.  The test process moves
 * into a network namespace of its own first (unshare(CLONE_NEWNET)), so the
 * tap and everything sent through it exist only there; the tap's host side
 * is an AF_PACKET socket bound to it.  Without the privilege for that
 * (CAP_SYS_ADMIN, CAP_NET_ADMIN) or without /dev/net/tun, the tests skip.
 */
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <linux/ethtool.h>
#include <linux/if_packet.h>
#include <linux/sockios.h>
#include <linux/if_tun.h>
#include <linux/virtio_net.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "vmmkit/aio.h"
#include "vmmkit/memory.h"
#include "vmmkit/virtio-net.h"
#include "vq-driver.h"

#define MiB (1ull << 20)
#define RXQ 0
#define TXQ 1
#define QSIZE 64
#define RXBUF 0x40000       /* receive buffers: 4 KiB slots */
#define TXBUF 0x80000       /* transmit buffers: 16 KiB slots */
#define ETHERTYPE 0x88b5    /* IEEE local experimental */
#define TAP "vnt0"
#define HDR 12

static bool have_netns;

typedef struct T {
    VmmGuestMemory *mem;
    VmmRamRegion *ram;
    uint8_t *host;
    VmmIOThread *iot;
    VmmVirtioNet *net;
    VmmVirtioDevice *vdev;
    TestVq tq[2];
    int pkt;                /* AF_PACKET socket on the tap */
    int ifindex;
    int irqs[2];            /* atomic: queue interrupts */
    int config_irqs;        /* atomic */
    unsigned rx_slot, tx_slot;
} T;

static void irq_cb(void *opaque, VmmVirtioDevice *vdev, int queue)
{
    T *t = opaque;
    (void)vdev;
    __atomic_add_fetch(queue < 0 ? &t->config_irqs : &t->irqs[queue], 1, __ATOMIC_RELAXED);
}

#define WAIT_NS (30 * 1000000000LL)
#define WAIT_UNTIL(cond) ({                                               \
    int64_t end_ = vmm_clock_ns() + WAIT_NS;                              \
    while (!(cond) && vmm_clock_ns() < end_) {                            \
        vmm_aio_poll(vmm_aio_context_main(), false);                      \
        usleep(500);                                                      \
    }                                                                     \
    (cond); })

static void ifreq_op(const char *name, unsigned long op, struct ifreq *ifr)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(s >= 0);
    memset(ifr->ifr_name, 0, IFNAMSIZ);
    memcpy(ifr->ifr_name, name, strlen(name));
    assert_int_equal(ioctl(s, op, ifr), 0);
    close(s);
}

/* The tap up with @mtu, an AF_PACKET socket on it. */
static void tap_host_side(T *t, int mtu)
{
    struct ifreq ifr = { 0 };
    ifr.ifr_mtu = mtu;
    ifreq_op(TAP, SIOCSIFMTU, &ifr);
    ifreq_op(TAP, SIOCGIFFLAGS, &ifr);
    ifr.ifr_flags |= IFF_UP;
    ifreq_op(TAP, SIOCSIFFLAGS, &ifr);
    t->ifindex = (int)if_nametoindex(TAP);
    assert_true(t->ifindex > 0);
    t->pkt = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETHERTYPE));
    assert_true(t->pkt >= 0);
    struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETHERTYPE),
                               .sll_ifindex = t->ifindex };
    assert_int_equal(bind(t->pkt, (struct sockaddr *)&sll, sizeof(sll)), 0);
}

/* The host's view of the tap's carrier (with the interface up). */
static bool tap_running(void)
{
    struct ifreq ifr = { 0 };
    ifreq_op(TAP, SIOCGIFFLAGS, &ifr);
    return ifr.ifr_flags & IFF_RUNNING;
}

static const uint8_t guest_mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };

static T *make_nobringup(int mtu)
{
    T *t = calloc(1, sizeof(*t));
    t->host = tvq_ram_new(MiB, &t->mem, &t->ram);
    assert_non_null(t->host);
    t->iot = vmm_iothread_new("net-test", NULL, NULL);
    VmmVirtioNetOptions no = {
        .size = sizeof(no), .name = "net0", .tap_name = TAP, .has_mac = true,
        .queue_size = QSIZE, .ctx = vmm_iothread_get_context(t->iot),
    };
    memcpy(no.mac, guest_mac, 6);
    int err = 0;
    t->net = vmm_virtio_net_new(t->mem, &no, &err);
    if (!t->net) {
        fail_msg("vmm_virtio_net_new: %s", vmm_strerror(err));
    }
    t->vdev = vmm_virtio_net_get_virtio(t->net);
    vmm_virtio_set_interrupt(t->vdev, irq_cb, t);
    tap_host_side(t, mtu);
    return t;
}

static void bringup(T *t, uint64_t f)
{
    TestVq *qs[2] = { &t->tq[0], &t->tq[1] };
    tvq_init(&t->tq[0], t->host, 0x10000, QSIZE);
    tvq_init(&t->tq[1], t->host, 0x18000, QSIZE);
    t->rx_slot = t->tx_slot = 0;
    assert_int_equal(tvq_bringup(t->vdev, qs, 2, f), 0x0f);
}

static uint64_t features(T *t, bool mrg)
{
    uint64_t f = vmm_virtio_get_device_features(t->vdev);
    return mrg ? f : f & ~(1ull << VIRTIO_NET_F_MRG_RXBUF);
}

static T *make(bool mrg, int mtu)
{
    T *t = make_nobringup(mtu);
    bringup(t, features(t, mrg));
    return t;
}

static void destroy(T *t)
{
    vmm_virtio_set_status(t->vdev, 0);
    assert_true(WAIT_UNTIL(vmm_virtio_get_status(t->vdev) == 0));
    vmm_virtio_net_free(t->net);
    vmm_iothread_destroy(t->iot);
    close(t->pkt);
    vmm_guest_memory_unref(t->mem);
    vmm_ram_region_unref(t->ram);
    free(t);
}

static void stats(T *t, VmmVirtioNetStats *s)
{
    s->size = sizeof(*s);
    assert_int_equal(vmm_virtio_net_get_stats(t->net, s), 0);
}

/* A test frame of @len bytes (Ethernet header included), pattern @seed. */
static void frame(uint8_t *f, size_t len, unsigned seed)
{
    memcpy(f, guest_mac, 6);
    static const uint8_t src[6] = { 0x02, 0, 0, 0, 0, 1 };
    memcpy(f + 6, src, 6);
    f[12] = ETHERTYPE >> 8;
    f[13] = ETHERTYPE & 0xff;
    for (size_t i = 14; i < len; i++) {
        f[i] = (uint8_t)(i * 7 + seed);
    }
}

/* Post @n receive buffers of @len bytes. */
static void post_rx(T *t, unsigned n, uint32_t len)
{
    for (unsigned i = 0; i < n; i++) {
        TestBuf b = { RXBUF + 4096ull * (t->rx_slot++ % 64), len, true };
        assert_true(len <= 4096);
        tvq_add(&t->tq[RXQ], &b, 1);
    }
    vmm_virtio_queue_notify(t->vdev, RXQ);
}

/* Queue @len frame bytes for sending, the header in its own descriptor when
 * @split.  Returns the frame's guest address. */
static uint64_t send_tx(T *t, const uint8_t *f, size_t len, bool split)
{
    uint64_t gpa = TXBUF + 16384ull * (t->tx_slot++ % 16);
    memset(t->host + gpa, 0, HDR);              /* no offload */
    memcpy(t->host + gpa + HDR, f, len);
    if (split) {
        TestBuf b[2] = { { gpa, HDR, false }, { gpa + HDR, (uint32_t)len, false } };
        tvq_add(&t->tq[TXQ], b, 2);
    } else {
        TestBuf b = { gpa, (uint32_t)(HDR + len), false };
        tvq_add(&t->tq[TXQ], &b, 1);
    }
    vmm_virtio_queue_notify(t->vdev, TXQ);
    return gpa;
}

/* The next frame of ours on the host side, or -1 after a while. */
static ssize_t host_recv(T *t, uint8_t *buf, size_t len, int timeout_ms)
{
    struct pollfd p = { .fd = t->pkt, .events = POLLIN };
    if (poll(&p, 1, timeout_ms) <= 0) {
        return -1;
    }
    return recv(t->pkt, buf, len, 0);
}

static void host_send(T *t, const uint8_t *f, size_t len)
{
    struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETHERTYPE),
                               .sll_ifindex = t->ifindex, .sll_halen = 6 };
    memcpy(sll.sll_addr, guest_mac, 6);
    assert_int_equal(sendto(t->pkt, f, len, 0, (struct sockaddr *)&sll, sizeof(sll)),
                     (ssize_t)len);
}

static bool wait_used(T *t, unsigned q, uint32_t *id, uint32_t *len)
{
    bool got = false;
    WAIT_UNTIL(got || (got = tvq_get_used(&t->tq[q], id, len)));
    return got;
}

#define SKIP_WITHOUT_NETNS() do { if (!have_netns) { skip(); } } while (0)

/* Offered: what the tap accepts, checked against the kernel directly. */
static void test_features(void **state)
{
    (void)state;
    SKIP_WITHOUT_NETNS();
    T *t = make_nobringup(1500);
    uint64_t f = vmm_virtio_get_device_features(t->vdev);

    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    assert_true(fd >= 0);
    struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR };
    memcpy(ifr.ifr_name, "vprobe0", 8);
    assert_int_equal(ioctl(fd, TUNSETIFF, &ifr), 0);
    bool csum = ioctl(fd, TUNSETOFFLOAD, (unsigned long)TUN_F_CSUM) == 0;
    bool tso4 = ioctl(fd, TUNSETOFFLOAD, (unsigned long)(TUN_F_CSUM | TUN_F_TSO4)) == 0;
    bool tso6 = ioctl(fd, TUNSETOFFLOAD, (unsigned long)(TUN_F_CSUM | TUN_F_TSO6)) == 0;
    close(fd);
    assert_int_equal(!!(f & (1ull << VIRTIO_NET_F_GUEST_CSUM)), csum);
    assert_int_equal(!!(f & (1ull << VIRTIO_NET_F_GUEST_TSO4)), csum && tso4);
    assert_int_equal(!!(f & (1ull << VIRTIO_NET_F_GUEST_TSO6)), csum && tso6);
    uint64_t want = (1ull << VIRTIO_NET_F_MAC) | (1ull << VIRTIO_NET_F_STATUS) |
                    (1ull << VIRTIO_NET_F_MRG_RXBUF) | (1ull << VIRTIO_NET_F_CSUM) |
                    (1ull << VIRTIO_NET_F_HOST_TSO4) | (1ull << VIRTIO_NET_F_HOST_TSO6);
    assert_int_equal(f & want, want);
    /* Nothing the device does not do: no control queue, MQ, UFO, ECN. */
    assert_false(f & ((1ull << VIRTIO_NET_F_CTRL_VQ) | (1ull << VIRTIO_NET_F_MQ) |
                      (1ull << VIRTIO_NET_F_HOST_UFO) | (1ull << VIRTIO_NET_F_GUEST_UFO) |
                      (1ull << VIRTIO_NET_F_GUEST_ECN) | (1ull << VIRTIO_NET_F_HOST_ECN)));
    uint8_t mac[6];
    uint16_t status;
    assert_int_equal(vmm_virtio_config_read(t->vdev, 0, mac, 6), 0);
    assert_memory_equal(mac, guest_mac, 6);
    assert_int_equal(vmm_virtio_config_read(t->vdev, 6, &status, 2), 0);
    assert_int_equal(status, VIRTIO_NET_S_LINK_UP);
    assert_string_equal(vmm_virtio_net_tap_name(t->net), TAP);
    bringup(t, f);
    destroy(t);
}

static void test_tx(void **state)
{
    (void)state;
    SKIP_WITHOUT_NETNS();
    T *t = make(true, 1500);
    uint8_t f[3][1514], got[2048];
    size_t lens[3] = { 60, 1514, 333 };

    for (int i = 0; i < 3; i++) {
        frame(f[i], lens[i], (unsigned)i);
        send_tx(t, f[i], lens[i], i != 1);
    }
    for (int i = 0; i < 3; i++) {
        ssize_t r = host_recv(t, got, sizeof(got), 10000);
        assert_int_equal(r, (ssize_t)lens[i]);
        assert_memory_equal(got, f[i], lens[i]);
        uint32_t id, len;
        assert_true(wait_used(t, TXQ, &id, &len));
        assert_int_equal(len, 0);
    }
    VmmVirtioNetStats s;
    stats(t, &s);
    assert_int_equal(s.tx_packets, 3);
    assert_int_equal(s.tx_bytes, 60 + 1514 + 333);
    assert_int_equal(s.tx_dropped, 0);
    assert_true(WAIT_UNTIL(__atomic_load_n(&t->irqs[TXQ], __ATOMIC_RELAXED) > 0));
    destroy(t);
}

/* One buffer per frame (no MRG_RXBUF): header, num_buffers 1, the frame. */
static void test_rx(void **state)
{
    (void)state;
    SKIP_WITHOUT_NETNS();
    T *t = make(false, 1500);
    uint8_t f[1514];

    post_rx(t, 4, 2048);
    for (unsigned i = 0; i < 3; i++) {
        size_t len = 100 + 600 * i;
        frame(f, len, i + 10);
        host_send(t, f, len);
        uint32_t id, used;
        assert_true(wait_used(t, RXQ, &id, &used));
        assert_int_equal(used, HDR + len);
        uint8_t *buf = t->host + RXBUF + 4096ull * i;
        assert_int_equal(t->tq[RXQ].desc[id].addr, RXBUF + 4096ull * i);
        uint16_t nb;
        memcpy(&nb, buf + 10, 2);
        assert_int_equal(nb, 1);
        assert_memory_equal(buf + HDR, f, len);
    }
    VmmVirtioNetStats s;
    stats(t, &s);
    assert_int_equal(s.rx_packets, 3);
    assert_true(WAIT_UNTIL(__atomic_load_n(&t->irqs[RXQ], __ATOMIC_RELAXED) > 0));
    destroy(t);
}

/* Receive buffers posted, doorbells on ioeventfd-like notifiers, nothing
 * on the tap: the device's context has nothing to do, so it can sleep (a
 * polled receive ring would count as work on every pass: the context
 * spins, reading an empty tap).  Frames and transmissions still flow. */
static void test_rx_idle(void **state)
{
    (void)state;
    SKIP_WITHOUT_NETNS();
    T *t = make(false, 1500);
    VmmEventNotifier *kick[2];
    for (unsigned q = 0; q < 2; q++) {
        kick[q] = vmm_event_notifier_new(NULL);
        assert_non_null(kick[q]);
        assert_int_equal(vmm_virtio_queue_set_host_notifier(t->vdev, q, kick[q]), 0);
    }
    assert_int_equal(vmm_virtio_queue_set_polled(t->vdev, RXQ, true), -EBUSY);
    assert_int_equal(vmm_virtio_queue_set_polled(t->vdev, 2, true), -EINVAL);
    assert_int_equal(vmm_virtio_queue_set_polled(NULL, 0, true), -EINVAL);
    post_rx(t, 8, 2048);
    vmm_event_notifier_set(kick[RXQ]);
    assert_true(tvq_idle(vmm_iothread_get_context(t->iot)));

    uint8_t f[200], g[300];
    frame(f, sizeof(f), 3);
    host_send(t, f, sizeof(f));
    uint32_t id, used;
    assert_true(wait_used(t, RXQ, &id, &used));
    assert_int_equal(used, HDR + sizeof(f));
    assert_memory_equal(t->host + t->tq[RXQ].desc[id].addr + HDR, f, sizeof(f));
    frame(f, sizeof(f), 4);
    send_tx(t, f, sizeof(f), false);
    vmm_event_notifier_set(kick[TXQ]);
    ssize_t n;
    do {
        n = host_recv(t, g, sizeof(g), 5000);
    } while (n > 0 && ((size_t)n != sizeof(f) || memcmp(g, f, sizeof(f))));
    assert_int_equal(n, sizeof(f));
    for (unsigned q = 0; q < 2; q++) {
        assert_int_equal(vmm_virtio_queue_set_host_notifier(t->vdev, q, NULL), 0);
        vmm_event_notifier_free(kick[q]);
    }
    destroy(t);
}

/* A 4000-byte frame over 1 KiB mergeable buffers: four of them. */
static void test_rx_mrg(void **state)
{
    (void)state;
    SKIP_WITHOUT_NETNS();
    T *t = make(true, 9000);
    static uint8_t f[4000], got[4096];

    post_rx(t, 8, 1024);
    frame(f, sizeof(f), 3);
    host_send(t, f, sizeof(f));
    size_t off = 0;
    for (unsigned i = 0; i < 4; i++) {
        uint32_t id, used;
        assert_true(wait_used(t, RXQ, &id, &used));
        assert_int_equal(t->tq[RXQ].desc[id].addr, RXBUF + 4096ull * i);
        memcpy(got + off, t->host + RXBUF + 4096ull * i, used);
        off += used;
    }
    assert_int_equal(off, HDR + sizeof(f));
    uint16_t nb;
    memcpy(&nb, got + 10, 2);
    assert_int_equal(nb, 4);
    assert_memory_equal(got + HDR, f, sizeof(f));
    /* Frame two starts in buffer five. */
    frame(f, 200, 4);
    host_send(t, f, 200);
    uint32_t id, used;
    assert_true(wait_used(t, RXQ, &id, &used));
    assert_int_equal(t->tq[RXQ].desc[id].addr, RXBUF + 4096ull * 4);
    assert_int_equal(used, HDR + 200);
    destroy(t);
}

/* Frames wait for buffers (the device stops reading the tap) and go on
 * when the guest posts some. */
static void test_rx_stall(void **state)
{
    (void)state;
    SKIP_WITHOUT_NETNS();
    T *t = make(true, 1500);
    uint8_t f[2][300];
    VmmVirtioNetStats s;

    for (unsigned i = 0; i < 2; i++) {
        frame(f[i], 300, 20 + i);
        host_send(t, f[i], 300);
    }
    assert_true(WAIT_UNTIL((stats(t, &s), s.rx_stalls >= 1)));
    usleep(20000);
    uint32_t id, used;
    assert_false(tvq_get_used(&t->tq[RXQ], &id, &used));
    post_rx(t, 2, 2048);
    for (unsigned i = 0; i < 2; i++) {
        assert_true(wait_used(t, RXQ, &id, &used));
        assert_int_equal(used, HDR + 300);
        assert_memory_equal(t->host + t->tq[RXQ].desc[id].addr + HDR, f[i], 300);
    }
    stats(t, &s);
    assert_int_equal(s.rx_packets, 2);
    assert_int_equal(s.rx_dropped, 0);
    destroy(t);
}

/* Non-mergeable buffers too small for a frame: it is dropped, the buffer
 * stays for the next frame. */
static void test_rx_too_large(void **state)
{
    (void)state;
    SKIP_WITHOUT_NETNS();
    T *t = make(false, 1500);
    uint8_t f[600];
    VmmVirtioNetStats s;

    post_rx(t, 1, 200);
    frame(f, 600, 1);
    host_send(t, f, 600);
    assert_true(WAIT_UNTIL((stats(t, &s), s.rx_dropped == 1)));
    frame(f, 100, 2);
    host_send(t, f, 100);
    uint32_t id, used;
    assert_true(wait_used(t, RXQ, &id, &used));
    assert_int_equal(used, HDR + 100);
    assert_memory_equal(t->host + RXBUF + HDR, f, 100);
    assert_int_equal(vmm_virtio_get_status(t->vdev), 0x0f);
    destroy(t);
}

/* Link down: config interrupt, status field, both directions dropped; up
 * again: traffic flows. */
static void test_link(void **state)
{
    (void)state;
    SKIP_WITHOUT_NETNS();
    T *t = make(true, 1500);
    uint8_t f[200], got[2048];
    uint16_t status;
    VmmVirtioNetStats s;
    uint32_t gen = vmm_virtio_config_generation(t->vdev);

    post_rx(t, 4, 2048);
    assert_int_equal(vmm_virtio_net_set_link(t->net, false), 0);
    assert_int_equal(__atomic_load_n(&t->config_irqs, __ATOMIC_RELAXED), 1);
    assert_true(vmm_virtio_config_generation(t->vdev) != gen);
    assert_int_equal(vmm_virtio_config_read(t->vdev, 6, &status, 2), 0);
    assert_int_equal(status, 0);
    assert_true(WAIT_UNTIL(!tap_running()));               /* TUNSETCARRIER */
    frame(f, 200, 5);
    send_tx(t, f, 200, false);
    uint32_t id, used;
    assert_true(wait_used(t, TXQ, &id, &used));
    stats(t, &s);
    assert_int_equal(s.tx_dropped, 1);
    assert_int_equal(host_recv(t, got, sizeof(got), 100), -1);

    assert_int_equal(vmm_virtio_net_set_link(t->net, true), 0);
    assert_int_equal(__atomic_load_n(&t->config_irqs, __ATOMIC_RELAXED), 2);
    assert_int_equal(vmm_virtio_config_read(t->vdev, 6, &status, 2), 0);
    assert_int_equal(status, VIRTIO_NET_S_LINK_UP);
    assert_true(WAIT_UNTIL(tap_running()));
    send_tx(t, f, 200, false);
    assert_int_equal(host_recv(t, got, sizeof(got), 10000), 200);
    assert_memory_equal(got, f, 200);
    host_send(t, f, 200);
    assert_true(wait_used(t, RXQ, &id, &used));
    assert_int_equal(used, HDR + 200);
    destroy(t);
}

/* Paused (quiesced): frames wait in the tap; after the resume they arrive. */
static void test_pause(void **state)
{
    (void)state;
    SKIP_WITHOUT_NETNS();
    T *t = make(true, 1500);
    uint8_t f[3][150];
    VmmDevice *dev = vmm_virtio_device_get_device(t->vdev);

    post_rx(t, 8, 2048);
    assert_int_equal(vmm_device_pause(dev, NULL, NULL), 0);
    assert_true(WAIT_UNTIL(vmm_device_is_quiesced(dev)));
    for (unsigned i = 0; i < 3; i++) {
        frame(f[i], 150, 30 + i);
        host_send(t, f[i], 150);
    }
    usleep(50000);
    uint32_t id, used;
    assert_false(tvq_get_used(&t->tq[RXQ], &id, &used));
    assert_int_equal(vmm_device_unpause(dev), 0);
    for (unsigned i = 0; i < 3; i++) {
        assert_true(wait_used(t, RXQ, &id, &used));
        assert_memory_equal(t->host + t->tq[RXQ].desc[id].addr + HDR, f[i], 150);
    }
    destroy(t);
}

/* The tap's transmit checksum offload as the host's ethtool reports it:
 * on only while the guest accepts partial checksums (TUNSETOFFLOAD). */
static int tap_tx_csum(void)
{
    struct ethtool_value ev = { .cmd = ETHTOOL_GTXCSUM };
    struct ifreq ifr = { .ifr_data = (void *)&ev };
    ifreq_op(TAP, SIOCETHTOOL, &ifr);
    return (int)ev.data;
}

static void tap_persist(int on)
{
    int fd = vmm_virtio_net_open_tap(TAP);
    assert_true(fd >= 0);
    assert_int_equal(ioctl(fd, TUNSETPERSIST, on), 0);
    close(fd);
}

/* Saved (quiesced) with receive buffers posted, the link down and the
 * checksum offloads negotiated; the device freed, a new one on the same
 * (persistent) tap takes the record over: the link is still down (the tap's
 * carrier too), the offloads are back on the tap, and once the link is up
 * a frame from the host lands in a buffer the driver posted before the
 * save, and one from the driver reaches the host. */
static void test_save_load(void **state)
{
    (void)state;
    SKIP_WITHOUT_NETNS();
    tap_persist(1);
    T *t = make(true, 1500);
    uint64_t f = features(t, true);
    assert_true(f & (1ull << VIRTIO_NET_F_GUEST_CSUM));
    assert_int_equal(tap_tx_csum(), 1);
    post_rx(t, 4, 2048);
    assert_int_equal(vmm_virtio_net_set_link(t->net, false), 0);
    assert_true(WAIT_UNTIL(!tap_running()));
    VmmDevice *dev = vmm_virtio_device_get_device(t->vdev);
    assert_int_equal(vmm_device_pause(dev, NULL, NULL), 0);
    assert_true(WAIT_UNTIL(vmm_device_is_quiesced(dev)));
    size_t len = vmm_virtio_state_size(t->vdev);
    uint8_t *rec = malloc(len);
    assert_int_equal(vmm_virtio_save_state(t->vdev, rec, len), 0);
    /* The old device goes (reset first: it clears the tap's offloads,
     * which the load must set again). */
    assert_int_equal(vmm_device_unpause(dev), 0);
    vmm_virtio_set_status(t->vdev, 0);
    assert_true(WAIT_UNTIL(vmm_virtio_get_status(t->vdev) == 0));
    vmm_virtio_net_free(t->net);
    vmm_iothread_destroy(t->iot);

    /* The new device (its options' MAC differ: the saved one is the guest's). */
    t->iot = vmm_iothread_new("net-test2", NULL, NULL);
    VmmVirtioNetOptions no = { .size = sizeof(no), .name = "net0", .tap_name = TAP,
                               .queue_size = QSIZE, .ctx = vmm_iothread_get_context(t->iot) };
    int err = 0;
    t->net = vmm_virtio_net_new(t->mem, &no, &err);
    assert_non_null(t->net);
    t->vdev = vmm_virtio_net_get_virtio(t->net);
    vmm_virtio_set_interrupt(t->vdev, irq_cb, t);
    assert_int_equal(tap_tx_csum(), 0);                 /* a new device: none yet */
    assert_int_equal(vmm_virtio_load_state(t->vdev, rec, len), 0);
    free(rec);
    assert_int_equal(tap_tx_csum(), 1);
    uint8_t mac[6];
    uint16_t status;
    assert_int_equal(vmm_virtio_config_read(t->vdev, 0, mac, 6), 0);
    assert_memory_equal(mac, guest_mac, 6);
    assert_int_equal(vmm_virtio_config_read(t->vdev, 6, &status, 2), 0);
    assert_int_equal(status, 0);
    assert_true(WAIT_UNTIL(!tap_running()));
    uint8_t fr[300], got[2048];
    frame(fr, 200, 40);
    send_tx(t, fr, 200, false);
    uint32_t id, used;
    assert_true(wait_used(t, TXQ, &id, &used));
    VmmVirtioNetStats s;
    stats(t, &s);
    assert_int_equal(s.tx_dropped, 1);                  /* the link is down */
    assert_int_equal(host_recv(t, got, sizeof(got), 100), -1);

    assert_int_equal(vmm_virtio_net_set_link(t->net, true), 0);
    assert_true(WAIT_UNTIL(tap_running()));
    host_send(t, fr, 200);
    assert_true(wait_used(t, RXQ, &id, &used));
    assert_int_equal(used, HDR + 200);
    assert_true(id < 4);                                /* posted before the save */
    assert_memory_equal(t->host + t->tq[RXQ].desc[id].addr + HDR, fr, 200);
    frame(fr, 300, 41);
    send_tx(t, fr, 300, true);
    assert_int_equal(host_recv(t, got, sizeof(got), 10000), 300);
    assert_memory_equal(got, fr, 300);
    destroy(t);
    tap_persist(0);
}

/* A hostile driver: each malformed chain marks the device broken and the
 * host goes on; a reset and a new bring-up make it work again. */
static void hostile(bool rx, const TestBuf *bufs, unsigned n)
{
    T *t = make(true, 1500);
    uint8_t f[100], got[2048];

    if (rx) {
        tvq_add(&t->tq[RXQ], bufs, n);
        vmm_virtio_queue_notify(t->vdev, RXQ);
        frame(f, 100, 9);
        host_send(t, f, 100);
    } else {
        tvq_add(&t->tq[TXQ], bufs, n);
        vmm_virtio_queue_notify(t->vdev, TXQ);
    }
    assert_true(WAIT_UNTIL(vmm_virtio_get_status(t->vdev) &
                           VMM_VIRTIO_STATUS_DEVICE_NEEDS_RESET));
    assert_true(WAIT_UNTIL(__atomic_load_n(&t->config_irqs, __ATOMIC_RELAXED) >= 1));
    uint32_t id, used;
    assert_false(tvq_get_used(&t->tq[rx ? RXQ : TXQ], &id, &used));

    vmm_virtio_set_status(t->vdev, 0);
    assert_true(WAIT_UNTIL(vmm_virtio_get_status(t->vdev) == 0));
    bringup(t, features(t, true));
    while (host_recv(t, got, sizeof(got), 0) >= 0) {
    }
    post_rx(t, 2, 2048);
    frame(f, 100, 10);
    send_tx(t, f, 100, true);
    assert_int_equal(host_recv(t, got, sizeof(got), 10000), 100);
    assert_memory_equal(got, f, 100);
    host_send(t, f, 100);
    assert_true(wait_used(t, RXQ, &id, &used));
    assert_int_equal(used, HDR + 100);
    destroy(t);
}

static void test_hostile_tx_short(void **state)
{
    (void)state;
    SKIP_WITHOUT_NETNS();
    TestBuf b[2] = { { TXBUF, 4, false }, { TXBUF + 4, 7, false } };    /* 11 < 12 */
    hostile(false, b, 2);
}

static void test_hostile_tx_writable(void **state)
{
    (void)state;
    SKIP_WITHOUT_NETNS();
    TestBuf b[2] = { { TXBUF, 64, false }, { TXBUF + 64, 64, true } };
    hostile(false, b, 2);
}

static void test_hostile_rx_readable(void **state)
{
    (void)state;
    SKIP_WITHOUT_NETNS();
    TestBuf b = { RXBUF, 2048, false };
    hostile(true, &b, 1);
}

static void test_hostile_rx_short(void **state)
{
    (void)state;
    SKIP_WITHOUT_NETNS();
    TestBuf b = { RXBUF, 8, true };
    hostile(true, &b, 1);
}

static void test_hostile_rx_outside(void **state)
{
    (void)state;
    SKIP_WITHOUT_NETNS();
    TestBuf b = { MiB - 100, 2048, true };                  /* past guest RAM */
    hostile(true, &b, 1);
}

/* Bad arguments and bad backends get errors. */
static void test_bad_args(void **state)
{
    (void)state;
    SKIP_WITHOUT_NETNS();
    VmmGuestMemory *mem = vmm_guest_memory_new(NULL);
    VmmVirtioNetOptions o = { .size = sizeof(o), .tap_fd = -1 };
    int err = 0;

    assert_null(vmm_virtio_net_new(NULL, &o, &err));
    assert_int_equal(err, -EINVAL);
    assert_null(vmm_virtio_net_new(mem, NULL, &err));
    assert_int_equal(err, -EINVAL);
    assert_null(vmm_virtio_net_new(mem, &o, &err));         /* fd -1 */
    assert_int_equal(err, -EINVAL);
    o.tap_name = "a-name-much-too-long-for-an-interface";
    assert_null(vmm_virtio_net_new(mem, &o, &err));
    assert_int_equal(err, -EINVAL);
    o.tap_name = "vnt1";
    o.queue_size = 100;
    assert_null(vmm_virtio_net_new(mem, &o, &err));
    assert_int_equal(err, -EINVAL);
    o.queue_size = 0;
    o.tap_name = NULL;
    int p[2];
    assert_int_equal(pipe(p), 0);
    o.tap_fd = p[0];                                        /* not a tap */
    assert_null(vmm_virtio_net_new(mem, &o, &err));
    assert_int_equal(err, -EINVAL);
    close(p[0]);
    close(p[1]);
    /* A tap without the virtio-net header. */
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI };
    memcpy(ifr.ifr_name, "vnt2", 5);
    assert_int_equal(ioctl(fd, TUNSETIFF, &ifr), 0);
    o.tap_fd = fd;
    assert_null(vmm_virtio_net_new(mem, &o, &err));
    assert_int_equal(err, -EINVAL);
    close(fd);
    /* A good one by fd: the device keeps a duplicate. */
    fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    memcpy(ifr.ifr_name, "vnt3", 5);
    assert_int_equal(ioctl(fd, TUNSETIFF, &ifr), 0);
    o.tap_fd = fd;
    VmmVirtioNet *n = vmm_virtio_net_new(mem, &o, &err);
    assert_non_null(n);
    close(fd);
    assert_string_equal(vmm_virtio_net_tap_name(n), "vnt3");
    uint8_t mac[6];
    assert_int_equal(vmm_virtio_config_read(vmm_virtio_net_get_virtio(n), 0, mac, 6), 0);
    assert_true((mac[0] & 3) == 2);                         /* local, unicast */
    VmmVirtioNetStats s = { .size = 1 };
    assert_int_equal(vmm_virtio_net_get_stats(n, &s), -EINVAL);
    vmm_virtio_net_free(n);
    vmm_virtio_net_free(NULL);
    assert_int_equal(vmm_virtio_net_set_link(NULL, true), -EINVAL);
    vmm_guest_memory_unref(mem);
}

static void quiet(VmmLogLevel l, const char *m, void *o)
{
    (void)l;
    (void)m;
    (void)o;
}

int main(void)
{
    /* Everything below happens in a network namespace of our own. */
    have_netns = unshare(CLONE_NEWNET) == 0 && access("/dev/net/tun", R_OK | W_OK) == 0;
    if (have_netns) {
        /* No IPv6 autoconfiguration traffic on the test's interfaces. */
        int fd = open("/proc/sys/net/ipv6/conf/default/disable_ipv6", O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
            if (write(fd, "1", 1) != 1) {
                have_netns = false;
            }
            close(fd);
        }
    }
    vmm_set_log_handler(quiet, NULL, VMM_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_features),
        cmocka_unit_test(test_tx),
        cmocka_unit_test(test_rx),
        cmocka_unit_test(test_rx_mrg),
        cmocka_unit_test(test_rx_idle),
        cmocka_unit_test(test_rx_stall),
        cmocka_unit_test(test_rx_too_large),
        cmocka_unit_test(test_link),
        cmocka_unit_test(test_pause),
        cmocka_unit_test(test_save_load),
        cmocka_unit_test(test_hostile_tx_short),
        cmocka_unit_test(test_hostile_tx_writable),
        cmocka_unit_test(test_hostile_rx_readable),
        cmocka_unit_test(test_hostile_rx_short),
        cmocka_unit_test(test_hostile_rx_outside),
        cmocka_unit_test(test_bad_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
