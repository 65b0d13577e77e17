/* SPDX-License-Identifier: MIT */
/*
 * The machine's virtio-pci glue, for any virtio device (vmmkit/virtio.h):
 * the library's (virtio-blk, machine-disk.c; the console and the RNG,
 * machine-devices.c) and the caller's (vmm_machine_add_virtio).  Each
 * device gets a virtio-pci transport (virtio-pci.h) in a PCI slot, its
 * queues an AioContext (normally the machine's device iothread).
 *
 * Threads: BAR accesses come from vCPU threads with the machine's lock
 * (m->lock) held; it guards the transport (d->t), the vectors' routes and
 * the doorbells' registrations.  Interrupts come from the virtio core -
 * mostly in the iothread, but synchronously inside a register write too
 * (e.g. a queue enabled after DRIVER_OK with bad rings: the core marks the
 * device NEEDS_RESET and raises the config interrupt from within
 * vmm_virtio_queue_enable, on the vCPU thread that holds the lock).  So
 * glue_interrupt never takes the lock: it records the interrupt in
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
 * the virtio core watches in the queue's AioContext (the device iothread):
 * the guest's doorbell write wakes the iothread without leaving KVM_RUN.
 * The notifiers are attached to the queues once, at creation (main loop);
 * the ioeventfds follow the transport's doorbell() reports (queue enable,
 * reset, BAR 0 moved or decoding switched) from the vCPU thread.  When
 * the ioeventfd cannot be registered the MMIO exit path still notifies.
 *
 * Teardown (vmm_machine_free, vCPUs stopped): each device is taken out of
 * m->virtio[] (no delivery reaches it any more), let finish - a library
 * device by its drain hook, any other by a reset through its status, which
 * quiesces it and disables its queues - and unwired: ioeventfds, irqfds
 * and routes, host notifiers, interrupt callback and the contexts the
 * machine set.  Then a library device is freed; the caller's is left to
 * the caller.  The iothread ends last.
 */
#include "machine/machine-internal.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <time.h>

#include "util/log.h"
#include "util/atomic.h"
#include "vmmkit/virtio.h"

/* ---- The transport's view of the virtio core ----------------------------- */

static uint64_t d_features(void *o)
{
    return vmm_virtio_get_device_features(((MachineVirtio *)o)->vdev);
}

static int d_set_features(void *o, uint64_t f)
{
    vmm_virtio_set_driver_features(((MachineVirtio *)o)->vdev, f);
    return 0;
}

static void d_set_status(void *o, uint8_t s)
{
    vmm_virtio_set_status(((MachineVirtio *)o)->vdev, s);
}

static uint8_t d_get_status(void *o)
{
    return vmm_virtio_get_status(((MachineVirtio *)o)->vdev);
}

static int d_queue_enable(void *o, unsigned q, unsigned size, uint64_t desc,
                          uint64_t avail, uint64_t used)
{
    MachineVirtio *d = o;
    int r = vmm_virtio_queue_set_size(d->vdev, q, (uint16_t)size);
    if (r == 0) {
        r = vmm_virtio_queue_set_addr(d->vdev, q, desc, avail, used);
    }
    return r ? r : vmm_virtio_queue_enable(d->vdev, q);
}

static void d_queue_notify(void *o, unsigned q)
{
    vmm_virtio_queue_notify(((MachineVirtio *)o)->vdev, q);
}

static uint32_t d_config_read(void *o, uint32_t off, uint32_t size)
{
    uint8_t b[4] = { 0 };
    if (vmm_virtio_config_read(((MachineVirtio *)o)->vdev, off, b, size) < 0) {
        return 0;
    }
    return pci_get(b, size);
}

static void d_config_write(void *o, uint32_t off, uint32_t size, uint32_t val)
{
    uint8_t b[4];
    pci_set(b, size, val);
    vmm_virtio_config_write(((MachineVirtio *)o)->vdev, off, b, size);
}

/* ---- MSI-X through irqfds ------------------------------------------------ */

static void vector_release(MachineVirtio *d, MachineVirtioVector *vec) VMM_REQUIRES(d->m->lock)
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
static void vector_setup(MachineVirtio *d, MachineVirtioVector *vec, uint64_t addr, uint32_t data)
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
    MachineVirtio *d = o;
    machine_assert_locked(d->m);        /* a VirtioPciOps callback */
    MachineVirtioVector *vec = &d->vec[v];
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

/* Fire live vector @v: whichever thread delivers (machine_virtio_deliver) or
 * a vCPU unmasking it; machine lock held. */
