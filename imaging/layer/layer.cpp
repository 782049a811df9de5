#include "imaging/layer/layer.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <filesystem>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

namespace strata {

using namespace layer_format;

// Past this many queued mapping changes the next flush writes a checkpoint
// instead of a journal record, so memory for pending entries stays bounded.
static constexpr std::size_t kMaxDirtyEntries = 1 << 18;
// The highest file offset data may be allocated at.
static constexpr std::uint64_t kMaxDataEnd = 1ull << 58;

static std::uint64_t round_up(std::uint64_t v, std::uint64_t a) { return (v + a - 1) / a * a; }

Result<std::unique_ptr<Layer>> Layer::create(std::string const& path, std::uint64_t size, LayerId id, IoEngine& engine,
    LayerOptions const& options)
{
    if (size % 512 != 0 || size > layer_format::kMaxVirtualSize)
        return make_error(ErrorKind::Usage, "layer size must be a multiple of 512 bytes, at most 64 PiB");
    if (options.journal_length % kBlockSize != 0 || options.journal_length < kBlockSize || options.journal_length > kMaxJournalLength)
        return make_error(ErrorKind::Usage, "journal length must be a multiple of 4096 up to 1 GiB");
    {
        Fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
        if (!fd.valid())
            return errno_error("create layer '" + path + "'");
        LayerHeader h;
        h.generation = 1;
        h.virtual_size = size;
        h.id = id;
        h.journal_length = options.journal_length;
        h.data_start = round_up(kJournalOffset + options.journal_length, 65536);
        h.created = static_cast<std::uint64_t>(::time(nullptr));
        AlignedBuffer slot(kSlotSize);
        encode_header(h, std::span<std::byte, kSlotSize>(slot.data(), kSlotSize));
        if (::ftruncate(fd.get(), static_cast<off_t>(h.data_start)) != 0)
            return errno_error("size layer '" + path + "'");
        STRATA_TRY(pwrite_all(fd.get(), slot.span(), 0));
        if (::fsync(fd.get()) != 0)
            return errno_error("fsync layer '" + path + "'");
        // Make the new name durable too, so a flushed layer cannot vanish.
        std::string dir = std::filesystem::path(path).parent_path().string();
        Fd dfd(::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (dfd.valid())
            (void)::fsync(dfd.get());
    }
    return open(path, LayerOpen::Writable, engine, options);
}

Status Layer::lock(bool exclusive)
{
    struct flock fl {};
    fl.l_type = exclusive ? F_WRLCK : F_RDLCK;
    fl.l_whence = SEEK_SET;
    if (::fcntl(m_file.fd.get(), F_OFD_SETLK, &fl) == 0)
        return ok();
    if (errno == EAGAIN || errno == EACCES)
        return make_error(ErrorKind::Busy, "layer '" + m_path + "' is in use: another process (or another open in this one) "
                + (exclusive ? "has it open" : "has it open for writing")
                + " — a running VM or a strata command holds its lock (OFD lock on the file)");
    return errno_error("lock layer '" + m_path + "'");
}

void Layer::unlock()
{
    if (!m_file.fd.valid())
        return;
    struct flock fl {};
    fl.l_type = F_UNLCK;
    fl.l_whence = SEEK_SET;
    (void)::fcntl(m_file.fd.get(), F_OFD_SETLK, &fl);
}

Result<std::unique_ptr<Layer>> Layer::open(std::string const& path, LayerOpen mode, IoEngine& engine, LayerOptions const& options)
{
    std::unique_ptr<Layer> layer(new Layer(engine));
    layer->m_path = path;
    bool want_write = mode != LayerOpen::ReadOnly;
    STRATA_TRY(file, open_for_io(path, want_write ? O_RDWR : O_RDONLY, options.cache));
    layer->m_file = std::move(file);
    std::uint64_t size = layer->file_size();
    int fd = layer->m_file.fd.get();
    // Reads go through an aligned bounce so they also work on O_DIRECT files.
    FileReader reader = [fd, size](std::uint64_t offset, std::span<std::byte> buf) -> Status {
        std::fill(buf.begin(), buf.end(), std::byte { 0 });
        if (offset >= size || buf.empty())
            return ok();
        std::uint64_t start = offset & ~(kBlockSize - 1);
        std::uint64_t end = std::min(round_up(offset + buf.size(), kBlockSize), round_up(size, kBlockSize));
        AlignedBuffer tmp(end - start);
        std::uint64_t got = 0;
        while (got < end - start) {
            ssize_t n = ::pread(fd, tmp.data() + got, end - start - got, static_cast<off_t>(start + got));
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                return errno_error("read layer metadata");
            if (n == 0)
                break;
            got += static_cast<std::uint64_t>(n);
        }
        std::uint64_t avail = std::min<std::uint64_t>(got > offset - start ? got - (offset - start) : 0, buf.size());
        std::copy_n(tmp.data() + (offset - start), avail, buf.data());
        return ok();
    };
    auto loaded = load_layer(reader, size, options.tolerant);
    if (!loaded)
        return loaded.error().context("open layer '" + path + "'");
    LoadedLayer& l = loaded.value();
    auto problems = validate_mapping(l, size, options.tolerant);
    if (!problems.empty() && !options.tolerant)
        return make_error(ErrorKind::BadInput, "open layer '" + path + "': " + problems.front());
    layer->m_corruptions = std::move(l.corruptions);
    layer->m_corruptions.insert(layer->m_corruptions.end(), problems.begin(), problems.end());
    if (l.checkpoint_unreadable)
        layer->m_corruptions.push_back("the checkpointed mapping is lost; repair cannot recover it");
    layer->m_header = l.header;
    layer->m_header_slot = l.header_slot;
    layer->m_map = std::move(l.map);
    layer->m_journal_head = l.journal_head;
    layer->m_next_seq = l.next_seq;
    // Allocate past everything referenced even if a recorded data end is stale
    // or hostile, so new data or a checkpoint never lands on mapped blocks.
    std::uint64_t referenced_end = 0;
    layer->m_map.for_each([&](Extent const& e) {
        if (mapval::kind(e.value) == MapKind::Data)
            referenced_end = std::max(referenced_end, mapval::offset(e.value) + (e.count << kBlockShift));
    });
    layer->m_alloc_end = round_up(std::max({ l.data_end, l.header.data_start, referenced_end }), kBlockSize);
    layer->m_committed_end = layer->m_alloc_end;
    layer->m_prealloc_end = std::max(layer->m_alloc_end, size);
    if (mode == LayerOpen::Writable && layer->frozen())
        return make_error(ErrorKind::Permission, "layer '" + path + "' is frozen (read-only forever)");
    if (want_write && (l.header.ro_compat & ~kKnownRoCompat) != 0)
        return make_error(ErrorKind::Unsupported, "layer '" + path + "' uses features that this version can only read");
    if (want_write)
        STRATA_TRY(layer->lock(true));
    if (!want_write && layer->frozen())
        STRATA_TRY(layer->lock(false));
    layer->m_writable = want_write;
    STRATA_TRY(id, engine.add_file(layer->m_file.fd.get(), layer->m_file.info));
    layer->m_file_id = id;
    layer->m_registered = true;
    return layer;
}

Status Layer::downgrade_to_reader()
{
    if (!frozen())
        return make_error(ErrorKind::Usage, "only a frozen layer is downgraded to a reader");
    STRATA_TRY(lock(false));
    m_writable = false;
    return ok();
}

Layer::~Layer()
{
    if (m_registered)
        m_engine.remove_file(m_file_id);
    // Before the descriptor closes: other references to the open file
    // description (the engine's registered-file table) may outlive this object
    // and even the process, and would keep the lock with them (layer.h, Locks).
    unlock();
}

std::optional<Sha256> Layer::digest() const
{
    if (!m_header.has_digest())
        return std::nullopt;
    if (m_header.has_content_digest())
        return m_header.digest;
    // Recorded by an older strata over the file's layout: the same value
    // where that layout has no data extents that follow each other in block
    // order, and unusable (to be computed again) where it has.
    auto extents = extents_of(m_map);
    if (digest_runs(extents).size() != extents.size())
        return std::nullopt;
    return m_header.digest;
}

std::uint64_t Layer::file_size() const
{
    struct stat st {};
    if (::fstat(m_file.fd.get(), &st) != 0)
        return 0;
    return static_cast<std::uint64_t>(st.st_size);
}

void Layer::mark_sync_failed(int err)
{
    if (!m_failed.empty())
        return;
    m_failed = "an fdatasync of layer '" + m_path + "' failed (" + std::strerror(err)
        + "): writes since its last good flush may not be on disk, so it takes no more writes or flushes until it is reopened";
    std::fprintf(stderr, "strata: %s\n", m_failed.c_str());
}

Status Layer::usable() const
{
    if (m_failed.empty())
        return ok();
    return make_error(ErrorKind::Io, m_failed);
}

Result<std::uint64_t> Layer::allocate(std::uint64_t count)
{
    if (!m_writable)
        return make_error(ErrorKind::Permission, "layer '" + m_path + "' is read-only");
    STRATA_TRY(usable());
    if (count > (kMaxDataEnd - m_alloc_end) >> kBlockShift)
        return make_error(ErrorKind::NoSpace, "layer '" + m_path + "' has no room for more data");
    std::uint64_t offset = m_alloc_end;
    m_alloc_end += count << kBlockShift;
    if (m_alloc_end > m_prealloc_end) {
        // Extend the file (sparsely) well ahead of allocation: O_DIRECT writes
        // inside the file size fill holes concurrently, while writes that extend
        // the file are serialized by the file system (measured: 0.72 s against
        // 1.2-2.0 s for 16384 scattered 4 KiB first writes at QD 32 on ext4).
        std::uint64_t const chunk = 64ull << 20;
        std::uint64_t new_end = round_up(m_alloc_end + chunk, chunk);
        if (m_engine.set_file_size(m_file_id, std::max(new_end, file_size())))
            m_prealloc_end = new_end;
    }
    return offset;
}

void Layer::record(std::uint64_t first, std::uint64_t count, std::uint64_t value)
{
    value = mapval::with_layer(value, 0);
    if (mapval::kind(value) != MapKind::Data && m_writable) {
        // Data this layer owned in the range is no longer referenced: give the
        // space back to the file system (it is never reused in this session).
        std::uint64_t b = first;
        while (b < first + count) {
            auto l = m_map.lookup(b);
            std::uint64_t n = std::min(l.run, first + count - b);
            if (mapval::kind(l.value) == MapKind::Data)
                (void)m_engine.punch_hole(m_file_id, mapval::offset(l.value), n << kBlockShift);
            b += n;
        }
    }
    m_map.assign(first, count, value);
    if (m_force_checkpoint)
        return; // the next flush writes the whole map anyway
    if (m_dirty.size() < kMaxDirtyEntries) {
        m_dirty.push_back(Extent { first, count, value });
    } else {
        m_dirty.clear();
        m_force_checkpoint = true;
    }
}

Result<std::unique_ptr<Layer::FlushPlan>> Layer::begin_flush()
{
    STRATA_TRY(usable());
    auto plan = std::make_unique<FlushPlan>();
    plan->iovs.reserve(2);
    plan->entries = std::move(m_dirty);
    m_dirty.clear();
    plan->data_end = m_committed_end;
    bool force_checkpoint = std::exchange(m_force_checkpoint, false);
    plan->forced = force_checkpoint;
    for (auto const& e : plan->entries) {
        if (mapval::kind(e.value) == MapKind::Data)
            plan->data_end = std::max(plan->data_end, mapval::offset(e.value) + (e.count << kBlockShift));
    }
    if (plan->entries.empty() && !force_checkpoint) {
        plan->steps.push_back(IoRequest { IoOp::Fdatasync, m_file_id, 0, 0, {}, 0, 0 });
        return plan;
    }
    std::uint64_t len = record_length(plan->entries.size());
    if (!force_checkpoint && m_journal_head + len <= m_header.journal_length) {
        plan->record_length = len;
        plan->buffers.emplace_back(len);
        encode_record(m_next_seq, plan->data_end, plan->entries, plan->buffers.back().span());
        plan->iovs.push_back(iovec { plan->buffers.back().data(), len });
        plan->steps.push_back(IoRequest { IoOp::Fdatasync, m_file_id, 0, 0, {}, 0, 0 });
        plan->steps.push_back(IoRequest { IoOp::Write, m_file_id, m_header.journal_offset + m_journal_head, len, { &plan->iovs[0], 1 }, 0, 0 });
        plan->steps.push_back(IoRequest { IoOp::Fdatasync, m_file_id, 0, 0, {}, 0, 0 });
        return plan;
    }
    // The journal is full (or too many changes queued): checkpoint the whole map.
    // Writing the checkpoint and syncing also makes all earlier data durable, and
    // the header that makes it current is written only after that sync.
    std::vector<Extent> all;
    all.reserve(m_map.extent_count());
    m_map.for_each([&](Extent const& e) {
        all.push_back(e);
        if (mapval::kind(e.value) == MapKind::Data)
            plan->data_end = std::max(plan->data_end, mapval::offset(e.value) + (e.count << kBlockShift));
    });
    std::uint64_t clen = record_length(all.size());
    STRATA_TRY(at, allocate(clen >> kBlockShift));
    plan->checkpoint = true;
    plan->data_end = std::max(plan->data_end, at + clen);
    plan->buffers.emplace_back(clen);
    encode_checkpoint(m_next_seq, plan->data_end, all, plan->buffers.back().span());
    plan->new_header = m_header;
    plan->new_header.generation += 1;
    plan->new_header.checkpoint_offset = at;
    plan->new_header.checkpoint_length = clen;
    plan->new_header.journal_seq = m_next_seq;
    if (std::exchange(m_freeze_with_checkpoint, false)) {
        plan->new_header.state = LayerState::Frozen;
        plan->new_header.compat &= ~(kCompatDigest | kCompatContentDigest);
    }
    plan->buffers.emplace_back(kSlotSize);
    encode_header(plan->new_header, std::span<std::byte, kSlotSize>(plan->buffers.back().data(), kSlotSize));
    plan->iovs.push_back(iovec { plan->buffers[0].data(), clen });
    plan->iovs.push_back(iovec { plan->buffers[1].data(), kSlotSize });
    plan->steps.push_back(IoRequest { IoOp::Write, m_file_id, at, clen, { &plan->iovs[0], 1 }, 0, 0 });
    plan->steps.push_back(IoRequest { IoOp::Fdatasync, m_file_id, 0, 0, {}, 0, 0 });
    plan->steps.push_back(IoRequest { IoOp::Write, m_file_id, (m_header_slot ^ 1u) * kSlotSize, kSlotSize, { &plan->iovs[1], 1 }, 0, 0 });
    plan->steps.push_back(IoRequest { IoOp::Fdatasync, m_file_id, 0, 0, {}, 0, 0 });
    return plan;
}

void Layer::end_flush(FlushPlan& plan, bool success)
{
    if (!success) {
        // Keep the changes for the next flush, ahead of anything queued since.
        m_force_checkpoint = m_force_checkpoint || plan.forced;
        m_dirty.insert(m_dirty.begin(), plan.entries.begin(), plan.entries.end());
        return;
    }
    if (plan.checkpoint) {
        std::uint64_t old_off = m_header.checkpoint_offset;
        std::uint64_t old_len = m_header.checkpoint_length;
        m_header = plan.new_header;
        m_header_slot ^= 1;
        m_journal_head = 0;
        if (old_len != 0)
            (void)m_engine.punch_hole(m_file_id, old_off, old_len);
    } else if (plan.record_length != 0) {
        m_journal_head += plan.record_length;
        m_next_seq += 1;
    }
    m_committed_end = std::max(m_committed_end, plan.data_end);
}

Status Layer::run_plan(FlushPlan& plan)
{
    for (auto const& step : plan.steps) {
        Status s = run_sync(m_engine, step);
        if (!s) {
            if (step.op == IoOp::Fdatasync)
                mark_sync_failed(s.error().err ? s.error().err : EIO);
            end_flush(plan, false);
            return s.error().context("flush layer '" + m_path + "'");
        }
    }
    end_flush(plan, true);
    return ok();
}

Status Layer::flush()
{
    if (!m_writable)
        return ok();
    STRATA_TRY(plan, begin_flush());
    return run_plan(*plan);
}

Status Layer::write_header(LayerHeader header)
{
    header.generation = m_header.generation + 1;
    AlignedBuffer slot(kSlotSize);
    encode_header(header, std::span<std::byte, kSlotSize>(slot.data(), kSlotSize));
    STRATA_TRY(usable());
    STRATA_TRY(strata::write_sync(m_engine, m_file_id, (m_header_slot ^ 1u) * kSlotSize, slot.span()));
    if (auto synced = fdatasync_sync(m_engine, m_file_id); !synced) {
        mark_sync_failed(synced.error().err ? synced.error().err : EIO);
        return synced;
    }
    m_header = header;
    m_header_slot ^= 1;
    return ok();
}

Status Layer::checkpoint_now()
{
    m_force_checkpoint = true;
    return flush();
}

Status Layer::freeze(bool with_digest)
{
    if (!m_writable)
        return make_error(ErrorKind::Permission, "layer '" + m_path + "' is not open for writing");
    if (!with_digest) {
        // The checkpoint's own header carries the frozen state: one header write
        // and one sync fewer, and a live capture holds the disk queues for this.
        // A crash before that header leaves the layer writable, as it was.
        m_force_checkpoint = true;
        m_freeze_with_checkpoint = true;
        Status s = flush();
        m_freeze_with_checkpoint = false;
        return s;
    }
    // The digest reads the checkpointed map and data, so it comes after the
    // checkpoint and needs a header of its own.
    STRATA_TRY(checkpoint_now());
    LayerHeader h = m_header;
    h.state = LayerState::Frozen;
    STRATA_TRY(d, compute_digest());
    h.digest = d;
    h.compat |= kCompatDigest | kCompatContentDigest;
    return write_header(h);
}

Status Layer::record_digest(Sha256 const& digest)
{
    if (!m_writable || !frozen())
        return make_error(ErrorKind::Usage, "a digest is recorded only in a frozen layer opened for rewriting");
    LayerHeader h = m_header;
    h.digest = digest;
    h.compat |= kCompatDigest | kCompatContentDigest;
    return write_header(h);
}

Status Layer::resize(std::uint64_t new_size)
{
    if (!m_writable)
        return make_error(ErrorKind::Permission, "layer '" + m_path + "' is read-only");
    if (new_size % 512 != 0 || new_size > layer_format::kMaxVirtualSize)
        return make_error(ErrorKind::Usage, "size must be a multiple of 512 bytes, at most 64 PiB");
    if (new_size < m_header.virtual_size)
        return make_error(ErrorKind::Unsupported, "shrinking a layer is not supported");
    if (new_size == m_header.virtual_size)
        return ok();
    LayerHeader h = m_header;
    h.virtual_size = new_size;
    return write_header(h);
}

Status Layer::write_blocks(std::uint64_t first_block, std::span<std::byte const> data)
{
    if (data.size() % kBlockSize != 0)
        return make_error(ErrorKind::Usage, "write_blocks takes whole 4 KiB blocks");
    std::uint64_t blocks = data.size() >> kBlockShift;
    if (first_block > (m_header.virtual_size >> kBlockShift) || blocks > ((m_header.virtual_size + kBlockSize - 1) >> kBlockShift) - first_block)
        return make_error(ErrorKind::Usage, "write_blocks beyond the layer size");
    std::uint64_t done = 0;
    while (done < blocks) {
        std::uint64_t b = first_block + done;
        auto l = m_map.lookup(b);
        std::uint64_t n = std::min(l.run, blocks - done);
        auto chunk = data.subspan(done << kBlockShift, n << kBlockShift);
        if (mapval::kind(l.value) == MapKind::Data) {
            STRATA_TRY(strata::write_sync(m_engine, m_file_id, mapval::offset(l.value), chunk));
        } else {
            STRATA_TRY(at, allocate(n));
            STRATA_TRY(strata::write_sync(m_engine, m_file_id, at, chunk));
            record(b, n, mapval::data(at));
        }
        done += n;
    }
    return ok();
}

} // namespace strata
