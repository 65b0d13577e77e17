/* SPDX-License-Identifier: MIT */
/*
 * Disks of the machine: a virtio-blk device (vmmkit/virtio-blk.h) on a
 * BlockBackend in the machine's iothread, behind the virtio-pci transport.
 *
 * Threads: BAR accesses come from vCPU threads with the machine's lock
 * (m->lock) held; it guards the transport (d->t), the vectors' routes and
 * the doorbells' registrations.  Interrupts come from the virtio core -
 * mostly in the iothread, but synchronously inside a register write too
 * (e.g. a queue enabled after DRIVER_OK with bad rings: the core marks the
 * device NEEDS_RESET and raises the config interrupt from within
 * vmm_virtio_queue_enable, on the vCPU thread that holds the lock).  So
 * disk_interrupt never takes the lock: it records the interrupt in
 * irq_queues/irq_config and hands it to the lock (irq-handoff.h), which
 * delivers it to the transport under the lock - by the raiser when the
 * lock is free, else by the holder before it releases, i.e. before the
 * register write returns to the guest.  The transport then fires or pends
 * it exactly as before (below).
 *
 * Interrupts: each MSI-X vector the driver unmasks gets a KVM GSI route
 * with the vector's address/data and an irqfd on an event notifier; the
 * route is set up (or updated, when the driver reprogrammed the entry) by
 * the vCPU thread whose table or capability write made the vector live,
 * before that write returns to the guest.  Firing a live vector is then
 * one eventfd write (vmm_event_notifier_set) from whatever thread raises
 * it - no ioctl.  The transport only fires live vectors, under the lock,
 * so a masked vector's interrupt goes to the PBA instead and is fired on
 * unmask, after its route is current (the unmasking write's msix_update
 * runs first, in the same locked write).  Masking keeps the route and irqfd
 * (nothing writes the eventfd while masked).  Where routes or irqfds are
 * unavailable (no KVM_CAP_IRQ_ROUTING, table full, an ioctl fails) the
 * vector falls back to KVM_SIGNAL_MSI with the vector's address/data.
 *
 * Doorbells: each enabled queue gets a KVM ioeventfd on its notify address
 * (one address per queue, so no datamatch), signalling an event notifier
 * the virtio core watches in the queue's AioContext (the disk iothread):
 * the guest's doorbell write wakes the iothread without leaving KVM_RUN.
 * The notifiers are attached to the queues once, at creation (main loop);
 * the ioeventfds follow the transport's doorbell() reports (queue enable,
 * reset, BAR 0 moved or decoding switched) from the vCPU thread.  When
 * the ioeventfd cannot be registered the MMIO exit path still notifies.
 */
#include "machine/machine-internal.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <linux/virtio_blk.h>

#include "machine/virtio-pci.h"
#include "util/log.h"
#include "vmmkit/block.h"
#include "vmmkit/virtio-blk.h"
#include "util/atomic.h"

/* An MSI-X vector's irqfd: n != NULL and gsi >= 0 when it has one. */
typedef struct DiskVector {
    VmmEventNotifier *n;
    int gsi;
} DiskVector;

struct MachineDisk {
    VmmMachine *m;
    unsigned index;                     /* in m->disks[]: the handoff source */
    VmmBlockBackend *blk;
    VmmVirtioBlk *vblk;
    VmmVirtioDevice *vdev;
    VirtioPci t;                        /* m->lock */
    VmmMachinePciDev pcidev;
    bool paused;                        /* main loop */
    bool no_irqfd;                      /* m->lock; routes unavailable: signal_msi only */
    DiskVector vec[VPCI_MAX_VECTORS];   /* m->lock */
    VmmEventNotifier *bell[VPCI_MAX_QUEUES];    /* set at creation, attached to the queues */
    /* m->lock: ioeventfd registered there, or UINT64_MAX */
    uint64_t bell_gpa[VPCI_MAX_QUEUES];
    /* Interrupts raised by the virtio core, not yet given to the transport
     * (atomic; set by disk_interrupt, taken by machine_disk_deliver). */
    uint64_t irq_queues;                /* bit q: queue q */
    bool irq_config;
    /* Statistics (atomic, relaxed). */
    uint64_t irqfd_signals, msi_injections;
};