static void d_msix_fire(void *o, unsigned v)
{
    MachineVirtio *d = o;
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

static int bell_assign(MachineVirtio *d, unsigned q, uint64_t gpa, bool assign)
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
    MachineVirtio *d = o;
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

static const VirtioPciOps virtio_glue_ops = {
    .features = d_features, .set_features = d_set_features,
    .queue_enable = d_queue_enable, .queue_notify = d_queue_notify,
    .config_read = d_config_read, .config_write = d_config_write,
    .msix_update = d_msix_update, .msix_fire = d_msix_fire, .doorbell = d_doorbell,
    .set_status = d_set_status, .get_status = d_get_status,
};

/* One event notifier per queue, watched by the virtio core in the queue's
 * context from now on; the KVM ioeventfd comes and goes (d_doorbell).
 * Main loop, at creation.  Without notifiers the MMIO path serves. */
static void bells_attach(MachineVirtio *d)
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
 * Main loop, vCPUs stopped, @d no longer in m->virtio[]. */
static void glue_irq_free(MachineVirtio *d) VMM_EXCLUDES(d->m->lock)
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
 * thread; machine_virtio_deliver reads them after its exchange of the
 * handoff's bits, so it sees them. */
static void glue_interrupt(void *opaque, VmmVirtioDevice *vdev, int queue)
{
    MachineVirtio *d = opaque;
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

void machine_virtio_deliver(void *opaque, unsigned src)
{
    VmmMachine *m = opaque;
    machine_assert_locked(m);               /* the handoff's deliver callback */
    MachineVirtio *d = src < m->nvirtio ? m->virtio[src] : NULL;
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

static uint64_t glue_bar_read(VmmMachinePciDev *pd, int bar, uint64_t off, unsigned size)
{
    MachineVirtio *d = pd->opaque;
    machine_assert_locked(d->m);            /* a VmmMachinePciDev callback */
    return bar == 0 ? virtio_pci_bar0_read(&d->t, off, size)
                    : virtio_pci_msix_read(&d->t, off, size);
}

static void glue_bar_write(VmmMachinePciDev *pd, int bar, uint64_t off, unsigned size,
                           uint64_t val)
{
    MachineVirtio *d = pd->opaque;
    machine_assert_locked(d->m);            /* a VmmMachinePciDev callback */
    if (bar == 0) {
        virtio_pci_bar0_write(&d->t, off, size, val);
    } else {
        virtio_pci_msix_write(&d->t, off, size, val);
    }
}

/* ---- Creation --------------------------------------------------------------- */

VmmAioContext *vmm_machine_device_context(VmmMachine *m, int *errp)
{
    if (!m->iothread) {
        int r = 0;
        /* ppoll(2): with the io_uring monitor the same boot took 76 s
         * instead of 46 s inside the emulated machine (bench-boot, one
         * emulated CPU shared with the vCPU). */
        VmmAioContextOptions o = { .size = sizeof(o), .fdmon = VMM_FDMON_POLL };
        m->iothread = vmm_iothread_new("vmmkit-dev", &o, &r);
        if (!m->iothread) {
            if (errp) {
                *errp = r ? r : -ENOMEM;
            }
            return NULL;
        }
    }
    return vmm_iothread_get_context(m->iothread);
}

VmmGuestMemory *vmm_machine_guest_memory(VmmMachine *m)
{
    return m->mem;
}

/* Give @d its transport and a PCI slot, and publish it in m->virtio[]. */
static int glue_plug(VmmMachine *m, MachineVirtio *d, uint32_t pci_class)
    VMM_REQUIRES(m->lock)
{
    machine_assert_locked(d->m);            /* d->m == m */
    if (m->nvirtio >= MACHINE_MAX_PCI || m->npci >= MACHINE_MAX_PCI) {
        return -ENOSPC;
    }
    for (unsigned i = 0; i < VPCI_MAX_VECTORS; i++) {
        d->vec[i].gsi = -1;
    }
    for (unsigned i = 0; i < VPCI_MAX_QUEUES; i++) {
        d->bell_gpa[i] = UINT64_MAX;
    }
    VirtioPciConfig pc = {
        .virtio_id = vmm_virtio_device_id(d->vdev), .class_code = pci_class,
        .num_queues = vmm_virtio_num_queues(d->vdev),
        .queue_max_size = vmm_virtio_queue_get_max_size(d->vdev, 0),
        .devcfg_len = vmm_virtio_config_size(d->vdev),
        .bar0_addr = machine_alloc_mmio(m, VPCI_BAR_SIZE),
        .bar1_addr = machine_alloc_mmio(m, VPCI_MSIX_BAR_SIZE),
    };
    if (!pc.bar0_addr || !pc.bar1_addr) {
        return -ENOSPC;
    }
    int r = virtio_pci_init(&d->t, &pc, &virtio_glue_ops, d);
    if (r < 0) {
        return r;
    }
    d->pcidev = (VmmMachinePciDev){ .pci = &d->t.pci, .read = glue_bar_read,
                                    .write = glue_bar_write, .opaque = d };
    r = machine_pci_add(m, &d->pcidev);
    if (r < 0) {
        return r;
    }
    d->index = m->nvirtio;
    m->virtio[m->nvirtio++] = d;
    return 0;
}

/* Undo what machine_virtio_add set on the device itself: the host
 * notifiers (and their ioeventfds, irqfds and routes), the interrupt
 * callback and the contexts.  Main loop; @d is not in m->virtio[]. */
static void glue_detach(MachineVirtio *d) VMM_EXCLUDES(d->m->lock)
{
    glue_irq_free(d);
    vmm_virtio_set_interrupt(d->vdev, NULL, NULL);
    if (d->set_contexts) {
        unsigned nq = vmm_virtio_num_queues(d->vdev);
        for (unsigned q = 0; q < nq; q++) {
            vmm_virtio_queue_set_context(d->vdev, q, NULL);
        }
        d->set_contexts = false;
    }
}

int machine_virtio_add(VmmMachine *m, VmmVirtioDevice *vdev, uint32_t pci_class,
                       VmmAioContext *ctx, const MachineVirtioClass *cls, void *priv)
{
    if (vk_atomic_load_acquire(&m->state) != VMM_MACHINE_CREATED) {
        return VMM_MISUSE_ERR(-EINVAL, "devices are added before start");
    }
    unsigned nq = vmm_virtio_num_queues(vdev);
    if (nq > VPCI_MAX_QUEUES) {
        return VMM_MISUSE_ERR(-EINVAL, "a virtio device with %u queues (the transport has %d)",
                              nq, VPCI_MAX_QUEUES);
    }
    machine_lock(m);
    bool dup = false;
    for (unsigned i = 0; i < m->nvirtio; i++) {
        dup |= m->virtio[i]->vdev == vdev;
    }
    machine_unlock(m);
    if (dup) {
        return VMM_MISUSE_ERR(-EINVAL, "virtio device already in the machine");
    }
    MachineVirtio *d = calloc(1, sizeof(*d));
    if (!d) {
        return -ENOMEM;
    }
    d->m = m;
    d->vdev = vdev;
    d->cls = cls;
    d->priv = priv;
    int r = 0;
    if (ctx) {
        for (unsigned q = 0; q < nq && r == 0; q++) {
            r = vmm_virtio_queue_set_context(vdev, q, ctx);
        }
        d->set_contexts = true;
        if (r < 0) {
            glue_detach(d);
            free(d);
            return r;
        }
    }
    machine_lock(m);
    r = glue_plug(m, d, pci_class);
    machine_unlock(m);
    if (r < 0) {
        glue_detach(d);
        free(d);
        return r;
    }
    /* From here on the device is on the bus: no failure path.  Nothing
     * raises before the guest runs. */
    vmm_virtio_set_interrupt(vdev, glue_interrupt, d);
    bells_attach(d);
    return 0;
}

int vmm_machine_add_virtio(VmmMachine *m, VmmVirtioDevice *vdev,
                           const VmmMachineVirtioOptions *opts)
{
    if (!vdev) {
        return VMM_MISUSE_ERR(-EINVAL, "no virtio device");
    }
    if (opts && (opts->size < sizeof(*opts) || opts->pci_class > 0xffffff)) {
        return VMM_MISUSE_ERR(-EINVAL, "bad VmmMachineVirtioOptions");
    }
    /* The guest's addresses mean the machine's RAM: a device on another
     * VmmGuestMemory would do the guest's DMA somewhere else. */
    if (vmm_device_guest_memory(vmm_virtio_device_get_device(vdev)) != m->mem) {
        return VMM_MISUSE_ERR(-EINVAL, "virtio device not on the machine's guest memory");
    }
    if (vk_atomic_load_acquire(&m->state) != VMM_MACHINE_CREATED) {
        return VMM_MISUSE_ERR(-EINVAL, "devices are added before start");
    }
    VmmAioContext *ctx = opts ? opts->context : NULL;
    int r = 0;
    if (!ctx) {
        ctx = vmm_machine_device_context(m, &r);
        if (!ctx) {
            return r;
        }
    }
    uint32_t cls = opts && opts->pci_class ? opts->pci_class : 0xff0000;
    return machine_virtio_add(m, vdev, cls, ctx, NULL, NULL);
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
    for (unsigned i = 0; i < m->nvirtio; i++) {
        MachineVirtio *d = m->virtio[i];
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
        if (d->cls && d->cls->stats) {
            d->cls->stats(d->priv, &st);
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

/* A copy of m->virtio[] to work on without the lock (which is not held
 * across a wait for the iothread); with @detach, m->virtio[] empties. */
static unsigned devices_snapshot(VmmMachine *m, MachineVirtio **out, bool detach)
    VMM_EXCLUDES(m->lock)
{
    machine_lock(m);
    unsigned n = m->nvirtio;
    memcpy(out, m->virtio, n * sizeof(*out));
    if (detach) {
        m->nvirtio = 0;
    }
    machine_unlock(m);
    return n;
}

/* Release @d's pauses: the machine's and the migration's. */
static void device_unpause_all(MachineVirtio *d)
{
    if (d->paused) {
        vmm_device_unpause(vmm_virtio_device_get_device(d->vdev));
        d->paused = false;
    }
    if (d->mig_paused) {
        vmm_device_unpause(vmm_virtio_device_get_device(d->vdev));
        d->mig_paused = false;
    }
}

/* Pause the devices of @devs (with @backends, only those whose queues a
 * backend outside the core processes, as the migration's pause) and wait
 * until each has quiesced. */
static int pause_some(MachineVirtio **devs, unsigned n, bool backends)
{
    PauseWait w = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
    for (unsigned i = 0; i < n; i++) {
        bool *flag = backends ? &devs[i]->mig_paused : &devs[i]->paused;
        if (*flag || (backends && !machine_virtio_has_backend(devs[i]->vdev))) {
            continue;
        }
        pthread_mutex_lock(&w.lock);
        w.pending++;
        pthread_mutex_unlock(&w.lock);
        if (vmm_device_pause(vmm_virtio_device_get_device(devs[i]->vdev), pause_done,
                             &w) < 0) {
            pause_done(NULL, -EIO, &w);
        } else {
            *flag = true;
        }
    }
    pthread_mutex_lock(&w.lock);
    while (w.pending) {
        pthread_cond_wait(&w.cond, &w.lock);
    }
    pthread_mutex_unlock(&w.lock);
    return w.err;
}

int machine_devices_pause(VmmMachine *m, bool pause)
{
    MachineVirtio *devs[MACHINE_MAX_PCI];
    unsigned n = devices_snapshot(m, devs, false);
    if (!pause) {
        for (unsigned i = 0; i < n; i++) {
            device_unpause_all(devs[i]);
        }
        return 0;
    }
    return pause_some(devs, n, false);
}

int machine_backends_pause(VmmMachine *m)
{
    MachineVirtio *devs[MACHINE_MAX_PCI];
    unsigned n = devices_snapshot(m, devs, false);
    return pause_some(devs, n, true);
}

/* Reset @d's device through its status and wait until the reset is done
 * (the quiesce protocol waits for the requests in flight, in the device's
 * contexts, which still run).  Main loop, vCPUs stopped. */
static void reset_and_wait(MachineVirtio *d)
{
    vmm_virtio_set_status(d->vdev, 0);
    int64_t t0 = vmm_clock_ns();
    bool warned = false;
    while (vmm_virtio_get_status(d->vdev) != 0 ||
           !vmm_device_is_idle(vmm_virtio_device_get_device(d->vdev))) {
        if (!warned && vmm_clock_ns() - t0 > 5000000000ll) {
            vk_warn("machine: virtio device '%s' is slow to finish its requests",
                    vmm_device_name(vmm_virtio_device_get_device(d->vdev)));
            warned = true;
        }
        nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
    }
}

void machine_devices_free(VmmMachine *m)
{
    /* Out of m->virtio[] first, so no delivery reaches a device being freed. */
    MachineVirtio *devs[MACHINE_MAX_PCI];
    unsigned n = devices_snapshot(m, devs, true);
    for (unsigned i = 0; i < n; i++) {
        MachineVirtio *d = devs[i];
        device_unpause_all(d);
        if (d->cls && d->cls->drain) {
            d->cls->drain(d->priv);
        } else {
            reset_and_wait(d);
        }
        glue_detach(d);
        if (d->cls && d->cls->free) {
            d->cls->free(d->priv);
        }
        free(d);
    }
    if (m->iothread) {
        vmm_iothread_destroy(m->iothread);
        m->iothread = NULL;
    }
}
