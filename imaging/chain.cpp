// Chain: opening and assembling, the asynchronous request path (submission,
// dispatch, reads through the merged map) and reaping completions. Writes and
// their read-modify-write are in chain_write.cpp, the flush in chain_flush.cpp,
// the synchronous operations on an idle chain in chain_ops.cpp.
#include "imaging/chain.h"

#include "imaging/raw_backend.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace strata {

Result<std::unique_ptr<Chain>> Chain::open(std::vector<std::string> const& paths, ChainOptions const& options)
{
    if (paths.empty() || paths.size() > kMaxDepth)
        return make_error(ErrorKind::Usage, "a chain has 1 to 500 layers");
    unsigned cap = std::clamp(options.queue_depth * 2, 64u, 1024u);
    STRATA_TRY(engine, make_engine(options.engine, cap));
    std::vector<std::unique_ptr<Layer>> layers;
    for (std::size_t i = 0; i < paths.size(); ++i) {
        bool is_top = i + 1 == paths.size();
        LayerOpen mode = is_top && !options.read_only ? LayerOpen::Writable : LayerOpen::ReadOnly;
        STRATA_TRY(layer, Layer::open(paths[i], mode, *engine, LayerOptions { .cache = options.cache }));
        layers.push_back(std::move(layer));
    }
    return assemble(std::move(engine), std::move(layers), options);
}

Result<std::unique_ptr<Chain>> Chain::assemble(std::unique_ptr<IoEngine> engine, std::vector<std::unique_ptr<Layer>> layers,
    ChainOptions const& options)
{
    // Layers unregister from the engine when destroyed, so on failure drop them
    // before the engine parameter goes away.
    auto refuse = [&](ErrorKind kind, std::string message) {
        layers.clear();
        return make_error(kind, std::move(message));
    };
    if (layers.empty() || layers.size() > kMaxDepth)
        return refuse(ErrorKind::Usage, "a chain has 1 to 500 layers");
    for (std::size_t i = 0; i < layers.size(); ++i) {
        if (&layers[i]->engine() != engine.get())
            return refuse(ErrorKind::Usage, "every layer of a chain must be opened on the chain's engine");
        if (i + 1 < layers.size() && !layers[i]->frozen())
            return refuse(ErrorKind::BadInput, "layer '" + layers[i]->path() + "' lies below the top of the chain but is not frozen");
    }
    std::unique_ptr<Chain> chain(new Chain());
    chain->m_engine = std::move(engine);
    chain->m_layers = std::move(layers);
    chain->m_options = options;
    chain->m_read_only = options.read_only || !chain->m_layers.back()->writable();
    chain->m_depth = std::max(1u, options.queue_depth);
    chain->m_parents.resize(chain->m_depth);
    for (unsigned i = chain->m_depth; i > 0; --i)
        chain->m_free_parents.push_back(i - 1);
    chain->rebuild_merged();
    return chain;
}

Chain::~Chain()
{
    // Requests still in the kernel point at our buffers: wait for them.
    while (m_engine && m_engine->outstanding() > 0)
        m_engine->reap([](IoCompletion const&) {}, true);
}

std::uint64_t Chain::size() const { return m_layers.back()->size(); }

void Chain::rebuild_merged()
{
    // Bottom to top: data entries of a higher layer replace what is below; zero
    // entries erase it (in the merged map, absence means zeros).
    m_merged.clear();
    for (std::size_t i = 0; i < m_layers.size(); ++i) {
        m_layers[i]->map().for_each([&](Extent const& e) {
            if (mapval::kind(e.value) == MapKind::Data)
                m_merged.assign(e.first, e.count, mapval::with_layer(e.value, static_cast<unsigned>(i)));
            else
                m_merged.erase(e.first, e.count);
        });
    }
}

Status Chain::require_idle(char const* what) const
{
    if (m_in_use != 0 || m_engine->outstanding() != 0)
        return make_error(ErrorKind::Busy, std::string(what) + " needs an idle disk: drain in-flight requests first");
    return ok();
}

unsigned Chain::new_sub(unsigned parent, SubKind kind)
{
    unsigned index;
    if (!m_free_subs.empty()) {
        index = m_free_subs.back();
        m_free_subs.pop_back();
    } else {
        index = static_cast<unsigned>(m_subs.size());
        m_subs.emplace_back();
    }
    Sub& s = m_subs[index];
    s.parent = parent;
    s.kind = kind;
    s.iov.clear();
    s.busy = true;
    if (kind != SubKind::FlushStep)
        ++m_parents[parent].remaining;
    return index;
}

