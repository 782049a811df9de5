// Whole-file reads for inputs that are small enough to hold in memory (firmware,
// kernels, initrds, manifests), with a size cap so a huge or endless file (a
// device, a FIFO) cannot exhaust memory; and the whole-file write of a new file
// that must be on disk before its caller goes on (saved machine state).
// Threading: pure functions.
#pragma once

#include "base/fd.h"
#include "base/result.h"

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace strata {

// An open regular file and its size when opened.
struct RegularFile {
    Fd fd;
    std::uint64_t size { 0 };
};

// Opens `path` for reading, refusing what is not a regular file of at most
// max_size bytes (the same errors as read_file), for a caller that reads it in
// pieces or straight to where its bytes go.
[[nodiscard]] Result<RegularFile> open_regular_file(std::string const& path, std::string const& what, std::uint64_t max_size);

// Reads `path` whole. `what` names the file in errors ("firmware 'x.elf': ...").
// Fails with NotFound, Permission, BadInput (a directory, or larger than max_size).
[[nodiscard]] Result<std::vector<std::byte>> read_file(std::string const& path, std::string const& what, std::uint64_t max_size);

// Creates `path` (failing with Exists when it is there: nothing is overwritten),
// writes `bytes` and fsyncs it. On failure the caller removes what was made.
[[nodiscard]] Status write_new_file(std::string const& path, std::span<std::byte const> bytes);

} // namespace strata
