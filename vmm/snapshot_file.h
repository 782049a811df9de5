// The snapshot file of the Firecracker-shaped API (PUT /snapshot/create and
// /snapshot/load): what a VMM started with nothing configured needs to load a
// VM — its configuration, the chain of memory files its RAM is made of, and the
// MachineState (machine_state.h) — in one file, with its disks' copies beside it.
//
// Where strata departs from Firecracker, on purpose:
// - The disks are captured in the same cut as memory: every writable drive (a
//   raw host file) is copied, at the instant the queues are drained, next to the
//   snapshot file as "<snapshot file name>.disk-<drive id>" (sharing extents
//   where the file system can), and a load opens those copies. Firecracker
//   leaves disks to the user and reopens the drives' own paths. Read-only
//   drives are opened from their own paths, as in Firecracker.
// - A Diff snapshot's memory file is not merged into its base by the user
//   (Firecracker's rebase-snap): the snapshot file lists every memory file of
//   the chain (the bottom one whole, each later one the pages written since the
//   one below, with the list of those pages and a checksum), and a load lays
//   them over one another. Files below the top must stay where they were made;
//   the top one is the one the load request names.
// - A file that exists is never overwritten, and every file is checksummed: a
//   tampered or mismatched file is refused before anything runs.
//
// - Network interfaces are recorded as configured (the tap's name, or
//   netns=auto, which makes every load a namespace of its own) with the MAC
//   the guest uses; a load may name other taps (network_overrides).
//
// The format: a 32-byte header (magic "STRATAFS", format version, CRC-32C of the
// rest, the length of a JSON document, the length of the MachineState) then the
// JSON (configuration and memory chain) and the encoded MachineState.
// Errors: not a snapshot file, truncated, failed CRC, malformed JSON: BadInput;
// another format version: Unsupported.
// Threading: plain values and pure functions (copy_disk does I/O on its caller's thread).
#pragma once

#include "base/result.h"
#include "vmm/machine_config.h"
#include "vmm/memory_file.h"

#include <cstddef>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

namespace strata {

struct SnapshotDrive {
    DiskConfig disk;     // as the source VM had it (its path is the source's file)
    std::string capture; // writable drives: the copy's file name, beside the snapshot file
};

struct SnapshotFile {
    static constexpr std::uint32_t format_version = 1;

    std::uint32_t vcpus { 1 };
    std::uint64_t memory_mib { 0 };
    CpuTemplate cpu_template { CpuTemplate::Host };
    // Written by every strata that snapshots virtio-pci VMs or network
    // interfaces; a file without them is a virtio-mmio VM without interfaces.
    Transport transport { Transport::Mmio };
    std::vector<NetConfig> nets; // the guest's MAC in each; netns=auto kept as such
    MmdsConfig mmds;
    std::vector<SnapshotDrive> drives;
    std::vector<MemoryLayer> memory; // bottom (whole) first; absolute paths
    std::vector<std::byte> machine_state;
};

std::vector<std::byte> encode_snapshot_file(SnapshotFile const& file);
[[nodiscard]] Result<SnapshotFile> decode_snapshot_file(std::span<std::byte const> bytes);

// The name of drive `id`'s copy beside the snapshot file `snapshot`.
std::string snapshot_disk_name(std::filesystem::path const& snapshot, std::string const& id);
// Copies `from` to the new file `to` (which must not exist): a reflink where the
// file system can share extents, else a copy of the data extents that keeps the
// holes; synced.
[[nodiscard]] Status copy_disk(std::filesystem::path const& from, std::filesystem::path const& to);

} // namespace strata
