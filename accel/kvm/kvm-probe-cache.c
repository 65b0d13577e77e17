/* SPDX-License-Identifier: MIT */
/*
 * vmm_kvm_probe_cached(): the probe's verdict kept in a file, so that a VMM
 * started again on the same host does not build and run a probe VM each
 * time.
 *
 * The file holds a key and the verdict.  The key is everything that can
 * change the answer: the host's boot (boot_id), the device (its path and
 * st_rdev), the module serving it and the contents of every parameter of
 * that module and of kvm (/sys/module/<m>/parameters/<p>), the probe's
 * version and the size of VmmKvmInfo.  It is built afresh on every call and
 * compared byte for byte with the file's; the verdict after it is parsed
 * field by field and printed again, and that must give the same bytes.  Any
 * difference, a short or oversized file, one not owned by root or the
 * caller, or writable by others, means "probe again".  Only a full verdict
 * from a probe that ran every check, with the key unchanged across the
 * probe, is written (a loaded host may fail the speed check once: that must
 * not become a lasting "not full").  Writes go to a temporary file in the
 * same directory, renamed over the old one: readers see the old file or the
 * new one, and concurrent writers each leave a whole file.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "vmmkit/kvm.h"
#include "kvm-probe.h"

#define CACHE_MAX 65536             /* a larger file is not ours */
#define PARAM_MAX 4096              /* one parameter's contents */

typedef struct Buf {
    char *p;
    size_t len, cap;
    bool bad;                       /* out of memory or too large */
} Buf;

static void buf_add(Buf *b, const void *data, size_t n)
{
    if (b->bad) {
        return;
    }
    if (b->len + n + 1 > CACHE_MAX) {
        b->bad = true;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1) {
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (!p) {
            b->bad = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void VMM_PRINTF(2, 3) buf_printf(Buf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        b->bad = true;
        return;
    }
    buf_add(b, tmp, (size_t)n);
}

/* The contents of @path (at most @max bytes; more is an error), or -errno. */
static ssize_t read_small(const char *path, char *out, size_t max)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) {
        return -errno;
    }
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, out + len, max + 1 - len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            int e = -errno;
            close(fd);
            return e;
        }
        if (n == 0) {
            break;
        }
        len += (size_t)n;
        if (len > max) {
            close(fd);
            return -EFBIG;
        }
    }
    close(fd);
    return (ssize_t)len;
}

/* A counted blob: "<tag> <len>\n<bytes>\n", so that no contents can pass for
 * another key's. */
static void key_blob(Buf *b, const char *tag, const char *data, size_t n)
{
    buf_printf(b, "%s %zu\n", tag, n);
    buf_add(b, data, n);
    buf_add(b, "\n", 1);
}

