/* SPDX-License-Identifier: MIT */
/* The virtio-pci modern transport with MSI-X; see virtio-pci.h. */
#include "machine/virtio-pci.h"
#include "util/atomic.h"

#include <errno.h>
#include <string.h>

#define CAP_VNDR 0x09
#define CAP_MSIX 0x11
#define CFG_COMMON 1
#define CFG_NOTIFY 2
#define CFG_ISR 3
#define CFG_DEVICE 4
#define MSIX_ENABLE 0x8000
#define MSIX_FMASK 0x4000

static void add_vcap(VirtioPci *t, uint8_t type, uint32_t off, uint32_t len, bool notify)
{
    int at = pci_device_add_cap(&t->pci, CAP_VNDR, notify ? 20 : 16);
    if (at < 0) {
        return;
    }
    uint8_t *c = t->pci.config + at;
    c[2] = notify ? 20 : 16;
    c[3] = type;
    c[4] = 0;                                /* BAR 0 */
    pci_set(c + 8, 4, off);
    pci_set(c + 12, 4, len);
    if (notify) {
        pci_set(c + 16, 4, VPCI_NOTIFY_MULT);
    }
}

static void msix_refresh(VirtioPci *t);
static void doorbell_refresh(VirtioPci *t);

static void bar_moved(PciDevice *d, int bar, uint64_t old_addr, uint64_t new_addr,
                      void *opaque)
{
    (void)d; (void)old_addr; (void)new_addr;
    if (bar == 0) {
        doorbell_refresh(opaque);
    }
}

static void config_written(PciDevice *d, uint32_t off, uint32_t size, void *opaque)
{
    VirtioPci *t = opaque;
    uint32_t ctl = (uint32_t)t->msix_cap + 2;
    (void)d;
    if (off < ctl + 2 && off + size > ctl) {
        msix_refresh(t);
    }
}

int virtio_pci_init(VirtioPci *t, const VirtioPciConfig *cfg, const VirtioPciOps *ops,
                    void *opaque)
{
    if (!cfg->num_queues || cfg->num_queues > VPCI_MAX_QUEUES ||
        cfg->devcfg_len > VPCI_DEVCFG_LEN || !cfg->queue_max_size ||
        (cfg->queue_max_size & (cfg->queue_max_size - 1)) || cfg->queue_max_size > 32768) {
        return -EINVAL;
    }
    memset(t, 0, sizeof(*t));
    pci_device_init(&t->pci, VIRTIO_PCI_VENDOR,
                    (uint16_t)(VIRTIO_PCI_DEVICE_BASE + cfg->virtio_id), cfg->class_code, 1,
                    VIRTIO_PCI_VENDOR, (uint16_t)(0x40 + cfg->virtio_id));
    t->ops = ops;
    t->opaque = opaque;
    t->num_queues = cfg->num_queues;
    t->num_vectors = cfg->num_queues + 1;
    t->devcfg_len = cfg->devcfg_len;
    t->config_vector = VIRTIO_NO_VECTOR;
    for (unsigned i = 0; i < t->num_queues; i++) {
        t->q[i] = (VirtioPciQueue){ .size = cfg->queue_max_size,
                                    .max_size = cfg->queue_max_size,
                                    .vector = VIRTIO_NO_VECTOR };
    }
    for (unsigned v = 0; v < t->num_vectors; v++) {
        t->msix_table[16 * v + 12] = 1;      /* vectors start masked */
    }
    if (pci_device_set_bar(&t->pci, 0, VPCI_BAR_SIZE, 0, cfg->bar0_addr) < 0 ||
        pci_device_set_bar(&t->pci, 1, VPCI_MSIX_BAR_SIZE, 0, cfg->bar1_addr) < 0) {
        return -EINVAL;
    }
    t->msix_cap = pci_device_add_cap(&t->pci, CAP_MSIX, 12);
    uint8_t *m = t->pci.config + t->msix_cap;
    pci_set(m + 2, 2, t->num_vectors - 1);
    pci_set(m + 4, 4, 0 | 1);                /* table in BAR 1 at 0 */
    pci_set(m + 8, 4, VPCI_MSIX_PBA | 1);    /* PBA in BAR 1 */
    t->pci.wmask[t->msix_cap + 3] = 0xc0;    /* enable, function mask */
    add_vcap(t, CFG_COMMON, VPCI_COMMON, VPCI_COMMON_LEN, false);
    add_vcap(t, CFG_ISR, VPCI_ISR, 1, false);
    if (cfg->devcfg_len) {
        add_vcap(t, CFG_DEVICE, VPCI_DEVCFG, cfg->devcfg_len, false);
    }
    add_vcap(t, CFG_NOTIFY, VPCI_NOTIFY, t->num_queues * VPCI_NOTIFY_MULT, true);
    for (unsigned i = 0; i < VPCI_MAX_QUEUES; i++) {
        t->doorbell[i] = UINT64_MAX;
    }
    t->pci.write_hook = config_written;
    t->pci.bar_hook = bar_moved;
    t->pci.opaque = t;
    return 0;
}

