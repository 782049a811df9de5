// What the virtqueue fuzz targets share: guest RAM filled from the input, and the
// checks on the buffers a chain parser returns.
//
// Every target reads the same 8-byte header (the meaning of bytes 0-7 is its own)
// and puts the rest of the input at the start of RamSize bytes of guest RAM, which
// is page-aligned as the VMM maps it and mapped at `base`; what follows is zero.
// Threading: one fuzzing thread (the RAM buffer is a static).
#pragma once

#include "devices/guest_memory.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace strata::fuzz {

constexpr std::size_t HeaderBytes = 8;
constexpr std::size_t RamSize = 64 * 1024;

struct FuzzRam {
    std::byte* ram;
    GuestMemory mem;

    // Whether [p, p + n) lies inside the guest RAM.
    bool holds(std::byte const* p, std::size_t n) const { return p >= ram && p + n <= ram + RamSize; }
};

// The RAM for this input; call only with size >= HeaderBytes.
inline FuzzRam guest_ram(std::uint8_t const* data, std::size_t size, std::uint64_t base)
{
    static std::byte* ram = static_cast<std::byte*>(std::aligned_alloc(4096, RamSize));
    std::memset(ram, 0, RamSize);
    std::memcpy(ram, data + HeaderBytes, std::min(size - HeaderBytes, RamSize));
    return FuzzRam { ram, GuestMemory({ GuestMemory::Region { base, RamSize, ram } }) };
}

// Aborts unless every buffer of a parsed chain lies inside the guest RAM; touches
// every byte, as a device will; returns their total size.
template<typename Buffers>
std::uint64_t check_buffers(FuzzRam const& r, Buffers const& buffers)
{
    std::uint64_t total = 0;
    for (auto const& b : buffers) {
        if (!r.holds(b.data(), b.size()))
            std::abort();
        total += b.size();
        volatile std::byte sink {};
        for (auto x : b)
            sink = x;
        (void)sink;
    }
    return total;
}

} // namespace strata::fuzz
