// Helpers shared by the `strata img` subcommands: qemu-img style sizes, human
// sizes, a raw file's data/hole extents, and the bench registration.
// Threading: main thread only (CLI).
#pragma once

#include "base/result.h"

#include <cstdint>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace CLI {
class App;
}

namespace strata::cli {

// "4096", "64k", "64K", "1.5G", "2T": bytes, with qemu-img's binary suffixes
// (k/K, M, G, T, P, E; b or no suffix = bytes).
[[nodiscard]] Result<std::uint64_t> parse_size(std::string const& text);
// "1 GiB", "4 KiB", "512 B" as qemu-img prints sizes.
std::string human_size(std::uint64_t bytes);
// A file's size and its extents as (start, length, holds data) from SEEK_DATA/SEEK_HOLE.
[[nodiscard]] Result<std::pair<std::uint64_t, std::vector<std::tuple<std::uint64_t, std::uint64_t, bool>>>> file_data_extents(
    std::string const& path);

void register_img_bench(CLI::App& img, int& exit_code);

} // namespace strata::cli
