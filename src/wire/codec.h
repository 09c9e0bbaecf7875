// The wire protocol's primitive encoding is floe's one byte codec
// (base/codec.h): frame bodies and bank records share it.
#pragma once

#include "base/codec.h"

namespace floe::wire {
using floe::Decoder;
using floe::Encoder;
}  // namespace floe::wire
