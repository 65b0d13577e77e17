/* SPDX-License-Identifier: MIT */
/*
 * Block options: "key=value,key=value" strings with dotted keys for
 * children ("file.filename=x"), ",," for a literal comma, and typed getters
 * whose errors name the option and the value.
 */
#include <errno.h>
#include <string.h>

#include "block/block-int.h"

struct BlockOpts {
    GHashTable *table;      /* char * -> char * */
};

BlockOpts *block_opts_new(void)
{
    BlockOpts *o = g_new0(BlockOpts, 1);
    o->table = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    return o;
}

void block_opts_free(BlockOpts *o)
{
    if (o) {
        g_hash_table_destroy(o->table);
        g_free(o);
    }
}

void block_opts_set(BlockOpts *o, const char *key, const char *value)
{
    g_hash_table_replace(o->table, g_strdup(key), g_strdup(value));
}

bool block_opts_has(BlockOpts *o, const char *key)
{
    return g_hash_table_contains(o->table, key);
}

char *block_opts_take(BlockOpts *o, const char *key)
{
    gpointer k, v;
    if (!g_hash_table_steal_extended(o->table, key, &k, &v)) {
        return NULL;
    }
    g_free(k);
    return v;
}

static bool valid_key(const char *k)
{
    if (!*k || *k == '.') {
        return false;
    }
    for (const char *p = k; *p; p++) {
        if (!g_ascii_isalnum(*p) && *p != '-' && *p != '_' && *p != '.') {
            return false;
        }
        if (*p == '.' && (p[1] == '.' || p[1] == '\0')) {
            return false;
        }
    }
    return true;
}

/* Reads one ",,"-escaped token ending at ',' or '=' (when @stop_eq). */
static char *read_token(const char **pp, bool stop_eq)
{
    GString *s = g_string_new(NULL);
    const char *p = *pp;
    while (*p) {
        if (*p == ',') {
            if (p[1] == ',') {
                g_string_append_c(s, ',');
                p += 2;
                continue;
            }
            break;
        }
        if (stop_eq && *p == '=') {
            break;
        }
        g_string_append_c(s, *p++);
    }
    *pp = p;
    return g_string_free(s, false);
}

BlockOpts *block_opts_parse(const char *str, GError **errp)
{
    BlockOpts *o = block_opts_new();
    const char *p = str ? str : "";

    while (*p) {
        char *key = read_token(&p, true);
        if (*p != '=') {
            g_set_error(errp, BLOCK_ERR_DOMAIN, EINVAL,
                        "Option '%s' has no value (expected key=value)", key);
            g_free(key);
            goto fail;
        }
        p++;
        char *value = read_token(&p, false);
        if (!valid_key(key)) {
            g_set_error(errp, BLOCK_ERR_DOMAIN, EINVAL, "Invalid option name '%s'", key);
            g_free(key);
            g_free(value);
            goto fail;
        }
        if (g_hash_table_contains(o->table, key)) {
            g_set_error(errp, BLOCK_ERR_DOMAIN, EINVAL, "Option '%s' given twice", key);
            g_free(key);
            g_free(value);
            goto fail;
        }
        g_hash_table_insert(o->table, key, value);
        if (*p == ',') {
            p++;
        }
    }
    return o;

fail:
    block_opts_free(o);
    return NULL;
}

BlockOpts *block_opts_take_prefix(BlockOpts *o, const char *prefix)
{
    size_t plen = strlen(prefix);
    BlockOpts *sub = NULL;
    GHashTableIter it;
    gpointer k, v;

    g_hash_table_iter_init(&it, o->table);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        const char *key = k;
        if (strncmp(key, prefix, plen) == 0 && key[plen] == '.') {
            if (!sub) {
                sub = block_opts_new();
            }
            block_opts_set(sub, key + plen + 1, v);
            g_hash_table_iter_remove(&it);
        }
    }
    return sub;
}

const char *block_opts_first_key(BlockOpts *o)
{
    const char *best = NULL;
    GHashTableIter it;
    gpointer k, v;

    g_hash_table_iter_init(&it, o->table);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        if (!best || strcmp(k, best) < 0) {
            best = k;
        }
    }
    return best;
}

