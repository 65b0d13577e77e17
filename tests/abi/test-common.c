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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
