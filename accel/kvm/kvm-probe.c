/* SPDX-License-Identifier: MIT */
/*
 * vmm_kvm_probe(): what the KVM in front of the library is and can do.
 *
 * The module comes from sysfs; what it can do comes from running guests,
 * never from names: a VM with 64 KiB of RAM and one vCPU put straight into
 * long mode (GDT, IDT, identity-mapped 2 MiB page), which runs each check of
 * probe-guest.S as its own run: long mode itself, a timed loop, cmpxchg16b,
 * xsave/xrstor, int3 through the IDT, and the TSC after a host write of
 * IA32_TSC.  A check passes when its run writes its own result byte to the
 * probe port; a run that ends any other way (an emulation failure, a
 * triple fault, a timeout) fails it, and the first such failure becomes the
 * reason.  The runs are independent (registers and the stack are set anew
 * each time), so one failing check does not hide the others.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "vmmkit/kvm.h"
#include "kvm-probe.h"
#include "util/compiler.h"

#define SEC 1000000000LL
#define RUN_BUDGET_NS (2 * SEC)         /* any check but the loop */
#define LOOP_BUDGET_NS (250 * 1000000LL)
#define MSR_IA32_TSC 0x10
#define PROBE_TSC_VALUE (1ULL << 62)    /* no host TSC is near it */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * SEC + ts.tv_nsec;
}

const char *vmm_kvm_kind_name(VmmKvmKind kind)
{
    switch (kind) {
    case VMM_KVM_KIND_NONE: return "none";
    case VMM_KVM_KIND_INTEL: return "kvm_intel";
    case VMM_KVM_KIND_AMD: return "kvm_amd";
    case VMM_KVM_KIND_PVM: return "kvm_pvm";
    case VMM_KVM_KIND_OTHER: return "other";
    }
    return "unknown";
}

const char *vmm_kvm_check_name(uint32_t check)
{
    switch (check) {
    case VMM_KVM_CHECK_LONG_MODE: return "long-mode";
    case VMM_KVM_CHECK_SPEED: return "speed";
    case VMM_KVM_CHECK_CMPXCHG16B: return "cmpxchg16b";
    case VMM_KVM_CHECK_XSAVE: return "xsave";
    case VMM_KVM_CHECK_INT3: return "int3";
    case VMM_KVM_CHECK_TSC_WRITE: return "tsc-write";
    }
    return "unknown";
}

static bool path_exists(const char *dir, const char *name)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

/* True if the "flags" line of @cpuinfo names @flag. */
static bool cpu_has_flag(const char *cpuinfo, const char *flag)
{
    FILE *f = fopen(cpuinfo, "re");
    if (!f) {
        return false;
    }
    char line[8192];
    bool found = false;
    size_t n = strlen(flag);
    while (!found && fgets(line, sizeof(line), f)) {
        if (strncmp(line, "flags", 5)) {
            continue;
        }
        for (char *p = strchr(line, ':'); p && !found; p = strchr(p + 1, ' ')) {
            found = !strncmp(p + 1, flag, n) &&
                    (p[1 + n] == ' ' || p[1 + n] == '\n' || p[1 + n] == '\0');
        }
        break;
    }
    fclose(f);
    return found;
}

VmmKvmKind kvm_probe_kind(const char *module_dir, const char *cpuinfo, char *module,
                          size_t module_len)
{
    bool pvm = path_exists(module_dir, "kvm_pvm");
    bool intel = path_exists(module_dir, "kvm_intel");
    bool amd = path_exists(module_dir, "kvm_amd");
    VmmKvmKind k = VMM_KVM_KIND_OTHER;
    /* PVM may sit beside a vendor module; without VMX and SVM it is the
     * only one that can serve /dev/kvm. */
    if (pvm && ((!intel && !amd) ||
                (!cpu_has_flag(cpuinfo, "vmx") && !cpu_has_flag(cpuinfo, "svm")))) {
        k = VMM_KVM_KIND_PVM;
    } else if (intel) {
        k = VMM_KVM_KIND_INTEL;
    } else if (amd) {
        k = VMM_KVM_KIND_AMD;
    } else if (pvm) {
        k = VMM_KVM_KIND_PVM;
    }
    snprintf(module, module_len, "%s", k == VMM_KVM_KIND_OTHER ? "" : vmm_kvm_kind_name(k));
    return k;
}