/* ---- The transport's view of the virtio core ----------------------------- */

static uint64_t d_features(void *o)
{
    return vmm_virtio_get_device_features(((MachineDisk *)o)->vdev);
}

static int d_set_features(void *o, uint64_t f)
{
    vmm_virtio_set_driver_features(((MachineDisk *)o)->vdev, f);
    return 0;
}

static void d_set_status(void *o, uint8_t s)
{
    vmm_virtio_set_status(((MachineDisk *)o)->vdev, s);
}

static uint8_t d_get_status(void *o)
{
    return vmm_virtio_get_status(((MachineDisk *)o)->vdev);
}

static int d_queue_enable(void *o, unsigned q, unsigned size, uint64_t desc,
                          uint64_t avail, uint64_t used)
{
    MachineDisk *d = o;
    int r = vmm_virtio_queue_set_size(d->vdev, q, (uint16_t)size);
    if (r == 0) {
        r = vmm_virtio_queue_set_addr(d->vdev, q, desc, avail, used);
    }
    return r ? r : vmm_virtio_queue_enable(d->vdev, q);
}

static void d_queue_notify(void *o, unsigned q)
{
    vmm_virtio_queue_notify(((MachineDisk *)o)->vdev, q);
}

static uint32_t d_config_read(void *o, uint32_t off, uint32_t size)
{
    uint8_t b[4] = { 0 };
    if (vmm_virtio_config_read(((MachineDisk *)o)->vdev, off, b, size) < 0) {
        return 0;
    }
    return pci_get(b, size);
}

static void d_config_write(void *o, uint32_t off, uint32_t size, uint32_t val)
{
    uint8_t b[4];
    pci_set(b, size, val);
    vmm_virtio_config_write(((MachineDisk *)o)->vdev, off, b, size);
}

/* ---- MSI-X through irqfds ------------------------------------------------ */

static void vector_release(MachineDisk *d, DiskVector *vec) VMM_REQUIRES(d->m->lock)
{
    VmmVm *vm = d->m->vm;
    if (vec->gsi < 0) {
        return;     /* vector_setup sets gsi and n together */
    }
    vmm_vm_remove_irqfd_notifier(vm, vec->n, (uint32_t)vec->gsi);
    vmm_vm_remove_msi_route(vm, vec->gsi);
    vmm_event_notifier_free(vec->n);
    vec->n = NULL;
    vec->gsi = -1;
}

/* A new route + irqfd for @vec; on failure the vector uses signal_msi. */
static void vector_setup(MachineDisk *d, DiskVector *vec, uint64_t addr, uint32_t data)
    VMM_REQUIRES(d->m->lock)
{
    VmmVm *vm = d->m->vm;
    int r = 0;
    vec->n = vmm_event_notifier_new(&r);
    if (!vec->n) {
        return;
    }
    vec->gsi = vmm_vm_add_msi_route(vm, addr, data);
    if (vec->gsi < 0) {
        if (vec->gsi == -ENODEV) {
            d->no_irqfd = true;             /* no routing: do not retry */
        }
        vmm_event_notifier_free(vec->n);
        vec->n = NULL;
        vec->gsi = -1;
        return;
    }
    r = vmm_vm_add_irqfd_notifier(vm, vec->n, (uint32_t)vec->gsi);
    if (r < 0) {
        d->no_irqfd = true;                 /* it would fail again */
        vmm_vm_remove_msi_route(vm, vec->gsi);
        vmm_event_notifier_free(vec->n);
        vec->n = NULL;
        vec->gsi = -1;
    }
}

/* The transport: vector @v routes to (@addr, @data) now, or is masked.
 * vCPU thread (a table or capability write), machine lock held. */
static void d_msix_update(void *o, unsigned v, uint64_t addr, uint32_t data, bool live)
{
    MachineDisk *d = o;
    machine_assert_locked(d->m);        /* a VirtioPciOps callback */
    DiskVector *vec = &d->vec[v];
    if (!live || d->no_irqfd) {
        return;                             /* masked: keep the route for later */
    }
    if (vec->gsi >= 0) {
        /* Unchanged address/data commit nothing (vmm_vm_update_msi_route). */
        if (vmm_vm_update_msi_route(d->m->vm, vec->gsi, addr, data) == 0) {
            return;
        }
        vector_release(d, vec);             /* stale route: never use it */
    }
    vector_setup(d, vec, addr, data);
}

