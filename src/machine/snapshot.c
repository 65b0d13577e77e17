/* SPDX-License-Identifier: MIT */
/*
 * Snapshots of a paused machine and restores into a new one (machine.h,
 * docs/machine.md "Snapshots"; the file format is snapshot-format.h).
 *
 * Save: the machine is paused (vCPUs out of KVM_RUN, devices quiesced
 * through the quiesce protocol), so every piece holds still while it is
 * read: each vCPU's whole state (vmm_vcpu_get_state, FULL level), the
 * in-kernel PIC, IOAPIC and PIT, the KVM clock, the UART, every virtio-pci
 * device (transport and virtio core), then guest RAM with its zero pages
 * left as holes.  The header goes last, so a file cut short by a crash has
 * no valid header.
 *
 * Restore: the header and every record are checked (sizes against the
 * file, CRCs, the configuration against the options) before anything is
 * built; then a machine with empty RAM is built, the RAM image is mapped
 * privately from the file over guest RAM (copy-on-write: restore time does
 * not depend on RAM size, and clones of one snapshot share the pages none
 * of them changed), the vCPUs, interrupt controllers, PIT and UART take
 * their state.  The devices' state and the clock wait for
 * vmm_machine_start(): the caller adds the same disks first; the clock is
 * set just before the vCPUs run (so the guest does not see the time spent
 * between restore and start), then each vCPU gets KVM_KVMCLOCK_CTRL so the
 * guest's watchdogs know it was stopped.
 */
#include "machine/machine-internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "machine/snapshot-internal.h"
#include "util/log.h"

/* ---- I/O -------------------------------------------------------------------- */

/* All of [off, off+len) of @fd from (@write) or into @buf; a short file
 * is -EIO. */
static int pio_all(int fd, void *buf, size_t len, uint64_t off, bool write)
{
    uint8_t *p = buf;
    while (len) {
        ssize_t n = write ? pwrite(fd, p, len, (off_t)off) : pread(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return n < 0 ? -errno : -EIO;
        }
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

static int pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
    return pio_all(fd, (void *)buf, len, off, true);
}

static int pread_all(int fd, void *buf, size_t len, uint64_t off)
{
    return pio_all(fd, buf, len, off, false);
}

static bool page_is_zero(const uint8_t *p)
{
    const uint64_t *w = (const uint64_t *)p;
    uint64_t acc = 0;
    for (unsigned i = 0; i < SNAP_PAGE / 8; i += 8) {
        acc |= w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] |
               w[i + 7];
        if (acc) {
            return false;
        }
    }
    return true;
}

/* Guest RAM at @off, the runs of non-zero pages written, the zero pages
 * left as holes (the file was truncated to zero length first). */
static int write_ram(int fd, const uint8_t *ram, uint64_t len, uint64_t off)
{
    const uint64_t max_run = 8u << 20;
    uint64_t p = 0;
    while (p < len) {
        if (page_is_zero(ram + p)) {
            p += SNAP_PAGE;
            continue;
        }
        uint64_t start = p;
        while (p < len && p - start < max_run && !page_is_zero(ram + p)) {
            p += SNAP_PAGE;
        }
        int r = pwrite_all(fd, ram + start, (size_t)(p - start), off + start);
        if (r < 0) {
            return r;
        }
    }
    return ftruncate(fd, (off_t)(off + len)) < 0 ? -errno : 0;
}

/* ---- Save ------------------------------------------------------------------- */

