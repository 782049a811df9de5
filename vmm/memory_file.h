// The guest-RAM file of a running-state snapshot: guest RAM byte for byte (the
// low region, then the part above the 32-bit MMIO hole, as GuestRam lays them
// out), as a sparse file: pages that are all zero — most of them in a guest that
// never touched them — are holes. A restore maps the file MAP_PRIVATE (GuestRam::
// create_from_file), so every VM restored from one file shares the pages none of
// them wrote, through the host's page cache.
//
// Its checksum, memory_file_crc, is the CRC-32C over every non-zero page with
// its page number, so it does not depend on where the file system put holes; the
// state file keeps it (machine_state.h) and a restore checks it before any vCPU
// runs, reading only the file's data extents (SEEK_DATA/SEEK_HOLE).
// Threading: plain functions; the caller keeps the guest from writing RAM while
// write_memory_file runs (vCPUs parked, device queues paused).
#pragma once

#include "base/result.h"

#include <cstdint>
#include <filesystem>
#include <span>

namespace strata {

// Creates `path` (which must not exist), writes the non-zero pages of `ram` and
// syncs it. Returns the checksum.
[[nodiscard]] Result<std::uint32_t> write_memory_file(std::filesystem::path const& path, std::span<std::byte const> ram);
// The checksum of an open memory file of `size` bytes.
[[nodiscard]] Result<std::uint32_t> memory_file_crc(int fd, std::uint64_t size);

} // namespace strata
