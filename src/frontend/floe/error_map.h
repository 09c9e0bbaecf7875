// The floe protocol's edge: the one table from the broker core's Codes to
// wire error codes (docs/protocol.md "Error codes").
#pragma once

#include <cstdint>
#include <string>

#include "broker/outcome.h"
#include "wire/errors.h"

namespace floe::frontend {

wire::WireError ToWire(broker::Code code);
// A failure's code: NOT_OWNER only with an address to go to; while the
// stream's new owner is not known yet, UNAVAILABLE (retry).
wire::WireError ToWire(const broker::Failure& f);
// An ERROR frame saying `f` (with its redirect, if any).
std::string ErrorFrame(uint64_t request_id, const broker::Failure& f);

}  // namespace floe::frontend