static int get_vm_state(VmmMachine *m, SnapVm *v)
{
    memset(v, 0, sizeof(*v));
    v->magic = SNAP_VM_MAGIC;
    int r = 0;
    for (uint32_t i = 0; i < 3 && r >= 0; i++) {
        v->chip[i].chip_id = i;     /* KVM_IRQCHIP_PIC_MASTER, _SLAVE, _IOAPIC */
        r = vmm_vm_ioctl(m->vm, KVM_GET_IRQCHIP, &v->chip[i]);
    }
    if (r >= 0) {
        r = vmm_vm_ioctl(m->vm, KVM_GET_PIT2, &v->pit);
    }
    if (r >= 0) {
        r = vmm_vm_ioctl(m->vm, KVM_GET_CLOCK, &v->clock);
    }
    if (r < 0) {
        vk_error("machine: snapshot: reading the interrupt controllers, PIT or clock: %s",
                 vmm_strerror(r));
    }
    return r < 0 ? r : 0;
}

void machine_snap_config(VmmMachine *m, SnapConfig *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->ram_size = m->ram_size;
    cfg->cpus = m->cpus;
    cfg->vcpu_state_size = sizeof(VmmVcpuState);
    cfg->ndevices = machine_device_ids(m, cfg->device_ids, SNAP_MAX_DEVICES);
    /* The vCPUs share one rate (the machine never sets one per vCPU). */
    int khz = vmm_vcpu_ioctl(vmm_vm_get_vcpu(m->vm, 0), KVM_GET_TSC_KHZ, NULL);
    cfg->tsc_khz = khz > 0 ? (uint32_t)khz : 0;
}

int machine_save_records(VmmMachine *m, SnapConfig *cfg, MachineEmitFunc *emit, void *opaque)
{
    SnapConfig devs;
    if (cfg) {
        machine_snap_config(m, cfg);
    } else {                            /* the stream's hello has the rest */
        cfg = &devs;
        memset(cfg, 0, sizeof(*cfg));
        cfg->ndevices = machine_device_ids(m, cfg->device_ids, SNAP_MAX_DEVICES);
    }
    if (cfg->ndevices > SNAP_MAX_DEVICES) {
        return -E2BIG;
    }
    int r = 0;
    VmmVcpuState *vs = malloc(sizeof(*vs));
    if (!vs) {
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < m->cpus && r == 0; i++) {
        r = vmm_vcpu_get_state(vmm_vm_get_vcpu(m->vm, i), vs);
        if (r < 0) {
            vk_error("machine: saving vCPU %u state: %s", i, vmm_strerror(r));
            break;
        }
        cfg->xsave_size = vs->xsave_size;
        r = emit(opaque, SNAP_SEC_VCPU, i, vs, sizeof(*vs));
    }
    free(vs);
    SnapVm v;
    r = r ?: get_vm_state(m, &v);
    r = r ?: emit(opaque, SNAP_SEC_VM, 0, &v, sizeof(v));
    if (r == 0) {
        uint8_t ser[SERIAL_STATE_SIZE];
        machine_lock(m);
        serial_save(&m->serial, ser);
        machine_unlock(m);
        r = emit(opaque, SNAP_SEC_SERIAL, 0, ser, sizeof(ser));
    }
    for (uint32_t i = 0; i < cfg->ndevices && r == 0; i++) {
        size_t len = machine_device_state_size(m, i);
        uint8_t *buf = len ? malloc(len) : NULL;
        if (!buf) {
            r = -ENOMEM;
            break;
        }
        r = machine_device_save(m, i, buf, len);
        if (r < 0) {
            vk_error("machine: saving device %u state: %s", i, vmm_strerror(r));
        } else {
            r = emit(opaque, SNAP_SEC_VIRTIO_PCI, i, buf, len);
        }
        free(buf);
    }
    return r;
}

typedef struct SaveCtx {
    SnapHeader h;
    int fd;
    uint64_t pos;
} SaveCtx;

static int add_section(void *opaque, uint32_t type, uint32_t index, const void *data,
                       size_t len)
{
    SaveCtx *c = opaque;
    if (c->h.nsections >= SNAP_MAX_SECTIONS) {
        return -E2BIG;
    }
    SnapSection *s = &c->h.sec[c->h.nsections++];
    s->type = type;
    s->index = index;
    s->offset = c->pos;
    s->length = len;
    s->crc = (uint32_t)crc32(0L, data, (uInt)len);
    int r = pwrite_all(c->fd, data, len, c->pos);
    c->pos += len;
    return r;
}