static int name_cmp(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int not_dot(const struct dirent *d)
{
    return d->d_name[0] != '.';
}

/* Every parameter of module @m, by name; a module without parameters says
 * so.  False when one cannot be read (the key would not cover it). */
static bool key_params(Buf *b, const char *module_dir, const char *m)
{
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/%s/parameters", module_dir, m);
    struct dirent **names = NULL;
    int n = scandir(dir, &names, not_dot, name_cmp);
    if (n < 0) {
        if (errno != ENOENT) {
            return false;
        }
        buf_printf(b, "params %s none\n", m);
        return true;
    }
    char *val = malloc(PARAM_MAX + 1);
    bool ok = val != NULL;
    buf_printf(b, "params %s %d\n", m, n);
    for (int i = 0; i < n; i++) {
        if (ok) {
            char path[1024], tag[600];
            snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
            ssize_t len = read_small(path, val, PARAM_MAX);
            ok = len >= 0;
            snprintf(tag, sizeof(tag), "param %s", names[i]->d_name);
            if (ok) {
                key_blob(b, tag, val, (size_t)len);
            }
        }
        free(names[i]);
    }
    free(names);
    free(val);
    return ok;
}

/*
 * The key for the device at @dev, or false when it cannot be made (no
 * device, a boot id or a parameter that cannot be read): then there is no
 * cache.
 */
static bool make_key(Buf *b, const char *dev, const KvmProbeRoots *roots)
{
    struct stat st;
    char boot[64];
    if (stat(dev, &st) < 0 || !S_ISCHR(st.st_mode)) {
        return false;
    }
    ssize_t n = read_small(roots->boot_id, boot, sizeof(boot) - 1);
    if (n <= 0) {
        return false;
    }
    char module[16];
    kvm_probe_kind(roots->module_dir, roots->cpuinfo, module, sizeof(module));
    buf_printf(b, "vmmkit-kvm-probe %d %zu\n", KVM_PROBE_VERSION, sizeof(VmmKvmInfo));
    key_blob(b, "boot_id", boot, (size_t)n);
    key_blob(b, "device", dev, strlen(dev));
    buf_printf(b, "rdev %u:%u\n", major(st.st_rdev), minor(st.st_rdev));
    buf_printf(b, "module %s\n", module[0] ? module : "-");
    if (!key_params(b, roots->module_dir, "kvm") ||
        (module[0] && !key_params(b, roots->module_dir, module))) {
        return false;
    }
    buf_add(b, "verdict\n", 8);
    return !b->bad;
}

static void put_verdict(Buf *b, const VmmKvmInfo *in)
{
    /* The rate as its IEEE-754 bits: exact, and without the C library's
     * floating-point formatting and parsing code on a start's path. */
    uint64_t rate;
    memcpy(&rate, &in->insns_per_sec, sizeof(rate));
    buf_printf(b, "kind %d\nmodule %s\napi %d\nchecked %" PRIu32 "\npassed %" PRIu32
               "\nfull %d\nrate %016" PRIx64 "\nreason %s\nend\n", (int)in->kind, in->module,
               in->api_version, in->checked, in->passed, in->full ? 1 : 0, rate, in->reason);
}

/* "<name> <value>\n" at *@p (before @end): the value, NUL-terminated, in
 * @val; false if the line is not that or does not fit. */
static bool field(const char **p, const char *end, const char *name, char *val, size_t vlen)
{
    size_t nl = strlen(name);
    if ((size_t)(end - *p) < nl + 1 || memcmp(*p, name, nl) || (*p)[nl] != ' ') {
        return false;
    }
    const char *v = *p + nl + 1;
    const char *eol = memchr(v, '\n', (size_t)(end - v));
    if (!eol || (size_t)(eol - v) >= vlen) {
        return false;
    }
    memcpy(val, v, (size_t)(eol - v));
    val[eol - v] = '\0';
    *p = eol + 1;
    return true;
}

static bool to_long(const char *s, long lo, long hi, long *out)
{
    char *e;
    errno = 0;
    long v = strtol(s, &e, 10);
    if (!*s || *e || errno || v < lo || v > hi) {
        return false;
    }
    *out = v;
    return true;
}

/* Parse the verdict in [p, end) into *@out; only the canonical form of a
 * full verdict is accepted. */
static bool parse_verdict(const char *p, const char *end, VmmKvmInfo *out)
{
    char v[sizeof(out->reason)];
    long kind, api, checked, passed, full;
    VmmKvmInfo in = { .size = sizeof(in) };
    if (!field(&p, end, "kind", v, sizeof(v)) ||
        !to_long(v, VMM_KVM_KIND_INTEL, VMM_KVM_KIND_OTHER, &kind) ||
        !field(&p, end, "module", in.module, sizeof(in.module)) ||
        !field(&p, end, "api", v, sizeof(v)) || !to_long(v, 1, 1L << 30, &api) ||
        !field(&p, end, "checked", v, sizeof(v)) || !to_long(v, 0, 0xffffffffL, &checked) ||
        !field(&p, end, "passed", v, sizeof(v)) || !to_long(v, 0, 0xffffffffL, &passed) ||
        !field(&p, end, "full", v, sizeof(v)) || !to_long(v, 1, 1, &full) ||
        !field(&p, end, "rate", v, sizeof(v)) ||
        !field(&p, end, "reason", in.reason, sizeof(in.reason)) ||
        end - p != 4 || memcmp(p, "end\n", 4)) {
        return false;
    }
    char *e;
    errno = 0;
    uint64_t rate = strtoull(v, &e, 16);
    memcpy(&in.insns_per_sec, &rate, sizeof(rate));
    if (!v[0] || *e || errno || !isfinite(in.insns_per_sec) ||
        in.insns_per_sec < VMM_KVM_MIN_INSNS_PER_SEC) {
        return false;
    }
    in.kind = (VmmKvmKind)kind;
    in.api_version = (int)api;
    in.checked = (uint32_t)checked;
    in.passed = (uint32_t)passed;
    in.full = true;
    /* What storable() asked of it when it was written. */
    uint32_t must = VMM_KVM_CHECK_LONG_MODE | VMM_KVM_CHECK_SPEED | VMM_KVM_CHECK_INT3 |
                    VMM_KVM_CHECK_TSC_WRITE;
    if ((in.checked & must) != must || (in.passed & in.checked) != in.passed ||
        (in.passed & (in.checked & VMM_KVM_CHECKS_STOCK)) != (in.checked & VMM_KVM_CHECKS_STOCK) ||
        in.reason[0]) {
        return false;
    }
    *out = in;
    return true;
}

/* The verdict in @path if its key is @key; false for anything else. */
static bool cache_read(const char *path, const Buf *key, VmmKvmInfo *out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) {
        return false;
    }
    struct stat st;
    char *data = NULL;
    bool ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
              (st.st_uid == 0 || st.st_uid == geteuid()) &&
              !(st.st_mode & (S_IWGRP | S_IWOTH)) && st.st_size <= CACHE_MAX &&
              (size_t)st.st_size > key->len;
    size_t len = 0;
    if (ok) {
        data = malloc(CACHE_MAX + 1);
        ok = data != NULL;
    }
    while (ok) {
        ssize_t n = read(fd, data + len, CACHE_MAX + 1 - len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        ok = n >= 0 && len + (size_t)n <= CACHE_MAX;
        if (n <= 0) {
            break;
        }
        len += (size_t)n;
    }
    close(fd);
    ok = ok && len > key->len && !memcmp(data, key->p, key->len);
    if (ok) {
        /* Parsed, printed again: the rest of the file must be exactly that. */
        VmmKvmInfo in;
        ok = parse_verdict(data + key->len, data + len, &in);
        if (ok) {
            Buf again = { 0 };
            put_verdict(&again, &in);
            ok = !again.bad && again.len == len - key->len &&
                 !memcmp(again.p, data + key->len, again.len);
            free(again.p);
        }
        if (ok) {
            *out = in;
        }
    }
    free(data);
    return ok;
}

/* Write @key and @in to @path through a temporary file renamed over it;
 * failures only mean no cache. */
/* mkdir -p @dir, each missing component 0755. */
static bool make_dirs(const char *dir)
{
    char p[4096];
    int n = snprintf(p, sizeof(p), "%s", dir);
    if (n <= 0 || (size_t)n >= sizeof(p)) {
        return false;
    }
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == '\0') {
            char c = *s;
            *s = '\0';
            if (mkdir(p, 0755) < 0 && errno != EEXIST) {
                return false;
            }
            if (!c) {
                return true;
            }
            *s = c;
        }
    }
}