/* ---- MSI-X ---------------------------------------------------------------- */

static uint16_t msix_ctl(const VirtioPci *t)
{
    return (uint16_t)pci_get(t->pci.config + t->msix_cap + 2, 2);
}

bool virtio_pci_msix_vector_live(const VirtioPci *t, unsigned v, uint64_t *addr,
                                 uint32_t *data)
{
    if (v >= t->num_vectors) {
        return false;
    }
    const uint8_t *e = t->msix_table + 16 * v;
    if (addr) {
        *addr = pci_get(e, 4) | (uint64_t)pci_get(e + 4, 4) << 32;
    }
    if (data) {
        *data = pci_get(e + 8, 4);
    }
    uint16_t ctl = msix_ctl(t);
    return (ctl & MSIX_ENABLE) && !(ctl & MSIX_FMASK) && !(e[12] & 1);
}

static void fire(VirtioPci *t, unsigned v)
{
    if (v >= t->num_vectors) {
        return;
    }
    if (virtio_pci_msix_vector_live(t, v, NULL, NULL)) {
        if (t->ops->msix_fire) {
            t->ops->msix_fire(t->opaque, v);
        }
    } else {
        t->msix_pending[v / 64] |= 1ull << (v % 64);
        vk_atomic_stat_add(&t->msix_pended, 1);
    }
}

/* Tell the machine about vectors whose routing changed; deliver pending
 * interrupts of vectors that became live. */
static void msix_refresh(VirtioPci *t)
{
    for (unsigned v = 0; v < t->num_vectors; v++) {
        uint64_t addr;
        uint32_t data;
        bool live = virtio_pci_msix_vector_live(t, v, &addr, &data);
        if (t->ops->msix_update && (live || t->msix_live[v])) {
            t->ops->msix_update(t->opaque, v, addr, data, live);
        }
        t->msix_live[v] = live;
        if (live && (t->msix_pending[v / 64] & (1ull << (v % 64)))) {
            t->msix_pending[v / 64] &= ~(1ull << (v % 64));
            fire(t, v);
        }
    }
}

uint64_t virtio_pci_msix_read(VirtioPci *t, uint64_t off, unsigned size)
{
    if ((size != 4 && size != 8) || (off & (size - 1))) {
        return 0;
    }
    if (off + size <= 16ull * t->num_vectors) {
        return pci_get(t->msix_table + off, 4) |
               (size == 8 ? (uint64_t)pci_get(t->msix_table + off + 4, 4) << 32 : 0);
    }
    if (off >= VPCI_MSIX_PBA && off + size <= VPCI_MSIX_PBA + sizeof(t->msix_pending)) {
        uint64_t w = t->msix_pending[(off - VPCI_MSIX_PBA) / 8];
        return size == 8 ? w : (uint32_t)(w >> (8 * ((off - VPCI_MSIX_PBA) % 8)));
    }
    return 0;
}

void virtio_pci_msix_write(VirtioPci *t, uint64_t off, unsigned size, uint64_t val)
{
    if ((size != 4 && size != 8) || (off & (size - 1)) ||
        off + size > 16ull * t->num_vectors) {
        return;                              /* the PBA is read-only */
    }
    pci_set(t->msix_table + off, size, val);
    /* Only the vector control word keeps its reserved bits zero. */
    for (unsigned v = 0; v < t->num_vectors; v++) {
        t->msix_table[16 * v + 12] &= 1;
        memset(t->msix_table + 16 * v + 13, 0, 3);
    }
    msix_refresh(t);
}

