/* SPDX-License-Identifier: MIT */
/*
 * static-nss.c - the static-pie vmmkit-run (meson option run_link) links
 * with -Wl,--wrap for glibc's passwd lookups.  GLib's g_get_user_name()
 * and g_get_home_dir() call them; in a static binary glibc would load the
 * NSS modules of the glibc version it was linked with at run time (the
 * linker warns about exactly that).  vmmkit-run never needs a user
 * database entry, so the lookups report "no such entry" without loading
 * anything, and GLib falls back to $HOME and $USER as it does for a user
 * missing from the database.
 */
#include <errno.h>
#include <pwd.h>
#include <stddef.h>
#include <sys/types.h>

struct passwd *__wrap_getpwuid(uid_t uid);
struct passwd *__wrap_getpwnam(const char *name);
int __wrap_getpwuid_r(uid_t uid, struct passwd *pwd, char *buf, size_t len,
                      struct passwd **result);
int __wrap_getpwnam_r(const char *name, struct passwd *pwd, char *buf, size_t len,
                      struct passwd **result);

struct passwd *__wrap_getpwuid(uid_t uid)
{
    (void)uid;
    errno = ENOENT;
    return NULL;
}

struct passwd *__wrap_getpwnam(const char *name)
{
    (void)name;
    errno = ENOENT;
    return NULL;
}

/* The _r forms report "not found" as glibc does: 0 and *result NULL. */
int __wrap_getpwuid_r(uid_t uid, struct passwd *pwd, char *buf, size_t len,
                      struct passwd **result)
{
    (void)uid, (void)pwd, (void)buf, (void)len;
    *result = NULL;
    return 0;
}

int __wrap_getpwnam_r(const char *name, struct passwd *pwd, char *buf, size_t len,
                      struct passwd **result)
{
    (void)name, (void)pwd, (void)buf, (void)len;
    *result = NULL;
    return 0;
}
