/* SPDX-License-Identifier: MIT */
/*
 * vmmkit/virtio-net.h - a virtio network device on a Linux tap interface.
 *
 * One receive and one transmit queue, processed in an AioContext (normally
 * an iothread's): the transmit queue is written to the tap on the guest's
 * doorbell (writev of the guest's buffers, virtio-net header included);
 * frames are read from the tap when it is readable and copied into the
 * guest's receive buffers (mergeable receive buffers when the driver takes
 * them).  Receiving stalls when the guest posted no buffer and resumes on
 * its doorbell; no lock is taken on either path.
 *
 * Offloads are negotiated honestly: the guest is offered checksum and TSO
 * for what it receives (GUEST_CSUM, GUEST_TSO4/6) only when the tap
 * accepted them (TUNSETOFFLOAD), and for what it sends (CSUM, HOST_TSO4/6)
 * because the tap parses the virtio-net header of every frame written.
 *
 * A malformed guest buffer (a transmit chain shorter than the virtio-net
 * header or with writable parts, a receive buffer with readable parts or
 * without room for the header) marks the device DEVICE_NEEDS_RESET, as the
 * virtio core does for bad rings; frames the tap refuses are counted and
 * dropped.
 */
#ifndef VMMKIT_VIRTIO_NET_H
#define VMMKIT_VIRTIO_NET_H

#include "vmmkit/virtio.h"

VMM_BEGIN_DECLS

typedef struct VmmVirtioNet VmmVirtioNet;

typedef struct VmmVirtioNetOptions {
    size_t size;                /* sizeof(VmmVirtioNetOptions) */
    const char *name;           /* device name (diagnostics); NULL: "virtio-net" */
    /*
     * The backend: a tap interface named @tap_name (created if missing,
     * through /dev/net/tun), or, when @tap_name is NULL, the tap file
     * descriptor @tap_fd, which must have been set up with IFF_TAP and
     * IFF_VNET_HDR (the device works on a duplicate; the caller keeps and
     * closes its own; the file is switched to O_NONBLOCK, which the two
     * descriptors share).  A tap opened by name is removed with the device
     * unless it is persistent: a caller that re-creates the device (a guest
     * reboot) and wants the interface to stay opens it once with
     * vmm_virtio_net_open_tap() and passes the fd.
     */
    const char *tap_name;
    int tap_fd;
    bool has_mac;               /* false: a locally administered MAC is made up */
    uint8_t mac[6];
    uint16_t queue_size;        /* 0 = 256; power of two, 16..1024 */
    VmmAioContext *ctx;         /* where the queues run; NULL: the main loop */
} VmmVirtioNetOptions;

/*
 * A virtio-net device on the tap @opts names, doing DMA into @mem.  NULL
 * with *errp = -EINVAL (@opts or @mem NULL or too small, a bad queue size,
 * a tap name longer than IFNAMSIZ - 1, a tap fd without IFF_TAP and
 * IFF_VNET_HDR), -ENOMEM, or the errno of opening or configuring the tap
 * (-EPERM without CAP_NET_ADMIN, -EBUSY for a tap in use).  Main loop.
 */
VMM_EXPORT VmmVirtioNet *vmm_virtio_net_new(VmmGuestMemory *mem,
                                            const VmmVirtioNetOptions *opts,
                                            int *errp);
/*
 * Open (creating it if missing) the tap interface @name through
 * /dev/net/tun as the device wants it (IFF_TAP, IFF_NO_PI, IFF_VNET_HDR):
 * a file descriptor (close-on-exec) for VmmVirtioNetOptions.tap_fd, or
 * -EINVAL (@name NULL, empty or longer than IFNAMSIZ - 1), -EPERM (no
 * CAP_NET_ADMIN), -EBUSY (the tap is in use) or another -errno.  Any thread.
 */
VMM_EXPORT int vmm_virtio_net_open_tap(const char *name);

/* The device must be idle (reset, or never started).  Closes the tap fd the
 * device opened or duplicated.  NULL is ignored.  Main loop. */
VMM_EXPORT void vmm_virtio_net_free(VmmVirtioNet *net);
/* The virtio device to put behind a transport.  Any thread. */
VMM_EXPORT VmmVirtioDevice *vmm_virtio_net_get_virtio(VmmVirtioNet *net);
/* The tap's interface name (as the kernel named it).  Any thread. */
VMM_EXPORT const char *vmm_virtio_net_tap_name(VmmVirtioNet *net);

/*
 * Link up or down: the configuration's status field changes and the guest
 * gets a configuration interrupt; the tap's carrier follows where the
 * kernel supports it (TUNSETCARRIER).  While down, frames from the guest
 * and from the tap are dropped.  0, or -EINVAL for a NULL @net.  Main loop.
 */
VMM_EXPORT int vmm_virtio_net_set_link(VmmVirtioNet *net, bool up);

/* Counters since creation (single writer each: the queue's context). */
typedef struct VmmVirtioNetStats {
    size_t size;                /* sizeof(VmmVirtioNetStats), set by the caller */
    uint64_t tx_packets, tx_bytes;  /* frames the tap took (header excluded) */
    uint64_t tx_dropped;        /* refused by the tap, or sent while the link was down */
    uint64_t rx_packets, rx_bytes;  /* frames given to the guest (header excluded) */
    uint64_t rx_dropped;        /* too large for the guest's buffer, or link down */
    uint64_t rx_stalls;         /* times receiving waited for guest buffers */
} VmmVirtioNetStats;

/* Fill *@out (@out->size says how much).  0 or -EINVAL.  Any thread. */
VMM_EXPORT int vmm_virtio_net_get_stats(VmmVirtioNet *net, VmmVirtioNetStats *out);

VMM_END_DECLS

#endif /* VMMKIT_VIRTIO_NET_H */
