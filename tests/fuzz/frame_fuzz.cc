// Fuzzes the wire protocol decoder: a stream of frames as a node reads them
// from a socket. Every header and every body type goes through the same
// decoders the node uses; whatever decodes must re-encode to a body that
// decodes to the same thing (round trip), and nothing may read out of bounds.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>

#include "wire/protocol.h"

namespace {

using namespace floe::wire;

template <typename M>
void RoundTrip(std::span<const char> body) {
  auto m = DecodeBodyAs<M>(body);
  if (!m) return;
  std::string frame;
  AppendFrame(&frame, 7, *m);
  auto h = DecodeFrameHeader({frame.data(), frame.size()}, UINT32_MAX);
  if (!h || h->type != M::kType || h->body_size() != frame.size() - kFrameHeaderSize) abort();
  std::span<const char> again(frame.data() + kFrameHeaderSize, frame.size() - kFrameHeaderSize);
  auto m2 = DecodeBodyAs<M>(again);
  if (!m2) abort();
  std::string frame2;
  AppendFrame(&frame2, 7, *m2);
  if (frame2 != frame) abort();  // encoding is a function of the decoded value
}

void DecodeBody(FrameType type, std::span<const char> body) {
  switch (type) {
    case FrameType::kHello: return RoundTrip<Hello>(body);
    case FrameType::kHelloOk: return RoundTrip<HelloOk>(body);
    case FrameType::kError: return RoundTrip<Error>(body);
    case FrameType::kSessionOpen: return RoundTrip<SessionOpen>(body);
    case FrameType::kSessionOk: return RoundTrip<SessionOk>(body);
    case FrameType::kPublish: return RoundTrip<Publish>(body);
    case FrameType::kPublishAck: return RoundTrip<PublishAck>(body);
    case FrameType::kFetch: return RoundTrip<Fetch>(body);
    case FrameType::kDelivery: return RoundTrip<Delivery>(body);
    case FrameType::kSubscribe: return RoundTrip<Subscribe>(body);
    case FrameType::kCredit: return RoundTrip<Credit>(body);
    case FrameType::kAnswer: return RoundTrip<Answer>(body);
    case FrameType::kAnswerOk: return RoundTrip<AnswerOk>(body);
    case FrameType::kStreamCreate: return RoundTrip<StreamCreate>(body);
    case FrameType::kStreamDelete: return RoundTrip<StreamDelete>(body);
    case FrameType::kDeadLetter: return RoundTrip<DeadLetter>(body);
    case FrameType::kStreamListOk: return RoundTrip<StreamListOk>(body);
    case FrameType::kStreamInfo: return RoundTrip<StreamInfo>(body);
    case FrameType::kStreamInfoOk: return RoundTrip<StreamInfoOk>(body);
    case FrameType::kPublishChunk: return RoundTrip<PublishChunk>(body);
    case FrameType::kChunkAck: return RoundTrip<ChunkAck>(body);
    case FrameType::kFetchChunk: return RoundTrip<FetchChunk>(body);
    case FrameType::kChunk: return RoundTrip<Chunk>(body);
    default: return;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const char> in(reinterpret_cast<const char*>(data), size);
  // A byte stream of frames, as read from a socket.
  while (in.size() >= kFrameHeaderSize) {
    auto h = DecodeFrameHeader(in.first(kFrameHeaderSize), 1 << 20);
    if (!h) return 0;  // the node answers with an error and closes
    in = in.subspan(kFrameHeaderSize);
    if (in.size() < h->body_size()) return 0;  // truncated: the node waits for more
    DecodeBody(h->type, in.first(h->body_size()));
    (void)ValidateStreamName(std::string_view(in.data(), std::min<size_t>(in.size(), 200)));
    in = in.subspan(h->body_size());
  }
  return 0;
}
