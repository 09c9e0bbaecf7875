// What every front end's connection does to call the broker core from its
// strand: start a core call and suspend the calling coroutine (not the I/O
// thread) until the core's callback — on a core thread — brings the answer
// back to the strand.
#pragma once

#include <memory>
#include <optional>

#include <asio.hpp>
#include <asio/experimental/as_tuple.hpp>

namespace floe::frontend {

// Calls `start` with a callback for the core and awaits the value it is
// given. `keep` (the connection) stays alive until the answer is posted.
template <typename T, typename Start>
asio::awaitable<T> AwaitOnStrand(asio::any_io_executor strand, std::shared_ptr<void> keep, Start start) {
  auto event = std::make_shared<asio::steady_timer>(strand, asio::steady_timer::time_point::max());
  auto result = std::make_shared<std::optional<T>>();
  start([strand, keep = std::move(keep), event, result](T v) mutable {
    asio::post(strand, [event, result, v = std::move(v)]() mutable {
      *result = std::move(v);
      event->cancel();
    });
  });
  while (!*result) co_await event->async_wait(asio::experimental::as_tuple(asio::use_awaitable));
  co_return std::move(**result);
}

}  // namespace floe::frontend
