// The guest-RAM file of a running-state snapshot: guest RAM byte for byte (the
// low region, then the part above the 32-bit MMIO hole, as GuestRam lays them
// out), as a sparse file: pages that are all zero — most of them in a guest that
// never touched them — are holes. A restore maps the file MAP_PRIVATE (GuestRam::
// map_file), so every VM restored from one file shares the pages none of
// them wrote, through the host's page cache.
//
// Its checksum, memory_file_crc, is the CRC-32C over every non-zero page with
// its page number, so it does not depend on where the file system put holes; the
// state file keeps it (machine_state.h) and a restore checks it before any vCPU
// runs, reading only the file's data extents (SEEK_DATA/SEEK_HOLE).
// A differential memory file (a Diff snapshot's) has the same size and layout
// but holds only the pages written since the snapshot below it, at their own
// offsets; the rest is holes. Which pages it holds is not left to the file
// system's holes (a copy may turn a written page of zeros into one): the caller
// keeps the list (PageRun), and memory_diff_crc covers exactly those pages.
// Threading: plain functions; the caller keeps the guest from writing RAM while
// write_memory_file runs (vCPUs parked, device queues paused).
#pragma once

#include "base/fd.h"
#include "base/result.h"
#include "store/memory_chain.h" // PageRun

#include <cstdint>
#include <filesystem>
#include <span>
#include <vector>

namespace strata {

// Creates `path` (which must not exist), writes the non-zero pages of `ram` and
// syncs it. Returns the checksum.
[[nodiscard]] Result<std::uint32_t> write_memory_file(std::filesystem::path const& path, std::span<std::byte const> ram);
// The checksum of an open memory file of `size` bytes.
[[nodiscard]] Result<std::uint32_t> memory_file_crc(int fd, std::uint64_t size);

// The runs of set bits in a page bitmap of `pages` pages (GuestRam::take_dirty_pages).
std::vector<PageRun> page_runs(std::span<std::uint64_t const> bitmap, std::uint64_t pages);
std::uint64_t page_count(std::span<PageRun const> runs);
// One file of a snapshot's guest RAM: a whole memory file (the bottom of a
// chain) or a differential one over the layers below it, with its checksum.
struct MemoryLayer {
    std::filesystem::path path;
    std::uint32_t crc { 0 };
    bool diff { false };
    std::vector<PageRun> runs; // diff only: the pages it holds
};

// Creates `path` (which must not exist) of ram.size() bytes holding only the
// pages of `runs`, zero or not, and syncs it. Returns memory_diff_crc's value.
[[nodiscard]] Result<std::uint32_t> write_memory_diff(std::filesystem::path const& path, std::span<std::byte const> ram,
    std::span<PageRun const> runs);
// The CRC-32C over the pages of `runs` (with their page numbers) of an open
// differential memory file of `size` bytes; BadInput if a run is outside it.
[[nodiscard]] Result<std::uint32_t> memory_diff_crc(int fd, std::uint64_t size, std::span<PageRun const> runs);
// Opens the files of a memory chain (bottom first: one whole file, then
// differential ones) for a restore and checks each before anything runs: its
// size is `memory_bytes`, its checksum the layer's (BadInput otherwise).
[[nodiscard]] Result<std::vector<Fd>> open_memory_layers(std::span<MemoryLayer const> memory, std::uint64_t memory_bytes);
// Copies the pages of `runs` from an open differential memory file into `ram`.
[[nodiscard]] Status read_memory_diff(int fd, std::span<PageRun const> runs, std::span<std::byte> ram);

} // namespace strata
