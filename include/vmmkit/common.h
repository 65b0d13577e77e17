/* SPDX-License-Identifier: MIT */
/*
 * vmmkit/common.h - conventions shared by every vmmkit header.
 *
 * Errors: functions return 0 or a negative errno.  Functions that return a
 * pointer return NULL on failure and store the negative errno in *errp when
 * errp is not NULL.
 *
 * Threads: every function's comment names who may call it:
 *   "any thread"       - any thread, including vCPU threads and iothreads;
 *   "main loop"        - only the thread running the main AioContext;
 *   "ctx's thread"     - only the thread running the named AioContext;
 *   "coroutine"        - only from a coroutine (marked VMM_COROUTINE_FN).
 */
#ifndef VMMKIT_COMMON_H
#define VMMKIT_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(VMMKIT_BUILDING) && defined(__GNUC__)
#define VMM_EXPORT __attribute__((visibility("default")))
#else
#define VMM_EXPORT
#endif

#ifdef __cplusplus
#define VMM_BEGIN_DECLS extern "C" {
#define VMM_END_DECLS }
#else
#define VMM_BEGIN_DECLS
#define VMM_END_DECLS
#endif

#if defined(__GNUC__)
#define VMM_WARN_UNUSED __attribute__((warn_unused_result))
#define VMM_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define VMM_WARN_UNUSED
#define VMM_PRINTF(fmt, args)
#endif

/*
 * Marks a function that may only be called from coroutine context.  It is
 * documentation today; static checkers may use it.
 */
#define VMM_COROUTINE_FN

/*
 * Clang thread-safety analysis (-Wthread-safety).  Other compilers see
 * nothing.  Capabilities are lock objects (a mutex, the graph lock, the
 * main-loop lock); functions state what they require.
 */
#if defined(__clang__) && !defined(SWIG)
#define VMM_TSA(x) __attribute__((x))
#else
#define VMM_TSA(x)
#endif

#define VMM_CAPABILITY(name)        VMM_TSA(capability(name))
#define VMM_GUARDED_BY(x)           VMM_TSA(guarded_by(x))
#define VMM_PT_GUARDED_BY(x)        VMM_TSA(pt_guarded_by(x))
#define VMM_ACQUIRE(...)            VMM_TSA(acquire_capability(__VA_ARGS__))
#define VMM_ACQUIRE_SHARED(...)     VMM_TSA(acquire_shared_capability(__VA_ARGS__))
#define VMM_RELEASE(...)            VMM_TSA(release_capability(__VA_ARGS__))
#define VMM_RELEASE_SHARED(...)     VMM_TSA(release_shared_capability(__VA_ARGS__))
#define VMM_TRY_ACQUIRE(...)        VMM_TSA(try_acquire_capability(__VA_ARGS__))
#define VMM_REQUIRES(...)           VMM_TSA(requires_capability(__VA_ARGS__))
#define VMM_REQUIRES_SHARED(...)    VMM_TSA(requires_shared_capability(__VA_ARGS__))
#define VMM_EXCLUDES(...)           VMM_TSA(locks_excluded(__VA_ARGS__))
#define VMM_ASSERT_CAPABILITY(x)    VMM_TSA(assert_capability(x))
#define VMM_ASSERT_SHARED_CAPABILITY(x) VMM_TSA(assert_shared_capability(x))
#define VMM_NO_TSA                  VMM_TSA(no_thread_safety_analysis)

VMM_BEGIN_DECLS

/*
 * The version of the library running (which may be newer than the headers
 * compiled against: VMM_VERSION_STRING and VMM_VERSION in vmmkit/version.h).
 * vmm_version() gives "MAJOR.MINOR.MICRO"; vmm_version_number() gives
 * VMM_VERSION_ENCODE(MAJOR, MINOR, MICRO), so
 * `vmm_version_number() >= VMM_VERSION_ENCODE(0, 2, 0)` checks for 0.2.0.
 * Any thread.
 */
VMM_EXPORT const char *vmm_version(void);
VMM_EXPORT unsigned vmm_version_number(void);

/*
 * The message for an errno as the library returns it (negative; a positive
 * errno works too), e.g. vmm_strerror(-ENOENT) is "No such file or
 * directory"; 0 gives "Success", an errno the C library does not know gives
 * "Unknown error".  Unlike strerror(), the string is static and the call is
 * safe from any thread.
 */
VMM_EXPORT const char *vmm_strerror(int err);

/* Log levels for messages the library prints about misuse or guest errors. */
typedef enum VmmLogLevel {
    VMM_LOG_ERROR = 0,
    VMM_LOG_WARNING = 1,
    VMM_LOG_INFO = 2,
    VMM_LOG_DEBUG = 3,
} VmmLogLevel;

typedef void VmmLogHandler(VmmLogLevel level, const char *msg, void *opaque);

/*
 * Route the library's messages to @handler (NULL restores the default,
 * which prints errors and warnings to stderr).  Messages at a level above
 * @max_level are dropped.  Any thread; the handler may run in any thread.
 */
VMM_EXPORT void vmm_set_log_handler(VmmLogHandler *handler, void *opaque,
                                    VmmLogLevel max_level);

VMM_END_DECLS

#endif /* VMMKIT_COMMON_H */
