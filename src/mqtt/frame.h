// Finding MQTT packets in a byte stream as it arrives. A packet is its type
// byte, a Remaining Length (a Variable Byte Integer of 1 to 4 bytes), then
// that many bytes. The splitter reads only the first 2..5 bytes to learn a
// packet's size, and checks that size against the caller's maximum before
// anyone holds memory for the packet.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "mqtt/types.h"

namespace floe::mqtt {

struct FrameResult {
  enum Kind : uint8_t {
    kNeedMore,   // not a whole packet yet; `size` is the packet's size once known, else 0
    kPacket,     // the first `size` bytes are one packet (for DecodePacket)
    kMalformed,  // the Remaining Length is over 4 bytes or not minimal: answer 0x81 and close
    kTooLarge,   // the packet would be `size` bytes, more than the maximum: answer 0x95 and close
  };
  Kind kind = kNeedMore;
  uint64_t size = 0;
};

// Looks at the bytes buffered so far. Pure: reads at most 5 bytes of
// `buffered` and copies nothing.
FrameResult SplitFrame(std::span<const char> buffered, uint32_t max_packet_size);

// The same, for a connection that reads into small buffers: Feed consumes
// bytes and hands back one packet at a time. It keeps at most the 5 header
// bytes until the size is known and allowed, then reserves exactly that size.
// Not thread-safe; one per connection.
class FrameSplitter {
 public:
  explicit FrameSplitter(uint32_t max_packet_size) : max_packet_size_(max_packet_size) {}

  // Consumes bytes from the front of `*in` (advancing it) until one packet is
  // whole, `*in` is empty, or the stream is broken. kPacket: packet() holds
  // it until the next Feed. kMalformed and kTooLarge are final: every later
  // Feed says the same and consumes nothing.
  FrameResult Feed(std::span<const char>* in);
  std::span<const char> packet() const { return {packet_.data(), packet_.size()}; }

 private:
  uint32_t max_packet_size_;
  std::array<char, 5> header_{};
  size_t header_size_ = 0;
  uint64_t packet_size_ = 0;  // 0 until the header is complete and the size allowed
  std::string packet_;
  bool complete_ = false;
  FrameResult broken_{};  // kMalformed / kTooLarge once the stream is broken
};

}  // namespace floe::mqtt
