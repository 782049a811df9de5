// Images from a directory: `strata images create-rootfs NAME --from-dir DIR`.
// This module owns turning a host directory into an ext4 file system with
// `mke2fs -d` (no mounts, no loop devices) and importing it into the store as an
// image through Store::import_image, the path behind `images import -f raw`.
//
// Ownership: every file in the image belongs to root (0:0), as in a distro rootfs,
// whoever owns DIR on the host; modes, setuid/setgid bits, symlinks, hard links,
// xattrs and timestamps are kept. mke2fs copies each file's owner from stat(2), so
// it runs under fakeroot after a `chown -R 0:0` that fakeroot only records
// (FAKEROOTDONTTRYCHOWN): DIR itself is never changed, and because no real chown
// happens the kernel never clears a setuid bit.
//
// Threading: create_rootfs_image blocks the calling thread while mke2fs runs and
// while the import copies; the Store rules apply (one thread per Store object).
#pragma once

#include "base/result.h"
#include "store/store.h"

#include <cstdint>
#include <optional>
#include <string>

namespace strata {

// What a directory tree needs: `du`'s allocated bytes (each hard-linked file
// once) and its number of entries (files, directories, symlinks, ...; DIR too).
struct TreeUsage {
    std::uint64_t bytes { 0 };
    std::uint64_t entries { 0 };
};

// Walks dir without following symlinks inside it (dir itself may be one). A
// missing dir is NotFound, a non-directory Usage, an unreadable entry Permission.
[[nodiscard]] Result<TreeUsage> measure_tree(std::string const& dir);

// The size create-rootfs picks without --size: du × 1.3 (the file system's own
// metadata, and room to write), plus 256 bytes of inode table per inode the tree
// will get, plus 64 MiB (the journal and a little space even for a tiny tree),
// rounded up to a MiB.
[[nodiscard]] std::uint64_t auto_rootfs_size(TreeUsage const& usage);
// Inodes the file system gets: one per 16 KiB (mke2fs's usual ratio), but at least
// the tree's entries plus a quarter and 256 more, so trees of many small files fit
// and the guest can still create files.
[[nodiscard]] std::uint64_t rootfs_inode_count(TreeUsage const& usage, std::uint64_t size);

struct RootfsOptions {
    std::optional<std::uint64_t> size; // bytes, a multiple of 4 KiB; chosen when empty
    std::string description;
    ProgressFn progress;               // of the import copy
};

struct RootfsReport {
    ObjectManifest manifest;
    TreeUsage usage;
    std::uint64_t size { 0 };
    std::uint64_t inodes { 0 };
    bool size_chosen { false }; // no --size: auto_rootfs_size picked it
};

// Builds the ext4 file in the store's tmp/ folder (an unnamed O_TMPFILE where the
// file system has them, so not even a killed process leaves it behind; else a
// named file removed on every return path), then imports it as image name
// (source "directory"; no host path is recorded).
// Errors: a taken name is Exists; a missing dir NotFound; a non-directory or a size
// too small for the content Usage (with mke2fs's own words); mke2fs or fakeroot
// missing Unavailable; any other mke2fs failure BadInput with its output.
[[nodiscard]] Result<RootfsReport> create_rootfs_image(Store& store, std::string const& name, std::string const& dir,
    RootfsOptions const& options = {});

} // namespace strata
