// Large messages (docs/cluster.md "Large messages"): a message bigger than a
// frame travels in chunks (PUBLISH_CHUNK) into a blob file of its own; once
// complete, the stream gets a small reference record, so reading the stream
// never holds a large message in memory, and consumers read its bytes in
// pieces (FETCH_CHUNK).
//
// Blob files live in DATA/blobs/<stream>/<session:016x>-<producer_seq:016x>.
// The reference record's payload is that path relative to DATA; its headers
// start with the reserved header `floe.large` = the size in decimal, followed
// by the producer's own headers.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace floe::broker {

inline constexpr std::string_view kLargeHeader = "floe.large";

// "blobs/<stream>/<session>-<pseq>"
std::string BlobPath(std::string_view stream, uint64_t session, uint64_t producer_seq);
// Whether `relative` is a path BlobPath could have made (never escapes DATA).
bool IsBlobPath(std::string_view relative);

// The encoded headers of a reference record: floe.large first, then `user`.
std::string LargeRefHeaders(uint64_t size, std::string_view user_headers);
// If `headers` start with floe.large: sets the size and the producer's own
// headers (what follows) and returns true.
bool ParseLargeRef(std::string_view headers, uint64_t* size, std::string_view* user_headers);

// Writes `data` at `offset` of the blob file (created with its directory if
// needed) and makes it durable (fdatasync; the directory is synced when the
// file is new).
Status WriteBlob(const std::string& path, uint64_t offset, std::string_view data);
// Cuts the file to `size` bytes (what the bank says is durable). Returns the
// file's size after (0 if it does not exist).
Result<uint64_t> TruncateBlob(const std::string& path, uint64_t size);
// Up to `max` bytes from `offset`.
Result<std::string> ReadBlob(const std::string& path, uint64_t offset, uint32_t max);
void RemoveBlob(const std::string& path);

}  // namespace floe::broker