static void cache_write(const char *dir, const char *path, const Buf *key, const VmmKvmInfo *in)
{
    if (!make_dirs(dir)) {
        return;
    }
    Buf b = { 0 };
    buf_add(&b, key->p, key->len);
    put_verdict(&b, in);
    char tmp[4096];
    int n = snprintf(tmp, sizeof(tmp), "%s/.kvm-probe-XXXXXX", dir);
    if (b.bad || n < 0 || (size_t)n >= sizeof(tmp)) {
        free(b.p);
        return;
    }
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        free(b.p);
        return;
    }
    bool ok = fchmod(fd, 0644) == 0;
    for (size_t off = 0; ok && off < b.len;) {
        ssize_t w = write(fd, b.p + off, b.len - off);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        ok = w > 0;
        off += ok ? (size_t)w : 0;
    }
    ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, path) < 0) {
        unlink(tmp);
    }
    free(b.p);
}

/* A verdict worth keeping: full, from a probe that ran to its end. */
static bool storable(const VmmKvmInfo *in)
{
    uint32_t all = VMM_KVM_CHECK_LONG_MODE | VMM_KVM_CHECK_SPEED | VMM_KVM_CHECK_INT3 |
                   VMM_KVM_CHECK_TSC_WRITE;
    return in->full && (in->checked & all) == all && !in->reason[0] &&
           !strchr(in->module, '\n') && in->kind != VMM_KVM_KIND_NONE;
}

int kvm_probe_cached_at(const VmmVmOptions *opts, const char *dir, const KvmProbeRoots *roots,
                        VmmKvmInfo *out)
{
    if (!out || out->size < sizeof(*out)) {
        return -EINVAL;
    }
    const char *dev = opts && opts->dev_path ? opts->dev_path : "/dev/kvm";
    Buf key = { 0 };
    char path[4096];
    uint64_t h = 0xcbf29ce484222325ULL;        /* FNV-1a of the device path */
    for (const char *c = dev; *c; c++) {
        h = (h ^ (uint8_t)*c) * 0x100000001b3ULL;
    }
    int n = dir && dir[0] ? snprintf(path, sizeof(path), "%s/kvm-probe-%016" PRIx64, dir, h) : -1;
    bool cache = n > 0 && (size_t)n < sizeof(path) && make_key(&key, dev, roots);
    if (cache && cache_read(path, &key, out)) {
        free(key.p);
        return 1;
    }
    int r = kvm_probe_at(opts, roots, out);
    if (r == 0 && cache && storable(out)) {
        /* The key again: a module reloaded or a parameter changed during
         * the probe leaves no file. */
        Buf after = { 0 };
        if (make_key(&after, dev, roots) && after.len == key.len &&
            !memcmp(after.p, key.p, key.len)) {
            cache_write(dir, path, &key, out);
        }
        free(after.p);
    }
    free(key.p);
    return r;
}

int vmm_kvm_probe_cached(const VmmVmOptions *opts, const char *dir, VmmKvmInfo *out)
{
    return kvm_probe_cached_at(opts, dir, &kvm_probe_host_roots, out);
}
