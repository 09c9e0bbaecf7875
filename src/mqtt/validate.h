// The rules a packet's fields must keep, as one function the decoder runs on
// what it parsed and the encoder runs on what it is handed: the decoder can
// never return what the encoder refuses, and the encoder can never write what
// the decoder refuses. Internal to the codec.
#pragma once

#include <optional>

#include "mqtt/codec.h"

namespace floe::mqtt {

// Nothing if `p` is a valid packet of `version` sent by `sender`, else the
// reason the receiver answers with (docs/mqtt.md's table).
// `decoded`: the packet came from DecodePacket's Reader, whose strings are
// already known to be valid UTF-8 of at most 65,535 bytes; those checks are
// skipped (they are what the encoder needs, for views it is handed).
std::optional<DecodeError> ValidatePacket(const Packet& p, Version version, Sender sender, bool decoded = false);

}  // namespace floe::mqtt
