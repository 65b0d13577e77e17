/* SPDX-License-Identifier: MIT */
/*
 * vmm_kvm_probe's verdicts, on the fake KVM (tests/accel/fake-kvm.c) which
 * plays the probe guest: a full KVM whose every check reports its result,
 * and an emulation-only KVM like kvm_pvm (a slow loop, emulation failures
 * at cmpxchg16b, xrstor and int3, host TSC writes ignored).  The probe
 * itself runs on real KVMs in the kvm suite (tools/vmmkit-kvm-info); this
 * checks what it concludes from each kind of answer, the module
 * detection from a fake sysfs, and the verdict cache against a fake sysfs
 * and proc (vmm_kvm_probe_cached).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "fake-kvm.h"
#include "accel/kvm/kvm-probe.h"

typedef struct Script {
    FakeKvm *f;
    bool emulator;          /* play an emulation-only KVM */
    bool fast_loop;         /* ... whose loop runs at speed all the same */
} Script;

static void report(struct kvm_run *run, uint8_t byte)
{
    run->exit_reason = KVM_EXIT_IO;
    run->io = (typeof(run->io)){ .direction = KVM_EXIT_IO_OUT, .size = 1,
                                 .port = PROBE_PORT, .count = 1, .data_offset = 4096 };
    ((uint8_t *)run)[4096] = byte;
}

static void emulation_failure(struct kvm_run *run)
{
    run->exit_reason = KVM_EXIT_INTERNAL_ERROR;
    run->internal.suberror = KVM_INTERNAL_ERROR_EMULATION;
    run->internal.ndata = 0;
}

static uint8_t *guest_ram(FakeKvm *f)
{
    return (uint8_t *)(uintptr_t)f->last_region.userspace_addr;
}

static int run_fn(FakeVcpu *fv, struct kvm_run *run, void *opaque)
{
    Script *s = opaque;
    uint64_t rip = fv->regs.rip;
    if (rip == kvm_probe_gpa(kvm_probe_long)) {
        report(run, PROBE_OK_LONG);
    } else if (rip == kvm_probe_gpa(kvm_probe_loop)) {
        if (!s->emulator || s->fast_loop) {
            fv->regs.rcx = 0;
            report(run, PROBE_OK_LOOP);
            return 0;
        }
        /* A crawl: a few hundred iterations, then stopped by the probe. */
        fv->regs.rcx = PROBE_LOOP_ITERS - 300;
        fv->regs.rip = 0;                   /* "somewhere in the loop" */
        return fake_block(fv);
    } else if (rip == kvm_probe_gpa(kvm_probe_cx16) ||
               rip == kvm_probe_gpa(kvm_probe_xsave) ||
               rip == kvm_probe_gpa(kvm_probe_int3)) {
        if (s->emulator) {
            emulation_failure(run);
        } else {
            report(run, rip == kvm_probe_gpa(kvm_probe_cx16) ? PROBE_OK_CX16 :
                        rip == kvm_probe_gpa(kvm_probe_xsave) ? PROBE_OK_XSAVE : PROBE_OK_INT3);
        }
    } else if (rip == kvm_probe_gpa(kvm_probe_tsc)) {
        /* The guest reads the TSC the host wrote, or the host's own. */
        uint64_t tsc = s->emulator ? 123456789 : fv->msr_tsc + 1000;
        memcpy(guest_ram(s->f) + PROBE_TSC_GPA, &tsc, 8);
        report(run, PROBE_OK_TSC);
    } else {
        /* After a report the guest halts; the probe ends the run first. */
        return fake_block(fv);
    }
    fv->regs.rip = 0;
    return 0;
}

/* Probe the fake: a full KVM, or an emulator (with a loop at speed when
 * @fast_loop); leaf 1 ECX @ecx1 offers cmpxchg16b and XSAVE or not. */
