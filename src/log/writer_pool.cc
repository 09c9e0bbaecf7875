// The shared writer threads (writer_pool.h).
#include "log/writer_pool.h"

#include <algorithm>
#include <chrono>

namespace floe::log {
namespace {

int64_t SteadyUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

WriterPool::WriterPool(size_t threads) {
  threads = std::max<size_t>(threads, 1);
  threads_.reserve(threads);
  for (size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { Loop(); });
}

WriterPool::~WriterPool() {
  {
    MutexLock l(&mu_);
    stopping_ = true;
  }
  work_cv_.SignalAll();
  timer_cv_.SignalAll();
  for (std::thread& t : threads_) t.join();
}

size_t WriterPool::DefaultThreads() {
  const size_t cores = std::max<unsigned>(std::thread::hardware_concurrency(), 1);
  return std::clamp<size_t>(4 * cores, 8, 64);
}

std::shared_ptr<WriterPool> WriterPool::Shared() {
  // Never destroyed: streams closed during static destruction still find it.
  static auto* pool = new std::shared_ptr<WriterPool>(std::make_shared<WriterPool>(DefaultThreads()));
  return *pool;
}

void WriterPool::Enqueue(Job* job) {
  if (job->removed_) return;
  if (job->running_) {
    job->again_ = true;
    return;
  }
  if (job->queued_) return;
  // A timer it has stays armed: firing while it is queued or runs costs
  // nothing, and disarming here would make every write re-arm it.
  job->in_queue_ = queue_.insert(queue_.end(), job);
  job->queued_ = true;
  WakeOne();
}

void WriterPool::WakeOne() {
  if (idle_ > 0) work_cv_.Signal();
  else if (timer_watched_) timer_cv_.Signal();  // the watcher runs it
}

void WriterPool::Disarm(Job* job) {
  if (job->timer_us_ == 0) return;
  timers_.erase({job->timer_us_, job});
  job->timer_us_ = 0;
}

void WriterPool::Schedule(Job* job) {
  MutexLock l(&mu_);
  Enqueue(job);
}

void WriterPool::ScheduleAfter(Job* job, int64_t delay_us) {
  MutexLock l(&mu_);
  if (job->removed_) return;
  const int64_t at = SteadyUs() + std::max<int64_t>(delay_us, 0);
  if (job->timer_us_ != 0 && job->timer_us_ <= at) return;
  const bool sooner = timers_.empty() || at < timers_.begin()->first;
  Disarm(job);
  timers_.insert({at, job});
  job->timer_us_ = at;
  // The thread watching the timers waits for the old first one: wake it
  // (or, if none watches, an idle thread becomes the watcher).
  if (sooner) {
    if (timer_watched_) timer_cv_.Signal();
    else if (idle_ > 0) work_cv_.Signal();
  }
}

void WriterPool::Remove(Job* job) {
  MutexLock l(&mu_);
  job->removed_ = true;
  if (job->queued_) {
    queue_.erase(job->in_queue_);
    job->queued_ = false;
  }
  Disarm(job);
  while (job->running_) done_cv_.Wait(&mu_);
}

size_t WriterPool::timers_armed() const {
  MutexLock l(&mu_);
  return timers_.size();
}

void WriterPool::Loop() {
  MutexLock l(&mu_);
  while (true) {
    const int64_t now = SteadyUs();
    while (!timers_.empty() && timers_.begin()->first <= now) {
      Job* due = timers_.begin()->second;
      timers_.erase(timers_.begin());
      due->timer_us_ = 0;
      Enqueue(due);
    }
    if (!queue_.empty()) {
      Job* job = queue_.front();
      queue_.pop_front();
      job->queued_ = false;
      job->running_ = true;
      job->again_ = false;
      mu_.Unlock();
      const bool more = job->RunSlice();
      mu_.Lock();
      job->running_ = false;
      if (job->removed_) {
        done_cv_.SignalAll();
        continue;
      }
      if (more || job->again_) Enqueue(job);
      continue;
    }
    if (stopping_) break;
    if (!timers_.empty() && !timer_watched_) {
      // This thread watches the timers; the others sleep until work comes.
      timer_watched_ = true;
      const auto deadline = std::chrono::steady_clock::time_point(std::chrono::microseconds(timers_.begin()->first));
      timer_cv_.WaitUntil(&mu_, deadline);
      timer_watched_ = false;
      // It leaves the watch to run a job: an idle thread takes it over.
      if (!timers_.empty() && idle_ > 0) work_cv_.Signal();
    } else {
      ++idle_;
      work_cv_.Wait(&mu_);
      --idle_;
    }
  }
}

}  // namespace floe::log