/* ---- Doorbells ------------------------------------------------------------ */

/* Tell the machine where each queue's doorbell is now (ioeventfds). */
static void doorbell_refresh(VirtioPci *t)
{
    uint64_t bar0 = pci_device_bar_addr(&t->pci, 0);
    for (unsigned i = 0; i < t->num_queues; i++) {
        uint64_t want = t->q[i].enabled && bar0 != UINT64_MAX
                        ? bar0 + VPCI_NOTIFY + (uint64_t)i * VPCI_NOTIFY_MULT : UINT64_MAX;
        if (want != t->doorbell[i]) {
            t->doorbell[i] = want;
            if (t->ops->doorbell) {
                t->ops->doorbell(t->opaque, i, want);
            }
        }
    }
}

/* ---- Common configuration ------------------------------------------------- */

static void reset(VirtioPci *t)
{
    t->status = 0;
    t->guest_features = 0;
    t->dfselect = t->gfselect = 0;
    t->queue_sel = 0;
    t->isr = 0;
    t->config_vector = VIRTIO_NO_VECTOR;
    for (unsigned i = 0; i < t->num_queues; i++) {
        VirtioPciQueue *q = &t->q[i];
        *q = (VirtioPciQueue){ .size = q->max_size, .max_size = q->max_size,
                               .vector = VIRTIO_NO_VECTOR };
    }
    doorbell_refresh(t);                     /* every queue is disabled now */
    if (t->ops->reset) {
        t->ops->reset(t->opaque);
    }
}

/* The common config as the driver sees it, selected queue included. */
static void common_image(const VirtioPci *t, uint8_t img[VPCI_COMMON_LEN])
{
    memset(img, 0, VPCI_COMMON_LEN);
    uint64_t f = t->ops->features ? t->ops->features(t->opaque) : 0;
    pci_set(img + 0x00, 4, t->dfselect);
    pci_set(img + 0x04, 4, t->dfselect < 2 ? f >> (32 * t->dfselect) : 0);
    pci_set(img + 0x08, 4, t->gfselect);
    pci_set(img + 0x0c, 4, t->gfselect < 2 ? t->guest_features >> (32 * t->gfselect) : 0);
    pci_set(img + 0x10, 2, t->config_vector);
    pci_set(img + 0x12, 2, t->num_queues);
    img[0x14] = t->ops->get_status ? t->ops->get_status(t->opaque) : t->status;
    img[0x15] = t->generation;
    pci_set(img + 0x16, 2, t->queue_sel);
    if (t->queue_sel < t->num_queues) {
        const VirtioPciQueue *q = &t->q[t->queue_sel];
        pci_set(img + 0x18, 2, q->size);
        pci_set(img + 0x1a, 2, q->vector);
        pci_set(img + 0x1c, 2, q->enabled);
        pci_set(img + 0x1e, 2, t->queue_sel);
        pci_set(img + 0x20, 8, q->desc);
        pci_set(img + 0x28, 8, q->avail);
        pci_set(img + 0x30, 8, q->used);
    }
}

static uint16_t checked_vector(const VirtioPci *t, uint16_t v)
{
    return v < t->num_vectors ? v : VIRTIO_NO_VECTOR;
}

static void set_status(VirtioPci *t, uint8_t s)
{
    if (s == 0) {
        reset(t);
        if (t->ops->set_status) {
            t->ops->set_status(t->opaque, 0);
        }
        return;
    }
    if ((s & VIRTIO_STATUS_FEATURES_OK) && !(t->status & VIRTIO_STATUS_FEATURES_OK)) {
        uint64_t offered = t->ops->features ? t->ops->features(t->opaque) : 0;
        if ((t->guest_features & ~offered) ||
            (t->ops->set_features && t->ops->set_features(t->opaque, t->guest_features))) {
            s &= (uint8_t)~VIRTIO_STATUS_FEATURES_OK;
        }
    }
    bool was_ok = t->status & VIRTIO_STATUS_DRIVER_OK;
    t->status = (uint8_t)(s | (t->status & VIRTIO_STATUS_NEEDS_RESET));
    if ((s & VIRTIO_STATUS_DRIVER_OK) && !was_ok && t->ops->driver_ok) {
        t->ops->driver_ok(t->opaque);
    }
    if (t->ops->set_status) {
        t->ops->set_status(t->opaque, t->status);
        t->status = t->ops->get_status(t->opaque);
    }
}

