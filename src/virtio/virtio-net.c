/* SPDX-License-Identifier: MIT */
/*
 * virtio-net on a tap interface (queue 0 receives, queue 1 transmits).
 *
 * Threads: both queues, the tap's fd handler and the re-kick BH run in one
 * AioContext (opts.ctx), one thread, so the data path takes no lock.  Every
 * pass over a queue runs inside handle_queue, i.e. under the virtio core's
 * dispatch (vq->run_lock, never while the device is quiesced): the tap's
 * readability only kicks the receive queue, so a paused device neither
 * pops buffers nor reads frames it could not deliver.
 *  - Receive: handle_queue(rx) reads frames into a bounce buffer until the
 *    tap has none (EAGAIN; the fd handler is armed then) and copies each
 *    into guest buffers.  Without a guest buffer the frame stays pending,
 *    the fd handler is disarmed and doorbells are enabled: the guest's next
 *    doorbell on the receive queue runs handle_queue(rx) again.  When the
 *    fd handler's kick finds the queue stopped (a quiesce), it disarms too;
 *    the resume re-runs the kick it remembered.
 *  - Transmit: handle_queue(tx) writes each chain to the tap (writev of the
 *    guest's buffers, header first).  A full tap (EAGAIN) gives the chain
 *    back to the ring and waits for writability.
 * Main loop / vCPU threads: feature negotiation (TUNSETOFFLOAD), reset, and
 * the link state (an atomic the data path reads, plus the config field).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/virtio_net.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "util/atomic.h"
#include "util/compiler.h"
#include "util/log.h"
#include "virtio/virtio-internal.h"
#include "virtio/virtio-net-buf.h"
#include "vmmkit/aio.h"
#include "vmmkit/virtio-net.h"

#define VNET_RXQ 0
#define VNET_TXQ 1
/* A TSO frame (64 KiB of IP) with its Ethernet and virtio-net headers. */
#define VNET_RX_BUF (65536 + 256)
/* Frames handled per pass before other handlers of the context get a turn. */
#define VNET_BUDGET 256

#ifndef TUNSETCARRIER
#define TUNSETCARRIER _IOW('T', 226, int)
#endif

/* virtio 1.x 5.1.4: mac, status, max_virtqueue_pairs. */
typedef struct VnetConfig {
    uint8_t mac[6];
    uint16_t status;
    uint16_t max_virtqueue_pairs;
} VnetConfig;
_Static_assert(sizeof(VnetConfig) == 10, "virtio-net config layout");

typedef struct VnetStats {
    uint64_t tx_packets, tx_bytes, tx_dropped;
    uint64_t rx_packets, rx_bytes, rx_dropped, rx_stalls;
} VnetStats;

struct VmmVirtioNet {
    VmmVirtioDevice *vdev;
    VmmAioContext *ctx;
    int fd;
    char ifname[IFNAMSIZ];
    char *name;
    unsigned tun_offloads;      /* TUN_F_* the tap accepted */
    bool mrg;                   /* atomic: mergeable receive buffers */
    bool link_up;               /* atomic */
    bool tx_warned, rx_warned;  /* ctx: one warning per kind of tap error */

    /* The context's thread only (set-up: before any pass runs). */
    bool rx_armed;              /* tap readability watched */
    bool tx_wait;               /* tap writability watched (tap full) */
    bool rx_ran;                /* handle_queue(rx) ran for the last kick */
    size_t rx_pending;          /* bytes of a frame in rx_buf, 0: none */
    uint8_t *rx_buf;
    VmmBH *rx_bh, *tx_bh;       /* the next pass once a budget ran out */
    VnetStats st;               /* single writer: the context */
};

static inline void stat_add(uint64_t *v, uint64_t n)
{
    /* Single writer (the queue's context): no read-modify-write needed. */
    vk_atomic_set(v, vk_atomic_read(v) + n);
}

static void tap_readable(void *opaque);
static void tap_writable(void *opaque);