static void probe_with(bool emulator, bool fast_loop, uint32_t ecx1, VmmKvmInfo *info)
{
    static FakeKvm f;
    fake_kvm_init(&f);
    f.cpuid1_ecx = ecx1;
    Script s = { .f = &f, .emulator = emulator, .fast_loop = fast_loop };
    f.run_fn = run_fn;
    f.run_opaque = &s;
    VmmVmOptions o = fake_vm_options(&f);
    memset(info, 0, sizeof(*info));
    info->size = sizeof(*info);
    assert_int_equal(vmm_kvm_probe(&o, info), 0);
    assert_int_equal(f.open_fds, 0);        /* the probe VM is gone */
    assert_int_equal(f.maps, 0);
}

#define CX16 (1u << 13)
#define XSAVE (1u << 26)

static void test_full(void **state)
{
    (void)state;
    VmmKvmInfo info;
    probe_with(false, false, CX16 | XSAVE, &info);
    uint32_t all = VMM_KVM_CHECKS_STOCK | VMM_KVM_CHECK_TSC_WRITE;
    assert_int_equal(info.checked, all);
    assert_int_equal(info.passed, all);
    assert_true(info.full);
    assert_string_equal(info.reason, "");
    assert_true(info.insns_per_sec >= VMM_KVM_MIN_INSNS_PER_SEC);
    assert_int_equal(info.api_version, KVM_API_VERSION);
}

/* CPUID without cmpxchg16b and XSAVE: those checks are not tried, and a
 * KVM that runs the rest is still full (a kernel does without them). */
static void test_full_without_optional(void **state)
{
    (void)state;
    VmmKvmInfo info;
    probe_with(false, false, 0, &info);
    assert_false(info.checked & (VMM_KVM_CHECK_CMPXCHG16B | VMM_KVM_CHECK_XSAVE));
    assert_true(info.full);
}

static void test_emulator(void **state)
{
    (void)state;
    VmmKvmInfo info;
    probe_with(true, false, CX16 | XSAVE, &info);
    assert_false(info.full);
    assert_int_equal(info.checked, VMM_KVM_CHECKS_STOCK | VMM_KVM_CHECK_TSC_WRITE);
    assert_int_equal(info.passed, VMM_KVM_CHECK_LONG_MODE);
    assert_true(info.insns_per_sec > 0);
    assert_true(info.insns_per_sec < VMM_KVM_MIN_INSNS_PER_SEC);
    /* The first failure is the reason, named by its check. */
    assert_true(strncmp(info.reason, "speed: ", 7) == 0);
    assert_non_null(strstr(info.reason, "instruction emulator"));
}

/* An emulation failure is named as such: the reason of a KVM whose loop
 * passes but whose emulator stops at cmpxchg16b. */
static void test_emulation_failure(void **state)
{
    (void)state;
    VmmKvmInfo info;
    probe_with(true, true, CX16 | XSAVE, &info);
    assert_false(info.full);
    assert_true(info.passed & VMM_KVM_CHECK_SPEED);
    assert_false(info.passed & (VMM_KVM_CHECK_CMPXCHG16B | VMM_KVM_CHECK_XSAVE |
                                VMM_KVM_CHECK_INT3 | VMM_KVM_CHECK_TSC_WRITE));
    assert_non_null(strstr(info.reason,
                           "cmpxchg16b: KVM_EXIT_INTERNAL_ERROR suberror 1 (emulation failure)"));
}

static void test_bad_args(void **state)
{
    (void)state;
    VmmKvmInfo info = { .size = sizeof(info) - 1 };
    assert_int_equal(vmm_kvm_probe(NULL, NULL), -EINVAL);
    assert_int_equal(vmm_kvm_probe(NULL, &info), -EINVAL);
    /* No device: kind none, the errno, a reason, nothing logged as an error. */
    VmmVmOptions o = { .size = sizeof(o), .dev_path = "/nonexistent/kvm" };
    info.size = sizeof(info);
    assert_int_equal(vmm_kvm_probe(&o, &info), -ENOENT);
    assert_int_equal(info.kind, VMM_KVM_KIND_NONE);
    assert_false(info.full);
    assert_non_null(strstr(info.reason, "/nonexistent/kvm"));
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(vmm_kvm_kind_name(VMM_KVM_KIND_PVM), "kvm_pvm");
    assert_string_equal(vmm_kvm_kind_name(VMM_KVM_KIND_INTEL), "kvm_intel");
    assert_string_equal(vmm_kvm_kind_name((VmmKvmKind)99), "unknown");
    assert_string_equal(vmm_kvm_check_name(VMM_KVM_CHECK_INT3), "int3");
    assert_string_equal(vmm_kvm_check_name(VMM_KVM_CHECK_TSC_WRITE), "tsc-write");
    assert_string_equal(vmm_kvm_check_name(3), "unknown");
}

