// Helpers for the MQTT packet layer tests: hex literals, decoding and
// encoding in one call.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

#include "mqtt/codec.h"

namespace floe::mqtt::testing {

// "10 0d 00 04" -> the bytes; spaces are ignored; "'abc'" stands for the
// ASCII bytes of abc.
inline std::string Hex(std::string_view hex) {
  std::string out;
  int hi = -1;
  for (size_t i = 0; i < hex.size(); ++i) {
    char c = hex[i];
    if (c == ' ') continue;
    if (c == '\'') {
      size_t end = hex.find('\'', i + 1);
      out.append(hex.substr(i + 1, end - i - 1));
      i = end;
      continue;
    }
    int v = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                                             : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
    if (v < 0) ADD_FAILURE() << "bad hex digit " << c;
    if (hi < 0) {
      hi = v;
    } else {
      out.push_back(static_cast<char>(hi * 16 + v));
      hi = -1;
    }
  }
  if (hi >= 0) ADD_FAILURE() << "odd number of hex digits in " << hex;
  return out;
}

inline std::span<const char> AsSpan(const std::string& s) { return {s.data(), s.size()}; }

inline DecodeResult<Packet> Decode(const std::string& bytes, Version v, Sender sender = Sender::kClient,
                                   uint32_t max = kMaxPacketSize) {
  return DecodePacket(AsSpan(bytes), DecodeOptions{v, sender, max});
}

// Encodes or fails the test.
inline std::string Encode(const Packet& p, Version v, Sender sender) {
  std::string out;
  Status s = EncodePacket(p, EncodeOptions{v, sender, kMaxPacketSize}, &out);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

inline std::string ToHex(std::string_view bytes) {
  std::string out;
  static const char* kDigits = "0123456789abcdef";
  for (char c : bytes) {
    if (!out.empty()) out.push_back(' ');
    out.push_back(kDigits[static_cast<uint8_t>(c) >> 4]);
    out.push_back(kDigits[static_cast<uint8_t>(c) & 15]);
  }
  return out;
}

}  // namespace floe::mqtt::testing