/* ---- The probe VM ---------------------------------------------------------- */

typedef struct Probe {
    VmmVm *vm;
    VmmVcpu *vcpu;
    uint8_t *ram;
    VmmKvmInfo *info;
} Probe;

static void port_write(void *opaque, uint64_t off, uint64_t v, unsigned size)
{
    Probe *p = opaque;
    (void)off;
    (void)size;
    vmm_vm_request_end(p->vm, v & 0xff);
}

static const VmmIoOps port_ops = { NULL, port_write };

/* A check that stops the guest is an answer, not a fault to warn about:
 * end the run with the exit's report, quietly. */
static int end_quietly(VmmVcpu *vcpu, struct kvm_run *run, void *opaque)
{
    (void)vcpu;
    (void)run;
    (void)opaque;
    return VMM_EXIT_END_VM;
}

static void put_gate(uint8_t *idt, unsigned vec, uint64_t handler)
{
    uint64_t lo = (handler & 0xffff) | (0x08ULL << 16) |     /* selector */
                  (0x8eULL << 40) |                          /* P, DPL 0, int gate */
                  ((handler >> 16) & 0xffff) << 48;
    uint64_t hi = handler >> 32;
    memcpy(idt + vec * 16, &lo, 8);
    memcpy(idt + vec * 16 + 8, &hi, 8);
}

/* Memory and the vCPU's long-mode state (the same for every run). */
static int setup_guest(Probe *p, bool xsave)
{
    uint8_t *ram = p->ram;
    memcpy(ram + PROBE_CODE_GPA, kvm_probe_guest,
           (size_t)(kvm_probe_guest_end - kvm_probe_guest));
    put_gate(ram + PROBE_IDT_GPA, 3, kvm_probe_gpa(kvm_probe_int3_handler));
    static const uint64_t gdt[3] = {
        0,
        0x00af9b000000ffffULL,      /* 0x08: 64-bit code */
        0x00cf93000000ffffULL,      /* 0x10: data */
    };
    memcpy(ram + PROBE_GDT_GPA, gdt, sizeof(gdt));
    uint64_t pml4 = (PROBE_PML4_GPA + 0x1000) | 3, pdpt = (PROBE_PML4_GPA + 0x2000) | 3,
             pde = 0x83;            /* 2 MiB page at 0: present, writable, PS */
    memcpy(ram + PROBE_PML4_GPA, &pml4, 8);
    memcpy(ram + PROBE_PML4_GPA + 0x1000, &pdpt, 8);
    memcpy(ram + PROBE_PML4_GPA + 0x2000, &pde, 8);

    struct kvm_sregs s;
    int r = vmm_vcpu_get_sregs(p->vcpu, &s);
    if (r < 0) {
        return r;
    }
    struct kvm_segment code = { .base = 0, .limit = 0xffffffff, .selector = 0x08,
                                .type = 11, .present = 1, .s = 1, .l = 1, .g = 1 };
    struct kvm_segment data = { .base = 0, .limit = 0xffffffff, .selector = 0x10,
                                .type = 3, .present = 1, .s = 1, .db = 1, .g = 1 };
    s.cs = code;
    s.ds = s.es = s.fs = s.gs = s.ss = data;
    s.gdt = (struct kvm_dtable){ .base = PROBE_GDT_GPA, .limit = sizeof(gdt) - 1 };
    s.idt = (struct kvm_dtable){ .base = PROBE_IDT_GPA, .limit = 256 * 16 - 1 };
    s.cr3 = PROBE_PML4_GPA;
    s.cr4 = 0x20 | 0x200 | 0x400 | (xsave ? 0x40000 : 0);  /* PAE OSFXSR OSXMMEXCPT OSXSAVE */
    s.cr0 = 0x80000033;                                     /* PG NE ET MP PE */
    s.efer = 0x500;                                         /* LME LMA */
    return vmm_vcpu_set_sregs(p->vcpu, &s);
}

