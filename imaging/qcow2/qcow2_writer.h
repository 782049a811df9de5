// Export of any disk (a BlockBackend) to a new standalone qcow2 v3 file that
// `qemu-img check` calls clean and `qemu-img compare` calls identical. Zero
// clusters are left unallocated (they read as zeros: the file has no backing).
//
// Layout, written in one pass: the header in cluster 0, the L1 table after it,
// data clusters in disk order as they are found non-zero, then the L2 tables,
// then the refcount table and blocks (16-bit refcounts, every used cluster 1).
// The file is written under a temporary name and renamed over path only when
// complete and fsynced, so a failed export leaves nothing half-written behind.
//
// Threading: runs on the caller's thread; the source must have nothing in flight.
#pragma once

#include "base/result.h"
#include "imaging/store_io.h"

#include <string>

namespace strata {

struct Qcow2WriteOptions {
    unsigned cluster_bits { 16 }; // 64 KiB, qemu-img's default
};

[[nodiscard]] Status export_qcow2(CopySource const& source, std::string const& path, Qcow2WriteOptions const& options = {},
    ProgressFn const& progress = {});

} // namespace strata
