/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include <vmmkit/vmmkit.h>

static void test_version(void **state)
{
    (void)state;
    const char *v = vmm_version();
    assert_non_null(v);
    int major, minor, patch;
    assert_int_equal(sscanf(v, "%d.%d.%d", &major, &minor, &patch), 3);
}

/* The generated header, the library and meson's project version agree. */
static void test_version_macros(void **state)
{
    (void)state;
    char buf[64];
    snprintf(buf, sizeof(buf), "%d.%d.%d", VMM_VERSION_MAJOR, VMM_VERSION_MINOR,
             VMM_VERSION_MICRO);
    assert_string_equal(buf, PROJECT_VERSION);
    assert_string_equal(VMM_VERSION_STRING, PROJECT_VERSION);
    assert_string_equal(vmm_version(), PROJECT_VERSION);
    assert_int_equal(vmm_version_number(),
                     ((unsigned)VMM_VERSION_MAJOR << 16) | (VMM_VERSION_MINOR << 8) |
                     VMM_VERSION_MICRO);
    assert_int_equal(vmm_version_number(), VMM_VERSION);
    /* The encoding orders versions. */
    assert_true(VMM_VERSION_ENCODE(0, 10, 0) > VMM_VERSION_ENCODE(0, 9, 99));
    assert_true(VMM_VERSION_ENCODE(1, 0, 0) > VMM_VERSION_ENCODE(0, 255, 255));
#if VMM_VERSION < VMM_VERSION_ENCODE(0, 1, 0)
    fail_msg("VMM_VERSION is not usable in #if");
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_version_macros),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
