/* SPDX-License-Identifier: MIT */
/* aio/event-notifier.c - eventfd-backed notifiers. */
#include <errno.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "aio/aio-priv.h"

int aio_event_notifier_init(VmmEventNotifier *n)
{
    n->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    return n->fd < 0 ? -errno : 0;
}

void aio_event_notifier_cleanup(VmmEventNotifier *n)
{
    if (n->fd >= 0) {
        close(n->fd);
        n->fd = -1;
    }
}

VmmEventNotifier *vmm_event_notifier_new(int *errp)
{
    VmmEventNotifier *n = malloc(sizeof(*n));
    int ret = n ? aio_event_notifier_init(n) : -ENOMEM;

    if (ret < 0) {
        free(n);
        if (errp) {
            *errp = ret;
        }
        return NULL;
    }
    return n;
}

void vmm_event_notifier_free(VmmEventNotifier *n)
{
    if (n) {
        aio_event_notifier_cleanup(n);
        free(n);
    }
}

int vmm_event_notifier_set(VmmEventNotifier *n)
{
    uint64_t one = 1;
    ssize_t r;

    if (!n) {
        return -EINVAL;
    }
    do {
        r = write(n->fd, &one, sizeof(one));
    } while (r < 0 && errno == EINTR);
    /* EAGAIN: the counter is saturated, i.e. already set. */
    if (r < 0 && errno != EAGAIN) {
        return -errno;
    }
    return 0;
}

bool vmm_event_notifier_test_and_clear(VmmEventNotifier *n)
{
    uint64_t v;
    ssize_t r;

    if (!n) {
        return false;
    }
    do {
        r = read(n->fd, &v, sizeof(v));
    } while (r < 0 && errno == EINTR);
    return r == sizeof(v) && v > 0;
}

int vmm_event_notifier_fd(VmmEventNotifier *n)
{
    return n ? n->fd : -EINVAL;
}
