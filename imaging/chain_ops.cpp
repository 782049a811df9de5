// Chain operations on an idle chain: snapshot (freeze and push), commit,
// flatten and resize. Each leaves the merged map matching the layers.
#include "imaging/chain.h"

#include <algorithm>
#include <unistd.h>

namespace strata {

Status Chain::freeze_top_and_push(std::string const& new_path, LayerId new_id)
{
    STRATA_TRY(check_can_push());
    // Create the new top first: if that fails, the disk is unchanged.
    STRATA_TRY(fresh, Layer::create(new_path, m_layers.back()->size(), new_id, *m_engine, LayerOptions { .cache = m_options.cache }));
    return freeze_top_under(std::move(fresh), new_path);
}

Status Chain::freeze_top_and_adopt(std::string const& new_path)
{
    STRATA_TRY(check_can_push());
    STRATA_TRY(fresh, Layer::open(new_path, LayerOpen::Writable, *m_engine, LayerOptions { .cache = m_options.cache }));
    // The layer was made for this push: anything else in it would be data the
    // merged map does not know about.
    if (fresh->frozen() || !fresh->map().empty() || fresh->size() != m_layers.back()->size())
        return make_error(ErrorKind::BadInput, "layer '" + new_path + "' is not an empty writable layer of the disk's size");
    return freeze_top_under(std::move(fresh), {});
}

Status Chain::check_can_push() const
{
    STRATA_TRY(require_idle("snapshot"));
    if (m_read_only)
        return make_error(ErrorKind::Permission, "a read-only disk cannot be snapshotted");
    if (m_layers.size() >= kMaxDepth)
        return make_error(ErrorKind::Unsupported, "the chain already has the maximum of 500 layers");
    return ok();
}

Status Chain::freeze_top_under(std::unique_ptr<Layer> fresh, std::string const& unlink_on_failure)
{
    Layer& old_top = *m_layers.back();
    Status frozen = old_top.freeze(false);
    if (!frozen) {
        fresh.reset();
        if (!unlink_on_failure.empty())
            (void)::unlink(unlink_on_failure.c_str());
        return frozen.error().context("snapshot");
    }
    STRATA_TRY(old_top.downgrade_to_reader());
    // The merged map is unchanged: the new top holds nothing yet, and the old
    // layers keep their indices.
    m_layers.push_back(std::move(fresh));
    return ok();
}

Status Chain::commit(std::size_t index)
{
    STRATA_TRY(require_idle("commit"));
    if (index == 0 || index >= m_layers.size())
        return make_error(ErrorKind::Usage, "commit needs a layer with a parent in the chain");
    Layer& upper = *m_layers[index];
    if (!upper.frozen())
        return make_error(ErrorKind::Usage, "only a frozen layer can be committed into its parent");
    std::string parent_path = m_layers[index - 1]->path();
    // Release our read lock on the parent, then reopen it for rewriting; on
    // failure put the read-only parent back so the chain stays usable.
    m_layers[index - 1].reset();
    auto rewrite = Layer::open(parent_path, LayerOpen::Rewrite, *m_engine, LayerOptions { .cache = m_options.cache });
    if (!rewrite) {
        auto back = Layer::open(parent_path, LayerOpen::ReadOnly, *m_engine, LayerOptions { .cache = m_options.cache });
        if (back)
            m_layers[index - 1] = std::move(back.value());
        return rewrite.error().context("commit");
    }
    Layer& parent = *rewrite.value();
    AlignedBuffer buf(1 << 20);
    Status status = ok();
    upper.map().for_each([&](Extent const& e) {
        if (!status)
            return;
        if (mapval::kind(e.value) != MapKind::Data) {
            // Keep the zero entry: lower layers must stay hidden under it.
            parent.set_zero(e.first, e.count);
            return;
        }
        std::uint64_t done = 0;
        while (done < e.count && status) {
            std::uint64_t n = std::min<std::uint64_t>(e.count - done, buf.size() >> kBlockShift);
            auto chunk = std::span<std::byte>(buf.data(), n << kBlockShift);
            status = pread_all(upper.fd(), chunk, mapval::offset(e.value) + (done << kBlockShift));
            if (status)
                status = parent.write_blocks(e.first + done, chunk);
            done += n;
        }
    });
    if (status)
        status = parent.freeze(false);
    if (status)
        status = parent.downgrade_to_reader();
    m_layers[index - 1] = std::move(rewrite.value());
    if (!status)
        return status.error().context("commit into '" + parent_path + "'");
    m_layers.erase(m_layers.begin() + static_cast<std::ptrdiff_t>(index));
    rebuild_merged();
    return ok();
}

Status Chain::flatten_to(std::string const& path, LayerId id, bool freeze)
{
    STRATA_TRY(require_idle("flatten"));
    STRATA_TRY(out, Layer::create(path, size(), id, *m_engine, LayerOptions { .cache = m_options.cache }));
    AlignedBuffer buf(1 << 20);
    Status status = ok();
    m_merged.for_each([&](Extent const& e) {
        if (!status || mapval::kind(e.value) != MapKind::Data)
            return;
        Layer& src = *m_layers[mapval::layer(e.value)];
        std::uint64_t done = 0;
        while (done < e.count && status) {
            std::uint64_t n = std::min<std::uint64_t>(e.count - done, buf.size() >> kBlockShift);
            auto chunk = std::span<std::byte>(buf.data(), n << kBlockShift);
            status = pread_all(src.fd(), chunk, mapval::offset(e.value) + (done << kBlockShift));
            if (status)
                status = out->write_blocks(e.first + done, chunk);
            done += n;
        }
    });
    if (status)
        status = freeze ? out->freeze(true) : out->flush();
    if (!status) {
        out.reset();
        (void)::unlink(path.c_str());
        return status.error().context("flatten to '" + path + "'");
    }
    return ok();
}

Status Chain::resize(std::uint64_t new_size)
{
    STRATA_TRY(require_idle("resize"));
    if (m_read_only)
        return make_error(ErrorKind::Permission, "a read-only disk cannot be resized");
    return m_layers.back()->resize(new_size);
}

} // namespace strata
