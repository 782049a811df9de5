// The imaging/io/ folder: the file I/O engines under every block backend (this
// interface, io_uring in uring_engine.h, pread/pwrite in sync_engine.h).
//
// IoEngine: the file I/O engine under every strata block backend. It owns the
// queue of file operations (read, write, fdatasync, fallocate) that the raw
// backend and the layer chain turn guest requests into, and hands each one back
// exactly once with its result. Two implementations share this interface:
// UringEngine (io_uring, the production path, uring_engine.h) and SyncEngine
// (pread/pwrite at kick(), for tests and as a fallback, sync_engine.h). Tests wrap
// an engine to count, record or fail operations.
//
// Contract for callers:
// - add_file() registers a descriptor and returns the FileId used in requests; the
//   caller keeps the descriptor open until remove_file().
// - submit() never fails: requests beyond the in-flight cap wait in a software
//   queue and go to the kernel as earlier ones complete. kick() pushes queued
//   requests to the kernel in one batch.
// - Each request completes exactly once with res = 0 on success (the whole length
//   was transferred: short transfers are resubmitted for the rest) or -errno.
//   A read that hits end of file before its length completes with -ENODATA.
// - Buffers (iov) must stay valid until the completion; the iovec array itself is
//   copied at submit(). For files opened with O_DIRECT the engine copies through
//   an aligned bounce buffer when a caller's buffer or length is not aligned, so
//   callers may pass any buffer (virtio-blk buffers follow guest addresses).
// - completion_fd() is an eventfd that becomes readable when completions may be
//   waiting; notify() makes it readable (for backends that complete requests
//   without an I/O, such as reads of unallocated blocks).
//
// Threading: one thread drives an engine (submit, kick, reap) at a time.
#pragma once

#include "base/fd.h"
#include "base/result.h"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <sys/uio.h>
#include <vector>

namespace strata {

enum class IoOp : std::uint8_t {
    Read,
    Write,
    Fdatasync, // offset/length ignored
    Fallocate, // mode in fallocate_mode, range in offset/length
};

using FileId = unsigned;

struct IoRequest {
    IoOp op { IoOp::Read };
    FileId file { 0 };
    std::uint64_t offset { 0 };
    std::uint64_t length { 0 }; // Read/Write: must equal the iovec total
    std::span<iovec const> iov;
    int fallocate_mode { 0 };
    std::uint64_t token { 0 }; // handed back with the completion
};

struct IoCompletion {
    std::uint64_t token;
    int res; // 0 or -errno
};

// What the engine must know about a registered file.
struct IoFileInfo {
    bool direct { false };         // opened with O_DIRECT
    std::uint32_t mem_align { 1 }; // buffer address alignment O_DIRECT needs
    std::uint32_t io_align { 1 };  // offset and length alignment O_DIRECT needs
};

class IoEngine {
public:
    virtual ~IoEngine() = default;

    [[nodiscard]] virtual Result<FileId> add_file(int fd, IoFileInfo info) = 0;
    virtual void remove_file(FileId file) = 0;
    virtual void submit(IoRequest const& request) = 0;
    [[nodiscard]] virtual Status kick() = 0;
    virtual int completion_fd() const = 0;
    virtual void notify() = 0;
    // Calls on_complete for each finished request; with wait, blocks until at
    // least one finished if any is outstanding. Returns how many it reaped.
    virtual std::size_t reap(std::function<void(IoCompletion const&)> const& on_complete, bool wait) = 0;
    // Requests submitted and not yet reaped (queued ones included).
    virtual unsigned outstanding() const = 0;
    // The cap on requests handed to the kernel at once.
    virtual unsigned max_in_flight() const = 0;