/* The module from a fake /sys/module and /proc/cpuinfo. */
static VmmKvmKind kind_of(const char *const *modules, const char *flags, char *module)
{
    char dir[] = "/tmp/vmmkit-probe-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char p[128];
    for (const char *const *m = modules; *m; m++) {
        snprintf(p, sizeof(p), "%s/%s", dir, *m);
        assert_int_equal(mkdir(p, 0755), 0);
    }
    snprintf(p, sizeof(p), "%s/cpuinfo", dir);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fprintf(f, "processor\t: 0\nflags\t\t: fpu %s sse2\n", flags);
    fclose(f);
    VmmKvmKind k = kvm_probe_kind(dir, p, module, 16);
    unlink(p);
    for (const char *const *m = modules; *m; m++) {
        snprintf(p, sizeof(p), "%s/%s", dir, *m);
        rmdir(p);
    }
    rmdir(dir);
    return k;
}

static void test_kind(void **state)
{
    (void)state;
    char mod[16];
    assert_int_equal(kind_of((const char *[]){ "kvm", "kvm_intel", NULL }, "vmx", mod),
                     VMM_KVM_KIND_INTEL);
    assert_string_equal(mod, "kvm_intel");
    assert_int_equal(kind_of((const char *[]){ "kvm", "kvm_amd", NULL }, "svm", mod),
                     VMM_KVM_KIND_AMD);
    assert_int_equal(kind_of((const char *[]){ "kvm", "kvm_pvm", NULL }, "avx", mod),
                     VMM_KVM_KIND_PVM);
    assert_string_equal(mod, "kvm_pvm");
    /* PVM beside a vendor module: without VMX/SVM only PVM can serve. */
    assert_int_equal(kind_of((const char *[]){ "kvm_intel", "kvm_pvm", NULL }, "avx", mod),
                     VMM_KVM_KIND_PVM);
    assert_int_equal(kind_of((const char *[]){ "kvm_intel", "kvm_pvm", NULL }, "vmx", mod),
                     VMM_KVM_KIND_INTEL);
    assert_int_equal(kind_of((const char *[]){ "kvm", NULL }, "vmx", mod), VMM_KVM_KIND_OTHER);
    assert_string_equal(mod, "");
}

/* ---- The verdict cache ------------------------------------------------------ */

/* A fake host: <root>/module/{kvm,kvm_amd}/parameters, cpuinfo, boot_id,
 * dev (a symlink to a character device) and the cache directory. */
typedef struct Host {
    char root[64];
    char p[256];                /* scratch path */
    KvmProbeRoots roots;
    char module_dir[128], cpuinfo[128], boot_id[128], dev[128], cache[128], file[512];
} Host;

static const char *hp(Host *h, const char *rel)
{
    snprintf(h->p, sizeof(h->p), "%s/%s", h->root, rel);
    return h->p;
}