/*
 * One run from @entry.  Returns the result byte (>= 0) the guest wrote,
 * or -1 when the run ended otherwise (*@e says how), or a negative errno
 * below -1 for a host error.  @budget_ns bounds it: a guest still running
 * then is ended (kind VMM_VM_END_REQUESTED, code 0).
 */
static int run_one(Probe *p, const uint8_t *entry, int64_t budget_ns, VmmVmExit *e,
                   int64_t *elapsed)
{
    struct kvm_regs regs = { .rip = kvm_probe_gpa(entry), .rsp = PROBE_STACK_GPA,
                             .rflags = 2 };
    int r = vmm_vcpu_set_regs(p->vcpu, &regs);
    if (r < 0) {
        return r < -1 ? r : -EIO;
    }
    vmm_vm_clear_end(p->vm);
    int64_t t0 = now_ns();
    r = vmm_vm_start(p->vm);
    if (r < 0) {
        return r < -1 ? r : -EIO;
    }
    r = vmm_vm_wait(p->vm, budget_ns, e);
    if (r == -ETIMEDOUT) {
        vmm_vm_request_end(p->vm, 0);
        r = vmm_vm_wait(p->vm, -1, e);
    }
    if (elapsed) {
        *elapsed = now_ns() - t0;
    }
    if (r < 0) {
        return r < -1 ? r : -EIO;
    }
    if (e->kind == VMM_VM_END_REQUESTED && e->code != 0) {
        return (int)e->code;
    }
    return -1;
}

static void describe_end(char *buf, size_t len, const VmmVmExit *e, int64_t budget_ns)
{
    VmmVmEndKind kind = e->kind;
    if (kind == VMM_VM_END_HANDLER) {       /* end_quietly(): the exit's own kind */
        kind = e->exit_reason == KVM_EXIT_INTERNAL_ERROR ? VMM_VM_END_INTERNAL_ERROR :
               e->exit_reason == KVM_EXIT_SHUTDOWN ? VMM_VM_END_SHUTDOWN :
               e->exit_reason == KVM_EXIT_FAIL_ENTRY ? VMM_VM_END_FAIL_ENTRY : kind;
    }
    switch (kind) {
    case VMM_VM_END_REQUESTED:
        snprintf(buf, len, "still running after %lld ms", (long long)(budget_ns / 1000000));
        break;
    case VMM_VM_END_INTERNAL_ERROR:
        snprintf(buf, len, "KVM_EXIT_INTERNAL_ERROR suberror %llu%s at rip 0x%llx",
                 (unsigned long long)e->code,
                 e->code == KVM_INTERNAL_ERROR_EMULATION ? " (emulation failure)" : "",
                 (unsigned long long)e->rip);
        break;
    case VMM_VM_END_SHUTDOWN:
        snprintf(buf, len, "a triple fault (KVM_EXIT_SHUTDOWN) at rip 0x%llx",
                 (unsigned long long)e->rip);
        break;
    case VMM_VM_END_FAIL_ENTRY:
        snprintf(buf, len, "KVM_EXIT_FAIL_ENTRY, hardware reason 0x%llx",
                 (unsigned long long)e->code);
        break;
    case VMM_VM_END_ERROR:
        snprintf(buf, len, "KVM_RUN failed: %s", strerror(-e->error));
        break;
    default:
        snprintf(buf, len, "exit %s (%s)", vmm_exit_reason_name(e->exit_reason),
                 vmm_vm_end_kind_name(e->kind));
        break;
    }
}

static void fail(VmmKvmInfo *info, uint32_t check, const char *what)
{
    if (!info->reason[0]) {
        snprintf(info->reason, sizeof(info->reason), "%s: %s", vmm_kvm_check_name(check), what);
    }
}

/* Run check @check from @entry; true if the guest reported @ok. */
static bool check_run(Probe *p, uint32_t check, const uint8_t *entry, int ok)
{
    VmmVmExit e = { 0 };
    char why[160];
    p->info->checked |= check;
    int r = run_one(p, entry, RUN_BUDGET_NS, &e, NULL);
    if (r == ok) {
        p->info->passed |= check;
        return true;
    }
    if (r == PROBE_BAD) {
        snprintf(why, sizeof(why), "the guest computed a wrong result");
    } else if (r >= 0 || r < -1) {
        snprintf(why, sizeof(why), r < -1 ? "host error %d" : "unexpected result %d", r);
    } else {
        describe_end(why, sizeof(why), &e, RUN_BUDGET_NS);
    }
    fail(p->info, check, why);
    return false;
}

