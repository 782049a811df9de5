// Boot artifacts (firmware, kernels, initrds) in the store, by content:
// artifacts/<sha256 hex of the file>. VM records, instance templates and machine
// images name them by digest, so no host path ever enters a record; the same
// file stored twice is kept once. An artifact is removed by gc_artifacts once no
// record names it.
//
// Every function here runs under the record lock (record_files.h) that the caller
// holds — exclusively for put and gc — so that a new artifact and the record
// that names it appear together as far as the garbage collector can tell.
//
// Threading: reentrant; serialized across processes by the record lock.
#pragma once

#include "base/result.h"
#include "store/record_files.h"

#include <set>
#include <span>
#include <string>
#include <vector>

namespace strata {

std::string artifact_path(std::string const& store_root, std::string const& digest);

// Copies the file at path into the store (temp file, fsync, rename, directory
// fsync; nothing is copied when the digest is already there) and returns its
// digest. At most 1 GiB.
[[nodiscard]] Result<std::string> put_artifact(RecordLock const& held, std::string const& path);
// The same from bytes in memory (import). With expected non-empty, the bytes'
// digest must equal it.
[[nodiscard]] Result<std::string> put_artifact_bytes(RecordLock const& held, std::span<std::byte const> bytes,
    std::string const& expected = {});
// NotFound unless artifacts/<digest> exists.
[[nodiscard]] Status require_artifact(RecordLock const& held, std::string const& digest);
// Reads a whole artifact (export); its digest is checked again.
[[nodiscard]] Result<std::vector<std::byte>> read_artifact(RecordLock const& held, std::string const& digest);

// The digests every VM, instance template and machine image names. A record that
// cannot be parsed is an error: never guess what it referenced.
[[nodiscard]] Result<std::set<std::string>> referenced_artifacts(RecordLock const& held);
// Removes artifacts no record names (and stale temporaries); returns the digests removed.
[[nodiscard]] Result<std::vector<std::string>> gc_artifacts(RecordLock const& held);

} // namespace strata
