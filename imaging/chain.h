// Chain: a disk — an ordered list of strata layers (bottom..top) served as one
// BlockBackend. The top layer is writable unless the chain is read-only; every
// layer below it is frozen. Opening a chain builds a merged mapping (block ->
// layer, file offset), so every read goes straight to the one layer holding the
// block: a guest read costs one file read at any depth, and blocks no layer holds
// read as zeros without I/O.
//
// Writes: a block the top layer owns is overwritten in place; any other block
// gets fresh space in the top layer, written whole (4 KiB), and the mapping is
// updated in memory when the write completes — no metadata write per request.
// Writes smaller than a block into a block the top does not own read that one
// block from below first (read-modify-write). Discard and write-zeroes record
// zero entries (no data written; lower layers never show through). Flush runs
// the top layer's flush protocol (FORMAT.md) asynchronously through the engine.
//
// Operations (freeze_top_and_push, commit, flatten_to, resize) are synchronous
// and need an idle chain: the caller stops submitting, reaps every request and
// then calls them. They work on a live chain that a virtio-blk device drives
// between such pauses; reads after each return the same data as before.
//
// Threading: one thread drives a chain (submit/kick/reap and the operations).
#pragma once

#include "imaging/block_backend.h"
#include "imaging/layer/extent_map.h"
#include "imaging/io/io_engine.h"
#include "imaging/layer/layer.h"

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace strata {

struct ChainOptions {
    CacheMode cache { CacheMode::None };
    EngineKind engine { EngineKind::Uring };
    unsigned queue_depth { 128 };
    bool read_only { false };
};

class Chain final : public BlockBackend {
public:
    // The most layers in one chain.
    static constexpr std::size_t kMaxDepth = 500;

    // Opens the layer files bottom..top; the top is opened writable unless the
    // options say read-only, and every layer below it must be frozen.
    [[nodiscard]] static Result<std::unique_ptr<Chain>> open(std::vector<std::string> const& paths, ChainOptions const& options = {});
    // Builds a chain over layers already opened on engine (tests wrap engines).
    [[nodiscard]] static Result<std::unique_ptr<Chain>> assemble(std::unique_ptr<IoEngine> engine,
        std::vector<std::unique_ptr<Layer>> layers, ChainOptions const& options = {});
    ~Chain() override;

    // BlockBackend
    std::uint64_t size() const override;
    bool read_only() const override { return m_read_only; }
    unsigned queue_depth() const override { return m_depth; }
    Status submit(BlockRequest const& request) override;
    Status kick() override;
    int completion_fd() const override { return m_engine->completion_fd(); }
    std::size_t reap(std::function<void(BlockCompletion&&)> const& on_complete, bool wait) override;

    std::size_t depth() const { return m_layers.size(); }
    Layer& layer(std::size_t index) { return *m_layers[index]; }
    Layer& top() { return *m_layers.back(); }
    IoEngine& engine() { return *m_engine; }
    ExtentMap const& merged_map() const { return m_merged; }
    bool idle() const { return m_in_use == 0; }

    // Counters for tests and benchmarks.
    struct Stats {
        std::uint64_t rmw_reads { 0 };    // blocks read from below for sub-block writes
        std::uint64_t zero_reads { 0 };   // read segments served as zeros without I/O
        std::uint64_t allocations { 0 };  // fresh block runs allocated in the top layer
    };
    Stats const& stats() const { return m_stats; }

    // --- Operations on an idle chain ---
    // Freezes the top layer (flush, state frozen; O(1), no data copied) and stacks
    // a new empty writable layer, created at new_path with new_id, on top.
    [[nodiscard]] Status freeze_top_and_push(std::string const& new_path, LayerId new_id);
    // The same with a new top made beforehand (Store::prepare_push), so that a
    // live capture does not create and sync a file while the disk's queues wait.
    // The layer at new_path must be empty, writable and of the disk's size.
    [[nodiscard]] Status freeze_top_and_adopt(std::string const& new_path);
    // Merges frozen layer[index] into layer[index - 1] (which is rewritten in
    // place, stays frozen and loses its digest) and drops layer[index] from the
    // chain. The caller deletes its file and guarantees nothing else uses the parent.
    [[nodiscard]] Status commit(std::size_t index);
    // Writes the chain's whole content into one new standalone layer file.
    // With freeze, the new layer is frozen with its digest.
    [[nodiscard]] Status flatten_to(std::string const& path, LayerId id, bool freeze);
    // Grows the disk (the top layer's virtual size).
    [[nodiscard]] Status resize(std::uint64_t new_size);

private:
    [[nodiscard]] Status check_can_push() const;
    [[nodiscard]] Status freeze_top_under(std::unique_ptr<Layer> fresh, std::string const& unlink_on_failure);

    // RmwRead: a partial write's block read from below into buf, through the
    // engine like every other read; its completion merges the guest's bytes and
    // turns the sub into that block's WriteMap.
    enum class SubKind : std::uint8_t { Read, Write, WriteMap, RmwRead, FlushStep };
    struct Parent {
        BlockRequest request;
        std::vector<iovec> iov;
        unsigned remaining { 0 };
        std::optional<Error> error;
        bool busy { false };
    };
    struct Sub {
        unsigned parent { 0 };
        SubKind kind { SubKind::Read };
        std::uint64_t first { 0 };
        std::uint64_t count { 0 };
        std::uint64_t phys { 0 };
        std::vector<iovec> iov;
        AlignedBuffer buf;
        std::uint64_t merge_at { 0 };    // RmwRead: where in buf the request's bytes go
        std::vector<std::byte> merge;    // and those bytes, copied when it was dispatched
        bool busy { false };
    };
    struct Pending {
        std::uint64_t phys;
        unsigned writers;
        bool rmw;
    };

    Chain() = default;
    void rebuild_merged();
    unsigned new_sub(unsigned parent, SubKind kind);
    void fail(unsigned parent, Error error);
    void complete(unsigned parent);
    bool conflicts(Parent const& p) const;
    void dispatch(unsigned parent);
    void dispatch_read(unsigned parent);
    void dispatch_write(unsigned parent, std::uint64_t offset, std::uint64_t length, std::span<iovec const> iov);
    void dispatch_zero(unsigned parent);
    void start_flush();
    void issue_flush_step();
    void on_io(IoCompletion const& c);
    void retry_deferred();
    [[nodiscard]] Status require_idle(char const* what) const;

    std::unique_ptr<IoEngine> m_engine; // declared first: layers unregister from it
    std::vector<std::unique_ptr<Layer>> m_layers;
    ExtentMap m_merged;
    ChainOptions m_options;
    bool m_read_only { false };
    unsigned m_depth { 0 };
    unsigned m_in_use { 0 };
    std::vector<Parent> m_parents;
    std::vector<unsigned> m_free_parents;
    std::vector<Sub> m_subs;
    std::vector<unsigned> m_free_subs;
    std::unordered_map<std::uint64_t, Pending> m_pending;
    std::deque<unsigned> m_deferred;
    std::vector<BlockCompletion> m_ready;
    // The flush in progress: its plan, the requests it answers and its next step.
    std::unique_ptr<Layer::FlushPlan> m_flush_plan;
    std::vector<unsigned> m_flush_parents;
    std::deque<unsigned> m_flush_waiting;
    std::size_t m_flush_step { 0 };
    Stats m_stats;
};

} // namespace strata
