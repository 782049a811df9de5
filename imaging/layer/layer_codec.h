// Private to imaging/layer/: the byte-level pieces the layer format's encoders
// (layer_format.cpp) and its journal replay (layer_journal.cpp) share: magics,
// little-endian fields and the CRC of a structure with its CRC field as zero.
// Threading: pure functions.
#pragma once

#include "imaging/layer/crc32c.h"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

namespace strata::layer_codec {

inline constexpr char kHeaderMagic[8] = { 'S', 'T', 'R', 'A', 'T', 'A', 'L', 'Y' };
inline constexpr char kCheckpointMagic[8] = { 'S', 'T', 'R', 'C', 'K', 'P', 'T', '1' };
inline constexpr char kRecordMagic[8] = { 'S', 'T', 'R', 'J', 'R', 'N', 'L', '1' };

inline void put64(std::span<std::byte> b, std::size_t at, std::uint64_t v)
{
    for (int i = 0; i < 8; ++i)
        b[at + static_cast<std::size_t>(i)] = static_cast<std::byte>(v >> (8 * i));
}
inline void put32(std::span<std::byte> b, std::size_t at, std::uint32_t v)
{
    for (int i = 0; i < 4; ++i)
        b[at + static_cast<std::size_t>(i)] = static_cast<std::byte>(v >> (8 * i));
}
inline std::uint64_t get64(std::span<std::byte const> b, std::size_t at)
{
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i)
        v = (v << 8) | static_cast<std::uint64_t>(b[at + static_cast<std::size_t>(i)]);
    return v;
}
inline std::uint32_t get32(std::span<std::byte const> b, std::size_t at)
{
    std::uint32_t v = 0;
    for (int i = 3; i >= 0; --i)
        v = (v << 8) | static_cast<std::uint32_t>(b[at + static_cast<std::size_t>(i)]);
    return v;
}
inline bool magic_is(std::span<std::byte const> b, char const (&magic)[8])
{
    return b.size() >= 8 && std::memcmp(b.data(), magic, 8) == 0;
}

// The CRC of a structure whose CRC field (4 bytes at crc_at) counts as zero.
inline std::uint32_t crc_with_hole(std::span<std::byte const> b, std::size_t crc_at)
{
    static constexpr std::byte zeros[4] {};
    std::uint32_t c = crc32c(b.subspan(0, crc_at));
    c = crc32c(zeros, c);
    return crc32c(b.subspan(crc_at + 4), c);
}

} // namespace strata::layer_codec
