// Fuzzes the MQTT packet layer (src/mqtt/): a byte stream as a connection
// reads it, split by FrameSplitter and decoded packet by packet as MQTT 5.0
// or 3.1.1 from a client or a server. The first input byte chooses the
// version, the sender, the chunk size the stream arrives in and the maximum
// packet size. Checked on every input:
//   - nothing reads out of bounds or overflows (ASan, UBSan);
//   - the splitter, fed in chunks, finds the same packets SplitFrame finds
//     on the whole buffer;
//   - whatever decodes re-encodes (the encoder accepts all the decoder
//     returns), no larger than it came, and decodes again to the same packet
//     and the same bytes;
//   - a valid topic name is matched by itself and by "#" unless it begins
//     with '$'.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>

#include "mqtt/codec.h"
#include "mqtt/frame.h"
#include "mqtt/topic.h"

namespace {

using namespace floe::mqtt;

void CheckPacket(std::span<const char> bytes, const DecodeOptions& options) {
  auto packet = DecodePacket(bytes, options);
  if (!packet) {
    if (packet.error().message.empty()) abort();
    return;
  }
  EncodeOptions enc{options.version, options.sender, options.max_packet_size};
  std::string again;
  if (!EncodePacket(*packet, enc, &again).ok()) abort();  // the encoder refused what the decoder returned
  if (again.size() > bytes.size()) abort();
  auto back = DecodePacket({again.data(), again.size()}, options);
  if (!back || !(*back == *packet)) abort();
  std::string third;
  if (!EncodePacket(*back, enc, &third).ok() || third != again) abort();
}

void CheckTopics(std::string_view s) {
  if (!ValidateTopicName(s).ok()) return;
  if (!ValidateTopicFilter(s, Version::kV5).ok() && !s.starts_with("$share/")) abort();
  if (!TopicMatches(s, s)) abort();
  if (TopicMatches("#", s) == s.starts_with('$')) abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t select = data[0];
  DecodeOptions options;
  options.version = (select & 1) ? Version::kV311 : Version::kV5;
  options.sender = (select & 2) ? Sender::kServer : Sender::kClient;
  const size_t chunk = ((select >> 2) & 7) + 1;
  options.max_packet_size = (select & 0x20) ? 64 : kMaxPacketSize;
  std::span<const char> stream(reinterpret_cast<const char*>(data) + 1, size - 1);
  CheckTopics({stream.data(), stream.size()});

  FrameSplitter splitter(options.max_packet_size);
  std::span<const char> whole = stream;
  size_t pos = 0;
  while (pos < stream.size()) {
    std::span<const char> in = stream.subspan(pos, std::min(chunk, stream.size() - pos));
    pos += in.size();
    while (!in.empty()) {
      FrameResult r = splitter.Feed(&in);
      if (r.kind == FrameResult::kMalformed || r.kind == FrameResult::kTooLarge) {
        FrameResult direct = SplitFrame(whole, options.max_packet_size);
        if (direct.kind != r.kind) abort();
        return 0;
      }
      if (r.kind != FrameResult::kPacket) continue;
      FrameResult direct = SplitFrame(whole, options.max_packet_size);
      std::span<const char> packet = splitter.packet();
      if (direct.kind != FrameResult::kPacket || direct.size != packet.size()) abort();
      if (!std::equal(packet.begin(), packet.end(), whole.begin())) abort();
      whole = whole.subspan(packet.size());
      CheckPacket(packet, options);
    }
  }
  return 0;
}
