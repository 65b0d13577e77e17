/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "util/atomic.h"
#include "util/compiler.h"
#include "util/log.h"

/*
 * The handler triple is replaced as a whole under a mutex and read under
 * it too: logging is never a hot path, and a torn read of handler and
 * opaque would call the wrong closure.
 */
#include <pthread.h>

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static VmmLogHandler *log_handler;
static void *log_opaque;
static VmmLogLevel log_max = VMM_LOG_WARNING;

void vmm_set_log_handler(VmmLogHandler *handler, void *opaque, VmmLogLevel max_level)
{
    pthread_mutex_lock(&log_lock);
    log_handler = handler;
    log_opaque = opaque;
    log_max = max_level;
    pthread_mutex_unlock(&log_lock);
}

static void vk_vlog(VmmLogLevel level, const char *fmt, va_list ap)
{
    static const char *const names[] = { "error", "warning", "info", "debug" };
    char buf[512];

    vsnprintf(buf, sizeof(buf), fmt, ap);
    pthread_mutex_lock(&log_lock);
    VmmLogHandler *h = log_handler;
    void *opaque = log_opaque;
    VmmLogLevel max = log_max;
    pthread_mutex_unlock(&log_lock);
    if (level > max) {
        return;
    }
    if (h) {
        h(level, buf, opaque);
    } else {
        fprintf(stderr, "vmmkit %s: %s\n", names[level & 3], buf);
    }
}

void vk_log(VmmLogLevel level, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vk_vlog(level, fmt, ap);
    va_end(ap);
}

static void misuse_vlog(const char *func, const char *fmt, va_list ap)
{
    char buf[400];

    vsnprintf(buf, sizeof(buf), fmt, ap);
    vk_log(VMM_LOG_ERROR, "misuse in %s(): %s", func, buf);
}

void vk_misuse(const char *func, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    misuse_vlog(func, fmt, ap);
    va_end(ap);
    if (VMM_DEBUG_CHECKS) {
        abort();
    }
}

int vk_misuse_errno(const char *func, int err, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    misuse_vlog(func, fmt, ap);
    va_end(ap);
    return err;
}
