// libFuzzer target for the strata layer parser (imaging/layer/layer_format.cpp): the
// input is a whole layer file. load_layer (strict and tolerant) and
// validate_mapping must return a value or an Error for any input — never crash,
// hang or allocate without bound.
#include "imaging/layer/layer_format.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size)
{
    // SAFETY: uint8_t and std::byte have the same size and alignment; the
    // fuzzer's buffer is only read.
    auto bytes = std::span<std::byte const>(reinterpret_cast<std::byte const*>(data), size);
    strata::FileReader reader = [&](std::uint64_t offset, std::span<std::byte> buf) -> strata::Status {
        std::fill(buf.begin(), buf.end(), std::byte { 0 });
        if (offset < bytes.size())
            std::memcpy(buf.data(), bytes.data() + offset, std::min<std::uint64_t>(buf.size(), bytes.size() - offset));
        return strata::ok();
    };
    for (bool tolerant : { false, true }) {
        auto loaded = strata::load_layer(reader, size, tolerant);
        if (loaded)
            (void)strata::validate_mapping(loaded.value(), size, tolerant);
    }
    return 0;
}