static void check_speed(Probe *p)
{
    VmmVmExit e = { 0 };
    int64_t ns = 0;
    char why[160];
    p->info->checked |= VMM_KVM_CHECK_SPEED;
    int r = run_one(p, kvm_probe_loop, LOOP_BUDGET_NS, &e, &ns);
    uint64_t iters = 0;
    if (r == PROBE_OK_LOOP) {
        iters = PROBE_LOOP_ITERS;
    } else if (r == -1 && e.kind == VMM_VM_END_REQUESTED) {
        struct kvm_regs regs;
        if (vmm_vcpu_get_regs(p->vcpu, &regs) == 0 && regs.rcx <= PROBE_LOOP_ITERS) {
            iters = PROBE_LOOP_ITERS - regs.rcx;
        }
    } else {
        if (r == -1) {
            describe_end(why, sizeof(why), &e, LOOP_BUDGET_NS);
        } else {
            snprintf(why, sizeof(why), "unexpected result %d", r);
        }
        fail(p->info, VMM_KVM_CHECK_SPEED, why);
        return;
    }
    p->info->insns_per_sec = ns > 0 ? 2.0 * (double)iters * 1e9 / (double)ns : 0;
    if (p->info->insns_per_sec >= VMM_KVM_MIN_INSNS_PER_SEC) {
        p->info->passed |= VMM_KVM_CHECK_SPEED;
    } else {
        snprintf(why, sizeof(why),
                 "%.3g guest instructions a second (hardware runs 1e9 and more): "
                 "the guest runs in an instruction emulator", p->info->insns_per_sec);
        fail(p->info, VMM_KVM_CHECK_SPEED, why);
    }
}

static void check_tsc(Probe *p)
{
    p->info->checked |= VMM_KVM_CHECK_TSC_WRITE;
    if (vmm_vcpu_set_msr(p->vcpu, MSR_IA32_TSC, PROBE_TSC_VALUE) < 0 ||
        vmm_vcpu_synchronize_post_init(p->vcpu) < 0) {
        return;
    }
    VmmVmExit e = { 0 };
    if (run_one(p, kvm_probe_tsc, RUN_BUDGET_NS, &e, NULL) != PROBE_OK_TSC) {
        return;
    }
    uint64_t tsc;
    memcpy(&tsc, p->ram + PROBE_TSC_GPA, 8);
    /* Written: the guest reads the value plus the little time since. */
    if (tsc >= PROBE_TSC_VALUE && tsc - PROBE_TSC_VALUE < (1ULL << 50)) {
        p->info->passed |= VMM_KVM_CHECK_TSC_WRITE;
    }
}

/* CPUID leaf 1 ECX as KVM offers it to guests, and the table set on @vcpu
 * (a stock kernel sees the same). */
static int set_cpuid(Probe *p, uint32_t *ecx1)
{
    int err = 0;
    struct kvm_cpuid2 *c = vmm_vm_get_supported_cpuid(p->vm, &err);
    if (!c) {
        return err;
    }
    *ecx1 = 0;
    for (uint32_t i = 0; i < c->nent; i++) {
        if (c->entries[i].function == 1) {
            *ecx1 = c->entries[i].ecx;
        }
    }
    int r = vmm_vcpu_set_cpuid(p->vcpu, c);
    free(c);
    return r;
}

