// EncodePacket: ValidatePacket first (the decoder's rules), then each body is
// walked twice by the same code, once to count its bytes and once to write
// them, so the Remaining Length is known before anything is written and the
// two cannot disagree.
#include <fmt/format.h>

#include "mqtt/codec.h"
#include "mqtt/primitives.h"
#include "mqtt/validate.h"

namespace floe::mqtt {

namespace {

// Writes to `out`, or only counts when `out` is null.
class Out {
 public:
  explicit Out(std::string* out) : out_(out) {}
  void U8(uint8_t v) {
    if (out_) PutU8(out_, v);
    n_ += 1;
  }
  void U16(uint16_t v) {
    if (out_) PutU16(out_, v);
    n_ += 2;
  }
  // A string or binary field (validated: at most 65,535 bytes).
  void Str(std::string_view s) {
    if (out_) PutLengthPrefixed(out_, s);
    n_ += 2 + s.size();
  }
  void Raw(std::string_view s) {
    if (out_) out_->append(s);
    n_ += s.size();
  }
  void Props(const Properties& p) {
    size_t size = PropertiesSize(p);
    if (size > kMaxVariableByteInteger) {
      overflow_ = true;
      return;
    }
    if (out_) PutProperties(out_, p);
    n_ += VariableByteIntegerSize(static_cast<uint32_t>(size)) + size;
  }
  size_t size() const { return n_; }
  bool overflow() const { return overflow_; }

 private:
  std::string* out_;
  size_t n_ = 0;
  bool overflow_ = false;
};

struct Body {
  Out& o;
  Version v;
  bool v5() const { return v == Version::kV5; }

