#include "mqtt/frame.h"

#include <algorithm>

#include "mqtt/primitives.h"

namespace floe::mqtt {

FrameResult SplitFrame(std::span<const char> buffered, uint32_t max_packet_size) {
  if (buffered.size() < 2) return {FrameResult::kNeedMore, 0};
  VbiResult length = DecodeVariableByteInteger(buffered.subspan(1, std::min<size_t>(4, buffered.size() - 1)));
  switch (length.status) {
    case VbiStatus::kNeedMore: return {FrameResult::kNeedMore, 0};
    case VbiStatus::kMalformed: return {FrameResult::kMalformed, 0};
    case VbiStatus::kOk: break;
  }
  const uint64_t size = 1 + length.size + static_cast<uint64_t>(length.value);
  if (size > max_packet_size) return {FrameResult::kTooLarge, size};
  if (buffered.size() < size) return {FrameResult::kNeedMore, size};
  return {FrameResult::kPacket, size};
}

FrameResult FrameSplitter::Feed(std::span<const char>* in) {
  if (broken_.kind != FrameResult::kNeedMore) return broken_;
  if (complete_) {  // the last packet was handed out: start the next
    complete_ = false;
    header_size_ = 0;
    packet_size_ = 0;
    packet_.clear();
  }
  // Header bytes, one at a time, until the size is known.
  while (packet_size_ == 0) {
    if (in->empty()) return {FrameResult::kNeedMore, 0};
    header_[header_size_++] = (*in)[0];
    *in = in->subspan(1);
    FrameResult r = SplitFrame({header_.data(), header_size_}, max_packet_size_);
    if (r.kind == FrameResult::kMalformed || r.kind == FrameResult::kTooLarge) {
      broken_ = r;
      return r;
    }
    if (r.kind == FrameResult::kPacket || r.size > 0) {
      packet_size_ = r.size;  // allowed: only now is memory held for it
      packet_.reserve(packet_size_);
      packet_.assign(header_.data(), header_size_);
    }
  }
  size_t take = std::min<uint64_t>(packet_size_ - packet_.size(), in->size());
  packet_.append(in->data(), take);
  *in = in->subspan(take);
  if (packet_.size() < packet_size_) return {FrameResult::kNeedMore, packet_size_};
  complete_ = true;
  return {FrameResult::kPacket, packet_size_};
}

}  // namespace floe::mqtt
