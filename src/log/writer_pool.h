// The threads that run every stream's writer: a fixed pool shared by the
// streams of a process, so a node with 10,000 streams runs a handful of
// writer threads rather than 10,000 (docs/format.md, "Writers").
//
// A stream is a Job. Schedule queues it; a pool thread runs one slice of it
// (one group written and synced, a roll, maintenance) and queues it again,
// behind the others, while it has more to do. A job never runs on two
// threads at once, so the slices of one stream are serialised exactly as on
// a thread of its own, and group commit is unchanged: appends that arrive
// while a slice writes gather in the next group. Timers (ScheduleAfter) run
// a job later; an idle job has no timer and costs nothing.
//
// A slice may block (write, fdatasync): the pool has as many slices in
// flight as it has threads, which bounds concurrent fdatasyncs. Callbacks a
// slice runs (append completions) must not wait for another stream's
// writer: with every pool thread waiting so, nothing would run.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "base/mutex.h"

namespace floe::log {

class WriterPool {
 public:
  class Job {
   public:
    virtual ~Job() = default;
    // On a pool thread, never on two at once for one job. True: it has more
    // to do now (queued again, behind the other jobs).
    virtual bool RunSlice() = 0;

   private:
    friend class WriterPool;
    // Guarded by the pool's mu_ (the annotation cannot name it).
    bool queued_ = false;
    bool running_ = false;
    bool again_ = false;   // scheduled while it ran: queue it again after
    bool removed_ = false;
    std::list<Job*>::iterator in_queue_;
    int64_t timer_us_ = 0;  // when a timer is armed (steady µs); 0: none
  };

  explicit WriterPool(size_t threads);
  ~WriterPool();  // joins the threads; every job must have been removed
  WriterPool(const WriterPool&) = delete;
  WriterPool& operator=(const WriterPool&) = delete;

  // The process's pool, created at the first call with DefaultThreads().
  static std::shared_ptr<WriterPool> Shared();
  // 4 per core, at least 8 and at most 64: slices mostly wait for
  // fdatasync, and the device serves several at once.
  static size_t DefaultThreads();

  // Any thread, a slice of `job` included: run it soon.
  void Schedule(Job* job) EXCLUDES(mu_);
  // Run it in `delay_us` (or sooner if already armed sooner, or scheduled).
  void ScheduleAfter(Job* job, int64_t delay_us) EXCLUDES(mu_);
  // Any thread but the job's own slice: forgets the job, waiting for a slice
  // in progress; after it returns the pool never touches the job again.
  void Remove(Job* job) EXCLUDES(mu_);

  size_t threads() const { return threads_.size(); }
  // Jobs registered with a timer (tests: an idle stream arms none).
  size_t timers_armed() const EXCLUDES(mu_);

 private:
  void Loop() EXCLUDES(mu_);
  void Enqueue(Job* job) REQUIRES(mu_);
  void Disarm(Job* job) REQUIRES(mu_);
  void WakeOne() REQUIRES(mu_);

  mutable Mutex mu_;
  CondVar work_cv_;   // idle threads: a job queued, stopping_, the timer watch free
  CondVar timer_cv_;  // the one thread watching the timers: a sooner timer, or a job and no idle thread
  CondVar done_cv_;   // a slice finished (Remove waits on it)
  std::list<Job*> queue_ GUARDED_BY(mu_);
  std::set<std::pair<int64_t, Job*>> timers_ GUARDED_BY(mu_);
  bool timer_watched_ GUARDED_BY(mu_) = false;  // one idle thread waits for the next timer
  size_t idle_ GUARDED_BY(mu_) = 0;             // threads waiting on work_cv_
  bool stopping_ GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;  // set by the constructor, joined by the destructor
};

}  // namespace floe::log
