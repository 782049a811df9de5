// Helpers shared by the layer and chain tests: deterministic patterns, a chain
// built over wrapped engines, and a reference model of a disk's bytes.
#pragma once

#include "imaging/chain.h"
#include "imaging/layer/layer.h"
#include "tests/imaging/engine_wrappers.h"
#include "tests/support/temp_dir.h"

#include <doctest/doctest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace strata::test {

inline std::vector<std::byte> fill(std::size_t n, std::uint32_t seed)
{
    std::vector<std::byte> v(n);
    std::uint32_t x = seed * 2654435761u + 1;
    for (std::size_t i = 0; i < n; ++i) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v[i] = static_cast<std::byte>(x);
    }
    return v;
}

// Creates a layer file, writes `blocks` of pattern data from block 0 (if any),
// and freezes it. Uses its own engine.
inline void make_frozen_layer(std::string const& path, std::uint64_t size, std::uint64_t blocks, std::uint32_t seed,
    std::uint64_t first_block = 0)
{
    auto engine = make_engine(EngineKind::Uring, 64);
    REQUIRE(engine);
    auto layer = Layer::create(path, size, LayerId::random(), *engine.value());
    REQUIRE(layer);
    if (blocks > 0) {
        auto data = fill(blocks * kBlockSize, seed);
        REQUIRE(layer.value()->write_blocks(first_block, data));
    }
    REQUIRE(layer.value()->freeze(true));
}

// Opens paths (bottom..top) as a chain whose engine is `wrapper` wrapping io_uring.
template<typename W>
inline std::unique_ptr<Chain> open_chain(std::vector<std::string> const& paths, W*& wrapper, bool read_only = false)
{
    auto inner = make_engine(EngineKind::Uring, 256);
    REQUIRE(inner);
    auto w = std::make_unique<W>(std::move(inner.value()));
    wrapper = w.get();
    std::vector<std::unique_ptr<Layer>> layers;
    for (std::size_t i = 0; i < paths.size(); ++i) {
        bool top = i + 1 == paths.size() && !read_only;
        auto l = Layer::open(paths[i], top ? LayerOpen::Writable : LayerOpen::ReadOnly, *w);
        REQUIRE_MESSAGE(l, (l ? std::string() : l.error().message));
        layers.push_back(std::move(l.value()));
    }
    auto chain = Chain::assemble(std::move(w), std::move(layers), ChainOptions { .read_only = read_only });
    REQUIRE(chain);
    return std::move(chain.value());
}

inline std::unique_ptr<Chain> open_chain(std::vector<std::string> const& paths, bool read_only = false)
{
    auto c = Chain::open(paths, ChainOptions { .read_only = read_only });
    REQUIRE_MESSAGE(c, (c ? std::string() : c.error().message));
    return std::move(c.value());
}

inline std::vector<std::byte> read_all(BlockBackend& b, std::uint64_t offset, std::uint64_t length)
{
    std::vector<std::byte> out(length);
    auto r = read_sync(b, offset, out);
    REQUIRE_MESSAGE(r, (r ? std::string() : r.error().message));
    return out;
}

inline bool all_zero(std::span<std::byte const> v)
{
    for (auto b : v)
        if (b != std::byte { 0 })
            return false;
    return true;
}

} // namespace strata::test