int vmm_machine_snapshot(VmmMachine *m, int fd)
{
    if (!m || fd < 0) {
        return VMM_MISUSE_ERR(-EINVAL, "vmm_machine_snapshot: no machine or no file");
    }
    if (vmm_machine_state(m) != VMM_MACHINE_PAUSED) {
        vk_error("machine: snapshot: the machine is %s, not paused",
                 vmm_machine_state_name(vmm_machine_state(m)));
        return -EINVAL;
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode))) {
        int r = machine_snapshot_stream(m, fd);     /* the stream form */
        if (r < 0) {
            vk_error("machine: snapshot to a stream failed: %s", vmm_strerror(r));
        }
        return r;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        vk_error("machine: snapshot: the file descriptor is neither a regular file nor a "
                 "pipe or socket");
        return -ESPIPE;
    }
    if (ftruncate(fd, 0) < 0) {
        return -errno;
    }
    SaveCtx c = { .fd = fd, .pos = SNAP_HEADER_SIZE };
    int r = machine_save_records(m, &c.h.cfg, add_section, &c);
    if (r == 0 && c.h.nsections < SNAP_MAX_SECTIONS) {
        uint64_t ram_off = (c.pos + SNAP_PAGE - 1) & ~(uint64_t)(SNAP_PAGE - 1);
        c.h.sec[c.h.nsections++] = (SnapSection){ .type = SNAP_SEC_RAM, .offset = ram_off,
                                                  .length = m->ram_size };
        r = write_ram(fd, m->host, m->ram_size, ram_off);
    }
    if (r == 0) {
        uint8_t hdr[SNAP_HEADER_SIZE];
        snap_header_encode(&c.h, hdr);
        r = pwrite_all(fd, hdr, sizeof(hdr), 0);
    }
    if (r < 0) {
        vk_error("machine: snapshot failed: %s", vmm_strerror(r));
    }
    return r;
}

/* ---- Restore ---------------------------------------------------------------- */

void machine_restore_free(MachineRestore *rs)
{
    if (!rs) {
        return;
    }
    for (unsigned i = 0; i < SNAP_MAX_DEVICES; i++) {
        free(rs->dev[i]);
    }
    free(rs);
}

/* Read and check one record (CRC) into a new buffer. */
static void *read_record(int fd, const SnapSection *s, char *why, size_t why_len, int *err)
{
    void *buf = malloc(s->length ? (size_t)s->length : 1);
    if (!buf) {
        *err = -ENOMEM;
        return NULL;
    }
    int r = pread_all(fd, buf, (size_t)s->length, s->offset);
    if (r < 0) {
        snprintf(why, why_len, "reading section %s %u: %s", snap_section_name(s->type),
                 s->index, vmm_strerror(r));
    } else {
        r = snap_section_check(s, buf, why, why_len);
    }
    if (r < 0) {
        free(buf);
        *err = r;
        return NULL;
    }
    return buf;
}

static int set_vm_state(VmmMachine *m, const SnapVm *v)
{
    int r = 0;
    for (uint32_t i = 0; i < 3 && r >= 0; i++) {
        struct kvm_irqchip chip = v->chip[i];
        chip.chip_id = i;
        r = vmm_vm_ioctl(m->vm, KVM_SET_IRQCHIP, &chip);
    }
    if (r >= 0) {
        struct kvm_pit_state2 pit = v->pit;
        r = vmm_vm_ioctl(m->vm, KVM_SET_PIT2, &pit);
    }
    if (r < 0) {
        vk_error("machine: restore: setting the interrupt controllers or PIT: %s",
                 vmm_strerror(r));
    }
    return r < 0 ? r : 0;
}

