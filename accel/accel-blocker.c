/* SPDX-License-Identifier: MIT */
/*
 * The accel-blocker gate (see include/vmmkit/accel.h and docs/accel.md).
 *
 * State per gate:
 *   inhibited     0 open, 1 inhibited; futex word blocked callers sleep on.
 *   shared_count  ioctls in flight from threads that own no slot of the gate.
 *   event         level-triggered "something ended" flag the inhibitor
 *                 sleeps on (reset, scan, wait loop: no lost wake-up).
 * State per vCPU slot: count, written only by its owner thread; foreign,
 * the slot's vCPU ioctls issued by other threads (atomic adds).  The
 * inhibitor kicks every slot whose count or foreign is non-zero.
 *
 * The Dekker pairs (each access below names its pair):
 *   D1  owner begin: store count; [compiler barrier]; load inhibited
 *       inhibitor:   store inhibited; membarrier(); load every count
 *   D2  owner end:   store count; [compiler barrier]; load inhibited -> event
 *       inhibitor:   (same membarrier) reset event (xchg); load counts
 *   D3  shared begin/end: atomic add on shared_count (a full barrier), then
 *       load inhibited; the inhibitor side is the same as D1.
 *   D4  a vCPU ioctl on a slot from a thread that does not own it: atomic
 *       add on slot->foreign, then D3.  Both adds are full barriers, so an
 *       inhibitor whose scan sees the shared_count add (load-acquire) also
 *       sees the foreign add and kicks the slot; a thread that steps back
 *       because the gate is inhibited undoes foreign too.
 * membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) executes a full barrier on
 * every thread of the process that is running; threads not running have
 * one at their context switch.  So each owner's program order is cut at
 * one point: accesses before it are visible to the inhibitor's scan, and
 * accesses after it see inhibited == 1.  Either the inhibitor sees the
 * count, or the owner sees the flag; never neither.  Without membarrier
 * (old kernels or VMM_ACCEL_NO_MEMBARRIER=1) owners use a full fence.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "vmmkit/accel.h"
#include "accel/accel-internal.h"
#include "accel/futex.h"
#include "util/atomic.h"
#include "util/compiler.h"
#include "util/lock.h"
#include "util/log.h"

#define HELD_MAX 4
/*
 * A gate is one page: the gate, then a pool of slots.  The owner's fast
 * path reads its slot and the gate's flag; with both on one page a vCPU
 * exit touches one page fewer (page walks are what an exit costs where
 * TLBs are flushed per exit, e.g. under emulated nested virtualization).
 * Slots beyond the pool are allocated on their own.  A pool slot is free
 * when its gate is NULL (under gate->lock).
 */
#define GATE_PAGE 4096
#define GATE_POOL ((GATE_PAGE - sizeof(VmmAccelGate) - VMM_ACCEL_GATE_USER_SIZE) / \
                   sizeof(VmmAccelCpuSlot))

typedef struct GatePage {
    VmmAccelGate gate;
    /* Read-mostly data of the gate's user on the same page (the KVM layer
     * keeps its PIO/MMIO map pointers here). */
    uint8_t user[VMM_ACCEL_GATE_USER_SIZE] VMM_CACHE_ALIGNED;
    VmmAccelCpuSlot pool[GATE_POOL];
} GatePage;
_Static_assert(sizeof(GatePage) <= GATE_PAGE, "a gate and its slot pool fit a page");
_Static_assert(GATE_POOL >= 8, "the pool holds a few vCPUs");

/* Per thread: its identity, the slot it owns, its shared-path nesting. */
static __thread char tls_self;
static __thread VmmAccelCpuSlot *tls_slot VMM_TLS_IE;
static __thread struct {
    VmmAccelGate *gate;
    unsigned depth;
} tls_held[HELD_MAX];

static bool use_membarrier;
static pthread_once_t membarrier_once = PTHREAD_ONCE_INIT;

