// Small shared vocabulary for the whole-disk copy paths (import, export, convert,
// compare): what a range of a disk holds (block status), progress callbacks, and
// a fast all-zero test. Sources that know their layout (qcow2, strata layers, raw
// files with holes) answer block status so copies skip zero ranges unread.
// Threading: pure functions and plain types.
#pragma once

#include "base/result.h"
#include "imaging/block_backend.h"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>

namespace strata {

enum class RangeKind {
    Data, // may hold non-zero bytes
    Zero, // reads as zeros for sure
};

struct RangeStatus {
    RangeKind kind;
    std::uint64_t length; // bytes from the queried offset with the same kind
};

// Reports what the disk holds at offset, for 1..max_length bytes.
using BlockStatusFn = std::function<Result<RangeStatus>(std::uint64_t offset, std::uint64_t max_length)>;
// Told how many of total bytes are done; called from the copying thread.
using ProgressFn = std::function<void(std::uint64_t done, std::uint64_t total)>;

// A source disk for a copy: the backend, and optionally its block status.
struct CopySource {
    BlockBackend* backend { nullptr };
    BlockStatusFn status; // empty: everything is Data (zero detection still applies)
};

// True when every byte of bytes is zero.
bool is_zero(std::span<std::byte const> bytes);

// Block status of a regular file from SEEK_DATA/SEEK_HOLE (holes are Zero).
[[nodiscard]] Result<RangeStatus> file_block_status(int fd, std::uint64_t file_size, std::uint64_t offset, std::uint64_t max_length);

} // namespace strata

namespace strata {

// A new file written under a temporary name in its final directory and renamed
// into place by commit() (after fsync of the file, then of the directory), so
// readers see either nothing or the complete file. Dropped without commit(), it
// removes the temporary file.
class AtomicFile {
public:
    [[nodiscard]] static Result<AtomicFile> create(std::string const& path, unsigned mode = 0644);
    AtomicFile(AtomicFile&& other) noexcept;
    AtomicFile& operator=(AtomicFile&&) = delete;
    AtomicFile(AtomicFile const&) = delete;
    ~AtomicFile();

    int fd() const { return m_fd; }
    std::string const& temp_path() const { return m_temp; }
    // With no_replace, an existing file at the final path makes commit fail (Exists).
    [[nodiscard]] Status commit(bool no_replace = false);

private:
    AtomicFile() = default;
    int m_fd { -1 };
    std::string m_path;
    std::string m_temp;
};

// fsyncs the directory holding path, so a rename or unlink in it is durable.
[[nodiscard]] Status fsync_parent_dir(std::string const& path);

} // namespace strata