/* Fire live vector @v: whichever thread delivers (machine_disk_deliver) or
 * a vCPU unmasking it; machine lock held. */
static void d_msix_fire(void *o, unsigned v)
{
    MachineDisk *d = o;
    machine_assert_locked(d->m);        /* a VirtioPciOps callback */
    uint64_t addr;
    uint32_t data;
    if (d->vec[v].gsi >= 0) {
        /* The route was committed by the write that made the vector live
         * (d_msix_update, same lock), so the eventfd write lands there. */
        vmm_event_notifier_set(d->vec[v].n);
        vk_atomic_stat_add(&d->irqfd_signals, 1);
    } else if (virtio_pci_msix_vector_live(&d->t, v, &addr, &data)) {
        vmm_vm_signal_msi(d->m->vm, addr, data);
        vk_atomic_stat_add(&d->msi_injections, 1);
    }
}

/* ---- Doorbells through ioeventfds -------------------------------------------- */

static int bell_assign(MachineDisk *d, unsigned q, uint64_t gpa, bool assign)
    VMM_REQUIRES(d->m->lock)
{
    /* Linux writes the 16-bit queue index; each queue has its own address. */
    if (assign) {
        return vmm_vm_add_ioeventfd_notifier(d->m->vm, d->bell[q], gpa, 2, 0, 0);
    }
    return vmm_vm_remove_ioeventfd_notifier(d->m->vm, d->bell[q], gpa, 2, 0, 0);
}

/* The transport: queue @q's doorbell is at @gpa now (UINT64_MAX: none).
 * vCPU thread, machine lock held. */
static void d_doorbell(void *o, unsigned q, uint64_t gpa)
{
    MachineDisk *d = o;
    machine_assert_locked(d->m);        /* a VirtioPciOps callback */
    if (q >= VPCI_MAX_QUEUES || !d->bell[q]) {
        return;
    }
    if (d->bell_gpa[q] != UINT64_MAX) {
        bell_assign(d, q, d->bell_gpa[q], false);
        d->bell_gpa[q] = UINT64_MAX;
    }
    if (gpa != UINT64_MAX && bell_assign(d, q, gpa, true) == 0) {
        d->bell_gpa[q] = gpa;
    }
}

static const VirtioPciOps disk_ops = {
    .features = d_features, .set_features = d_set_features,
    .queue_enable = d_queue_enable, .queue_notify = d_queue_notify,
    .config_read = d_config_read, .config_write = d_config_write,
    .msix_update = d_msix_update, .msix_fire = d_msix_fire, .doorbell = d_doorbell,
    .set_status = d_set_status, .get_status = d_get_status,
};

/* One event notifier per queue, watched by the virtio core in the queue's
 * context from now on; the KVM ioeventfd comes and goes (d_doorbell).
 * Main loop, at creation.  Without notifiers the MMIO path serves. */
static void bells_attach(MachineDisk *d)
{
    unsigned nq = vmm_virtio_num_queues(d->vdev);
    for (unsigned q = 0; q < nq && q < VPCI_MAX_QUEUES; q++) {
        int r = 0;
        VmmEventNotifier *n = vmm_event_notifier_new(&r);
        if (!n) {
            continue;
        }
        if (vmm_virtio_queue_set_host_notifier(d->vdev, q, n) < 0) {
            vmm_event_notifier_free(n);
            continue;
        }
        d->bell[q] = n;
    }
}

/* Remove the ioeventfds, irqfds and routes (under the lock), then detach
 * and free the notifiers (which waits for the iothread: without it).
 * Main loop, vCPUs stopped, @d no longer in m->disks[]. */