    // Changes to a registered file's size and holes that run at once, outside
    // the request queue (and so also while requests are outstanding): a layer's
    // sparse preallocation (ftruncate) and its release of space that nothing
    // references any more (fallocate PUNCH_HOLE). They go through the engine,
    // not the descriptor, so that an engine wrapper sees every change made to
    // the file: the crash tests' recording engine replays them with the writes.
    //
    // Why these two are not queued on io_uring, when every read and write is:
    // the kernel this project targets (Debian 12's 6.1) has no io_uring
    // ftruncate (IORING_OP_FTRUNCATE came in 6.9), and fallocate extends a file
    // with allocated blocks, not the sparse tail the preallocation wants. Both
    // are rare on the I/O path: a size change once per 64 MiB of new data, a
    // hole when a discard or zeroing drops data the top layer owns or a
    // checkpoint replaces the previous one. Everything else the virtio I/O thread
    // used to do synchronously (a partial write's read of the block below) now
    // goes through the engine.
    [[nodiscard]] virtual Status set_file_size(FileId file, std::uint64_t size);
    [[nodiscard]] virtual Status punch_hole(FileId file, std::uint64_t offset, std::uint64_t length);
    // The descriptor registered as file, or -1.
    virtual int file_descriptor(FileId file) const = 0;
};

// Which engine a backend should build.
enum class EngineKind {
    Uring,
    Sync,
};

// Builds an engine; cap is the most requests in the kernel at once.
[[nodiscard]] Result<std::unique_ptr<IoEngine>> make_engine(EngineKind kind, unsigned cap = 256);

// A file opened for block I/O: O_DIRECT when asked and the file system allows it
// (open(O_DIRECT) answers EINVAL on tmpfs; then the file is opened buffered), with
// the alignments O_DIRECT needs from statx(STATX_DIOALIGN).
struct OpenedFile {
    Fd fd;
    IoFileInfo info;
};

enum class CacheMode {
    None,      // O_DIRECT where possible (qemu's cache=none)
    Writeback, // the page cache (qemu's cache=writeback)
};

// flags are open(2) flags (O_RDONLY/O_RDWR, O_CREAT, O_EXCL...); mode is used with O_CREAT.
[[nodiscard]] Result<OpenedFile> open_for_io(std::string const& path, int flags, CacheMode cache, unsigned mode = 0644);

// Runs one request synchronously on an engine that has nothing else outstanding.
[[nodiscard]] Status run_sync(IoEngine& engine, IoRequest request);
[[nodiscard]] Status write_sync(IoEngine& engine, FileId file, std::uint64_t offset, std::span<std::byte const> buf);
[[nodiscard]] Status read_sync(IoEngine& engine, FileId file, std::uint64_t offset, std::span<std::byte> buf);
[[nodiscard]] Status fdatasync_sync(IoEngine& engine, FileId file);

// A buffer aligned for O_DIRECT (4 KiB), zero-filled; used for bounces and metadata.
class AlignedBuffer {
public:
    AlignedBuffer() = default;
    explicit AlignedBuffer(std::size_t size);
    AlignedBuffer(AlignedBuffer&& other) noexcept;
    AlignedBuffer& operator=(AlignedBuffer&& other) noexcept;
    AlignedBuffer(AlignedBuffer const&) = delete;
    AlignedBuffer& operator=(AlignedBuffer const&) = delete;
    ~AlignedBuffer();

    std::byte* data() const { return m_data; }
    std::size_t size() const { return m_size; }
    std::span<std::byte> span() const { return { m_data, m_size }; }

private:
    std::byte* m_data { nullptr };
    std::size_t m_size { 0 };
};

// The total byte count of an iovec array.
std::uint64_t iov_total(std::span<iovec const> iov);
// Appends to out the iovecs covering bytes [offset, offset + length) of iov.
void iov_slice(std::span<iovec const> iov, std::uint64_t offset, std::uint64_t length, std::vector<iovec>& out);
// Copies between an iovec array (from its byte offset) and a flat buffer.
void iov_to_buf(std::span<iovec const> iov, std::uint64_t offset, std::span<std::byte> out);
void buf_to_iov(std::span<std::byte const> in, std::span<iovec const> iov, std::uint64_t offset);
void iov_memset_zero(std::span<iovec const> iov, std::uint64_t offset, std::uint64_t length);

} // namespace strata