/* Watch the tap for what the passes wait for.  The context's thread. */
static void tap_watch(VmmVirtioNet *n, bool rx, bool tx)
{
    if (n->rx_armed == rx && n->tx_wait == tx) {
        return;
    }
    n->rx_armed = rx;
    n->tx_wait = tx;
    int r = vmm_aio_set_fd_handler(n->ctx, n->fd, rx ? tap_readable : NULL,
                                   tx ? tap_writable : NULL, NULL, NULL, n);
    if (r < 0 && r != -ENOENT) {
        vk_warn("virtio-net '%s': cannot watch tap %s: %d", n->name, n->ifname, r);
    }
}

static void tap_readable(void *opaque)
{
    VmmVirtioNet *n = opaque;

    n->rx_ran = false;
    vmm_virtio_queue_kick(n->vdev, VNET_RXQ);    /* in our thread: at once */
    if (!n->rx_ran) {
        /* Quiesced: the kick is remembered for the resume; stop watching
         * a tap that stays readable meanwhile. */
        tap_watch(n, false, n->tx_wait);
    }
}

static void tap_writable(void *opaque)
{
    VmmVirtioNet *n = opaque;

    tap_watch(n, n->rx_armed, false);
    vmm_virtio_queue_kick(n->vdev, VNET_TXQ);
}

static void rekick_rx(void *opaque)
{
    VmmVirtioNet *n = opaque;
    vmm_virtio_queue_kick(n->vdev, VNET_RXQ);
}

static void rekick_tx(void *opaque)
{
    VmmVirtioNet *n = opaque;
    vmm_virtio_queue_kick(n->vdev, VNET_TXQ);
}

/* Read one frame into rx_buf: its length, 0 when the tap has none, or a
 * negative errno the caller stops on. */
static ssize_t tap_read(VmmVirtioNet *n)
{
    for (;;) {
        ssize_t r = read(n->fd, n->rx_buf, VNET_RX_BUF);
        if (r >= 0) {
            return r ? r : -EIO;
        }
        if (errno == EINTR) {
            continue;
        }
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
    }
}

static void vnet_rx(VmmVirtioNet *n, VmmVirtqueue *vq)
{
    unsigned pushed = 0, budget = VNET_BUDGET;

    n->rx_ran = true;
    vmm_virtqueue_set_notification(vq, false);  /* buffers wanted only when out */
    for (;;) {
        if (!n->rx_pending) {
            if (budget-- == 0) {
                vmm_bh_schedule(n->rx_bh);
                break;
            }
            ssize_t r = tap_read(n);
            if (r == 0) {
                tap_watch(n, true, n->tx_wait);
                break;
            }
            if (r < 0) {
                if (!n->rx_warned) {
                    n->rx_warned = true;
                    vk_warn("virtio-net '%s': reading tap %s: %s; receiving stops",
                            n->name, n->ifname, vmm_strerror((int)r));
                }
                tap_watch(n, false, n->tx_wait);
                break;
            }
            if ((size_t)r < VNET_HDR_LEN || !vk_atomic_read(&n->link_up)) {
                stat_add(&n->st.rx_dropped, 1);
                continue;
            }
            n->rx_pending = (size_t)r;
        }
        /* mrg: acquire pairs with the release in vnet_set_features(). */
        VnetRx res = vnet_rx_deliver(vq, n->rx_buf, n->rx_pending,
                                     vk_atomic_load_acquire(&n->mrg), &pushed);
        if (res == VNET_RX_DONE) {
            stat_add(&n->st.rx_packets, 1);
            stat_add(&n->st.rx_bytes, n->rx_pending - VNET_HDR_LEN);
            n->rx_pending = 0;
            continue;
        }
        if (res == VNET_RX_DROP || res == VNET_RX_NOMEM) {
            stat_add(&n->st.rx_dropped, 1);
            n->rx_pending = 0;
            continue;
        }
        if (res == VNET_RX_NOBUF && vmm_virtqueue_set_notification(vq, true)) {
            /* Buffers arrived while doorbells were off ([D] in virtqueue.c). */
            vmm_virtqueue_set_notification(vq, false);
            continue;
        }
        /* No buffer (doorbells on: the guest's next one brings us back) or
         * a broken device (a reset must come first). */
        if (res == VNET_RX_NOBUF) {
            stat_add(&n->st.rx_stalls, 1);
        }
        tap_watch(n, false, n->tx_wait);
        break;
    }
    if (pushed) {
        vmm_virtqueue_notify(vq);
    }
}

