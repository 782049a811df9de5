// Memory layers of running-state machine images: which files a saved guest's
// RAM is made of, bottom first, as "memory.json" in its state folder
// (<store>/machine-state/<image>/, <store>/vm-state/<vm>/).
//
// The bottom layer is a whole memory file (vmm/memory_file.h), each one above
// it a differential file holding only the pages written since the layer below
// (the list of those pages is kept here, never guessed from holes). A machine
// image's own layer is the file "memory" of its folder; the layers it lays
// over, made by earlier captures of the same VM, are hard links named
// "memory-<id>" in the same folder. So every image's folder holds its whole
// chain: deleting one image (its folder) never takes a layer from another,
// and a layer's data goes when the last folder naming it does, as with disk
// layers. A VM made from the image links the same files into its own folder.
//
// A folder without "memory.json" holds one whole file "memory" (what strata
// wrote before memory layers, and what a suspend writes); read_memory_chain
// says so by returning no chain.
//
// Errors: a malformed chain is BadInput. Threading: pure functions and file
// reads on the caller's thread.
#pragma once

#include "base/result.h"

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace strata {

// Pages [first, first + count) of guest RAM.
struct PageRun {
    std::uint64_t first { 0 };
    std::uint64_t count { 0 };
    bool operator==(PageRun const&) const = default;
};

struct MemoryChainLayer {
    std::string id;   // a layer ID (16 hex digits), the same in every folder linking it
    std::string file; // its file name in the folder: "memory" or "memory-<id>"
    std::uint32_t crc { 0 };
    bool diff { false };
    std::vector<PageRun> runs; // diff only: the pages it holds, ascending
    bool operator==(MemoryChainLayer const&) const = default;
};

inline constexpr char memory_chain_file[] = "memory.json";

// A new layer ID: 16 random hex digits.
[[nodiscard]] Result<std::string> new_memory_layer_id();

std::string encode_memory_chain(std::span<MemoryChainLayer const> chain);
[[nodiscard]] Result<std::vector<MemoryChainLayer>> parse_memory_chain(std::string_view text);
// The chain of the state folder `dir`, or nullopt when it has none (one whole
// file "memory").
[[nodiscard]] Result<std::optional<std::vector<MemoryChainLayer>>> read_memory_chain(std::filesystem::path const& dir);
// Writes "memory.json" into `dir` (new file, synced).
[[nodiscard]] Status write_memory_chain(std::filesystem::path const& dir, std::span<MemoryChainLayer const> chain);
// The file names of a state folder that make up its saved machine: "state",
// and "memory.json" with every layer's file, or "memory" alone.
[[nodiscard]] Result<std::vector<std::string>> state_folder_files(std::filesystem::path const& dir);
// Hard-links `from`'s files (state_folder_files) into the new folder `to`
// (which must not exist; copies where the file system has no hard links). On
// failure `to` is removed again.
[[nodiscard]] Status link_state_folder(std::filesystem::path const& from, std::filesystem::path const& to);

} // namespace strata
