#include "imaging/layer/crc32c.h"

#include <array>
#include <cstring>

namespace strata {

namespace {

constexpr std::uint32_t kPoly = 0x82F63B78u; // reflected Castagnoli polynomial

struct Tables {
    std::array<std::array<std::uint32_t, 256>, 8> t {};
    constexpr Tables()
    {
        for (std::uint32_t i = 0; i < 256; ++i) {
            std::uint32_t c = i;
            for (int k = 0; k < 8; ++k)
                c = (c & 1) ? (c >> 1) ^ kPoly : c >> 1;
            t[0][i] = c;
        }
        for (std::size_t s = 1; s < 8; ++s)
            for (std::size_t i = 0; i < 256; ++i)
                t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xff];
    }
};

constexpr Tables kTables;

__attribute__((target("sse4.2"))) std::uint32_t crc32c_hw(std::byte const* p, std::size_t n, std::uint32_t crc)
{
    std::uint64_t c = crc;
    while (n >= 8) {
        std::uint64_t v;
        std::memcpy(&v, p, 8);
        c = __builtin_ia32_crc32di(c, v);
        p += 8;
        n -= 8;
    }
    auto c32 = static_cast<std::uint32_t>(c);
    while (n > 0) {
        c32 = __builtin_ia32_crc32qi(c32, static_cast<unsigned char>(*p));
        ++p;
        --n;
    }
    return c32;
}

bool have_sse42()
{
    static bool const have = __builtin_cpu_supports("sse4.2");
    return have;
}

} // namespace

std::uint32_t crc32c_software(std::span<std::byte const> data, std::uint32_t crc)
{
    auto const& t = kTables.t;
    std::uint32_t c = ~crc;
    std::byte const* p = data.data();
    std::size_t n = data.size();
    while (n >= 8) {
        std::uint32_t lo;
        std::uint32_t hi;
        std::memcpy(&lo, p, 4);
        std::memcpy(&hi, p + 4, 4);
        lo ^= c;
        c = t[7][lo & 0xff] ^ t[6][(lo >> 8) & 0xff] ^ t[5][(lo >> 16) & 0xff] ^ t[4][lo >> 24] ^ t[3][hi & 0xff]
            ^ t[2][(hi >> 8) & 0xff] ^ t[1][(hi >> 16) & 0xff] ^ t[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n > 0) {
        c = t[0][(c ^ static_cast<std::uint32_t>(*p)) & 0xff] ^ (c >> 8);
        ++p;
        --n;
    }
    return ~c;
}

std::uint32_t crc32c(std::span<std::byte const> data, std::uint32_t crc)
{
    if (have_sse42())
        return ~crc32c_hw(data.data(), data.size(), ~crc);
    return crc32c_software(data, crc);
}

} // namespace strata