static void vnet_tx(VmmVirtioNet *n, VmmVirtqueue *vq)
{
    unsigned pushed = 0, budget = VNET_BUDGET;
    VmmVirtqElem *e;
    int err;

    if (n->tx_wait) {
        return;                         /* tap_writable() kicks us */
    }
    do {
        vmm_virtqueue_set_notification(vq, false);
        while ((e = vmm_virtqueue_pop(vq, sizeof(*e), &err))) {
            const char *why = vnet_tx_check(e);
            if (why) {
                vmm_virtqueue_detach(vq, e);
                free(e);
                vmm_virtio_set_needs_reset(n->vdev, why);
                goto out;
            }
            ssize_t r = -1;
            if (vk_atomic_read(&n->link_up)) {
                do {
                    r = writev(n->fd, e->iov, (int)e->out_num);
                } while (r < 0 && errno == EINTR);
                if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                    vq_unpop(vq, 1);
                    free(e);
                    tap_watch(n, n->rx_armed, true);
                    goto out;
                }
                if (r < 0 && !n->tx_warned) {
                    n->tx_warned = true;
                    vk_warn("virtio-net '%s': tap %s refused a frame: %s", n->name,
                            n->ifname, vmm_strerror(-errno));
                }
            }
            if (r < 0) {
                stat_add(&n->st.tx_dropped, 1);
            } else {
                stat_add(&n->st.tx_packets, 1);
                stat_add(&n->st.tx_bytes, e->out_len - VNET_HDR_LEN);
            }
            vmm_virtqueue_push(vq, e, 0);
            free(e);
            pushed++;
            if (--budget == 0) {
                vmm_bh_schedule(n->tx_bh);
                goto out;
            }
        }
    } while (vmm_virtqueue_set_notification(vq, true));
out:
    if (pushed) {
        vmm_virtqueue_notify(vq);
    }
}

static void vnet_handle(VmmVirtioDevice *vdev, VmmVirtqueue *vq, void *opaque)
{
    VmmVirtioNet *n = opaque;
    (void)vdev;

    if (vmm_virtqueue_index(vq) == VNET_RXQ) {
        vnet_rx(n, vq);
    } else {
        vnet_tx(n, vq);
    }
}

/* The tap's offloads for what the guest accepts (TUN_F_*). */
static unsigned tun_offloads_for(uint64_t f)
{
    unsigned t = 0;

    if (f & (1ull << VIRTIO_NET_F_GUEST_CSUM)) {
        t |= TUN_F_CSUM;
        if (f & (1ull << VIRTIO_NET_F_GUEST_TSO4)) {
            t |= TUN_F_TSO4;
        }
        if (f & (1ull << VIRTIO_NET_F_GUEST_TSO6)) {
            t |= TUN_F_TSO6;
        }
    }
    return t;
}

static int vnet_set_features(VmmVirtioDevice *vdev, uint64_t f, void *opaque)
{
    VmmVirtioNet *n = opaque;
    (void)vdev;

    if (ioctl(n->fd, TUNSETOFFLOAD, (unsigned long)tun_offloads_for(f)) < 0) {
        int err = -errno;
        vk_warn("virtio-net '%s': TUNSETOFFLOAD: %s", n->name, vmm_strerror(err));
        return err;
    }
    /* Release: pairs with the acquire in vnet_rx(). */
    vk_atomic_store_release(&n->mrg, (f & (1ull << VIRTIO_NET_F_MRG_RXBUF)) != 0);
    return 0;
}

static void vnet_reset(VmmVirtioDevice *vdev, void *opaque)
{
    VmmVirtioNet *n = opaque;
    (void)vdev;

    /* Quiesced: no pass runs, so the pending frame is ours to drop. */
    n->rx_pending = 0;
    vk_atomic_store_release(&n->mrg, false);
    if (ioctl(n->fd, TUNSETOFFLOAD, 0ul) < 0) {
        vk_warn("virtio-net '%s': TUNSETOFFLOAD: %s", n->name, vmm_strerror(-errno));
    }
}

