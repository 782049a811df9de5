// CRC32C (Castagnoli), the checksum on every strata layer metadata structure.
// Uses the SSE4.2 crc32 instruction when the CPU has it and a slicing-by-8 table
// otherwise; both give the same values (check value of "123456789" is 0xE3069283).
// Threading: pure functions; the tables are built once, thread-safely.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace strata {

// Extends crc (start with 0) over data.
[[nodiscard]] std::uint32_t crc32c(std::span<std::byte const> data, std::uint32_t crc = 0);
// The portable table implementation, exposed so tests can compare the two.
[[nodiscard]] std::uint32_t crc32c_software(std::span<std::byte const> data, std::uint32_t crc = 0);

} // namespace strata
