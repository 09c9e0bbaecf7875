// floe::Mutex, MutexLock and CondVar: std::mutex and std::condition_variable
// with clang's thread-safety annotations (base/thread_annotations.h).
//
// Why a wrapper: libstdc++'s std::mutex is not declared a capability and
// std::lock_guard / std::unique_lock are not scoped capabilities, so
// GUARDED_BY(a std::mutex) is checked by nobody. Every mutex-guarded member
// in floe is guarded by a floe::Mutex and taken with a floe::MutexLock (or
// Lock/Unlock where a loop lets go of it around slow work), and the clang
// -Wthread-safety build (FLOE_THREAD_SAFETY) checks them.
//
// On purpose there are no lock()/unlock(): std::lock_guard and
// std::unique_lock would compile but hide the lock from the analysis. To
// wait, use CondVar (it waits on a floe::Mutex the caller holds).
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "base/thread_annotations.h"

namespace floe {

class CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ACQUIRE() { mu_.lock(); }
  void Unlock() RELEASE() { mu_.unlock(); }
  bool TryLock() TRY_ACQUIRE(true) { return mu_.try_lock(); }
  // Tells the analysis the caller holds it (checks nothing at run time).
  void AssertHeld() ASSERT_CAPABILITY(this) {}

 private:
  friend class CondVar;
  std::mutex mu_;
};

// Holds a Mutex for its scope.
class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ACQUIRE(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() RELEASE() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_;
};

// A condition variable over a floe::Mutex. Waits may wake spuriously:
// callers test their condition in a loop, with the mutex held, which is
// what lets the analysis check the condition's reads (a predicate lambda
// would be a separate function it cannot see the lock from).
class CondVar {
 public:
  CondVar() = default;
  CondVar(const CondVar&) = delete;
  CondVar& operator=(const CondVar&) = delete;

  // Releases *mu while waiting; holds it again on return.
  void Wait(Mutex* mu) REQUIRES(mu) {
    std::unique_lock<std::mutex> l(mu->mu_, std::adopt_lock);
    cv_.wait(l);
    l.release();
  }
  // As Wait, but not past `deadline`; false once it has passed. Loop:
  //   while (!done_ && cv_.WaitUntil(&mu_, deadline)) {}
  bool WaitUntil(Mutex* mu, std::chrono::steady_clock::time_point deadline) REQUIRES(mu) {
    std::unique_lock<std::mutex> l(mu->mu_, std::adopt_lock);
    cv_.wait_until(l, deadline);
    l.release();
    return std::chrono::steady_clock::now() < deadline;
  }
  void Signal() { cv_.notify_one(); }
  void SignalAll() { cv_.notify_all(); }

 private:
  std::condition_variable cv_;
};

}  // namespace floe