static void disk_irq_free(MachineDisk *d) VMM_EXCLUDES(d->m->lock)
{
    machine_lock(d->m);
    for (unsigned q = 0; q < VPCI_MAX_QUEUES; q++) {
        if (d->bell[q] && d->bell_gpa[q] != UINT64_MAX) {
            bell_assign(d, q, d->bell_gpa[q], false);
            d->bell_gpa[q] = UINT64_MAX;
        }
    }
    for (unsigned v = 0; v < VPCI_MAX_VECTORS; v++) {
        vector_release(d, &d->vec[v]);
    }
    machine_unlock(d->m);
    for (unsigned q = 0; q < VPCI_MAX_QUEUES; q++) {
        if (d->bell[q]) {
            vmm_virtio_queue_set_host_notifier(d->vdev, q, NULL);
            vmm_event_notifier_free(d->bell[q]);
            d->bell[q] = NULL;
        }
    }
}

/* The virtio core's interrupt: the iothread, or a vCPU inside a register
 * write that already holds the machine's lock - so record it and hand it
 * to the lock (irq-handoff.h) instead of taking it.  The seq_cst RMW on
 * irq_queues/irq_config comes before the handoff's fetch_or on the same
 * thread; machine_disk_deliver reads them after its exchange of the
 * handoff's bits, so it sees them. */
static void disk_interrupt(void *opaque, VmmVirtioDevice *vdev, int queue)
{
    MachineDisk *d = opaque;
    (void)vdev;
    if (queue < 0) {
        vk_atomic_store_seq_cst(&d->irq_config, true);
    } else if ((unsigned)queue < VPCI_MAX_QUEUES) {
        vk_atomic_fetch_or(&d->irq_queues, 1ull << queue);
    } else {
        return;                             /* no such queue on the transport */
    }
    irq_handoff_raise(&d->m->irqs, &d->m->lock, d->index);
}

void machine_disk_deliver(void *opaque, unsigned src)
{
    VmmMachine *m = opaque;
    machine_assert_locked(m);               /* the handoff's deliver callback */
    MachineDisk *d = src < m->ndisks ? m->disks[src] : NULL;
    if (!d) {
        return;                             /* being freed: the vCPUs are gone */
    }
    machine_assert_locked(d->m);            /* d->m == m */
    if (vk_atomic_xchg(&d->irq_config, false)) {
        virtio_pci_config_interrupt(&d->t);
    }
    uint64_t q = vk_atomic_xchg(&d->irq_queues, 0);
    while (q) {
        virtio_pci_queue_interrupt(&d->t, (unsigned)__builtin_ctzll(q));
        q &= q - 1;
    }
}

static uint64_t disk_bar_read(VmmMachinePciDev *pd, int bar, uint64_t off, unsigned size)
{
    MachineDisk *d = pd->opaque;
    machine_assert_locked(d->m);            /* a VmmMachinePciDev callback */
    return bar == 0 ? virtio_pci_bar0_read(&d->t, off, size)
                    : virtio_pci_msix_read(&d->t, off, size);
}

static void disk_bar_write(VmmMachinePciDev *pd, int bar, uint64_t off, unsigned size,
                           uint64_t val)
{
    MachineDisk *d = pd->opaque;
    machine_assert_locked(d->m);            /* a VmmMachinePciDev callback */
    if (bar == 0) {
        virtio_pci_bar0_write(&d->t, off, size, val);
    } else {
        virtio_pci_msix_write(&d->t, off, size, val);
    }
}

/* ---- Creation --------------------------------------------------------------- */

static int ensure_iothread(VmmMachine *m)
{
    if (m->iothread) {
        return 0;
    }
    int r = 0;
    /* ppoll(2): with the io_uring monitor the same boot took 76 s instead
     * of 46 s inside the emulated machine (bench-boot, one emulated CPU
     * shared with the vCPU). */
    VmmAioContextOptions o = { .size = sizeof(o), .fdmon = VMM_FDMON_POLL };
    m->iothread = vmm_iothread_new("vmmkit-disk", &o, &r);
    return m->iothread ? 0 : (r ? r : -ENOMEM);
}