/* The link for the data path (dropping frames when down) and the tap. */
static void vnet_set_carrier(VmmVirtioNet *n, bool up)
{
    vk_atomic_set(&n->link_up, up);
    int carrier = up;
    if (ioctl(n->fd, TUNSETCARRIER, &carrier) < 0 && errno != EINVAL) {
        vk_warn("virtio-net '%s': TUNSETCARRIER: %s", n->name, vmm_strerror(-errno));
    }
}

/* The link as the configuration space says (what the driver was told),
 * for the data path and the tap's carrier.  They differ only on a device
 * that took a saved state over (vmm_virtio_load_state): the record's link
 * may be down, the new device's and a freshly attached tap's are up. */
static void vnet_sync_link(VmmVirtioNet *n)
{
    uint16_t st;
    if (vmm_virtio_config_read(n->vdev, offsetof(VnetConfig, status), &st, sizeof(st)) < 0) {
        return;
    }
    bool up = (le16toh(st) & VIRTIO_NET_S_LINK_UP) != 0;
    if (up == vk_atomic_read(&n->link_up)) {
        return;
    }
    vnet_set_carrier(n, up);
}

static void vnet_driver_ok(VmmVirtioDevice *vdev, void *opaque)
{
    vnet_sync_link(opaque);
    vmm_virtio_queue_kick(vdev, VNET_RXQ);      /* start reading the tap */
}

/* ---- The tap ---------------------------------------------------------------- */

