// Clang's thread-safety annotations (-Wthread-safety), after
// google/leveldb: port/thread_annotations.h and Abseil's
// absl/base/thread_annotations.h. They state which mutex guards a member
// and which locks a function needs; a clang build with
// -DFLOE_THREAD_SAFETY=ON checks every access against them at compile time
// (scripts/test, "clang thread-safety build"). On other compilers (GCC)
// they expand to nothing.
//
// Use them with floe::Mutex and floe::MutexLock (base/mutex.h): libstdc++'s
// std::mutex and std::lock_guard carry no annotations, so a member guarded
// by a std::mutex is checked by nobody.
//
//   GUARDED_BY(mu)      the member is read and written only with mu held
//   PT_GUARDED_BY(mu)   what the pointer points to is (the pointer is not)
//   REQUIRES(mu)        the caller must hold mu
//   EXCLUDES(mu)        the caller must not hold mu (the function takes it,
//                       or calls out where holding it could deadlock)
//   ACQUIRE / RELEASE / TRY_ACQUIRE   the function takes / gives up mu
//   NO_THREAD_SAFETY_ANALYSIS         unchecked: say why next to it
#pragma once

#if defined(__clang__)
#define FLOE_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define FLOE_THREAD_ANNOTATION(x)
#endif

// Abseil's absl/base/internal/thread_annotations.h (included by gRPC's
// headers) defines some of the same names, to the same attributes: those
// are defined here only if it has not.
#define CAPABILITY(x) FLOE_THREAD_ANNOTATION(capability(x))
#define SCOPED_CAPABILITY FLOE_THREAD_ANNOTATION(scoped_lockable)
#ifndef GUARDED_BY
#define GUARDED_BY(x) FLOE_THREAD_ANNOTATION(guarded_by(x))
#endif
#ifndef PT_GUARDED_BY
#define PT_GUARDED_BY(x) FLOE_THREAD_ANNOTATION(pt_guarded_by(x))
#endif
#ifndef ACQUIRED_BEFORE
#define ACQUIRED_BEFORE(...) FLOE_THREAD_ANNOTATION(acquired_before(__VA_ARGS__))
#endif
#ifndef ACQUIRED_AFTER
#define ACQUIRED_AFTER(...) FLOE_THREAD_ANNOTATION(acquired_after(__VA_ARGS__))
#endif
#define REQUIRES(...) FLOE_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define REQUIRES_SHARED(...) FLOE_THREAD_ANNOTATION(requires_shared_capability(__VA_ARGS__))
#define EXCLUDES(...) FLOE_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define ACQUIRE(...) FLOE_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define RELEASE(...) FLOE_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define TRY_ACQUIRE(...) FLOE_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
#define ASSERT_CAPABILITY(x) FLOE_THREAD_ANNOTATION(assert_capability(x))
#define RETURN_CAPABILITY(x) FLOE_THREAD_ANNOTATION(lock_returned(x))
#ifndef NO_THREAD_SAFETY_ANALYSIS
#define NO_THREAD_SAFETY_ANALYSIS FLOE_THREAD_ANNOTATION(no_thread_safety_analysis)
#endif