static void queue_enable(VirtioPci *t, VirtioPciQueue *q, unsigned idx)
{
    if (q->enabled || !q->size || (q->size & (q->size - 1)) || q->size > q->max_size) {
        virtio_pci_set_broken(t);
        return;
    }
    int r = t->ops->queue_enable ? t->ops->queue_enable(t->opaque, idx, q->size, q->desc,
                                                        q->avail, q->used) : -ENOSYS;
    if (r < 0) {
        virtio_pci_set_broken(t);
        return;
    }
    q->enabled = true;
    doorbell_refresh(t);
}

/* Apply one field of the common config the driver wrote. */
static void common_field(VirtioPci *t, unsigned off, uint64_t v)
{
    VirtioPciQueue *q = t->queue_sel < t->num_queues ? &t->q[t->queue_sel] : NULL;
    bool q_writable = q && !q->enabled;   /* a live queue's config is frozen */
    switch (off) {
    case 0x00: t->dfselect = (uint32_t)v; break;
    case 0x08: t->gfselect = (uint32_t)v; break;
    case 0x0c:
        if (t->gfselect < 2 && !(t->status & VIRTIO_STATUS_FEATURES_OK)) {
            unsigned sh = 32 * t->gfselect;
            t->guest_features = (t->guest_features & ~(0xffffffffull << sh)) | (v << sh);
        }
        break;
    case 0x10: t->config_vector = checked_vector(t, (uint16_t)v); break;
    case 0x14: set_status(t, (uint8_t)v); break;
    case 0x16: t->queue_sel = (uint16_t)v; break;
    case 0x18: if (q_writable) { q->size = (uint16_t)v; } break;
    case 0x1a: if (q) { q->vector = checked_vector(t, (uint16_t)v); } break;
    case 0x1c: if (q && v == 1) { queue_enable(t, q, t->queue_sel); } break;
    case 0x20: if (q_writable) { q->desc = v; } break;
    case 0x28: if (q_writable) { q->avail = v; } break;
    case 0x30: if (q_writable) { q->used = v; } break;
    default: break;                        /* read-only */
    }
}

static const struct { uint8_t off, len; } common_fields[] = {
    { 0x00, 4 }, { 0x04, 4 }, { 0x08, 4 }, { 0x0c, 4 }, { 0x10, 2 }, { 0x12, 2 },
    { 0x14, 1 }, { 0x15, 1 }, { 0x16, 2 }, { 0x18, 2 }, { 0x1a, 2 }, { 0x1c, 2 },
    { 0x1e, 2 }, { 0x20, 8 }, { 0x28, 8 }, { 0x30, 8 },
};

static void common_write(VirtioPci *t, unsigned off, unsigned size, uint64_t val)
{
    uint8_t img[VPCI_COMMON_LEN];
    common_image(t, img);
    for (size_t i = 0; i < sizeof(common_fields) / sizeof(common_fields[0]); i++) {
        unsigned fo = common_fields[i].off, fl = common_fields[i].len;
        if (off >= fo + fl || off + size <= fo) {
            continue;
        }
        /* Merge the written bytes into the field's current value, so a
         * 64-bit address written as two halves works. */
        uint8_t f[8];
        memcpy(f, img + fo, fl);
        for (unsigned b = 0; b < size; b++) {
            unsigned at = off + b;
            if (at >= fo && at < fo + fl) {
                f[at - fo] = (uint8_t)(val >> (8 * b));
            }
        }
        common_field(t, fo, pci_get(f, fl > 4 ? 4 : fl) |
                     (fl == 8 ? (uint64_t)pci_get(f + 4, 4) << 32 : 0));
        common_image(t, img);               /* queue_sel may have moved */
    }
}

static bool size_ok(uint64_t off, unsigned size)
{
    return (size == 1 || size == 2 || size == 4 || size == 8) && !(off & (size - 1));
}

