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
std::optional<DecodeError> ValidatePacket(const Packet& p, Version version, Sender sender);

}  // namespace floe::mqtt