int vmm_virtio_net_open_tap(const char *name)
{
    struct ifreq ifr;

    if (!name || !name[0] || strlen(name) >= IFNAMSIZ) {
        return VMM_MISUSE_ERR(-EINVAL, "vmm_virtio_net_open_tap: bad interface name");
    }
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    memset(&ifr, 0, sizeof(ifr));
    memcpy(ifr.ifr_name, name, strlen(name));
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

/* Open (or check) the tap, set its header size and non-blocking mode, and
 * find the offloads it accepts. */
static int tap_setup(VmmVirtioNet *n, const VmmVirtioNetOptions *o)
{
    struct ifreq ifr;

    memset(&ifr, 0, sizeof(ifr));
    if (o->tap_name) {
        n->fd = vmm_virtio_net_open_tap(o->tap_name);
        if (n->fd < 0) {
            return n->fd;
        }
    } else {
        if (o->tap_fd < 0) {
            return -EINVAL;
        }
        n->fd = fcntl(o->tap_fd, F_DUPFD_CLOEXEC, 0);
        if (n->fd < 0) {
            return errno == EBADF ? -EINVAL : -errno;
        }
    }
    if (ioctl(n->fd, TUNGETIFF, &ifr) < 0) {
        return -EINVAL;                 /* not a tun/tap fd, or not attached */
    }
    if ((ifr.ifr_flags & (IFF_TUN | IFF_TAP)) != IFF_TAP ||
        !(ifr.ifr_flags & IFF_VNET_HDR) || !(ifr.ifr_flags & IFF_NO_PI)) {
        return -EINVAL;
    }
    memcpy(n->ifname, ifr.ifr_name, IFNAMSIZ);
    n->ifname[IFNAMSIZ - 1] = 0;
    int hdr = VNET_HDR_LEN;
    if (ioctl(n->fd, TUNSETVNETHDRSZ, &hdr) < 0) {
        return -errno;
    }
    int fl = fcntl(n->fd, F_GETFL);
    if (fl < 0 || fcntl(n->fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        return -errno;
    }
    /* Each offload the kernel's tap takes, tried alone (TSO needs CSUM). */
    static const unsigned tries[] = { TUN_F_CSUM, TUN_F_CSUM | TUN_F_TSO4,
                                      TUN_F_CSUM | TUN_F_TSO6 };
    for (size_t i = 0; i < VMM_ARRAY_SIZE(tries); i++) {
        if (ioctl(n->fd, TUNSETOFFLOAD, (unsigned long)tries[i]) == 0) {
            n->tun_offloads |= tries[i];
        }
    }
    if (ioctl(n->fd, TUNSETOFFLOAD, 0ul) < 0) {
        return -errno;
    }
    return 0;
}

/* The features offered: what the tap does for us, nothing else. */
static uint64_t vnet_features(const VmmVirtioNet *n)
{
    uint64_t f = (1ull << VIRTIO_NET_F_MAC) | (1ull << VIRTIO_NET_F_STATUS) |
                 (1ull << VIRTIO_NET_F_MRG_RXBUF) |
                 /* The tap parses the header of every frame written: checksum
                  * and segmentation for what the guest sends. */
                 (1ull << VIRTIO_NET_F_CSUM) | (1ull << VIRTIO_NET_F_HOST_TSO4) |
                 (1ull << VIRTIO_NET_F_HOST_TSO6);

    if (n->tun_offloads & TUN_F_CSUM) {
        f |= 1ull << VIRTIO_NET_F_GUEST_CSUM;
        if (n->tun_offloads & TUN_F_TSO4) {
            f |= 1ull << VIRTIO_NET_F_GUEST_TSO4;
        }
        if (n->tun_offloads & TUN_F_TSO6) {
            f |= 1ull << VIRTIO_NET_F_GUEST_TSO6;
        }
    }
    return f;
}

static void vnet_destroy(VmmVirtioNet *n)
{
    if (n->rx_bh) {
        vmm_bh_delete(n->rx_bh);
    }
    if (n->tx_bh) {
        vmm_bh_delete(n->tx_bh);
    }
    if (n->fd >= 0) {
        close(n->fd);
    }
    free(n->rx_buf);
    free(n->name);
    free(n);
}

VmmVirtioNet *vmm_virtio_net_new(VmmGuestMemory *mem, const VmmVirtioNetOptions *opts,
                                 int *errp)
{
    VmmVirtioNetOptions o;
    VmmVirtioNet *n = NULL;
    int err = -EINVAL;

    if (!mem || !opts || opts->size < offsetof(VmmVirtioNetOptions, ctx) + sizeof(void *)) {
        err = VMM_MISUSE_ERR(-EINVAL, "virtio-net without memory or options");
        goto fail;
    }
    memset(&o, 0, sizeof(o));
    memcpy(&o, opts, opts->size < sizeof(o) ? opts->size : sizeof(o));
    o.queue_size = o.queue_size ? o.queue_size : 256;
    if (o.queue_size < 16 || o.queue_size > VMM_VIRTQUEUE_MAX_SIZE ||
        (o.queue_size & (o.queue_size - 1))) {
        goto fail;
    }
    err = -ENOMEM;
    n = calloc(1, sizeof(*n));
    if (!n) {
        goto fail;
    }
    n->fd = -1;
    n->ctx = o.ctx ? o.ctx : vmm_aio_context_main();
    n->name = strdup(o.name ? o.name : "virtio-net");
    n->rx_buf = malloc(VNET_RX_BUF);
    n->rx_bh = vmm_bh_new(n->ctx, rekick_rx, n, "virtio-net-rx");
    n->tx_bh = vmm_bh_new(n->ctx, rekick_tx, n, "virtio-net-tx");
    if (!n->name || !n->rx_buf || !n->rx_bh || !n->tx_bh) {
        goto fail;
    }
    err = tap_setup(n, &o);
    if (err < 0) {
        goto fail;
    }
    n->link_up = true;
    VnetConfig cfg = {
        .status = htole16(VIRTIO_NET_S_LINK_UP), .max_virtqueue_pairs = htole16(1),
    };
    if (o.has_mac) {
        memcpy(cfg.mac, o.mac, 6);
    } else {
        /* Locally administered, unicast, from the interface's name. */
        uint32_t h = 2166136261u;
        for (const char *p = n->ifname; *p; p++) {
            h = (h ^ (uint8_t)*p) * 16777619u;
        }
        uint8_t mac[6] = { 0x52, 0x54, 0x00, (uint8_t)(h >> 16), (uint8_t)(h >> 8),
                           (uint8_t)h };
        memcpy(cfg.mac, mac, 6);
    }
    VmmVirtioDeviceOps ops = {
        .size = sizeof(ops), .device_id = 1 /* VIRTIO_ID_NET */,
        .features = vnet_features(n), .config_size = sizeof(VnetConfig),
        .num_queues = 2, .queue_max_size = o.queue_size, .handle_queue = vnet_handle,
        .set_features = vnet_set_features, .reset = vnet_reset,
        .driver_ok = vnet_driver_ok,
    };
    n->vdev = vmm_virtio_device_new(n->name, &ops, n, mem, &cfg, &err);
    if (!n->vdev) {
        goto fail;
    }
    for (unsigned q = 0; q < 2; q++) {
        err = vmm_virtio_queue_set_context(n->vdev, q, n->ctx);
        if (err < 0) {
            vmm_virtio_device_free(n->vdev);
            goto fail;
        }
    }
    /* The receive queue's buffers wait for frames: polling its ring would
     * find them every pass and keep the context awake (spinning on empty
     * tap reads); frames come from the tap's fd handler, and doorbells
     * are turned on when the buffers run out. */
    vmm_virtio_queue_set_polled(n->vdev, VNET_RXQ, false);
    return n;
fail:
    if (n) {
        vnet_destroy(n);
    }
    if (errp) {
        *errp = err;
    }
    return NULL;
}

typedef struct Unwatch {
    VmmVirtioNet *n;
    bool done;
} Unwatch;

static void unwatch_bh(void *opaque)
{
    Unwatch *u = opaque;

    tap_watch(u->n, false, false);
    /* Deleted here, so that none runs (or starts) after the free. */
    vmm_bh_delete(u->n->rx_bh);
    vmm_bh_delete(u->n->tx_bh);
    u->n->rx_bh = u->n->tx_bh = NULL;
    /* Release: pairs with the acquire in the waiter's loop. */
    vk_atomic_store_release(&u->done, true);
    vmm_aio_wait_kick();
}

void vmm_virtio_net_free(VmmVirtioNet *n)
{
    if (!n) {
        return;
    }
    /* The fd handler and the BHs belong to the context's thread: remove
     * them there. */
    Unwatch u = { .n = n };
    if (vmm_aio_context_in_thread(n->ctx)) {
        unwatch_bh(&u);
    } else if (vmm_bh_schedule_oneshot(n->ctx, unwatch_bh, &u, "virtio-net-free") == 0) {
        VMM_AIO_WAIT_WHILE(n->ctx, !vk_atomic_load_acquire(&u.done));
    }
    vmm_virtio_device_free(n->vdev);
    vnet_destroy(n);
}

VmmVirtioDevice *vmm_virtio_net_get_virtio(VmmVirtioNet *n)
{
    return n->vdev;
}

const char *vmm_virtio_net_tap_name(VmmVirtioNet *n)
{
    return n->ifname;
}

int vmm_virtio_net_set_link(VmmVirtioNet *n, bool up)
{
    if (!n) {
        return VMM_MISUSE_ERR(-EINVAL, "vmm_virtio_net_set_link: NULL device");
    }
    vnet_set_carrier(n, up);
    uint16_t st = htole16(up ? VIRTIO_NET_S_LINK_UP : 0);
    return vmm_virtio_config_update(n->vdev, offsetof(VnetConfig, status), &st, sizeof(st));
}

int vmm_virtio_net_get_stats(VmmVirtioNet *n, VmmVirtioNetStats *out)
{
    if (!n || !out || out->size < sizeof(size_t)) {
        return -EINVAL;
    }
    VmmVirtioNetStats st = {
        .size = sizeof(st),
        .tx_packets = vk_atomic_read(&n->st.tx_packets),
        .tx_bytes = vk_atomic_read(&n->st.tx_bytes),
        .tx_dropped = vk_atomic_read(&n->st.tx_dropped),
        .rx_packets = vk_atomic_read(&n->st.rx_packets),
        .rx_bytes = vk_atomic_read(&n->st.rx_bytes),
        .rx_dropped = vk_atomic_read(&n->st.rx_dropped),
        .rx_stalls = vk_atomic_read(&n->st.rx_stalls),
    };
    size_t len = out->size < sizeof(st) ? out->size : sizeof(st);
    memcpy((char *)out + sizeof(size_t), (char *)&st + sizeof(size_t), len - sizeof(size_t));
    return 0;
}