/* Give @d its transport and a PCI slot, and publish it in m->disks[]. */
static int disk_plug(VmmMachine *m, MachineDisk *d) VMM_REQUIRES(m->lock)
{
    machine_assert_locked(d->m);            /* d->m == m */
    if (m->ndisks >= MACHINE_MAX_PCI - 1) {
        return VMM_MISUSE_ERR(-EINVAL, "at most %d disks", MACHINE_MAX_PCI - 1);
    }
    for (unsigned i = 0; i < VPCI_MAX_VECTORS; i++) {
        d->vec[i].gsi = -1;
    }
    for (unsigned i = 0; i < VPCI_MAX_QUEUES; i++) {
        d->bell_gpa[i] = UINT64_MAX;
    }
    VirtioPciConfig pc = {
        .virtio_id = vmm_virtio_device_id(d->vdev), .class_code = 0x018000,
        .num_queues = vmm_virtio_num_queues(d->vdev),
        .queue_max_size = vmm_virtio_queue_get_max_size(d->vdev, 0),
        .devcfg_len = sizeof(struct virtio_blk_config),
        .bar0_addr = machine_alloc_mmio(m, VPCI_BAR_SIZE),
        .bar1_addr = machine_alloc_mmio(m, VPCI_MSIX_BAR_SIZE),
    };
    if (!pc.bar0_addr || !pc.bar1_addr) {
        return -ENOSPC;
    }
    int r = virtio_pci_init(&d->t, &pc, &disk_ops, d);
    if (r < 0) {
        return r;
    }
    d->pcidev = (VmmMachinePciDev){ .pci = &d->t.pci, .read = disk_bar_read,
                                    .write = disk_bar_write, .opaque = d };
    r = machine_pci_add(m, &d->pcidev);
    if (r < 0) {
        return r;
    }
    d->index = m->ndisks;
    m->disks[m->ndisks++] = d;
    return 0;
}

int vmm_machine_add_block(VmmMachine *m, const char *options, bool readonly)
{
    if (m->state != VMM_MACHINE_CREATED) {
        return VMM_MISUSE_ERR(-EINVAL, "disks are added before start");
    }
    int r = ensure_iothread(m);
    if (r < 0) {
        return r;
    }
    MachineDisk *d = calloc(1, sizeof(*d));
    if (!d) {
        return -ENOMEM;
    }
    d->m = m;
    GError *gerr = NULL;
    d->blk = vmm_blk_new_open(options, readonly ? VMM_BLOCK_RDONLY : 0, &gerr);
    if (!d->blk || vmm_blk_set_context(d->blk, vmm_iothread_get_context(m->iothread),
                                       &gerr) < 0) {
        vk_error("machine: disk '%s': %s", options, gerr ? gerr->message : "failed");
        r = gerr && gerr->code ? -abs(gerr->code) : -EINVAL;
        g_clear_error(&gerr);
        goto fail;
    }
    VmmVirtioBlkOptions bo = { .size = sizeof(bo), .name = "vda" };
    d->vblk = vmm_virtio_blk_new(d->blk, m->mem, &bo, &r);
    if (!d->vblk) {
        goto fail;
    }
    d->vdev = vmm_virtio_blk_get_virtio(d->vblk);
    machine_lock(m);
    r = disk_plug(m, d);
    machine_unlock(m);
    if (r < 0) {
        goto fail;
    }
    /* From here on the disk is the machine's: no failure path.  Nothing
     * raises before the guest runs. */
    vmm_virtio_set_interrupt(d->vdev, disk_interrupt, d);
    bells_attach(d);
    return 0;
fail:
    if (d->vblk) {
        vmm_virtio_blk_free(d->vblk);
    }
    if (d->blk) {
        vmm_blk_unref(d->blk);
    }
    free(d);
    return r < 0 ? r : -EINVAL;
}

int vmm_machine_add_disk(VmmMachine *m, const char *path, bool readonly)
{
    /* A raw image: "," in the file name is written ",,". */
    GString *o = g_string_new("driver=raw,file.driver=file,file.filename=");
    for (const char *p = path; *p; p++) {
        g_string_append_c(o, *p);
        if (*p == ',') {
            g_string_append_c(o, ',');
        }
    }
    int r = vmm_machine_add_block(m, o->str, readonly);
    g_string_free(o, TRUE);
    return r;
}

/* ---- Statistics ----------------------------------------------------------- */