static void membarrier_init(void)
{
    const char *env = getenv("VMM_ACCEL_NO_MEMBARRIER");
    long cmds;

    if (env && env[0] == '1') {
        return;
    }
    cmds = syscall(__NR_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    if (cmds < 0 || !(cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED)) {
        return;
    }
    if (syscall(__NR_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) < 0) {
        return;
    }
    use_membarrier = true;
}

bool vmm_accel_uses_membarrier(void)
{
    pthread_once(&membarrier_once, membarrier_init);
    return use_membarrier;
}

/* The inhibitor side of D1/D2/D3. */
static void inhibitor_fence(void)
{
    if (use_membarrier &&
        syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0) {
        return;
    }
    /* membarrier failed after registration: cannot happen on Linux; if it
     * did, owners still run fence-free, so we must not go on silently. */
    if (use_membarrier) {
        vk_error("accel gate: membarrier failed: %s", strerror(errno));
        abort();
    }
    vk_smp_mb();       /* pairs with vk_smp_mb() in owner_fence() */
}

/* ---- event: "an ioctl ended while inhibited" ---------------------------- */

void accel_gate_event_set(VmmAccelGate *gate)
{
    /* The xchg is a full barrier: the count store before it is visible to
     * an inhibitor whose reset (xchg) reads this 1 (pairs with the xchg in
     * gate_event_reset()). */
    if (vk_atomic_xchg(&gate->event, 1) == 0) {
        vk_futex_wake(&gate->event, 1);
    }
}

static void gate_event_reset(VmmAccelGate *gate)
{
    (void)vk_atomic_xchg(&gate->event, 0);     /* pairs with accel_gate_event_set() */
}

static void gate_wait_open(VmmAccelGate *gate)
{
    /* Acquire pairs with the store-release in inhibit_end: whatever the
     * inhibitor changed is visible once we see the gate open. */
    while (vk_atomic_load_acquire(&gate->inhibited)) {
        vk_futex_wait(&gate->inhibited, 1, NULL);
    }
}

/* ---- gates and slots ---------------------------------------------------- */

VmmAccelGate *vmm_accel_gate_new(int *errp)
{
    GatePage *page;

    pthread_once(&membarrier_once, membarrier_init);
    if (posix_memalign((void **)&page, GATE_PAGE, sizeof(*page))) {
        if (errp) {
            *errp = -ENOMEM;
        }
        return NULL;
    }
    memset(page, 0, sizeof(*page));
    pthread_mutex_init(&page->gate.lock.m, NULL);
    page->gate.fence_free = use_membarrier;
    return &page->gate;
}

void vmm_accel_gate_free(VmmAccelGate *gate)
{
    if (!gate) {
        return;
    }
    if (vk_atomic_read(&gate->nr_slots) || vk_atomic_read(&gate->shared_count) ||
        vk_atomic_read(&gate->inhibited)) {
        VMM_MISUSE("gate freed with %u slots, %u ioctls in flight%s",
                   vk_atomic_read(&gate->nr_slots), vk_atomic_read(&gate->shared_count),
                   vk_atomic_read(&gate->inhibited) ? ", inhibited" : "");
        return;     /* leak rather than free memory still in use */
    }
    pthread_mutex_destroy(&gate->lock.m);
    free(gate);
}

void *accel_gate_user_area(VmmAccelGate *gate)
{
    return vk_container_of(gate, GatePage, gate)->user;
}

static bool slot_in_pool(VmmAccelGate *gate, VmmAccelCpuSlot *slot)
{
    GatePage *page = vk_container_of(gate, GatePage, gate);

    return slot >= page->pool && slot < page->pool + GATE_POOL;
}

/* A free pool slot, else a new one; its gate set, the rest zero. */
static VmmAccelCpuSlot *slot_alloc(VmmAccelGate *gate)
{
    GatePage *page = vk_container_of(gate, GatePage, gate);
    VmmAccelCpuSlot *slot = NULL;

    vk_mutex_lock(&gate->lock);
    for (size_t i = 0; i < GATE_POOL; i++) {
        if (!page->pool[i].gate) {
            slot = &page->pool[i];
            slot->gate = gate;      /* taken */
            break;
        }
    }
    vk_mutex_unlock(&gate->lock);
    if (slot) {
        return slot;
    }
    if (posix_memalign((void **)&slot, VMM_CACHELINE, sizeof(*slot))) {
        return NULL;
    }
    memset(slot, 0, sizeof(*slot));
    slot->gate = gate;
    return slot;
}

VmmAccelCpuSlot *vmm_accel_cpu_slot_new(VmmAccelGate *gate, VmmAccelKickFunc *kick,
                                        void *opaque, const char *name, int *errp)
{
    VmmAccelCpuSlot *slot;
    int err = -EINVAL;

    if (!gate || !kick) {
        goto fail;
    }
    if (vk_atomic_read(&gate->inhibitor) == (void *)&tls_self) {
        err = VMM_MISUSE_ERR(-EDEADLK, "slot added by the thread inhibiting its gate");
        goto fail;
    }
    slot = slot_alloc(gate);
    if (!slot) {
        err = -ENOMEM;
        goto fail;
    }
    slot->kick = kick;
    slot->opaque = opaque;
    snprintf(slot->name, sizeof(slot->name), "%s", name ? name : "vcpu");
    vk_mutex_lock(&gate->lock);
    slot->next = gate->slots;
    gate->slots = slot;
    vk_atomic_set(&gate->nr_slots, gate->nr_slots + 1);
    vk_mutex_unlock(&gate->lock);
    return slot;
fail:
    if (errp) {
        *errp = err;
    }
    return NULL;
}

void vmm_accel_cpu_slot_free(VmmAccelCpuSlot *slot)
{
    VmmAccelGate *gate;

    if (!slot) {
        return;
    }
    gate = slot->gate;
    if (vk_atomic_load_acquire(&slot->count) || vk_atomic_load_acquire(&slot->foreign)) {
        VMM_MISUSE("slot %s freed with %u ioctls in flight (begin without end)",
                   slot->name, slot->count + slot->foreign);
        return;
    }
    if (vk_atomic_read(&gate->inhibitor) == (void *)&tls_self) {
        VMM_MISUSE("slot %s freed by the thread inhibiting its gate", slot->name);
        return;
    }
    if (slot == tls_slot) {
        tls_slot = NULL;
    }
    vk_mutex_lock(&gate->lock);
    for (VmmAccelCpuSlot **p = &gate->slots; *p; p = &(*p)->next) {
        if (*p == slot) {
            *p = slot->next;
            break;
        }
    }
    vk_atomic_set(&gate->nr_slots, gate->nr_slots - 1);
    if (slot_in_pool(gate, slot)) {
        memset(slot, 0, sizeof(*slot));     /* gate = NULL: free */
        slot = NULL;
    }
    vk_mutex_unlock(&gate->lock);
    free(slot);
}

int vmm_accel_cpu_slot_bind(VmmAccelCpuSlot *slot, bool bind)
{
    if (!slot) {
        return -EINVAL;
    }
    if (!bind) {
        if (tls_slot != slot) {
            return VMM_MISUSE_ERR(-EPERM, "slot %s unbound by a thread that does not own it",
                                  slot->name);
        }
        if (slot->count) {
            return VMM_MISUSE_ERR(-EBUSY, "slot %s unbound with %u ioctls in flight "
                                  "(begin without end)", slot->name, slot->count);
        }
        vk_atomic_set(&slot->owner, NULL);
        tls_slot = NULL;
        return 0;
    }
    if (tls_slot && tls_slot != slot) {
        return VMM_MISUSE_ERR(-EBUSY, "thread already owns slot %s", tls_slot->name);
    }
    if (vk_atomic_read(&slot->owner) && slot->owner != (void *)&tls_self) {
        return VMM_MISUSE_ERR(-EBUSY, "slot %s is owned by another thread", slot->name);
    }
    if (vk_atomic_read(&slot->gate->inhibitor) == (void *)&tls_self) {
        return VMM_MISUSE_ERR(-EDEADLK, "slot %s bound by the thread inhibiting its gate",
                              slot->name);
    }
    vk_atomic_set(&slot->owner, (void *)&tls_self);
    tls_slot = slot;
    return 0;
}

/* ---- the shared path (threads without a slot on this gate) -------------- */

static int held_index(VmmAccelGate *gate)
{
    for (int i = 0; i < HELD_MAX; i++) {
        if (tls_held[i].gate == gate && tls_held[i].depth) {
            return i;
        }
    }
    return -1;
}

static void held_push(VmmAccelGate *gate)
{
    for (int i = 0; i < HELD_MAX; i++) {
        if (!tls_held[i].depth) {
            tls_held[i].gate = gate;
            tls_held[i].depth = 1;
            return;
        }
    }
    /* More than HELD_MAX gates held at once by one thread: nesting on the
     * extra gates is untracked (a nested begin may block). */
}

static void held_pop(VmmAccelGate *gate)
{
    int i = held_index(gate);

    if (i >= 0) {
        tls_held[i].depth--;
    }
}

/*
 * @foreign: the slot->foreign of a vCPU ioctl from a thread that does not
 * own the slot (D4), else NULL.  It is counted whenever shared_count is.
 */
static void shared_begin(VmmAccelGate *gate, unsigned *foreign) VMM_NO_TSA
{
    int i;

    if (foreign) {
        vk_atomic_inc(foreign);    /* D4: before the add on shared_count */
    }
    if (vk_atomic_read(&gate->inhibitor) == (void *)&tls_self) {
        gate->bypass_depth++;       /* the inhibitor's own VM ioctls */
        return;
    }
    i = held_index(gate);
    if (i >= 0) {
        /* Already counted: an inhibitor waits for us anyway, so a nested
         * begin must not block (it would deadlock). */
        tls_held[i].depth++;
        vk_atomic_inc(&gate->shared_count);
        return;
    }
    /* D3: the add is a full barrier before the load of inhibited; pairs
     * with inhibitor_fence() between the store of inhibited and the scan. */
    vk_atomic_inc(&gate->shared_count);
    while (vk_unlikely(vk_atomic_load_acquire(&gate->inhibited))) {
        vk_atomic_dec(&gate->shared_count);
        if (foreign) {
            vk_atomic_dec(foreign);    /* D4: not in an ioctl while waiting */
        }
        accel_gate_event_set(gate);
        gate_wait_open(gate);
        if (foreign) {
            vk_atomic_inc(foreign);    /* D4: before the add on shared_count */
        }
        vk_atomic_inc(&gate->shared_count);
    }
    held_push(gate);
}

static void shared_end(VmmAccelGate *gate, unsigned *foreign) VMM_NO_TSA
{
    if (foreign) {
        if (!vk_atomic_read(foreign)) {
            VMM_MISUSE("cpu_ioctl_end without cpu_ioctl_begin on a slot this thread "
                       "does not own");
            return;
        }
        vk_atomic_dec(foreign);    /* D4: before the sub on shared_count */
    }
    if (vk_atomic_read(&gate->inhibitor) == (void *)&tls_self) {
        if (gate->bypass_depth == 0) {
            VMM_MISUSE("ioctl_end without ioctl_begin by the inhibitor");
            return;
        }
        gate->bypass_depth--;
        return;
    }
    if (held_index(gate) < 0) {
        VMM_MISUSE("ioctl_end without ioctl_begin");
        return;
    }
    held_pop(gate);
    /* D3 again: the sub is a full barrier before the load of inhibited. */
    vk_atomic_dec(&gate->shared_count);
    if (vk_unlikely(vk_atomic_read(&gate->inhibited))) {
        accel_gate_event_set(gate);
    }
}

/* ---- the owner's fast path ---------------------------------------------- */

VMM_NOINLINE void accel_slot_begin_slow(VmmAccelCpuSlot *slot)
{
    VmmAccelGate *gate = slot->gate;

    do {
        /* Step back so the inhibitor can finish; the release store and the
         * xchg in accel_gate_event_set() publish count == 0 to its scan. */
        vk_atomic_store_release(&slot->count, 0);
        accel_gate_event_set(gate);
        gate_wait_open(gate);
        vk_atomic_set(&slot->count, 1);
        vk_smp_mb();   /* D1 without relying on membarrier; pairs with inhibitor_fence() */
    } while (vk_atomic_load_acquire(&gate->inhibited));
}

/* The owner's fast path itself is accel_owner_begin/end in
 * accel-internal.h (inlined into the KVM run loop). */
VMM_HOT void vmm_accel_cpu_ioctl_begin(VmmAccelCpuSlot *slot) VMM_NO_TSA
{
    if (vk_unlikely(slot != tls_slot)) {
        shared_begin(slot->gate, &slot->foreign);   /* D4 */
        return;
    }
    accel_owner_begin(slot);
}

VMM_HOT void vmm_accel_cpu_ioctl_end(VmmAccelCpuSlot *slot) VMM_NO_TSA
{
    if (vk_unlikely(slot != tls_slot)) {
        shared_end(slot->gate, &slot->foreign);     /* D4 */
        return;
    }
    if (vk_unlikely(slot->count == 0)) {
        VMM_MISUSE("cpu_ioctl_end without cpu_ioctl_begin on slot %s", slot->name);
        return;
    }
    accel_owner_end(slot);
}

void vmm_accel_ioctl_begin(VmmAccelGate *gate) VMM_NO_TSA
{
    VmmAccelCpuSlot *slot = tls_slot;

    if (slot && slot->gate == gate) {
        vmm_accel_cpu_ioctl_begin(slot);
    } else {
        shared_begin(gate, NULL);
    }
}

void vmm_accel_ioctl_end(VmmAccelGate *gate) VMM_NO_TSA
{
    VmmAccelCpuSlot *slot = tls_slot;

    if (slot && slot->gate == gate) {
        vmm_accel_cpu_ioctl_end(slot);
    } else {
        shared_end(gate, NULL);
    }
}

/* ---- the inhibitor ------------------------------------------------------ */

static int64_t mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Scan the counts, kicking the slots still inside an ioctl.  Returns true
 * if anything is in flight.  Names the first busy one in @who. */
static bool gate_busy(VmmAccelGate *gate, const char **who) VMM_REQUIRES(gate->lock)
{
    bool busy = false;

    /* Acquire pairs with the store-release (owner) or the atomic sub
     * (shared) that ended an ioctl. */
    if (vk_atomic_load_acquire(&gate->shared_count)) {
        busy = true;
        *who = "a VM ioctl";
    }
    for (VmmAccelCpuSlot *s = gate->slots; s; s = s->next) {
        /* foreign: D4, seen whenever the shared_count add above was. */
        if (vk_atomic_load_acquire(&s->count) || vk_atomic_load_acquire(&s->foreign)) {
            if (!busy) {
                *who = s->name;
            }
            busy = true;
            s->kick(s->opaque);
        }
    }
    return busy;
}

/* Debug builds name an ioctl that never ends (begin without end). */
static int64_t watchdog_ns(void)
{
    const char *env = getenv("VMM_ACCEL_WATCHDOG_MS");

    if (env) {
        return atoll(env) * 1000000LL;
    }
    return 30 * 1000000000LL;
}

static void gate_wait_idle(VmmAccelGate *gate) VMM_REQUIRES(gate->lock)
{
    const struct timespec tick = { .tv_sec = 0, .tv_nsec = 100 * 1000 * 1000 };
    int64_t deadline = VMM_DEBUG_CHECKS ? mono_ns() + watchdog_ns() : 0;
    const char *who = NULL;

    for (;;) {
        gate_event_reset(gate);     /* pairs with accel_gate_event_set() */
        if (!gate_busy(gate, &who)) {
            return;
        }
        while (vk_atomic_read(&gate->event) == 0) {
            vk_futex_wait(&gate->event, 0, VMM_DEBUG_CHECKS ? &tick : NULL);
            if (VMM_DEBUG_CHECKS && mono_ns() > deadline) {
                VMM_MISUSE("inhibit waits forever for %s (ioctl begin without end?)",
                           who);
                deadline = INT64_MAX;
            }
        }
    }
}

void vmm_accel_ioctl_inhibit_begin(VmmAccelGate *gate) VMM_NO_TSA
{
    if (vk_atomic_read(&gate->inhibitor) == (void *)&tls_self) {
        gate->inhibit_depth++;
        return;
    }
    if (tls_slot) {
        VMM_MISUSE("inhibit from vCPU thread of slot %s (would deadlock)", tls_slot->name);
    }
    if (held_index(gate) >= 0) {
        VMM_MISUSE("inhibit from inside an ioctl bracket of the same gate (would deadlock)");
    }
    vk_mutex_lock(&gate->lock);
    vk_atomic_set(&gate->inhibited, 1);
    inhibitor_fence();          /* D1/D2/D3: pairs with owner_fence() */
    gate_wait_idle(gate);
    vk_atomic_set(&gate->inhibitor, (void *)&tls_self);
    gate->inhibit_depth = 1;
    gate->bypass_depth = 0;
}

void vmm_accel_ioctl_inhibit_end(VmmAccelGate *gate) VMM_NO_TSA
{
    if (vk_atomic_read(&gate->inhibitor) != (void *)&tls_self) {
        VMM_MISUSE("inhibit_end by a thread that does not inhibit the gate");
        return;
    }
    if (--gate->inhibit_depth) {
        return;
    }
    if (gate->bypass_depth) {
        VMM_MISUSE("inhibit_end inside the inhibitor's own ioctl bracket");
        gate->bypass_depth = 0;
    }
    vk_atomic_set(&gate->inhibits, gate->inhibits + 1);
    vk_atomic_set(&gate->inhibitor, NULL);
    /* Release pairs with the load-acquire in gate_wait_open() and in the
     * begin paths: the update made under the inhibit is visible to them. */
    vk_atomic_store_release(&gate->inhibited, 0);
    vk_futex_wake_all(&gate->inhibited);
    vk_mutex_unlock(&gate->lock);
}

bool vmm_accel_ioctl_inhibited(VmmAccelGate *gate)
{
    return vk_atomic_load_acquire(&gate->inhibited) != 0;
}

uint64_t vmm_accel_gate_inhibit_count(VmmAccelGate *gate)
{
    return vk_atomic_read(&gate->inhibits);
}

