// CRC32C (Castagnoli), the checksum of every record batch (docs/format.md).
// Uses the SSE4.2 crc32 instruction when the CPU has it, a table otherwise;
// both are checked against the standard test vectors.
#pragma once

#include <cstddef>
#include <cstdint>

namespace floe::crc32c {

// Returns the CRC32C of data[0,n) continuing from `crc` (the CRC of the bytes
// before them; 0 to start).
uint32_t Extend(uint32_t crc, const char* data, size_t n);
inline uint32_t Value(const char* data, size_t n) { return Extend(0, data, n); }

// The two implementations, exposed so tests can check both.
uint32_t ExtendPortable(uint32_t crc, const char* data, size_t n);
uint32_t ExtendHardware(uint32_t crc, const char* data, size_t n);  // needs HasHardware()
bool HasHardware();

}  // namespace floe::crc32c
