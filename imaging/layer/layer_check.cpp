// Layer::check (qemu-img check's counts for a strata layer) and the content digest.
#include "base/sha256.h"
#include "imaging/layer/layer.h"

#include <algorithm>
#include <cerrno>
#include <fcntl.h>
#include <linux/falloc.h>
#include <unistd.h>

namespace strata {

Result<CheckReport> Layer::check(RepairMode repair)
{
    CheckReport r;
    r.total_blocks = (m_header.virtual_size + kBlockSize - 1) >> kBlockShift;
    r.image_end_offset = file_size();
    r.messages = m_corruptions;
    r.corruptions = m_corruptions.size();
    if (repair != RepairMode::None && !m_writable)
        return make_error(ErrorKind::Usage, "repair needs the layer opened for writing");

    // Everything the metadata references, sorted by file offset.
    std::vector<std::pair<std::uint64_t, std::uint64_t>> used;
    m_map.for_each([&](Extent const& e) {
        if (mapval::kind(e.value) == MapKind::Data) {
            used.emplace_back(mapval::offset(e.value), mapval::offset(e.value) + (e.count << kBlockShift));
            r.allocated_blocks += e.count;
        }
    });
    if (m_header.checkpoint_length != 0)
        used.emplace_back(m_header.checkpoint_offset, m_header.checkpoint_offset + m_header.checkpoint_length);
    std::sort(used.begin(), used.end());

    // Leaks: file space below the data end that holds data (not a hole) but that
    // nothing references. Holes cost nothing and are not leaks.
    std::vector<std::pair<std::uint64_t, std::uint64_t>> leaked;
    int fd = m_file.fd.get();
    std::uint64_t end = std::min(m_alloc_end, r.image_end_offset);
    std::uint64_t pos = m_header.data_start;
    std::size_t u = 0;
    while (pos < end) {
        off_t data = ::lseek(fd, static_cast<off_t>(pos), SEEK_DATA);
        if (data < 0)
            break; // ENXIO: no data past pos
        off_t hole = ::lseek(fd, data, SEEK_HOLE);
        if (hole < 0)
            hole = static_cast<off_t>(end);
        std::uint64_t seg_start = static_cast<std::uint64_t>(data) & ~(kBlockSize - 1);
        std::uint64_t seg_end = std::min<std::uint64_t>(static_cast<std::uint64_t>(hole), end);
        for (std::uint64_t at = seg_start; at < seg_end;) {
            while (u < used.size() && used[u].second <= at)
                ++u;
            if (u < used.size() && used[u].first <= at) {
                at = used[u].second;
                continue;
            }
            std::uint64_t stop = std::min(seg_end, u < used.size() ? used[u].first : seg_end);
            std::uint64_t aligned_stop = (stop + kBlockSize - 1) & ~(kBlockSize - 1);
            if (aligned_stop > at) {
                leaked.emplace_back(at, aligned_stop);
                r.leaks += (aligned_stop - at) >> kBlockShift;
            }
            at = aligned_stop;
        }
        pos = std::max<std::uint64_t>(seg_end, pos + 1);
    }
    if (!leaked.empty())
        r.messages.push_back(std::to_string(r.leaks) + " leaked 4 KiB blocks (allocated, referenced by nothing)");

    if (repair == RepairMode::All && r.corruptions > 0) {
        // The corrupt entries were dropped when the layer was opened; writing a
        // checkpoint of what is left makes that permanent. A lost checkpoint
        // cannot be rebuilt, so those corruptions stay counted.
        STRATA_TRY(checkpoint_now());
        bool lost = std::any_of(m_corruptions.begin(), m_corruptions.end(),
            [](std::string const& m) { return m.find("is lost") != std::string::npos; });
        r.corruptions_fixed = lost ? 0 : r.corruptions;
        m_corruptions.clear();
    }
    if (repair != RepairMode::None) {
        for (auto const& [s, e] : leaked) {
            if (::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(s), static_cast<off_t>(e - s)) == 0)
                r.leaks_fixed += (e - s) >> kBlockShift;
        }
    }
    return r;
}

void hash_digest_run(Sha256Hasher& hash, DigestRun const& run)
{
    hash_u64(hash, run.first);
    hash_u64(hash, run.count);
    hash_u64(hash, static_cast<std::uint64_t>(run.kind));
}

void hash_u64(Sha256Hasher& hash, std::uint64_t v)
{
    unsigned char b[8];
    for (int i = 0; i < 8; ++i)
        b[i] = static_cast<unsigned char>(v >> (8 * i));
    hash.update(b, 8);
}

Result<Sha256> Layer::compute_digest() const
{
    Sha256Hasher hash;
    hash_u64(hash, m_header.virtual_size);
    AlignedBuffer buf(1 << 20);
    auto extents = extents_of(m_map);
    for (auto const& run : digest_runs(extents)) {
        hash_digest_run(hash, run);
        if (run.kind != MapKind::Data)
            continue;
        for (std::size_t i = run.begin; i < run.end; ++i) {
            std::uint64_t left = extents[i].count << kBlockShift;
            std::uint64_t at = mapval::offset(extents[i].value);
            while (left > 0) {
                std::uint64_t n = std::min<std::uint64_t>(left, buf.size());
                if (auto s = pread_all(m_file.fd.get(), std::span<std::byte>(buf.data(), n), at); !s)
                    return s.error().context("digest of layer '" + m_path + "'");
                hash.update(buf.data(), n);
                at += n;
                left -= n;
            }
        }
    }
    return Sha256 { hash.finish() };
}

} // namespace strata