/* The checks and the state that do not need the machine. */
static int restore_check(const VmmMachineOptions *o, int fd, SnapHeader *h,
                         uint64_t *file_size)
{
    char why[256] = "";
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        vk_error("machine: restore: the snapshot must be a regular file, a pipe or a socket");
        return -ESPIPE;
    }
    *file_size = (uint64_t)st.st_size;
    uint8_t hdr[SNAP_HEADER_SIZE];
    size_t got = *file_size < SNAP_HEADER_SIZE ? (size_t)*file_size : SNAP_HEADER_SIZE;
    int r = pread_all(fd, hdr, got, 0);
    if (r == 0) {
        r = snap_header_parse(hdr, got, *file_size, h, why, sizeof(why));
    }
    if (r == 0 && o) {
        SnapConfig want = { .ram_size = o->memory, .cpus = o->cpus,
                            .vcpu_state_size = sizeof(VmmVcpuState) };
        r = snap_config_match(&h->cfg, &want, why, sizeof(why));
    }
    if (r < 0) {
        vk_error("machine: restore: %s", why[0] ? why : vmm_strerror(r));
    }
    return r;
}

void machine_records_free(Records *rec)
{
    for (uint32_t i = 0; i < VMM_MACHINE_MAX_CPUS; i++) {
        free(rec->vcpu[i]);
    }
    free(rec->vm);
    free(rec->serial);
    machine_restore_free(rec->rs);
    memset(rec, 0, sizeof(*rec));
}

static int records_read(int fd, const SnapHeader *h, Records *rec)
{
    char why[256] = "";
    int r = 0;
    memset(rec, 0, sizeof(*rec));
    rec->rs = calloc(1, sizeof(*rec->rs));
    if (!rec->rs) {
        return -ENOMEM;
    }
    rec->rs->cfg = h->cfg;
    for (uint32_t i = 0; i < h->cfg.cpus && r == 0; i++) {
        rec->vcpu[i] = read_record(fd, snap_find(h, SNAP_SEC_VCPU, i), why, sizeof(why), &r);
    }
    const SnapSection *s_vm = snap_find(h, SNAP_SEC_VM, 0);
    const SnapSection *s_ser = snap_find(h, SNAP_SEC_SERIAL, 0);
    if (r == 0 && s_vm->length != sizeof(SnapVm)) {
        snprintf(why, sizeof(why), "VM state of %" PRIu64 " bytes, expected %zu",
                 s_vm->length, sizeof(SnapVm));
        r = -EINVAL;
    }
    if (r == 0) {
        rec->vm = read_record(fd, s_vm, why, sizeof(why), &r);
    }
    if (r == 0 && ((const SnapVm *)rec->vm)->magic != SNAP_VM_MAGIC) {
        snprintf(why, sizeof(why), "VM state record has a bad tag");
        r = -EINVAL;
    }
    if (r == 0) {
        rec->serial = read_record(fd, s_ser, why, sizeof(why), &r);
        rec->serial_len = (size_t)s_ser->length;
    }
    for (uint32_t i = 0; i < h->cfg.ndevices && r == 0; i++) {
        const SnapSection *s = snap_find(h, SNAP_SEC_VIRTIO_PCI, i);
        rec->rs->dev[i] = read_record(fd, s, why, sizeof(why), &r);
        rec->rs->dev_len[i] = (size_t)s->length;
    }
    if (r == 0) {
        r = machine_records_check(rec, why, sizeof(why));
    }
    if (r < 0) {
        vk_error("machine: restore: %s", why[0] ? why : vmm_strerror(r));
        machine_records_free(rec);
    }
    return r;
}

