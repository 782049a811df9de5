// The imaging/layer/ folder: the strata copy-on-write layer. FORMAT.md is the
// format; layer_format.{h,cpp} its encoding (header codec, journal encoders),
// layer_journal.cpp the replay of a journal into a mapping, extent_map.h the
// mapping, crc32c.h the checksum, layer.h the open file, layer_check.cpp its check.
//
// Layer: one strata copy-on-write layer file (format: imaging/layer/FORMAT.md) — its
// header, its mapping from guest blocks to data in the same file, allocation of
// new data blocks, the flush protocol (journal record per flush, checkpoints),
// freezing with a SHA-256 content digest, growing, and check/repair.
//
// A Layer does not serve guest requests itself: Chain (chain.h) does, and calls
// allocate(), record() and begin_flush()/end_flush() from its I/O path. The
// synchronous operations here (flush, freeze, resize, write_blocks, check) run
// their I/O through the layer's engine and require that nothing else is
// outstanding on that engine.
//
// Locks: a layer opened for writing holds an OFD write lock on its file (fcntl
// F_OFD_SETLK), so a second writer — in this or another process — gets a Busy
// error naming the file. A frozen layer opened read-only holds a read lock, so it
// cannot be rewritten (commit, repair) while any chain reads it. The destructor
// releases the lock explicitly (F_UNLCK) rather than leaving it to close(): the
// io_uring engine's registered-file table holds its own reference to the open
// file description, which the kernel drops asynchronously (after the process
// has exited, on some kernels), and the lock lives as long as that reference.
//
// Threading: one thread at a time, the thread that drives the layer's engine.
#pragma once

#include "base/sha256.h"
#include "imaging/layer/extent_map.h"
#include "imaging/io/io_engine.h"
#include "imaging/layer/layer_format.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace strata {

enum class LayerOpen {
    ReadOnly,
    Writable, // a writable layer only; frozen layers are refused
    Rewrite,  // also a frozen layer, for commit and repair (the caller guarantees nothing else uses it)
};

struct LayerOptions {
    CacheMode cache { CacheMode::None };
    std::uint64_t journal_length { layer_format::kDefaultJournalLength };
    // Open even if mapping entries are corrupt (they are skipped and listed in
    // corruptions()); used by check. Normal opens refuse corrupt layers.
    bool tolerant { false };
};

// What check found and did, in qemu-img check's terms.
struct CheckReport {
    std::uint64_t corruptions { 0 };
    std::uint64_t leaks { 0 };
    std::uint64_t corruptions_fixed { 0 };
    std::uint64_t leaks_fixed { 0 };
    std::uint64_t allocated_blocks { 0 }; // data blocks the mapping references
    std::uint64_t total_blocks { 0 };     // virtual size in blocks
    std::uint64_t image_end_offset { 0 };
    std::vector<std::string> messages;
};

enum class RepairMode { None, Leaks, All };

// The pieces of the content digest (FORMAT.md, "Freezing and digest") for code
// that hashes a layer's data as it produces it: a little-endian 64-bit value,
// and a run's first block, count and kind. compute_digest is the reference.
void hash_u64(Sha256Hasher& hash, std::uint64_t v);
void hash_digest_run(Sha256Hasher& hash, DigestRun const& run);

class Layer {
public:
    // Creates a new writable layer file (which must not exist) and opens it.
    [[nodiscard]] static Result<std::unique_ptr<Layer>> create(std::string const& path, std::uint64_t size, LayerId id,
        IoEngine& engine, LayerOptions const& options = {});
    [[nodiscard]] static Result<std::unique_ptr<Layer>> open(std::string const& path, LayerOpen mode, IoEngine& engine,
        LayerOptions const& options = {});
    ~Layer();
    Layer(Layer const&) = delete;
    Layer& operator=(Layer const&) = delete;

    LayerId id() const { return m_header.id; }
    std::string const& path() const { return m_path; }
    std::uint64_t size() const { return m_header.virtual_size; }
    LayerState state() const { return m_header.state; }
    bool frozen() const { return m_header.state == LayerState::Frozen; }
    bool writable() const { return m_writable; }
    std::optional<Sha256> digest() const;
    LayerHeader const& header() const { return m_header; }
    ExtentMap const& map() const { return m_map; }
    FileId file() const { return m_file_id; }
    int fd() const { return m_file.fd.get(); }
    IoEngine& engine() const { return m_engine; }
    std::uint64_t data_end() const { return m_alloc_end; }
    std::uint64_t file_size() const;
    bool has_uncommitted() const { return !m_dirty.empty() || m_force_checkpoint; }
    std::vector<std::string> const& corruptions() const { return m_corruptions; }

