/* SPDX-License-Identifier: MIT */
/*
 * vmmkit-run's seccomp allow list, apart so that a test can install it and
 * check what runs under it (tests/tools/test-seccomp.c).
 */
#ifndef VMMKIT_RUN_SECCOMP_POLICY_H
#define VMMKIT_RUN_SECCOMP_POLICY_H

#include <stdbool.h>

/*
 * Install the filter on every thread of the process (TSYNC): calls off the
 * list fail with EPERM, or with @log_only are allowed and logged by the
 * kernel.  0 or a negative errno (-ENOTSUP when built without libseccomp).
 */
int run_seccomp_install(bool log_only);

#endif
