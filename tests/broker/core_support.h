// Test support for driving the broker core through broker.h: waiting for
// a core callback.
#pragma once

#include <chrono>
#include <cstdlib>
#include <future>
#include <memory>

#include <gtest/gtest.h>

namespace floe::broker {

// Calls `start` with a callback and waits (20 s at most) for the value it
// is given.
template <typename T, typename Start>
T Await(Start start) {
  auto p = std::make_shared<std::promise<T>>();
  auto f = p->get_future();
  start([p](T v) { p->set_value(std::move(v)); });
  if (f.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
    ADD_FAILURE() << "the core did not answer";
    std::abort();
  }
  return f.get();
}

}  // namespace floe::broker
