// ExtentMap: a sparse map from guest block number to a mapping value, kept as
// runs of blocks (extents) so memory follows the number of runs, never the disk
// size: a 100 GiB empty layer costs nothing, a hostile "1 PiB of zeros" entry is
// one node. Used for a layer's own mapping and for a chain's merged mapping.
//
// A value packs, in one 64-bit word:
//   bits 0-1   kind: 0 unmapped, 1 zero, 2 data
//   bits 2-11  layer index (merged chain maps only; 0 in a layer's own map)
//   bits 12-63 byte offset of the data in the layer file (4 KiB aligned)
// A data extent of n blocks at offset o maps block first+i to o + i*4096; a zero
// extent maps every block to "reads as zeros, hides lower layers".
//
// Threading: a plain value type; one thread at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <vector>

namespace strata {

inline constexpr std::uint64_t kBlockSize = 4096;
inline constexpr std::uint64_t kBlockShift = 12;

enum class MapKind : std::uint8_t { Unmapped = 0, Zero = 1, Data = 2 };

namespace mapval {
inline constexpr std::uint64_t kZero = 1;
inline constexpr MapKind kind(std::uint64_t v) { return static_cast<MapKind>(v & 3); }
inline constexpr std::uint64_t offset(std::uint64_t v) { return v & ~std::uint64_t { 0xfff }; }
inline constexpr unsigned layer(std::uint64_t v) { return static_cast<unsigned>((v >> 2) & 0x3ff); }
inline constexpr std::uint64_t data(std::uint64_t offset, unsigned layer = 0)
{
    return (offset & ~std::uint64_t { 0xfff }) | (std::uint64_t { layer } << 2) | 2;
}
inline constexpr std::uint64_t with_layer(std::uint64_t v, unsigned layer)
{
    return (v & ~std::uint64_t { 0xffc }) | (std::uint64_t { layer } << 2);
}
// The value of the block n blocks further into an extent.
inline constexpr std::uint64_t advance(std::uint64_t v, std::uint64_t n)
{
    return kind(v) == MapKind::Data ? v + (n << kBlockShift) : v;
}
} // namespace mapval

struct Extent {
    std::uint64_t first { 0 };
    std::uint64_t count { 0 };
    std::uint64_t value { 0 };
};

class ExtentMap {
public:
    struct Lookup {
        std::uint64_t value; // for this block (0 when unmapped)
        std::uint64_t run;   // blocks from this one that continue the same way (>= 1)
    };

    // The value at block, and how many following blocks share its extent (or,
    // when unmapped, how many blocks until the next extent; UINT64_MAX if none).
    Lookup lookup(std::uint64_t block) const;
    // Sets blocks [first, first + count) to value (advanced per block for data);
    // value 0 unmaps them.
    void assign(std::uint64_t first, std::uint64_t count, std::uint64_t value);
    void erase(std::uint64_t first, std::uint64_t count) { assign(first, count, 0); }
    void clear() { m_runs.clear(); }

    std::size_t extent_count() const { return m_runs.size(); }
    bool empty() const { return m_runs.empty(); }

    template<typename F>
    void for_each(F&& f) const
    {
        for (auto const& [first, run] : m_runs)
            f(Extent { first, run.count, run.value });
    }

private:
    struct Run {
        std::uint64_t count;
        std::uint64_t value;
    };
    std::map<std::uint64_t, Run> m_runs;
};

// The content digest's view of a map (imaging/layer/FORMAT.md, "Freezing and
// digest"): its extents in block order, where data extents that follow each
// other in block order are one run wherever their data sits in the file, so
// the digest depends on the content alone. A run covers extents[begin, end).
struct DigestRun {
    std::uint64_t first { 0 };
    std::uint64_t count { 0 };
    MapKind kind { MapKind::Unmapped };
    std::size_t begin { 0 }, end { 0 };
};
std::vector<Extent> extents_of(ExtentMap const& map);
std::vector<DigestRun> digest_runs(std::vector<Extent> const& extents);

} // namespace strata
