// When the floe protocol delivers: FETCH (a long poll that answers once
// something is deliverable or its wait ends) and SUBSCRIBE (push while the
// client's credit lasts). What is delivered is the core's decision
// (broker::Session::Deliver); this file only decides when to ask.
#include <asio/experimental/as_tuple.hpp>

#include "frontend/floe/connection.h"

namespace floe::frontend {

using asio::awaitable;
namespace {
constexpr auto kNoThrow = asio::experimental::as_tuple(asio::use_awaitable);
}  // namespace

void Connection::AppendDelivery(std::string* frame, uint64_t req, const broker::DeliveryBatch& batch) {
  wire::Delivery d;
  d.entries.reserve(batch.entries.size());
  for (const broker::Delivered& e : batch.entries) {
    wire::Delivered x;
    x.seq = e.seq.value();
    switch (e.kind) {
      case broker::Delivered::Kind::kGap:
        x.kind = wire::Delivered::Kind::kGap;
        x.gap_count = e.gap_count;
        break;
      case broker::Delivered::Kind::kMessage:
      case broker::Delivered::Kind::kLarge:
        x.kind = e.kind == broker::Delivered::Kind::kLarge ? wire::Delivered::Kind::kLarge : wire::Delivered::Kind::kMessage;
        x.delivery_count = e.delivery_count;
        x.timestamp_us = e.timestamp_us;
        x.key = e.key;
        x.headers = e.headers;
        x.payload = e.payload;
        x.large_size = e.large_size.value();
        break;
    }
    d.entries.push_back(x);
  }
  wire::AppendFrame(frame, req, d);
}

awaitable<void> Connection::WaitForChange(std::chrono::steady_clock::time_point until) {
  auto timer = std::make_shared<asio::steady_timer>(strand_, until);
  wait_timer_ = timer;  // a close cancels it
  auto ex = strand_;
  session_->OnStreamChange([timer, ex] { asio::post(ex, [timer] { timer->cancel(); }); });
  co_await timer->async_wait(kNoThrow);
  if (wait_timer_ == timer) wait_timer_.reset();
}

awaitable<void> Connection::FetchLoop(uint64_t req, wire::Fetch fetch) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(fetch.wait_ms);
  const uint32_t max_messages = std::clamp<uint32_t>(fetch.max_messages, 1, 10000);
  const uint32_t max_bytes = std::clamp<uint32_t>(fetch.max_bytes, 1, limits_->max_frame_bytes / 2);
  while (true) {
    if (closed_ || close_after_flush_) co_return;
    // A permission taken away while the poll waits ends it.
    if (!Permitted(req, auth::Action::kConsume, session_->stream_name())) co_return;
    auto batch = session_->Deliver(max_messages, max_bytes);
    if (!batch) {
      LeaveStream(batch.error().redirect);  // fencing: the node lost the stream
      co_return;
    }
    if (!batch->entries.empty() || std::chrono::steady_clock::now() >= until) {
      std::string frame;
      AppendDelivery(&frame, req, *batch);
      Enqueue(frame);
      co_return;
    }
    // Stopping: no empty answer (nothing "came in time" — time was cut
    // short); the connection closes and the client asks again elsewhere.
    if (broker_->stopping()) co_return;
    // Wake at the frontier's next move, a redelivery deadline, or the end.
    co_await WaitForChange(std::min(until, session_->NextRedelivery()));
  }
}

awaitable<void> Connection::PushLoop(uint64_t req) {
  while (subscribed_ && !closed_ && !close_after_flush_ && !broker_->stopping()) {
    // Checked before each batch (and at least every second: the wake-up
    // below), so a permission taken away stops the push within seconds.
    if (!Permitted(req, auth::Action::kConsume, session_->stream_name())) {
      subscribed_ = false;
      co_return;
    }
    if (credit_ > 0) {
      auto batch = session_->Deliver(static_cast<uint32_t>(std::min<uint64_t>(credit_, 256)), 1 << 20);
      if (!batch) {
        LeaveStream(batch.error().redirect);
        co_return;
      }
      if (!batch->entries.empty()) {
        credit_ -= std::min<uint64_t>(credit_, batch->entries.size());
        std::string frame;
        AppendDelivery(&frame, req, *batch);
        Enqueue(frame);
        continue;
      }
    } else if (!session_->serving()) {
      LeaveStream("");
      co_return;
    }
    push_wake_->expires_at(std::min(std::chrono::steady_clock::now() + std::chrono::seconds(1), session_->NextRedelivery()));
    auto timer = push_wake_;
    auto ex = strand_;
    session_->OnStreamChange([timer, ex] { asio::post(ex, [timer] { timer->cancel(); }); });
    co_await push_wake_->async_wait(kNoThrow);
  }
}

}  // namespace floe::frontend
