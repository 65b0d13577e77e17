/* SPDX-License-Identifier: MIT */
/*
 * vmmkit-kvm-info: what the KVM in front of us is and can do
 * (vmm_kvm_probe), on the public API only.
 *
 *   vmmkit-kvm-info [--device PATH]
 *
 * Prints one "key: value" line each: device, module, each check, rate,
 * verdict (full, partial or none) and, unless full, the reason.  Exit
 * status: 0 full (a stock 64-bit kernel runs at hardware speed), 3 partial
 * (a KVM that opens but cannot), 4 none (no usable device), 2 bad usage.
 * The test harness (tests/harness/kvm-harness) chooses where KVM tests run
 * from this output.
 */
#include <stdio.h>
#include <string.h>

#include "vmmkit/vmmkit.h"

int main(int argc, char **argv)
{
    VmmVmOptions o = { .size = sizeof(o) };
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--device") && i + 1 < argc) {
            o.dev_path = argv[++i];
        } else {
            fprintf(stderr, "usage: vmmkit-kvm-info [--device PATH]\n");
            return 2;
        }
    }
    const char *dev = o.dev_path ? o.dev_path : "/dev/kvm";
    VmmKvmInfo info = { .size = sizeof(info) };
    int r = vmm_kvm_probe(&o, &info);
    if (r < 0) {
        printf("device: %s (cannot open: %s)\nverdict: none\nreason: %s\n", dev,
               strerror(-r), info.reason);
        return 4;
    }
    printf("device: %s (API %d)\n", dev, info.api_version);
    printf("module: %s\n", info.module[0] ? info.module : "unknown");
    for (uint32_t bit = 1; bit <= VMM_KVM_CHECK_TSC_WRITE; bit <<= 1) {
        printf("check %s: %s\n", vmm_kvm_check_name(bit),
               !(info.checked & bit) ? "not tried" : (info.passed & bit) ? "ok" : "failed");
    }
    printf("rate: %.3g instructions/s\n", info.insns_per_sec);
    printf("verdict: %s\n", info.full ? "full" : "partial");
    if (!info.full) {
        printf("reason: %s cannot run a stock 64-bit kernel at hardware speed (%s)\n",
               info.module[0] ? info.module : "this KVM", info.reason);
    }
    return info.full ? 0 : 3;
}