int machine_records_check(const Records *rec, char *why, size_t why_len)
{
    for (uint32_t i = 0; i < rec->rs->cfg.cpus; i++) {
        const VmmVcpuState *vs = rec->vcpu[i];
        if (!vs) {
            snprintf(why, why_len, "no state for vCPU %u", i);
            return -EINVAL;
        }
        if (vs->size != sizeof(VmmVcpuState) || vs->nmsrs > VMM_VCPU_MAX_MSRS ||
            vs->xsave_size > VMM_XSAVE_MAX) {
            snprintf(why, why_len, "vCPU %u state record is impossible", i);
            return -EINVAL;
        }
    }
    if (!rec->vm || ((const SnapVm *)rec->vm)->magic != SNAP_VM_MAGIC) {
        snprintf(why, why_len, "no VM state, or a bad one");
        return -EINVAL;
    }
    if (!rec->serial) {
        snprintf(why, why_len, "no UART state");
        return -EINVAL;
    }
    for (uint32_t i = 0; i < rec->rs->cfg.ndevices; i++) {
        if (!rec->rs->dev[i]) {
            snprintf(why, why_len, "no state for device %u", i);
            return -EINVAL;
        }
    }
    return 0;
}

/* Guest RAM from the file, then the vCPUs, irqchip, PIT and UART. */
static int restore_into(VmmMachine *m, int fd, const SnapHeader *h, Records *rec)
{
    /* The file's pages, copy-on-write, over the empty RAM (same address:
     * the KVM slots and the guest memory map stay as they are). */
    const SnapSection *ram = snap_find(h, SNAP_SEC_RAM, 0);
    void *at = mmap(m->host, (size_t)m->ram_size, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_FIXED, fd, (off_t)ram->offset);
    if (at == MAP_FAILED) {
        int r = -errno;
        vk_error("machine: restore: mapping the RAM image: %s", vmm_strerror(r));
        return r;
    }
    char why[256] = "";
    int r = machine_set_tsc_khz(m, h->cfg.tsc_khz, why, sizeof(why));
    if (r < 0) {
        vk_error("machine: restore: %s", why);
        return r;
    }
    return machine_restore_state(m, rec);
}

/* The vCPUs, irqchip, PIT and UART from @rec; the devices and the clock
 * wait for start (m->restore, taken from @rec). */
/* The saved TSC rate on every vCPU, before their state (the TSC value
 * is read at that rate).  A rate this host's KVM cannot give is refused:
 * the guest's clock would run at the wrong speed. */
int machine_set_tsc_khz(VmmMachine *m, uint32_t khz, char *why, size_t why_len)
{
    if (!khz) {                     /* an older file: the host's rate */
        return 0;
    }
    for (uint32_t i = 0; i < m->cpus; i++) {
        VmmVcpu *v = vmm_vm_get_vcpu(m->vm, i);
        int cur = vmm_vcpu_ioctl(v, KVM_GET_TSC_KHZ, NULL);
        if (cur == (int)khz) {
            continue;
        }
        int r = vmm_vcpu_ioctl(v, KVM_SET_TSC_KHZ, (void *)(uintptr_t)khz);
        if (r < 0) {
            snprintf(why, why_len, "the snapshot's TSC runs at %u kHz, this host's at %d kHz, "
                     "and this KVM cannot scale it (KVM_SET_TSC_KHZ: %s)", khz, cur,
                     vmm_strerror(r));
            return -EINVAL;
        }
    }
    return 0;
}

int machine_restore_state(VmmMachine *m, Records *rec)
{
    char why[256] = "";
    int r = 0;
    for (uint32_t i = 0; i < m->cpus && r == 0; i++) {
        const VmmVcpuState *vs = rec->vcpu[i];
        r = vmm_vcpu_set_state(vmm_vm_get_vcpu(m->vm, i), vs);
        if (r < 0) {
            snprintf(why, sizeof(why), "vCPU %u state (XSAVE %u bytes, %u MSRs): %s", i,
                     vs->xsave_size, vs->nmsrs, vmm_strerror(r));
        }
    }
    if (r == 0) {
        r = set_vm_state(m, rec->vm);
    }
    if (r == 0) {
        machine_lock(m);
        r = serial_load(&m->serial, rec->serial, rec->serial_len);
        machine_unlock(m);
        if (r < 0) {
            snprintf(why, sizeof(why), "the UART's state is impossible");
        }
    }
    if (r == 0) {
        rec->rs->clock = ((const SnapVm *)rec->vm)->clock;
        m->restore = rec->rs;
        rec->rs = NULL;
    }
    if (r < 0 && why[0]) {
        vk_error("machine: restore: %s", why);
    }
    return r;
}