static void put(Host *h, const char *rel, const char *text)
{
    FILE *f = fopen(hp(h, rel), "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void host_init(Host *h)
{
    snprintf(h->root, sizeof(h->root), "/tmp/vmmkit-probe-cache-XXXXXX");
    assert_non_null(mkdtemp(h->root));
    const char *dirs[] = { "module", "module/kvm", "module/kvm/parameters", "module/kvm_amd",
                           "module/kvm_amd/parameters", NULL };
    for (const char **d = dirs; *d; d++) {
        assert_int_equal(mkdir(hp(h, *d), 0755), 0);
    }
    put(h, "module/kvm/parameters/halt_poll_ns", "200000\n");
    put(h, "module/kvm_amd/parameters/npt", "1\n");
    put(h, "module/kvm_amd/parameters/nested", "1\n");
    put(h, "cpuinfo", "processor\t: 0\nflags\t\t: fpu svm sse2\n");
    put(h, "boot_id", "6d1f0c3e-8a55-4d4c-9f0b-0d6f4b8d2a11\n");
    assert_int_equal(symlink("/dev/null", hp(h, "dev")), 0);
    snprintf(h->module_dir, sizeof(h->module_dir), "%s/module", h->root);
    snprintf(h->cpuinfo, sizeof(h->cpuinfo), "%s/cpuinfo", h->root);
    snprintf(h->boot_id, sizeof(h->boot_id), "%s/boot_id", h->root);
    snprintf(h->dev, sizeof(h->dev), "%s/dev", h->root);
    snprintf(h->cache, sizeof(h->cache), "%s/cache", h->root);
    h->roots = (KvmProbeRoots){ h->module_dir, h->cpuinfo, h->boot_id };
    h->file[0] = '\0';
}

static void host_free(Host *h)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", h->root);
    assert_int_equal(system(cmd), 0);
}

/* The one cache file (its name hashes the device path). */
static const char *cache_file(Host *h)
{
    if (!h->file[0]) {
        DIR *d = opendir(h->cache);
        assert_non_null(d);
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strncmp(e->d_name, "kvm-probe-", 10)) {
                snprintf(h->file, sizeof(h->file), "%s/%s", h->cache, e->d_name);
            }
        }
        closedir(d);
        assert_true(h->file[0]);
    }
    return h->file;
}

/* vmm_kvm_probe_cached on the fake host and fake KVM: its return value;
 * *@vms says how many probe VMs it created. */
static int cached_in(Host *h, const char *dir, bool emulator, VmmKvmInfo *info, unsigned *vms)
{
    static FakeKvm f;
    fake_kvm_init(&f);
    f.cpuid1_ecx = CX16 | XSAVE;
    Script s = { .f = &f, .emulator = emulator };
    f.run_fn = run_fn;
    f.run_opaque = &s;
    VmmVmOptions o = fake_vm_options(&f);
    o.dev_path = h->dev;
    memset(info, 0, sizeof(*info));
    info->size = sizeof(*info);
    int r = kvm_probe_cached_at(&o, dir, &h->roots, info);
    *vms = fake_count(&f, KVM_CREATE_VM, 0);
    assert_int_equal(f.open_fds, 0);
    return r;
}

static int cached(Host *h, VmmKvmInfo *info, unsigned *vms)
{
    return cached_in(h, h->cache, false, info, vms);
}

/* Probed (a VM made, the verdict full), then served from the file. */
static void probed_then_hit(Host *h)
{
    VmmKvmInfo a, b;
    unsigned vms;
    assert_int_equal(cached(h, &a, &vms), 0);
    assert_int_equal(vms, 1);
    assert_true(a.full);
    assert_int_equal(cached(h, &b, &vms), 1);
    assert_int_equal(vms, 0);
    assert_true(b.full);
    assert_int_equal(b.kind, a.kind);
    assert_string_equal(b.module, a.module);
    assert_int_equal(b.api_version, a.api_version);
    assert_int_equal(b.checked, a.checked);
    assert_int_equal(b.passed, a.passed);
    assert_true(b.insns_per_sec == a.insns_per_sec);
    assert_string_equal(b.reason, "");
}

