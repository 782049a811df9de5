// Chain writes: a write's blocks go to the top layer, new blocks allocated there
// and partial blocks the top does not own yet completed by read-modify-write from
// the layer below; write-zeroes and discards record zero entries for whole blocks
// and write zeros for the partial ones.
#include "imaging/chain.h"

#include <algorithm>

namespace strata {

// The source of zeros for partial-block write-zeroes and discards.
alignas(4096) static std::byte const kZeroBlock[kBlockSize] {};

void Chain::dispatch_write(unsigned index, std::uint64_t offset, std::uint64_t length, std::span<iovec const> iov)
{
    Layer& top = *m_layers.back();
    unsigned const top_index = static_cast<unsigned>(m_layers.size() - 1);
    std::uint64_t const end = offset + length;
    auto owned = [&](std::uint64_t v) { return mapval::kind(v) == MapKind::Data && mapval::layer(v) == top_index; };
    std::uint64_t pos = offset;
    while (pos < end) {
        std::uint64_t b = pos >> kBlockShift;
        std::uint64_t within = pos & (kBlockSize - 1);
        auto l = m_merged.lookup(b);
        std::uint64_t left = end - pos;
        if (owned(l.value)) {
            std::uint64_t bytes = l.run >= ((left + within + kBlockSize - 1) >> kBlockShift) ? left : (l.run << kBlockShift) - within;
            unsigned s = new_sub(index, SubKind::Write);
            iov_slice(iov, pos - offset, bytes, m_subs[s].iov);
            m_engine->submit(IoRequest { IoOp::Write, top.file(), mapval::offset(l.value) + within, bytes, m_subs[s].iov, 0, s });
            pos += bytes;
            continue;
        }
        auto pend = m_pending.find(b);
        if (pend != m_pending.end()) {
            // The block's first write is in flight; this one is whole (conflicts()
            // deferred partial ones), so it goes to the same fresh block.
            unsigned s = new_sub(index, SubKind::WriteMap);
            Sub& sub = m_subs[s];
            sub.first = b;
            sub.count = 1;
            sub.phys = pend->second.phys;
            pend->second.writers += 1;
            iov_slice(iov, pos - offset, kBlockSize, sub.iov);
            m_engine->submit(IoRequest { IoOp::Write, top.file(), sub.phys, kBlockSize, sub.iov, 0, s });
            pos += kBlockSize;
            continue;
        }
        if (within == 0 && left >= kBlockSize) {
            // Whole fresh blocks: gather the run that needs new space and write it
            // in one request. Nothing is read from below.
            std::uint64_t n = 0;
            while (((n + 1) << kBlockShift) <= left) {
                std::uint64_t bn = b + n;
                if (n > 0) {
                    if (owned(m_merged.lookup(bn).value) || m_pending.count(bn))
                        break;
                }
                ++n;
            }
            auto at = top.allocate(n);
            if (!at) {
                fail(index, at.error());
                return;
            }
            ++m_stats.allocations;
            unsigned s = new_sub(index, SubKind::WriteMap);
            Sub& sub = m_subs[s];
            sub.first = b;
            sub.count = n;
            sub.phys = at.value();
            for (std::uint64_t i = 0; i < n; ++i)
                m_pending[b + i] = Pending { sub.phys + (i << kBlockShift), 1, false };
            iov_slice(iov, pos - offset, n << kBlockShift, sub.iov);
            m_engine->submit(IoRequest { IoOp::Write, top.file(), sub.phys, n << kBlockShift, sub.iov, 0, s });
            pos += n << kBlockShift;
            continue;
        }
        // Part of a block the top does not own: read the block from below, merge,
        // and write it whole into fresh space. The read goes through the engine
        // (on_io merges and writes when it completes); the block is pending from
        // here, so conflicting writes wait for both.
        std::uint64_t bytes = std::min(kBlockSize - within, left);
        auto at = top.allocate(1);
        if (!at) {
            fail(index, at.error());
            return;
        }
        bool const below_has_data = mapval::kind(l.value) == MapKind::Data;
        unsigned s = new_sub(index, below_has_data ? SubKind::RmwRead : SubKind::WriteMap);
        Sub& sub = m_subs[s];
        sub.first = b;
        sub.count = 1;
        sub.phys = at.value();
        sub.buf = AlignedBuffer(kBlockSize);
        sub.iov.push_back(iovec { sub.buf.data(), kBlockSize });
        m_pending[b] = Pending { sub.phys, 1, true };
        if (below_has_data) {
            // The request's bytes are copied now: a zeroing request's iov is
            // this call's own, gone by the time the read completes.
            sub.merge_at = within;
            sub.merge.resize(bytes);
            iov_to_buf(iov, pos - offset, sub.merge);
            ++m_stats.rmw_reads;
            Layer& below = *m_layers[mapval::layer(l.value)];
            m_engine->submit(IoRequest { IoOp::Read, below.file(), mapval::offset(l.value), kBlockSize, sub.iov, 0, s });
        } else {
            // Zeros or nothing below: the rest of the block is zero.
            iov_to_buf(iov, pos - offset, std::span<std::byte>(sub.buf.data() + within, bytes));
            m_engine->submit(IoRequest { IoOp::Write, top.file(), sub.phys, kBlockSize, sub.iov, 0, s });
        }
        pos += bytes;
    }
}

void Chain::dispatch_zero(unsigned index)
{
    Parent& p = m_parents[index];
    std::uint64_t const start = p.request.offset;
    std::uint64_t const end = start + p.request.length;
    // SAFETY: iovec has no const variant; write requests never modify their buffers.
    iovec zero { const_cast<std::byte*>(kZeroBlock), kBlockSize };
    std::uint64_t first_full = (start + kBlockSize - 1) >> kBlockShift;
    std::uint64_t end_full = end >> kBlockShift;
    if (first_full >= end_full) {
        // No whole block inside: write zeros (at most two partial blocks).
        for (std::uint64_t pos = start; pos < end;) {
            std::uint64_t bytes = std::min(kBlockSize - (pos & (kBlockSize - 1)), end - pos);
            zero.iov_len = bytes;
            dispatch_write(index, pos, bytes, { &zero, 1 });
            pos += bytes;
        }
        return;
    }
    if (start < first_full << kBlockShift) {
        zero.iov_len = (first_full << kBlockShift) - start;
        dispatch_write(index, start, zero.iov_len, { &zero, 1 });
    }
    // A zero entry hides the layers below; in a one-layer chain nothing is below,
    // so the blocks are simply unmapped.
    std::uint64_t value = m_layers.size() == 1 ? 0 : mapval::kZero;
    m_layers.back()->record(first_full, end_full - first_full, value);
    m_merged.erase(first_full, end_full - first_full);
    if (end > end_full << kBlockShift) {
        zero.iov_len = end - (end_full << kBlockShift);
        dispatch_write(index, end_full << kBlockShift, zero.iov_len, { &zero, 1 });
    }
}

} // namespace strata