Status Chain::submit(BlockRequest const& request)
{
    STRATA_TRY(check_request(request, size(), m_read_only));
    if (m_free_parents.empty())
        return make_error(ErrorKind::Busy, "disk queue is full");
    unsigned index = m_free_parents.back();
    m_free_parents.pop_back();
    ++m_in_use;
    Parent& p = m_parents[index];
    p.busy = true;
    p.remaining = 0;
    p.error.reset();
    p.iov.assign(request.iov.begin(), request.iov.end());
    p.request = request;
    p.request.iov = p.iov;
    if (!m_deferred.empty() && request.op != BlockOp::Read && request.op != BlockOp::Flush) {
        // Keep writes behind earlier deferred ones, so they apply in order.
        m_deferred.push_back(index);
        return ok();
    }
    dispatch(index);
    return ok();
}

void Chain::dispatch(unsigned index)
{
    Parent& p = m_parents[index];
    switch (p.request.op) {
    case BlockOp::Read:
        dispatch_read(index);
        break;
    case BlockOp::Write:
    case BlockOp::Discard:
    case BlockOp::WriteZeroes:
        if (auto usable = m_layers.back()->usable(); !usable) {
            // Not even in place: the layer's last sync failed (Layer::mark_sync_failed).
            fail(index, usable.error());
            break;
        }
        if (conflicts(p)) {
            m_deferred.push_back(index);
            return;
        }
        if (p.request.op == BlockOp::Write)
            dispatch_write(index, p.request.offset, p.request.length, p.iov);
        else
            dispatch_zero(index);
        break;
    case BlockOp::Flush:
        if (m_read_only)
            break;
        m_flush_waiting.push_back(index);
        start_flush();
        return;
    }
    if (m_parents[index].remaining == 0) {
        complete(index);
        m_engine->notify();
    }
}

void Chain::fail(unsigned index, Error error)
{
    Parent& p = m_parents[index];
    if (!p.error)
        p.error = std::move(error);
}

void Chain::complete(unsigned index)
{
    Parent& p = m_parents[index];
    Status status = ok();
    if (p.error)
        status = *p.error;
    m_ready.push_back(BlockCompletion { p.request.tag, std::move(status) });
    p.busy = false;
    p.iov.clear();
    m_free_parents.push_back(index);
    --m_in_use;
}

// A write or zeroing must wait while it touches a block under read-modify-write,
// or needs its own read-modify-write of a block whose first write is in flight.
bool Chain::conflicts(Parent const& p) const
{
    if (m_pending.empty())
        return false;
    std::uint64_t first = p.request.offset >> kBlockShift;
    std::uint64_t end = (p.request.offset + p.request.length + kBlockSize - 1) >> kBlockShift;
    auto partial = [&](std::uint64_t b) {
        std::uint64_t bs = b << kBlockShift;
        return bs < p.request.offset || bs + kBlockSize > p.request.offset + p.request.length;
    };
    auto check = [&](std::uint64_t b, Pending const& pend) {
        return pend.rmw || partial(b);
    };
    if (end - first < m_pending.size()) {
        for (std::uint64_t b = first; b < end; ++b) {
            auto it = m_pending.find(b);
            if (it != m_pending.end() && check(b, it->second))
                return true;
        }
        return false;
    }
    for (auto const& [b, pend] : m_pending)
        if (b >= first && b < end && check(b, pend))
            return true;
    return false;
}

