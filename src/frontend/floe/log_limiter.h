// A log line that may repeat thousands of times a second (a connection
// refused at the limit, accept failing for want of descriptors, connections
// closed for silence) is printed at most once per period; the next printed
// line says how many were left out meanwhile, so a flood stays visible
// without drowning the node's other lines.
//
// Thread-safe: any thread may call Print.
#pragma once

#include <chrono>
#include <cstdint>
#include <string_view>
#include <string>

#include <fmt/format.h>

#include "base/logging.h"
#include "base/mutex.h"

namespace floe::frontend {

class LogLimiter {
 public:
  explicit LogLimiter(std::chrono::milliseconds period) : period_(period) {}

  // `make()` returns the line (no trailing newline); it is called only when
  // the line is printed, as a warning with `event` (base/logging.h).
  template <typename MakeLine>
  void Print(std::string_view event, MakeLine make) {
    const auto now = std::chrono::steady_clock::now();
    uint64_t left_out;
    {
      MutexLock l(&mu_);
      if (printed_ && now - last_ < period_) {
        ++left_out_;
        return;
      }
      printed_ = true;
      last_ = now;
      left_out = left_out_;
      left_out_ = 0;
    }
    std::string line = make();
    if (left_out > 0) line += fmt::format(" ({} more like this since the last such line)", left_out);
    logging::Warn(event, line);
  }

 private:
  const std::chrono::milliseconds period_;
  Mutex mu_;
  bool printed_ GUARDED_BY(mu_) = false;
  std::chrono::steady_clock::time_point last_ GUARDED_BY(mu_);
  uint64_t left_out_ GUARDED_BY(mu_) = 0;
};

}  // namespace floe::frontend