int vmm_machine_get_stats(VmmMachine *m, VmmMachineStats *out)
{
    if (!m || !out || out->size < sizeof(size_t)) {
        return -EINVAL;
    }
    VmmMachineStats st = { .size = sizeof(st) };
    /* The lock: the vector and doorbell tables change under it. */
    machine_lock(m);
    for (unsigned i = 0; i < m->ndisks; i++) {
        MachineDisk *d = m->disks[i];
        machine_assert_locked(d->m);        /* d->m == m */
        st.irqfd_signals += vk_atomic_read(&d->irqfd_signals);
        st.msi_injections += vk_atomic_read(&d->msi_injections);
        st.msix_pended += vk_atomic_read(&d->t.msix_pended);
        st.mmio_doorbells += vk_atomic_read(&d->t.mmio_notifies);
        for (unsigned v = 0; v < VPCI_MAX_VECTORS; v++) {
            st.irqfd_vectors += d->vec[v].gsi >= 0;
        }
        for (unsigned q = 0; q < VPCI_MAX_QUEUES; q++) {
            st.ioeventfd_queues += d->bell_gpa[q] != UINT64_MAX;
        }
        VmmVirtioBlkStats bs = { .size = sizeof(bs) };
        if (vmm_virtio_blk_get_stats(d->vblk, &bs) == 0) {
            st.blk_requests += bs.requests;
            st.blk_service_ns += bs.service_ns;
            st.blk_io_ns += bs.io_ns;
        }
    }
    machine_unlock(m);
    st.kernel_unpacked = m->kernel_unpacked;    /* set before vmm_machine_new returned */
    size_t n = out->size < sizeof(st) ? out->size : sizeof(st);
    memcpy((char *)out + sizeof(size_t), (char *)&st + sizeof(size_t), n - sizeof(size_t));
    return 0;
}

/* ---- Lifecycle --------------------------------------------------------------- */

int machine_devices_start(VmmMachine *m)
{
    (void)m;
    return 0;
}

typedef struct PauseWait {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int pending, err;
} PauseWait;