    // A failed fdatasync makes the layer failed for as long as it is open. Linux
    // reports a writeback error to one fdatasync and may already have dropped the
    // pages it could not write, so a retried sync "succeeds" with data lost (the
    // fsyncgate pattern). A failed layer refuses every later write, allocation
    // and flush with that error instead; reopening it reads what its journal
    // says reached the disk.
    void mark_sync_failed(int err);
    // The failure as an Io error, or ok while the layer has none.
    [[nodiscard]] Status usable() const;

    // --- Synchronous operations (nothing else outstanding on the engine) ---
    [[nodiscard]] Status flush();
    // Flushes, checkpoints and marks the layer frozen (read-only forever). With
    // digest, also computes and records the content digest (reads all data).
    [[nodiscard]] Status freeze(bool with_digest);
    [[nodiscard]] Result<Sha256> compute_digest() const;
    // Records a digest in a frozen layer's header.
    [[nodiscard]] Status record_digest(Sha256 const& digest);
    // Grows the virtual size (a multiple of 512); shrinking is refused.
    [[nodiscard]] Status resize(std::uint64_t new_size);
    // Writes whole blocks starting at first_block (data.size() a multiple of 4096),
    // in place where the layer owns them, else into fresh blocks.
    [[nodiscard]] Status write_blocks(std::uint64_t first_block, std::span<std::byte const> data);
    // Marks blocks as zero (hiding lower layers) or unmapped (falling through).
    void set_zero(std::uint64_t first_block, std::uint64_t count) { record(first_block, count, mapval::kZero); }
    [[nodiscard]] Result<CheckReport> check(RepairMode repair);
    // After freeze(): trade the write lock for a read lock (atomically, on the
    // same open file) and stop accepting writes, so other processes can open
    // the now frozen layer read-only while this one keeps reading it.
    [[nodiscard]] Status downgrade_to_reader();

    // --- Used by Chain's asynchronous path ---
    // Allocates count contiguous fresh blocks; returns the file offset.
    [[nodiscard]] Result<std::uint64_t> allocate(std::uint64_t count);
    // Sets the mapping of [first, first + count) in memory and queues it for the
    // next flush. value as in extent_map.h (layer bits ignored).
    void record(std::uint64_t first, std::uint64_t count, std::uint64_t value);

    // A flush as a sequence of engine requests run one after another (each waits
    // for the previous). The plan owns its buffers; pass it back to end_flush.
    struct FlushPlan {
        std::vector<Extent> entries;
        std::vector<IoRequest> steps;
        std::vector<AlignedBuffer> buffers;
        std::vector<iovec> iovs;
        bool checkpoint { false };
        bool forced { false };
        LayerHeader new_header;
        std::uint64_t record_length { 0 };
        std::uint64_t data_end { 0 };
    };
    [[nodiscard]] Result<std::unique_ptr<FlushPlan>> begin_flush();
    // Commits the plan's effects in memory (ok) or puts its entries back (failed).
    void end_flush(FlushPlan& plan, bool ok);
    // Runs a plan synchronously on the engine.
    [[nodiscard]] Status run_plan(FlushPlan& plan);

private:
    Layer(IoEngine& engine)
        : m_engine(engine)
    {
    }
    [[nodiscard]] Status write_header(LayerHeader header);
    [[nodiscard]] Status checkpoint_now();
    [[nodiscard]] Status lock(bool exclusive);
    void unlock();

    IoEngine& m_engine;
    std::string m_path;
    OpenedFile m_file;
    FileId m_file_id { 0 };
    bool m_registered { false };
    bool m_writable { false };
    std::string m_failed; // why the layer failed (mark_sync_failed); empty while it has not
    LayerHeader m_header;
    unsigned m_header_slot { 0 };
    ExtentMap m_map;
    std::vector<Extent> m_dirty;          // mapping changes not yet in the journal
    std::uint64_t m_alloc_end { 0 };      // next free byte of the data area
    std::uint64_t m_prealloc_end { 0 };   // the file is extended up to here ahead of allocation
    std::uint64_t m_committed_end { 0 };  // data end the durable metadata vouches for
    std::uint64_t m_journal_head { 0 };   // bytes of the journal in use
    std::uint64_t m_next_seq { 1 };
    bool m_force_checkpoint { false }; // too many queued changes, or freeze: checkpoint next
    bool m_freeze_with_checkpoint { false }; // the forced checkpoint's header marks the layer frozen
    std::vector<std::string> m_corruptions;
};

} // namespace strata