uint64_t virtio_pci_bar0_read(VirtioPci *t, uint64_t off, unsigned size)
{
    if (!size_ok(off, size) || off + size > VPCI_BAR_SIZE) {
        return 0;
    }
    if (off < VPCI_COMMON_LEN) {
        if (off + size > VPCI_COMMON_LEN) {
            return 0;
        }
        uint8_t img[VPCI_COMMON_LEN];
        common_image(t, img);
        return pci_get(img + off, size > 4 ? 4 : size) |
               (size == 8 ? (uint64_t)pci_get(img + off + 4, 4) << 32 : 0);
    }
    if (off == VPCI_ISR && size == 1) {
        uint8_t v = t->isr;
        t->isr = 0;                          /* read to clear */
        return v;
    }
    if (off >= VPCI_DEVCFG && off + size <= VPCI_DEVCFG + t->devcfg_len && size <= 4) {
        return t->ops->config_read ? t->ops->config_read(t->opaque,
                                                         (uint32_t)(off - VPCI_DEVCFG), size)
                                   : 0;
    }
    return 0;
}

void virtio_pci_bar0_write(VirtioPci *t, uint64_t off, unsigned size, uint64_t val)
{
    if (!size_ok(off, size) || off + size > VPCI_BAR_SIZE) {
        return;
    }
    if (off + size <= VPCI_COMMON_LEN) {
        common_write(t, (unsigned)off, size, val);
    } else if (off >= VPCI_DEVCFG && off + size <= VPCI_DEVCFG + t->devcfg_len && size <= 4) {
        if (t->ops->config_write) {
            t->ops->config_write(t->opaque, (uint32_t)(off - VPCI_DEVCFG), size,
                                 (uint32_t)val);
        }
    } else if (off >= VPCI_NOTIFY && off < VPCI_NOTIFY + VPCI_NOTIFY_MULT * t->num_queues) {
        unsigned q = (unsigned)((off - VPCI_NOTIFY) / VPCI_NOTIFY_MULT);
        vk_atomic_stat_add(&t->mmio_notifies, 1);
        if (t->q[q].enabled && (t->status & VIRTIO_STATUS_DRIVER_OK) &&
            t->ops->queue_notify) {
            t->ops->queue_notify(t->opaque, q);
        }
    }
}

void virtio_pci_queue_interrupt(VirtioPci *t, unsigned q)
{
    if (q >= t->num_queues) {
        return;
    }
    t->isr |= 1;
    if (t->q[q].vector != VIRTIO_NO_VECTOR) {
        fire(t, t->q[q].vector);
    }
}

void virtio_pci_config_interrupt(VirtioPci *t)
{
    t->generation++;
    t->isr |= 2;
    if (t->config_vector != VIRTIO_NO_VECTOR) {
        fire(t, t->config_vector);
    }
}

void virtio_pci_set_broken(VirtioPci *t)
{
    if (t->status & VIRTIO_STATUS_NEEDS_RESET) {
        return;
    }
    t->status |= VIRTIO_STATUS_NEEDS_RESET;
    if (t->status & VIRTIO_STATUS_DRIVER_OK) {
        virtio_pci_config_interrupt(t);
    }
}

/* ---- Snapshots ------------------------------------------------------------- */

/* The record: a fixed part, then per queue (size, vector, enabled, desc,
 * avail, used), then the MSI-X table and the PBA, all little-endian. */
#define VPCI_STATE_FIXED (4 + PCI_CONFIG_SIZE + 4 + 4 + 8 + 2 + 2 + 4)
#define VPCI_STATE_QUEUE (2 + 2 + 4 + 8 + 8 + 8)

size_t virtio_pci_state_size(const VirtioPci *t)
{
    return VPCI_STATE_FIXED + (size_t)t->num_queues * VPCI_STATE_QUEUE +
           16u * t->num_vectors + sizeof(t->msix_pending);
}

void virtio_pci_save(const VirtioPci *t, uint8_t *out)
{
    uint8_t *p = out;
    pci_set(p, 4, t->num_queues); p += 4;
    memcpy(p, t->pci.config, PCI_CONFIG_SIZE); p += PCI_CONFIG_SIZE;
    pci_set(p, 4, t->dfselect); p += 4;
    pci_set(p, 4, t->gfselect); p += 4;
    pci_set(p, 8, t->guest_features); p += 8;
    pci_set(p, 2, t->config_vector); p += 2;
    pci_set(p, 2, t->queue_sel); p += 2;
    p[0] = t->status; p[1] = t->generation; p[2] = t->isr; p[3] = 0; p += 4;
    for (unsigned i = 0; i < t->num_queues; i++) {
        const VirtioPciQueue *q = &t->q[i];
        pci_set(p, 2, q->size); p += 2;
        pci_set(p, 2, q->vector); p += 2;
        pci_set(p, 4, q->enabled); p += 4;
        pci_set(p, 8, q->desc); p += 8;
        pci_set(p, 8, q->avail); p += 8;
        pci_set(p, 8, q->used); p += 8;
    }
    memcpy(p, t->msix_table, 16u * t->num_vectors); p += 16u * t->num_vectors;
    memcpy(p, t->msix_pending, sizeof(t->msix_pending));
}

