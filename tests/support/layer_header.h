// Rewrites a layer file's current header in place, as another strata version
// would have written it: for tests of how headers from older (or newer)
// versions are read. Owns nothing; test main thread only.
#pragma once

#include "base/fd.h"
#include "imaging/layer/layer_format.h"

#include <doctest/doctest.h>

#include <fcntl.h>
#include <optional>
#include <string>
#include <sys/stat.h>
#include <utility>
#include <vector>

namespace strata::test {

// Sets the compatible feature bits of the layer's current header (the valid
// slot with the higher generation) to compat.
inline void set_header_compat(std::string const& path, std::uint64_t compat)
{
    Fd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    REQUIRE(fd.valid());
    struct stat st {};
    REQUIRE(::fstat(fd.get(), &st) == 0);
    std::optional<std::pair<std::uint64_t, LayerHeader>> best;
    std::vector<std::byte> slot(layer_format::kSlotSize);
    for (std::uint64_t at : { std::uint64_t { 0 }, layer_format::kSlotSize }) {
        REQUIRE(pread_all(fd.get(), slot, at));
        auto h = decode_header(slot, static_cast<std::uint64_t>(st.st_size));
        if (h && (!best || h.value().generation > best->second.generation))
            best = std::pair { at, h.value() };
    }
    REQUIRE(best);
    best->second.compat = compat;
    encode_header(best->second, std::span<std::byte, layer_format::kSlotSize>(slot.data(), layer_format::kSlotSize));
    REQUIRE(pwrite_all(fd.get(), slot, best->first));
}

} // namespace strata::test