  void operator()(const Connect& c) {
    o.Str("MQTT");
    o.U8(static_cast<uint8_t>(c.version));
    uint8_t flags = 0;
    if (c.clean_start) flags |= 0x02;
    if (c.will) {
      flags |= 0x04 | static_cast<uint8_t>(c.will->qos << 3);
      if (c.will->retain) flags |= 0x20;
    }
    if (c.password) flags |= 0x40;
    if (c.user_name) flags |= 0x80;
    o.U8(flags);
    o.U16(c.keep_alive);
    if (v5()) o.Props(c.properties);
    o.Str(c.client_id);
    if (c.will) {
      if (v5()) o.Props(c.will->properties);
      o.Str(c.will->topic);
      o.Str(c.will->payload);
    }
    if (c.user_name) o.Str(*c.user_name);
    if (c.password) o.Str(*c.password);
  }
  void operator()(const Connack& c) {
    o.U8(c.session_present ? 1 : 0);
    if (v5()) {
      o.U8(static_cast<uint8_t>(c.reason));
      o.Props(c.properties);
    } else {
      o.U8(static_cast<uint8_t>(*ToConnectReturnCode(c.reason)));  // validated: it has one
    }
  }
  void operator()(const Publish& p) {
    o.Str(p.topic);
    if (p.qos > 0) o.U16(p.packet_id);
    if (v5()) o.Props(p.properties);
    o.Raw(p.payload);
  }
  // The shortest form MQTT 5 allows: no reason for Success without
  // properties, no property length without properties.
  void ReasonAndProperties(ReasonCode reason, const Properties& props) {
    if (!v5()) return;
    bool empty = props.empty();
    if (reason == ReasonCode::kSuccess && empty) return;
    o.U8(static_cast<uint8_t>(reason));
    if (!empty) o.Props(props);
  }
  void operator()(const PublishResponse& r) {
    o.U16(r.packet_id);
    ReasonAndProperties(r.reason, r.properties);
  }
  void operator()(const Subscribe& s) {
    o.U16(s.packet_id);
    if (v5()) o.Props(s.properties);
    for (const Subscription& sub : s.subscriptions) {
      o.Str(sub.filter);
      const SubscriptionOptions& opt = sub.options;
      uint8_t b = opt.max_qos;
      if (v5()) {
        if (opt.no_local) b |= 0x04;
        if (opt.retain_as_published) b |= 0x08;
        b |= static_cast<uint8_t>(static_cast<uint8_t>(opt.retain_handling) << 4);
      }
      o.U8(b);
    }
  }
  void operator()(const Suback& s) {
    o.U16(s.packet_id);
    if (v5()) o.Props(s.properties);
    for (ReasonCode r : s.reasons) o.U8(static_cast<uint8_t>(r));  // 3.1.1: validated to 0, 1, 2, 0x80
  }
  void operator()(const Unsubscribe& u) {
    o.U16(u.packet_id);
    if (v5()) o.Props(u.properties);
    for (std::string_view f : u.filters) o.Str(f);
  }
  void operator()(const Unsuback& u) {
    o.U16(u.packet_id);
    if (!v5()) return;
    o.Props(u.properties);
    for (ReasonCode r : u.reasons) o.U8(static_cast<uint8_t>(r));
  }
  void operator()(const Pingreq&) {}
  void operator()(const Pingresp&) {}
  void operator()(const Disconnect& d) { ReasonAndProperties(d.reason, d.properties); }
  void operator()(const Auth& a) { ReasonAndProperties(a.reason, a.properties); }
};

uint8_t FirstByte(const Packet& p) {
  PacketType t = TypeOf(p);
  uint8_t flags = 0;
  if (const auto* pub = std::get_if<Publish>(&p)) {
    flags = static_cast<uint8_t>((pub->dup ? 0x08 : 0) | (pub->qos << 1) | (pub->retain ? 0x01 : 0));
  } else if (t == PacketType::kPubrel || t == PacketType::kSubscribe || t == PacketType::kUnsubscribe) {
    flags = 0x02;
  }
  return static_cast<uint8_t>((static_cast<uint8_t>(t) << 4) | flags);
}

// Leaves out the Reason String and User Properties of the packets whose
// sender "MUST NOT send this property if it would increase the size of the
// packet beyond the Maximum Packet Size" of the receiver. Whether anything was
// left out.
bool StripDiagnostics(Packet* p) {
  return std::visit(
      [](auto& packet) {
        using T = std::decay_t<decltype(packet)>;
        if constexpr (std::is_same_v<T, Connack> || std::is_base_of_v<PublishResponse, T> ||
                      std::is_same_v<T, Suback> || std::is_same_v<T, Unsuback> || std::is_same_v<T, Disconnect> ||
                      std::is_same_v<T, Auth>) {
          bool had = packet.properties.reason_string.has_value() || !packet.properties.user_properties.empty();
          packet.properties.reason_string.reset();
          packet.properties.user_properties.clear();
          return had;
        } else {
          return false;
        }
      },
      *p);
}

// The body's size, or nothing when the properties overflow.
std::optional<size_t> BodySize(const Packet& p, Version v) {
  Out counter(nullptr);
  std::visit(Body{counter, v}, p);
  if (counter.overflow()) return std::nullopt;
  return counter.size();
}

}  // namespace

Status EncodePacket(const Packet& packet, const EncodeOptions& options, std::string* out) {
  const Version version = std::holds_alternative<Connect>(packet) ? std::get<Connect>(packet).version : options.version;
  if (auto e = ValidatePacket(packet, version, options.sender)) {
    return Status::InvalidArgument(fmt::format("MQTT {} {}: {}", VersionName(version),
                                               PacketTypeName(TypeOf(packet)), e->message));
  }
  const Packet* to_write = &packet;
  Packet stripped;
  std::optional<size_t> body = BodySize(packet, version);
  auto total = [](size_t b) -> uint64_t { return 1 + VariableByteIntegerSize(static_cast<uint32_t>(b)) + b; };
  auto fits = [&](const std::optional<size_t>& b) {
    return b && *b <= kMaxVariableByteInteger && total(*b) <= options.max_packet_size;
  };
  if (!fits(body)) {
    stripped = packet;
    if (StripDiagnostics(&stripped)) {
      body = BodySize(stripped, version);
      to_write = &stripped;
    }
  }
  if (!body || *body > kMaxVariableByteInteger) {
    return Status::OutOfRange(fmt::format("{} is larger than MQTT's largest packet ({} bytes)",
                                          PacketTypeName(TypeOf(packet)), kMaxPacketSize));
  }
  if (!fits(body)) {
    return Status::OutOfRange(fmt::format("{} of {} bytes exceeds the peer's Maximum Packet Size of {}",
                                          PacketTypeName(TypeOf(packet)), total(*body), options.max_packet_size));
  }
  out->reserve(out->size() + total(*body));
  PutU8(out, FirstByte(*to_write));
  PutVariableByteInteger(out, static_cast<uint32_t>(*body));
  Out writer(out);
  std::visit(Body{writer, version}, *to_write);
  return Status::OK();
}

}  // namespace floe::mqtt