VmmMachine *vmm_machine_restore(const VmmMachineOptions *opts, int fd, int *errp)
{
    SnapHeader h;
    uint64_t file_size;
    VmmMachine *m = NULL;
    int r;
    if (!opts || fd < 0) {
        r = VMM_MISUSE_ERR(-EINVAL, "vmm_machine_restore: no options or no file");
        goto fail;
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode))) {
        return machine_restore_stream(opts, fd, errp);     /* the stream form */
    }
    Records rec = { 0 };
    r = restore_check(opts, fd, &h, &file_size);
    if (r == 0) {
        r = records_read(fd, &h, &rec);
    }
    if (r < 0) {
        goto fail;
    }
    VmmMachineOptions o = *opts;
    o.size = opts->size < sizeof(o) ? opts->size : sizeof(o);
    o.memory = h.cfg.ram_size;
    o.cpus = h.cfg.cpus;
    m = machine_new(&o, false, &r);
    if (m) {
        r = restore_into(m, fd, &h, &rec);
    }
    machine_records_free(&rec);
    if (r < 0) {
        goto fail;
    }
    return m;
fail:
    vmm_machine_free(m);
    if (errp) {
        *errp = r;
    }
    return NULL;
}

int machine_restore_finish(VmmMachine *m)
{
    MachineRestore *rs = m->restore;
    uint16_t ids[SNAP_MAX_DEVICES];
    unsigned n = machine_device_ids(m, ids, SNAP_MAX_DEVICES);
    if (n != rs->cfg.ndevices) {
        vk_error("machine: restore: the snapshot has %u devices, the machine %u",
                 rs->cfg.ndevices, n);
        return -EINVAL;
    }
    for (unsigned i = 0; i < n; i++) {
        if (ids[i] != rs->cfg.device_ids[i]) {
            vk_error("machine: restore: device %u is virtio type %u in the snapshot, %u here",
                     i, rs->cfg.device_ids[i], ids[i]);
            return -EINVAL;
        }
    }
    for (unsigned i = 0; i < n; i++) {
        int r = machine_device_load(m, i, rs->dev[i], rs->dev_len[i]);
        if (r < 0) {
            vk_error("machine: restore: device %u: %s", i, vmm_strerror(r));
            return r;
        }
    }
    struct kvm_clock_data clock = { .clock = rs->clock.clock };
    int r = vmm_vm_ioctl(m->vm, KVM_SET_CLOCK, &clock);
    if (r < 0) {
        vk_error("machine: restore: KVM_SET_CLOCK: %s", vmm_strerror(r));
        return r;
    }
    /* Tell a guest with the paravirtual clock that it was stopped (no
     * soft-lockup reports for the time it spent in the file).  A guest
     * that never enabled kvmclock on that vCPU gets -EINVAL: nothing to
     * tell. */
    for (uint32_t i = 0; i < m->cpus; i++) {
        r = vmm_vcpu_ioctl(vmm_vm_get_vcpu(m->vm, i), KVM_KVMCLOCK_CTRL, NULL);
        if (r < 0 && r != -EINVAL) {
            vk_warn("machine: restore: KVM_KVMCLOCK_CTRL on vCPU %u: %s", i,
                    vmm_strerror(r));
        }
    }
    machine_restore_free(rs);
    m->restore = NULL;
    return 0;
}