static void test_cache_hit(void **state)
{
    (void)state;
    Host h;
    host_init(&h);
    /* The directory and a missing parent are made, 0755. */
    snprintf(h.cache, sizeof(h.cache), "%s/run/vmmkit", h.root);
    probed_then_hit(&h);
    struct stat st;
    assert_int_equal(stat(hp(&h, "run"), &st), 0);
    assert_int_equal(st.st_mode & 07777, 0755);
    assert_int_equal(stat(cache_file(&h), &st), 0);
    assert_int_equal(st.st_mode & 07777, 0644);
    assert_int_equal(stat(h.cache, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0755);
    /* The public call: no cache with a NULL or empty directory. */
    VmmKvmInfo info = { .size = sizeof(info) - 1 };
    assert_int_equal(vmm_kvm_probe_cached(NULL, h.cache, &info), -EINVAL);
    assert_int_equal(vmm_kvm_probe_cached(NULL, h.cache, NULL), -EINVAL);
    unsigned vms;
    assert_int_equal(cached_in(&h, NULL, false, &info, &vms), 0);
    assert_int_equal(vms, 1);
    assert_int_equal(cached_in(&h, "", false, &info, &vms), 0);
    assert_int_equal(vms, 1);
    host_free(&h);
}

/* Each key changing means a probe (then a hit on the new key). */
static void test_cache_keys(void **state)
{
    (void)state;
    Host h;
    host_init(&h);
    probed_then_hit(&h);
    put(&h, "boot_id", "0a5c6b1e-1111-4d4c-9f0b-0d6f4b8d2a11\n");          /* reboot */
    probed_then_hit(&h);
    assert_int_equal(unlink(hp(&h, "dev")), 0);                        /* st_rdev */
    assert_int_equal(symlink("/dev/zero", hp(&h, "dev")), 0);
    probed_then_hit(&h);
    put(&h, "module/kvm_amd/parameters/nested", "0\n");                 /* a parameter */
    probed_then_hit(&h);
    put(&h, "module/kvm/parameters/halt_poll_ns", "0\n");               /* kvm's */
    probed_then_hit(&h);
    put(&h, "module/kvm_amd/parameters/avic", "1\n");                   /* a new one */
    probed_then_hit(&h);
    assert_int_equal(unlink(hp(&h, "module/kvm_amd/parameters/avic")), 0);
    probed_then_hit(&h);
    /* Another module (and no kvm_amd): another verdict. */
    char from[300];
    snprintf(from, sizeof(from), "%s", hp(&h, "module/kvm_amd"));
    assert_int_equal(rename(from, hp(&h, "module/kvm_intel")), 0);
    put(&h, "cpuinfo", "processor\t: 0\nflags\t\t: fpu vmx sse2\n");
    probed_then_hit(&h);
    /* The probe version: a file written by another version is probed again. */
    FILE *f = fopen(cache_file(&h), "r+");
    assert_non_null(f);
    char head[32];
    assert_non_null(fgets(head, sizeof(head), f));
    assert_int_equal(strncmp(head, "vmmkit-kvm-probe ", 17), 0);
    fseek(f, 17, SEEK_SET);
    fputc(head[17] == '9' ? '8' : '9', f);
    fclose(f);
    probed_then_hit(&h);
    /* A parameter that cannot be read: no key, so no cache. */
    if (geteuid() != 0) {
        assert_int_equal(chmod(hp(&h, "module/kvm/parameters/halt_poll_ns"), 0200), 0);
        VmmKvmInfo info;
        unsigned vms;
        assert_int_equal(cached(&h, &info, &vms), 0);
        assert_int_equal(cached(&h, &info, &vms), 0);
        assert_int_equal(vms, 1);
        assert_true(info.full);
    }
    host_free(&h);
}

static char good[65536];
static size_t good_len;

static void save_good(Host *h)
{
    int fd = open(cache_file(h), O_RDONLY);
    assert_true(fd >= 0);
    ssize_t n = read(fd, good, sizeof(good));
    assert_true(n > 0);
    good_len = (size_t)n;
    close(fd);
}

/* Write @len bytes of @data as the cache file (0644), then expect a probe
 * (and the file good again after it). */
static void expect_probe_with(Host *h, const char *data, size_t len)
{
    unlink(cache_file(h));
    int fd = open(cache_file(h), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(fchmod(fd, 0644), 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
    VmmKvmInfo info;
    unsigned vms;
    assert_int_equal(cached(h, &info, &vms), 0);
    assert_int_equal(vms, 1);
    assert_true(info.full);
    assert_int_equal(cached(h, &info, &vms), 1);
}

/* Replace the first @from in the verdict part of the good file by @to, and
 * expect a probe. */
static void expect_probe_edit(Host *h, const char *from, const char *to)
{
    static char buf[sizeof(good) + 64];
    char *v = memmem(good, good_len, "verdict\n", 8);
    assert_non_null(v);
    char *at = memmem(v, good_len - (size_t)(v - good), from, strlen(from));
    assert_non_null(at);
    size_t pre = (size_t)(at - good), fl = strlen(from), tl = strlen(to);
    memcpy(buf, good, pre);
    memcpy(buf + pre, to, tl);
    memcpy(buf + pre + tl, at + fl, good_len - pre - fl);
    expect_probe_with(h, buf, good_len - fl + tl);
}

static void test_cache_bad_files(void **state)
{
    (void)state;
    Host h;
    host_init(&h);
    probed_then_hit(&h);
    save_good(&h);
    /* Every truncation. */
    for (size_t len = 0; len < good_len; len++) {
        expect_probe_with(&h, good, len);
    }
    /* Garbage, non-canonical and impossible values. */
    expect_probe_edit(&h, "full 1\n", "full 2\n");
    expect_probe_edit(&h, "full 1\n", "full 01\n");
    expect_probe_edit(&h, "full 1\n", "full 1 \n");
    expect_probe_edit(&h, "kind ", "kind 9");
    expect_probe_edit(&h, "kind ", "kind -");
    expect_probe_edit(&h, "api ", "api +");
    expect_probe_edit(&h, "rate ", "rate 1e3\nrate ");
    expect_probe_edit(&h, "rate ", "rate 0");
    expect_probe_edit(&h, "rate ", "rate 0x");
    expect_probe_edit(&h, "rate 4", "rate 3");            /* 2.0, not a rate */
    expect_probe_edit(&h, "reason \n", "reason slow\n");
    expect_probe_edit(&h, "passed ", "passed 1");
    /* Consistent, but not what a probe that ran every check stores. */
    expect_probe_edit(&h, "checked 63\npassed 63\n", "checked 31\npassed 31\n");
    expect_probe_edit(&h, "passed 63\n", "passed 62\n");
    expect_probe_edit(&h, "end\n", "end\nend\n");
    expect_probe_edit(&h, "end\n", "end");
    expect_probe_edit(&h, "verdict\n", "verdict\n\n");
    char *bin = malloc(good_len);
    assert_non_null(bin);
    memcpy(bin, good, good_len);
    bin[good_len / 2] = '\0';
    expect_probe_with(&h, bin, good_len);
    free(bin);
    /* Oversized: the good file with 70000 bytes after it. */
    char *big = calloc(1, good_len + 70000);
    assert_non_null(big);
    memcpy(big, good, good_len);
    expect_probe_with(&h, big, good_len + 70000);
    free(big);
    /* The good bytes again: a hit (what the edits were checked against). */
    unlink(cache_file(&h));
    int fd = open(cache_file(&h), O_WRONLY | O_CREAT, 0644);
    assert_int_equal(write(fd, good, good_len), (ssize_t)good_len);
    close(fd);
    VmmKvmInfo info;
    unsigned vms;
    assert_int_equal(cached(&h, &info, &vms), 1);
    host_free(&h);
}

static void test_cache_owner_mode(void **state)
{
    (void)state;
    Host h;
    host_init(&h);
    probed_then_hit(&h);
    /* Writable by others or by the group: ignored, replaced by the probe
     * (probed_then_hit: a probe, then a hit on the file it wrote). */
    assert_int_equal(chmod(cache_file(&h), 0666), 0);
    probed_then_hit(&h);
    assert_int_equal(chmod(cache_file(&h), 0664), 0);
    probed_then_hit(&h);
    /* A symlink to a good file: not followed. */
    char other[300];
    snprintf(other, sizeof(other), "%s/elsewhere", h.root);
    assert_int_equal(rename(cache_file(&h), other), 0);
    assert_int_equal(symlink(other, cache_file(&h)), 0);
    probed_then_hit(&h);
    /* Owned by another user (only root can make one). */
    if (geteuid() == 0) {
        assert_int_equal(chown(cache_file(&h), 4321, 4321), 0);
        probed_then_hit(&h);
    }
    host_free(&h);
}

/* No usable directory: the probe's answer every time, nothing written. */
static void test_cache_unwritable(void **state)
{
    (void)state;
    Host h;
    host_init(&h);
    char under_file[300];
    snprintf(under_file, sizeof(under_file), "%s/cpuinfo/cache", h.root);
    const char *dirs[] = { under_file, "/proc/vmmkit-no-such-dir" };
    for (size_t i = 0; i < 2; i++) {
        for (int k = 0; k < 2; k++) {
            VmmKvmInfo info;
            unsigned vms;
            assert_int_equal(cached_in(&h, dirs[i], false, &info, &vms), 0);
            assert_int_equal(vms, 1);
            assert_true(info.full);
        }
    }
    if (geteuid() != 0) {           /* root writes anywhere */
        assert_int_equal(mkdir(h.cache, 0555), 0);
        VmmKvmInfo info;
        unsigned vms;
        assert_int_equal(cached(&h, &info, &vms), 0);
        assert_int_equal(cached(&h, &info, &vms), 0);
        assert_int_equal(vms, 1);
        assert_true(info.full);
        chmod(h.cache, 0755);
    }
    host_free(&h);
}

/* Entries of @dir (none if it is missing) other than "." and ".." and,
 * unless NULL, names starting with @prefix. */
static int entries_besides(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
             (!prefix || strncmp(e->d_name, prefix, strlen(prefix)));
    }
    if (d) {
        closedir(d);
    }
    return n;
}

/* A verdict that is not full is never stored. */
static void test_cache_not_full(void **state)
{
    (void)state;
    Host h;
    host_init(&h);
    for (int k = 0; k < 2; k++) {
        VmmKvmInfo info;
        unsigned vms;
        assert_int_equal(cached_in(&h, h.cache, true, &info, &vms), 0);
        assert_int_equal(vms, 1);
        assert_false(info.full);
    }
    assert_int_equal(entries_besides(h.cache, NULL), 0);
    host_free(&h);
}

/* Processes probing at once, each removing the file now and then so that
 * writers race: every answer is full and the file left is good. */
static void test_cache_concurrent(void **state)
{
    (void)state;
    Host h;
    host_init(&h);
    probed_then_hit(&h);
    (void)cache_file(&h);
    enum { PROCS = 4, ROUNDS = 25 };
    int go[2];
    assert_int_equal(pipe(go), 0);
    pid_t pids[PROCS];
    for (int i = 0; i < PROCS; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            close(go[1]);
            char c;
            if (read(go[0], &c, 1) != 0) {
                _exit(2);
            }
            for (int k = 0; k < ROUNDS; k++) {
                if ((k + i) % 3 == 0) {
                    unlink(h.file);
                }
                VmmKvmInfo info;
                unsigned vms;
                int r = cached(&h, &info, &vms);
                if ((r != 0 && r != 1) || !info.full || (r == 1) != (vms == 0)) {
                    _exit(1);
                }
            }
            _exit(0);
        }
    }
    close(go[0]);
    close(go[1]);                   /* all start */
    for (int i = 0; i < PROCS; i++) {
        int st;
        assert_int_equal(waitpid(pids[i], &st, 0), pids[i]);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
    }
    VmmKvmInfo info;
    unsigned vms;
    int r = cached(&h, &info, &vms);
    if (r == 0) {                   /* the last one removed it */
        r = cached(&h, &info, &vms);
    }
    assert_int_equal(r, 1);
    /* No temporary file left behind. */
    assert_int_equal(entries_besides(h.cache, "kvm-probe-"), 0);
    host_free(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_full_without_optional),
        cmocka_unit_test(test_emulator),
        cmocka_unit_test(test_emulation_failure),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_kind),
        cmocka_unit_test(test_cache_hit),
        cmocka_unit_test(test_cache_keys),
        cmocka_unit_test(test_cache_bad_files),
        cmocka_unit_test(test_cache_owner_mode),
        cmocka_unit_test(test_cache_unwritable),
        cmocka_unit_test(test_cache_not_full),
        cmocka_unit_test(test_cache_concurrent),
    };
    return cmocka_run_group_tests_name("kvm-probe", tests, NULL, NULL);
}