static void pause_done(VmmDevice *dev, int ret, void *opaque)
{
    PauseWait *w = opaque;
    (void)dev;
    pthread_mutex_lock(&w->lock);
    if (ret < 0) {
        w->err = ret;
    }
    w->pending--;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

/* A copy of m->disks[] to work on without the lock (which is not held
 * across a wait for the iothread); with @detach, m->disks[] empties. */
static unsigned disks_snapshot(VmmMachine *m, MachineDisk **out, bool detach)
    VMM_EXCLUDES(m->lock)
{
    machine_lock(m);
    unsigned n = m->ndisks;
    memcpy(out, m->disks, n * sizeof(*out));
    if (detach) {
        m->ndisks = 0;
    }
    machine_unlock(m);
    return n;
}

int machine_devices_pause(VmmMachine *m, bool pause)
{
    MachineDisk *disks[MACHINE_MAX_PCI];
    unsigned n = disks_snapshot(m, disks, false);
    if (!pause) {
        for (unsigned i = 0; i < n; i++) {
            if (disks[i]->paused) {
                vmm_device_unpause(vmm_virtio_device_get_device(disks[i]->vdev));
                disks[i]->paused = false;
            }
        }
        return 0;
    }
    PauseWait w = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
    for (unsigned i = 0; i < n; i++) {
        pthread_mutex_lock(&w.lock);
        w.pending++;
        pthread_mutex_unlock(&w.lock);
        if (vmm_device_pause(vmm_virtio_device_get_device(disks[i]->vdev), pause_done,
                             &w) < 0) {
            pause_done(NULL, -EIO, &w);
        } else {
            disks[i]->paused = true;
        }
    }
    pthread_mutex_lock(&w.lock);
    while (w.pending) {
        pthread_cond_wait(&w.cond, &w.lock);
    }
    pthread_mutex_unlock(&w.lock);
    return w.err;
}

void machine_devices_free(VmmMachine *m)
{
    /* Out of m->disks[] first, so no delivery reaches a disk being freed. */
    MachineDisk *disks[MACHINE_MAX_PCI];
    unsigned n = disks_snapshot(m, disks, true);
    for (unsigned i = 0; i < n; i++) {
        MachineDisk *d = disks[i];
        if (d->paused) {
            vmm_device_unpause(vmm_virtio_device_get_device(d->vdev));
        }
        vmm_blk_drain(d->blk);
        disk_irq_free(d);
        vmm_virtio_blk_free(d->vblk);
        vmm_blk_unref(d->blk);
        free(d);
    }
    if (m->iothread) {
        vmm_iothread_destroy(m->iothread);
        m->iothread = NULL;
    }
}

/* ---- Snapshots ------------------------------------------------------------- */

/* A device's record: the transport's (u32 length + bytes), then the virtio
 * core's (u32 length + bytes). */

unsigned machine_device_ids(VmmMachine *m, uint16_t *ids, unsigned max)
{
    machine_lock(m);
    unsigned n = m->ndisks;
    for (unsigned i = 0; i < n && i < max; i++) {
        ids[i] = vmm_virtio_device_id(m->disks[i]->vdev);
    }
    machine_unlock(m);
    return n;
}

static MachineDisk *disk_at(VmmMachine *m, unsigned i)
{
    machine_lock(m);
    MachineDisk *d = i < m->ndisks ? m->disks[i] : NULL;
    machine_unlock(m);
    return d;
}

size_t machine_device_state_size(VmmMachine *m, unsigned i)
{
    MachineDisk *d = disk_at(m, i);
    if (!d) {
        return 0;
    }
    machine_lock(m);
    machine_assert_locked(d->m);            /* d->m == m */
    size_t n = 8 + virtio_pci_state_size(&d->t);
    machine_unlock(m);
    return n + vmm_virtio_state_size(d->vdev);
}

int machine_device_save(VmmMachine *m, unsigned i, uint8_t *out, size_t len)
{
    MachineDisk *d = disk_at(m, i);
    if (!d || len != machine_device_state_size(m, i)) {
        return -EINVAL;
    }
    machine_lock(m);
    machine_assert_locked(d->m);            /* d->m == m */
    uint32_t tlen = (uint32_t)virtio_pci_state_size(&d->t);
    memcpy(out, &tlen, 4);
    virtio_pci_save(&d->t, out + 4);
    machine_unlock(m);
    uint32_t clen = (uint32_t)(len - 8 - tlen);
    memcpy(out + 4 + tlen, &clen, 4);
    return vmm_virtio_save_state(d->vdev, out + 8 + tlen, clen);
}

int machine_device_load(VmmMachine *m, unsigned i, const uint8_t *in, size_t len)
{
    MachineDisk *d = disk_at(m, i);
    uint32_t tlen, clen;
    if (!d || len < 8) {
        return -EINVAL;
    }
    memcpy(&tlen, in, 4);
    if (tlen > len - 8) {
        return -EINVAL;
    }
    memcpy(&clen, in + 4 + tlen, 4);
    if (clen != len - 8 - tlen) {
        return -EINVAL;
    }
    /* The transport first: its routes and doorbells are in place before
     * the core's kicks complete requests and raise interrupts. */
    machine_lock(m);
    machine_assert_locked(d->m);            /* d->m == m */
    int r = virtio_pci_load(&d->t, in + 4, tlen);
    machine_unlock(m);
    if (r < 0) {
        vk_error("machine: the saved virtio-pci state of device %u does not fit it", i);
        return r;
    }
    return vmm_virtio_load_state(d->vdev, in + 8 + tlen, clen);
}

void machine_device_used_rings(VmmMachine *m, void (*fn)(void *opaque, uint64_t gpa,
                                                         uint64_t len), void *opaque)
{
    MachineDisk *disks[MACHINE_MAX_PCI];
    unsigned n = disks_snapshot(m, disks, false);
    for (unsigned i = 0; i < n; i++) {
        VmmVirtioDevice *v = disks[i]->vdev;
        for (unsigned q = 0; q < vmm_virtio_num_queues(v); q++) {
            if (!vmm_virtio_queue_is_enabled(v, q)) {
                continue;
            }
            uint64_t desc, avail, used;
            vmm_virtio_queue_get_addr(v, q, &desc, &avail, &used);
            fn(opaque, used, 6 + 8ull * vmm_virtio_queue_get_size(v, q));
        }
    }
}
