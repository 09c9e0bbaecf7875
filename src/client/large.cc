// PublishLarge: one large message over a producer session of its own, in
// chunks, resuming after disconnects at the node's durable byte count
// (client.h, docs/protocol.md "Large messages").
#include <algorithm>
#include <thread>

#include <fmt/format.h>

#include "client/client.h"
#include "client/connection.h"
#include "client/session_link.h"

namespace floe::client {

using internal::Connection;

Result<LargeMessageOutcome> PublishLarge(const LargeMessageOptions& options, uint64_t size, const ChunkReader& read,
                                         std::string_view key, std::string_view headers) {
  FLOE_RETURN_ERR_IF_ERROR(wire::ValidateStreamName(options.stream));
  if (size == 0) return Err(Status::InvalidArgument("a large message has at least one byte"));
  if (options.producer_seq == 0) return Err(Status::InvalidArgument("producer seqs start at 1"));
  if (!read) return Err(Status::InvalidArgument("no chunk reader"));
  LargeMessageOutcome out;
  out.session_id = options.session_id;
  internal::Canceller cancel;
  internal::Redirects redirects;
  size_t next_server = 0;
  int64_t last_progress = internal::SteadyNowMs();
  bool first = true;
  std::string buf;
  for (;;) {
    uint64_t durable = 0;
    auto open = [&](Connection& c) -> Status {
      auto ok = internal::OpenSessionOn(
          c, {.session_id = out.session_id, .role = wire::Role::kProducer, .stream = options.stream});
      if (!ok) return ok.error();
      out.session_id = ok->session_id;
      durable = ok->chunk_producer_seq == options.producer_seq ? ok->chunk_bytes : 0;
      return Status::OK();
    };
    auto conn = internal::ConnectAny(options, open, &cancel, &next_server,
                                     last_progress + std::max(options.reconnect_give_up_ms, 0), &redirects);
    out.redirects = redirects.followed;
    if (!conn) return Err(conn.error());
    if (first) out.resumed_from = durable;
    else ++out.reconnects;
    first = false;
    // Room for the chunk's fields, key and headers in one frame.
    const uint64_t overhead = 64 + key.size() + headers.size() + wire::kFrameHeaderSize;
    if ((*conn)->max_frame_bytes() <= overhead + 1)
      return Err(Status::InvalidArgument("key and headers leave no room for data in a frame"));
    const uint64_t chunk =
        std::max<uint64_t>(1, std::min<uint64_t>(options.chunk_bytes, (*conn)->max_frame_bytes() - overhead));
    for (;;) {
      if (internal::SteadyNowMs() - last_progress > options.reconnect_give_up_ms)
        return Err(Status::Unavailable(fmt::format("no progress for {} ms", options.reconnect_give_up_ms)));
      const uint64_t n = std::min<uint64_t>(chunk, size - durable);
      buf.resize(n);
      if (n > 0) FLOE_RETURN_ERR_IF_ERROR(read(durable, std::span<char>(buf.data(), buf.size())));
      wire::PublishChunk pc{.producer_seq = options.producer_seq, .total_size = size, .offset = durable,
                            .key = key, .headers = headers, .data = buf};
      auto ack = (*conn)->Call<wire::ChunkAck>(pc, internal::kRequestTimeoutMs);
      if (!ack) {
        if (!internal::IsRetriableStatus(ack.error()) && !(*conn)->broken()) return Err(ack.error());
        if (!(*conn)->redirect().empty()) redirects.hint = (*conn)->redirect();
        break;  // reconnect, and resume where the node says
      }
      out.bytes_sent += n;
      if (ack->code == wire::WireError::kOk) {
        last_progress = internal::SteadyNowMs();
        if (ack->seq != 0) {
          out.seq = ack->seq;
          out.duplicate = ack->duplicate;
          (void)(*conn)->Send((*conn)->NextRequestId(), wire::Goodbye{});  // the session ends here
          (*conn)->ShutdownWrite();
          return out;
        }
        durable = ack->durable_bytes;
        continue;
      }
      if (ack->code == wire::WireError::kOutOfRange || wire::IsRetriable(ack->code)) {
        // Resend from what the node has (after a failed write, or a gap).
        durable = std::min(ack->durable_bytes, size);
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        continue;
      }
      return Err(internal::ErrorToStatus(ack->code, false, "the node refused the large message"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(std::max(options.reconnect_min_backoff_ms, 1)));
  }
}

}  // namespace floe::client
