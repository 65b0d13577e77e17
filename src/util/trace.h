/* SPDX-License-Identifier: MIT */
/*
 * Internal: USDT probes (static tracepoints) for perf, bpftrace, SystemTap.
 *
 * TRACE_PROBE(name, args...) places probe "vmmkit:name" with up to 12
 * integer or pointer arguments.  With sys/sdt.h (meson option usdt) a probe
 * is one nop and an ELF note; a tracer that attaches turns the nop into a
 * breakpoint.  Without it, a probe compiles to nothing (its arguments are
 * not evaluated).  Every probe is listed in docs/tracing.md, and the test
 * tracing-probes checks the library holds exactly that list.
 */
#ifndef UTIL_TRACE_H
#define UTIL_TRACE_H

#if CONFIG_USDT
#define SDT_USE_VARIADIC 1     /* STAP_PROBEV */
#include <sys/sdt.h>
#define TRACE_PROBE(name, ...) STAP_PROBEV(vmmkit, name, ##__VA_ARGS__)
#else
/* Arguments count as used, and are not evaluated. */
static inline void trace_args_unused(int unused, ...)
{
    (void)unused;
}
#define TRACE_PROBE(name, ...) do {             \
        if (0) {                                \
            trace_args_unused(0, ##__VA_ARGS__); \
        }                                       \
    } while (0)
#endif

#endif /* UTIL_TRACE_H */
