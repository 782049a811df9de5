#include "store/layer_transfer.h"

#include "imaging/store_io.h"

#include <algorithm>
#include <cstring>
#include <unistd.h>

namespace strata {

LayerInput archive_layer_input(Layer const& layer)
{
    Layer const* l = &layer; // the lambdas outlive this call, the layer outlives them
    LayerInput in;
    in.id = l->id().to_string();
    in.size = l->size();
    in.status = [l](std::uint64_t off, std::uint64_t max) -> Result<LayerRange> {
        auto look = l->map().lookup(off / kBlockSize);
        auto kind = mapval::kind(look.value);
        // Data extents that follow each other in block order are one range
        // wherever their data sits in the file, so the archive's chunks (and a
        // pushed blob) depend on the layer's content alone, as its digest does.
        for (std::uint64_t next = off / kBlockSize + look.run; kind == MapKind::Data && look.run <= (max >> kBlockShift) + 1;) {
            auto more = l->map().lookup(next);
            if (mapval::kind(more.value) != MapKind::Data)
                break;
            look.run += more.run;
            next += more.run;
        }
        // Runs can reach far past max (an unmapped tail): avoid overflowing the product.
        std::uint64_t run = look.run > (max >> kBlockShift) + 1 ? max : look.run * kBlockSize - off % kBlockSize;
        LayerRangeKind k = kind == MapKind::Data ? LayerRangeKind::Data : kind == MapKind::Zero ? LayerRangeKind::Zero : LayerRangeKind::Unmapped;
        return LayerRange { k, std::max<std::uint64_t>(1, std::min(max, run)) };
    };
    in.read = [l](std::uint64_t off, std::span<std::byte> out) -> Status {
        for (std::size_t done = 0; done < out.size();) {
            auto look = l->map().lookup((off + done) / kBlockSize);
            std::uint64_t in_block = (off + done) % kBlockSize;
            std::uint64_t left = out.size() - done;
            std::uint64_t run = look.run > (left >> kBlockShift) + 1 ? left : look.run * kBlockSize - in_block;
            auto n = static_cast<std::size_t>(std::min(left, run));
            if (mapval::kind(look.value) == MapKind::Data)
                STRATA_TRY(pread_all(l->fd(), out.subspan(done, n), mapval::offset(look.value) + in_block));
            else
                std::memset(out.data() + done, 0, n);
            done += n;
        }
        return ok();
    };
    return in;
}

BlockAssembler::BlockAssembler(Layer& layer, bool zeros_hide_below)
    : m_layer(layer)
    , m_block(kBlockSize)
    , m_zeros_hide_below(zeros_hide_below)
{
}

Status BlockAssembler::put(std::uint64_t offset, std::span<std::byte const> data)
{
    while (!data.empty()) {
        std::uint64_t b = offset / kBlockSize;
        auto in = static_cast<std::size_t>(offset % kBlockSize);
        if (in == 0 && data.size() >= kBlockSize) {
            STRATA_TRY(flush());
            std::size_t whole = data.size() / kBlockSize * kBlockSize;
            STRATA_TRY(write_nonzero(b, data.first(whole)));
            data = data.subspan(whole);
            offset += whole;
            continue;
        }
        if (b != m_index) {
            STRATA_TRY(flush());
            m_index = b;
            std::memset(m_block.data(), 0, m_block.size());
        }
        std::size_t n = std::min<std::size_t>(kBlockSize - in, data.size());
        std::memcpy(m_block.data() + in, data.data(), n);
        data = data.subspan(n);
        offset += n;
    }
    return ok();
}

Status BlockAssembler::zero(std::uint64_t offset, std::uint64_t length)
{
    std::uint64_t first = (offset + kBlockSize - 1) / kBlockSize, end = (offset + length) / kBlockSize;
    if (end > first && m_zeros_hide_below)
        m_layer.set_zero(first, end - first);
    return ok();
}

Status BlockAssembler::flush()
{
    if (m_index == kNone)
        return ok();
    std::uint64_t b = m_index;
    m_index = kNone;
    return write_nonzero(b, m_block);
}

Status BlockAssembler::write_nonzero(std::uint64_t first, std::span<std::byte const> data)
{
    std::size_t blocks = data.size() / kBlockSize, i = 0;
    // Offsets come from the file being imported: data past the layer's size is
    // the file's fault, reported as such before anything is recorded.
    if (first > m_layer.size() / kBlockSize || blocks > (m_layer.size() + kBlockSize - 1) / kBlockSize - first)
        return make_error(ErrorKind::BadInput, "data beyond the layer's size");
    while (i < blocks) {
        if (is_zero(data.subspan(i * kBlockSize, kBlockSize))) {
            if (m_zeros_hide_below)
                m_layer.set_zero(first + i, 1);
            ++i;
            continue;
        }
        std::size_t j = i + 1;
        while (j < blocks && !is_zero(data.subspan(j * kBlockSize, kBlockSize)))
            ++j;
        STRATA_TRY(m_layer.write_blocks(first + i, data.subspan(i * kBlockSize, (j - i) * kBlockSize)));
        i = j;
    }
    return ok();
}

TempLayerFiles::~TempLayerFiles()
{
    for (auto const& p : paths)
        ::unlink(p.c_str());
}

} // namespace strata