static uint64_t get64(const uint8_t *p)
{
    return pci_get(p, 4) | (uint64_t)pci_get(p + 4, 4) << 32;
}

static bool vector_ok(const VirtioPci *t, uint16_t v)
{
    return v == VIRTIO_NO_VECTOR || v < t->num_vectors;
}

int virtio_pci_load(VirtioPci *t, const uint8_t *in, size_t len)
{
    if (len != virtio_pci_state_size(t) || pci_get(in, 4) != t->num_queues) {
        return -EINVAL;
    }
    const uint8_t *cfg = in + 4;
    /* Identity and layout are the device's, not the file's. */
    if (memcmp(cfg, t->pci.config, 4) != 0 ||
        cfg[PCI_CAP_PTR] != t->pci.config[PCI_CAP_PTR]) {
        return -EINVAL;
    }
    const uint8_t *p = cfg + PCI_CONFIG_SIZE;
    uint32_t dfselect = pci_get(p, 4), gfselect = pci_get(p + 4, 4);
    uint64_t gf = get64(p + 8);
    uint16_t config_vector = (uint16_t)pci_get(p + 16, 2);
    uint16_t queue_sel = (uint16_t)pci_get(p + 18, 2);
    const uint8_t *st = p + 20;
    const uint8_t *qp = in + VPCI_STATE_FIXED;
    if (!vector_ok(t, config_vector) || queue_sel > t->num_queues) {
        return -EINVAL;
    }
    VirtioPciQueue qs[VPCI_MAX_QUEUES];
    for (unsigned i = 0; i < t->num_queues; i++, qp += VPCI_STATE_QUEUE) {
        VirtioPciQueue q = t->q[i];
        q.size = (uint16_t)pci_get(qp, 2);
        q.vector = (uint16_t)pci_get(qp + 2, 2);
        uint32_t en = pci_get(qp + 4, 4);
        q.desc = get64(qp + 8);
        q.avail = get64(qp + 16);
        q.used = get64(qp + 24);
        if (!q.size || q.size > q.max_size || (q.size & (q.size - 1)) || en > 1 ||
            !vector_ok(t, q.vector)) {
            return -EINVAL;
        }
        q.enabled = en;
        qs[i] = q;
    }
    /* From here on the record fits: take it over. */
    memcpy(t->pci.config, cfg, PCI_CONFIG_SIZE);
    t->dfselect = dfselect;
    t->gfselect = gfselect;
    t->guest_features = gf;
    t->config_vector = config_vector;
    t->queue_sel = queue_sel;
    t->status = st[0];
    t->generation = st[1];
    t->isr = st[2];
    memcpy(t->q, qs, t->num_queues * sizeof(qs[0]));
    memcpy(t->msix_table, qp, 16u * t->num_vectors);
    qp += 16u * t->num_vectors;
    memcpy(t->msix_pending, qp, sizeof(t->msix_pending));
    for (unsigned v = 0; v < t->num_vectors; v++) {
        t->msix_table[16 * v + 12] &= 1;
        memset(t->msix_table + 16 * v + 13, 0, 3);
    }
    for (unsigned v = t->num_vectors; v < 64 * (sizeof(t->msix_pending) / sizeof(t->msix_pending[0])); v++) {
        t->msix_pending[v / 64] &= ~(1ull << (v % 64));      /* no such vector */
    }
    /* The machine learns the routes and doorbells as from guest writes. */
    memset(t->msix_live, 0, sizeof(t->msix_live));
    for (unsigned i = 0; i < VPCI_MAX_QUEUES; i++) {
        t->doorbell[i] = UINT64_MAX;
    }
    msix_refresh(t);
    doorbell_refresh(t);
    return 0;
}
