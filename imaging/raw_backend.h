// RawBackend: a BlockBackend (block_backend.h) over a raw image file, through an
// IoEngine (io_uring by default). Read/Write map to one engine request each;
// Flush is fdatasync (IORING_OP_FSYNC with DATASYNC); Discard punches a hole
// (FALLOC_FL_PUNCH_HOLE|KEEP_SIZE) and WriteZeroes uses FALLOC_FL_ZERO_RANGE,
// falling back to a punched hole where the file system lacks it. Both read back
// as zeros. size() is the file size rounded down to 512 bytes.
//
// Callers may pass buffers at any address: on an O_DIRECT file the engine
// bounces unaligned ones. Offsets and lengths are multiples of 512.
//
// Threading: as BlockBackend: one thread drives a backend at a time.
#pragma once

#include "imaging/block_backend.h"
#include "imaging/io/io_engine.h"

#include <memory>
#include <string>
#include <vector>

namespace strata {

struct RawOptions {
    bool writable { true };
    CacheMode cache { CacheMode::None };
    EngineKind engine { EngineKind::Uring };
    unsigned queue_depth { 128 };
};

class RawBackend final : public BlockBackend {
public:
    [[nodiscard]] static Result<std::unique_ptr<RawBackend>> open(std::string const& path, RawOptions const& options = {});
    // Serves an already opened file through a caller's engine (tests wrap engines).
    [[nodiscard]] static Result<std::unique_ptr<RawBackend>> open_with(OpenedFile file, std::unique_ptr<IoEngine> engine,
        RawOptions const& options);

    std::uint64_t size() const override { return m_size; }
    bool read_only() const override { return !m_writable; }
    unsigned queue_depth() const override { return m_depth; }
    Status submit(BlockRequest const& request) override;
    Status kick() override;
    int completion_fd() const override { return m_engine->completion_fd(); }
    std::size_t reap(std::function<void(BlockCompletion&&)> const& on_complete, bool wait) override;

    bool direct() const { return m_file.info.direct; }

private:
    struct Slot {
        std::uint64_t tag { 0 };
        BlockOp op { BlockOp::Read };
        std::uint64_t offset { 0 };
        std::uint64_t length { 0 };
        bool busy { false };
    };
    RawBackend() = default;

    OpenedFile m_file;
    std::unique_ptr<IoEngine> m_engine;
    FileId m_file_id { 0 };
    std::uint64_t m_size { 0 };
    bool m_writable { false };
    unsigned m_depth { 0 };
    std::vector<Slot> m_slots;
    std::vector<unsigned> m_free;
};

// Checks a request against a backend's size and the 512-byte rule; shared by the
// backends so they refuse the same things with the same words.
[[nodiscard]] Status check_request(BlockRequest const& request, std::uint64_t size, bool read_only);

} // namespace strata