void Chain::dispatch_read(unsigned index)
{
    Parent& p = m_parents[index];
    std::uint64_t const start = p.request.offset;
    std::uint64_t const end = start + p.request.length;
    std::uint64_t pos = start;
    while (pos < end) {
        std::uint64_t b = pos >> kBlockShift;
        std::uint64_t within = pos & (kBlockSize - 1);
        auto l = m_merged.lookup(b);
        std::uint64_t left = end - pos;
        std::uint64_t bytes = l.run >= ((left + within + kBlockSize - 1) >> kBlockShift) ? left : (l.run << kBlockShift) - within;
        if (mapval::kind(l.value) == MapKind::Data) {
            Layer& layer = *m_layers[mapval::layer(l.value)];
            unsigned s = new_sub(index, SubKind::Read);
            iov_slice(p.iov, pos - start, bytes, m_subs[s].iov);
            m_engine->submit(IoRequest { IoOp::Read, layer.file(), mapval::offset(l.value) + within, bytes, m_subs[s].iov, 0, s });
        } else {
            iov_memset_zero(p.iov, pos - start, bytes);
            ++m_stats.zero_reads;
        }
        pos += bytes;
    }
}
void Chain::on_io(IoCompletion const& c)
{
    Sub& sub = m_subs[c.token];
    unsigned index = sub.parent;
    SubKind kind = sub.kind;
    sub.busy = false;
    if (kind == SubKind::FlushStep) {
        m_free_subs.push_back(static_cast<unsigned>(c.token));
        bool done = c.res < 0 || ++m_flush_step == m_flush_plan->steps.size();
        if (!done) {
            issue_flush_step();
            return;
        }
        if (c.res < 0 && m_flush_plan->steps[m_flush_step].op == IoOp::Fdatasync)
            m_layers.back()->mark_sync_failed(-c.res);
        m_layers.back()->end_flush(*m_flush_plan, c.res == 0);
        for (unsigned p : m_flush_parents) {
            if (c.res < 0)
                fail(p, errno_error("flush of layer '" + m_layers.back()->path() + "'", -c.res));
            complete(p);
        }
        m_flush_parents.clear();
        m_flush_plan.reset();
        start_flush();
        return;
    }
    if (kind == SubKind::RmwRead && c.res >= 0) {
        // The block from below is in buf: merge the guest's bytes and write it
        // whole into the fresh block, as the same sub (the parent still waits).
        std::memcpy(sub.buf.data() + sub.merge_at, sub.merge.data(), sub.merge.size());
        sub.merge = {};
        sub.kind = SubKind::WriteMap;
        sub.busy = true;
        m_engine->submit(IoRequest { IoOp::Write, m_layers.back()->file(), sub.phys, kBlockSize, sub.iov, 0, c.token });
        return;
    }
    if (kind == SubKind::RmwRead) {
        // The read failed: the block is no longer pending, nothing was written.
        auto it = m_pending.find(sub.first);
        if (it != m_pending.end() && --it->second.writers == 0)
            m_pending.erase(it);
        sub.buf = AlignedBuffer();
    }
    if (kind == SubKind::WriteMap) {
        if (c.res == 0) {
            auto top_index = static_cast<unsigned>(m_layers.size() - 1);
            m_layers.back()->record(sub.first, sub.count, mapval::data(sub.phys));
            m_merged.assign(sub.first, sub.count, mapval::data(sub.phys, top_index));
        }
        for (std::uint64_t i = 0; i < sub.count; ++i) {
            auto it = m_pending.find(sub.first + i);
            if (it != m_pending.end() && --it->second.writers == 0)
                m_pending.erase(it);
        }
        sub.buf = AlignedBuffer();
    }
    if (c.res < 0) {
        char const* what = kind == SubKind::Read || kind == SubKind::RmwRead ? "read" : "write";
        fail(index, errno_error(std::string(what) + " of layer data", -c.res));
    }
    m_free_subs.push_back(static_cast<unsigned>(c.token));
    if (--m_parents[index].remaining == 0)
        complete(index);
}

void Chain::retry_deferred()
{
    while (!m_deferred.empty()) {
        unsigned index = m_deferred.front();
        Parent const& p = m_parents[index];
        if (p.request.op != BlockOp::Flush && conflicts(p))
            return;
        m_deferred.pop_front();
        dispatch(index);
    }
}

Status Chain::kick() { return m_engine->kick(); }

std::size_t Chain::reap(std::function<void(BlockCompletion&&)> const& on_complete, bool wait)
{
    std::size_t delivered = 0;
    while (true) {
        bool block = wait && m_ready.empty() && m_engine->outstanding() > 0;
        std::size_t n = m_engine->reap([this](IoCompletion const& c) { on_io(c); }, block);
        if (n > 0) {
            retry_deferred();
            (void)m_engine->kick();
        }
        std::vector<BlockCompletion> ready;
        ready.swap(m_ready);
        for (auto& c : ready) {
            on_complete(std::move(c));
            ++delivered;
        }
        if (delivered > 0 || !wait || m_in_use == 0)
            return delivered;
        if (m_engine->outstanding() == 0 && m_ready.empty()) {
            (void)m_engine->kick();
            if (m_engine->outstanding() == 0)
                return delivered; // nothing can make progress (should not happen)
        }
    }
}

} // namespace strata