static void run_checks(Probe *p)
{
    VmmKvmInfo *info = p->info;
    uint32_t ecx1 = 0;
    int r = set_cpuid(p, &ecx1);
    bool cx16 = ecx1 & (1u << 13), xsave = ecx1 & (1u << 26);
    if (r == 0) {
        r = setup_guest(p, xsave);
    }
    if (r < 0) {
        snprintf(info->reason, sizeof(info->reason), "cannot set up the probe vCPU: %s",
                 strerror(-r));
        return;
    }
    if (!check_run(p, VMM_KVM_CHECK_LONG_MODE, kvm_probe_long, PROBE_OK_LONG)) {
        return;                 /* nothing else can run */
    }
    check_speed(p);
    if (cx16) {
        check_run(p, VMM_KVM_CHECK_CMPXCHG16B, kvm_probe_cx16, PROBE_OK_CX16);
    }
    if (xsave) {
        check_run(p, VMM_KVM_CHECK_XSAVE, kvm_probe_xsave, PROBE_OK_XSAVE);
    }
    check_run(p, VMM_KVM_CHECK_INT3, kvm_probe_int3, PROBE_OK_INT3);
    check_tsc(p);
}

int kvm_probe_at(const VmmVmOptions *opts, const KvmProbeRoots *roots, VmmKvmInfo *out)
{
    VmmVmOptions def = { .size = sizeof(def) };
    if (!opts) {
        opts = &def;
    }
    memset(out, 0, sizeof(*out));
    out->size = sizeof(*out);
    const char *dev = opts->dev_path ? opts->dev_path : "/dev/kvm";

    int err = 0;
    VmmVm *vm = NULL;
    if (!opts->ops && access(dev, F_OK) < 0) {
        err = -errno;               /* no device: an answer, not an error to log */
    } else {
        vm = vmm_vm_new(opts, &err);
    }
    if (!vm) {
        out->kind = VMM_KVM_KIND_NONE;
        snprintf(out->reason, sizeof(out->reason), "%s: %s", dev, strerror(-err));
        return err < 0 ? err : -EIO;
    }
    out->kind = kvm_probe_kind(roots->module_dir, roots->cpuinfo, out->module,
                               sizeof(out->module));
    out->api_version = vmm_kvm_ioctl(vm, KVM_GET_API_VERSION, NULL);

    Probe p = { .vm = vm, .info = out };
    p.ram = mmap(NULL, PROBE_RAM_SIZE, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    int r = p.ram == MAP_FAILED ? -ENOMEM : 0;
    if (r == 0) {
        r = vmm_vm_map_memory(vm, 0, PROBE_RAM_SIZE, p.ram, 0);
    }
    if (r == 0) {
        r = vmm_vm_register_io(vm, true, PROBE_PORT, 1, &port_ops, &p);
    }
    static const uint32_t quiet[] = { KVM_EXIT_INTERNAL_ERROR, KVM_EXIT_SHUTDOWN,
                                      KVM_EXIT_FAIL_ENTRY };
    for (size_t i = 0; r == 0 && i < sizeof(quiet) / sizeof(quiet[0]); i++) {
        r = vmm_vm_set_exit_handler(vm, quiet[i], end_quietly, NULL);
    }
    if (r == 0) {
        p.vcpu = vmm_vcpu_new(vm, 0, "kvm-probe", &r);
    }
    if (r == 0 && p.vcpu) {
        run_checks(&p);
    } else {
        snprintf(out->reason, sizeof(out->reason), "cannot build the probe VM: %s",
                 strerror(r < 0 ? -r : EIO));
    }
    vmm_vm_free(vm);
    if (p.ram != MAP_FAILED) {
        munmap(p.ram, PROBE_RAM_SIZE);
    }
    uint32_t stock = out->checked & VMM_KVM_CHECKS_STOCK;
    out->full = (out->checked & VMM_KVM_CHECK_LONG_MODE) &&
                (out->checked & VMM_KVM_CHECK_SPEED) && (out->passed & stock) == stock;
    if (out->full) {
        out->reason[0] = '\0';
    } else if (!out->reason[0]) {
        snprintf(out->reason, sizeof(out->reason), "the probe could not run");
    }
    return 0;
}

const KvmProbeRoots kvm_probe_host_roots = { "/sys/module", "/proc/cpuinfo",
                                          "/proc/sys/kernel/random/boot_id" };

int vmm_kvm_probe(const VmmVmOptions *opts, VmmKvmInfo *out)
{
    if (!out || out->size < sizeof(*out)) {
        return -EINVAL;
    }
    return kvm_probe_at(opts, &kvm_probe_host_roots, out);
}
