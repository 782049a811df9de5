#include "imaging/layer/extent_map.h"

#include <cstdint>
#include <iterator>

namespace strata {

ExtentMap::Lookup ExtentMap::lookup(std::uint64_t block) const
{
    auto it = m_runs.upper_bound(block);
    if (it != m_runs.begin()) {
        auto prev = std::prev(it);
        if (block - prev->first < prev->second.count) {
            std::uint64_t into = block - prev->first;
            return Lookup { mapval::advance(prev->second.value, into), prev->second.count - into };
        }
    }
    if (it == m_runs.end())
        return Lookup { 0, UINT64_MAX };
    return Lookup { 0, it->first - block };
}

void ExtentMap::assign(std::uint64_t first, std::uint64_t count, std::uint64_t value)
{
    if (count == 0)
        return;
    std::uint64_t end = first + count;
    // Split an extent that starts before first and reaches into the range.
    auto it = m_runs.lower_bound(first);
    if (it != m_runs.begin()) {
        auto prev = std::prev(it);
        std::uint64_t prev_end = prev->first + prev->second.count;
        if (prev_end > first) {
            Run whole = prev->second;
            prev->second.count = first - prev->first;
            if (prev_end > end)
                m_runs.emplace(end, Run { prev_end - end, mapval::advance(whole.value, end - prev->first) });
        }
    }
    // Drop extents that start inside the range, keeping the tail of the last one.
    it = m_runs.lower_bound(first);
    while (it != m_runs.end() && it->first < end) {
        std::uint64_t run_end = it->first + it->second.count;
        if (run_end > end) {
            Run tail { run_end - end, mapval::advance(it->second.value, end - it->first) };
            it = m_runs.erase(it);
            m_runs.emplace_hint(it, end, tail);
            break;
        }
        it = m_runs.erase(it);
    }
    if (value == 0)
        return;
    // Insert, merging with neighbours that continue the same run.
    auto next = m_runs.lower_bound(first);
    if (next != m_runs.begin()) {
        auto prev = std::prev(next);
        if (prev->first + prev->second.count == first && mapval::advance(prev->second.value, prev->second.count) == value) {
            prev->second.count += count;
            if (next != m_runs.end() && next->first == end && mapval::advance(value, count) == next->second.value) {
                prev->second.count += next->second.count;
                m_runs.erase(next);
            }
            return;
        }
    }
    if (next != m_runs.end() && next->first == end && mapval::advance(value, count) == next->second.value) {
        Run merged { count + next->second.count, value };
        next = m_runs.erase(next);
        m_runs.emplace_hint(next, first, merged);
        return;
    }
    m_runs.emplace_hint(next, first, Run { count, value });
}

std::vector<Extent> extents_of(ExtentMap const& map)
{
    std::vector<Extent> out;
    out.reserve(map.extent_count());
    map.for_each([&](Extent const& e) { out.push_back(e); });
    return out;
}

std::vector<DigestRun> digest_runs(std::vector<Extent> const& extents)
{
    std::vector<DigestRun> runs;
    for (std::size_t i = 0; i < extents.size(); ++i) {
        auto const& e = extents[i];
        MapKind kind = mapval::kind(e.value);
        // The map joins data extents only when their data is contiguous in the
        // file too; the digest joins them whenever the blocks are.
        if (!runs.empty() && kind == MapKind::Data && runs.back().kind == MapKind::Data
            && runs.back().first + runs.back().count == e.first) {
            runs.back().count += e.count;
            runs.back().end = i + 1;
            continue;
        }
        runs.push_back(DigestRun { e.first, e.count, kind, i, i + 1 });
    }
    return runs;
}

} // namespace strata