const char *block_opts_first_rejected(BlockOpts *o, bool (*ok)(const char *, const void *),
                                      const void *arg)
{
    const char *best = NULL;
    GHashTableIter it;
    gpointer k, v;

    g_hash_table_iter_init(&it, o->table);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        if (!ok(k, arg) && (!best || strcmp(k, best) < 0)) {
            best = k;
        }
    }
    return best;
}

GHashTable *block_opts_dup_table(BlockOpts *o)
{
    GHashTable *t = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    GHashTableIter it;
    gpointer k, v;

    g_hash_table_iter_init(&it, o->table);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        g_hash_table_insert(t, g_strdup(k), g_strdup(v));
    }
    return t;
}

bool block_opts_take_bool(BlockOpts *o, const char *key, bool dflt, bool *out,
                          GError **errp)
{
    g_autofree char *v = block_opts_take(o, key);
    if (!v) {
        *out = dflt;
        return true;
    }
    if (!strcmp(v, "on") || !strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "1")) {
        *out = true;
    } else if (!strcmp(v, "off") || !strcmp(v, "false") || !strcmp(v, "no") ||
               !strcmp(v, "0")) {
        *out = false;
    } else {
        g_set_error(errp, BLOCK_ERR_DOMAIN, EINVAL,
                    "Option '%s' expects on/off, not '%s'", key, v);
        return false;
    }
    return true;
}

bool block_opts_take_int(BlockOpts *o, const char *key, int64_t dflt, int64_t *out,
                         GError **errp)
{
    g_autofree char *v = block_opts_take(o, key);
    char *end;
    if (!v) {
        *out = dflt;
        return true;
    }
    errno = 0;
    long long x = strtoll(v, &end, 0);
    if (!*v || *end || errno) {
        g_set_error(errp, BLOCK_ERR_DOMAIN, EINVAL,
                    "Option '%s' expects an integer, not '%s'", key, v);
        return false;
    }
    *out = x;
    return true;
}

bool block_parse_size(const char *s, uint64_t *out)
{
    char *end;
    if (!*s || *s == '-' || g_ascii_isspace(*s)) {
        return false;
    }
    errno = 0;
    unsigned long long x = strtoull(s, &end, 0);
    if (errno || end == s) {
        return false;
    }
    unsigned shift = 0;
    switch (*end) {
    case '\0': break;
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    case 't': case 'T': shift = 40; end++; break;
    default: return false;
    }
    if (*end || (shift && x > (UINT64_MAX >> shift))) {
        return false;
    }
    *out = (uint64_t)x << shift;
    return true;
}

bool block_opts_take_size(BlockOpts *o, const char *key, uint64_t dflt, uint64_t *out,
                          GError **errp)
{
    g_autofree char *v = block_opts_take(o, key);
    if (!v) {
        *out = dflt;
        return true;
    }
    if (!block_parse_size(v, out) || *out > INT64_MAX) {
        g_set_error(errp, BLOCK_ERR_DOMAIN, EINVAL,
                    "Option '%s' expects a size (bytes, or with a k/M/G/T suffix), not '%s'",
                    key, v);
        return false;
    }
    return true;
}

static const struct { const char *name; int value; } errno_names[] = {
    { "EIO", EIO }, { "ENOSPC", ENOSPC }, { "EPERM", EPERM }, { "EACCES", EACCES },
    { "EINVAL", EINVAL }, { "ENOMEM", ENOMEM }, { "EAGAIN", EAGAIN },
    { "ENOTSUP", ENOTSUP }, { "EROFS", EROFS }, { "EDQUOT", EDQUOT },
    { "ETIMEDOUT", ETIMEDOUT }, { "ENODEV", ENODEV }, { "EFBIG", EFBIG },
};

bool block_parse_errno(const char *s, int *out)
{
    for (size_t i = 0; i < VMM_ARRAY_SIZE(errno_names); i++) {
        if (!g_ascii_strcasecmp(s, errno_names[i].name)) {
            *out = errno_names[i].value;
            return true;
        }
    }
    char *end;
    long x = strtol(s, &end, 10);
    if (!*s || *end || x == 0 || x < -4095 || x > 4095) {
        return false;
    }
    *out = x < 0 ? (int)-x : (int)x;
    return true;
}
