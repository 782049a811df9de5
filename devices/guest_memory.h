// GuestMemory: the bounds-checked view of guest RAM that every device reads and
// writes through (STYLE.md point 6). It owns nothing: the VMM maps guest RAM and
// hands regions to it; tests hand it plain buffers.
//
// Every access checks [gpa, gpa+len) against one region with overflow-safe
// arithmetic; an access that straddles two regions or leaves RAM is an error.
// Dirty pages: a region may carry a bitmap (one bit per 4 KiB page, owned by
// whoever mapped the RAM) in which slice() sets the bits of the pages it hands
// out, so that a differential snapshot also finds the pages the VMM's devices
// wrote, which KVM's dirty log never sees. slice() cannot tell a read from a
// write, so it marks both (a page read through it is saved again, never a
// written one missed); read() and read_bytes() mark nothing.
// Threading: the region table is immutable after construction (but for each
// region's bitmap pointer, which start_dirty_tracking may set once, atomically),
// so any thread may use a GuestMemory concurrently; the dirty bits are set atomically. Concurrent accesses to the same guest bytes are
// the guest's business; the virtio core uses atomic_ref where ordering matters.
#pragma once

#include "base/result.h"

#include <cstddef>
#include <cstdint>
#include <atomic>
#include <cstring>
#include <span>
#include <type_traits>
#include <vector>

namespace strata {

class GuestMemory {
public:
    struct Region {
        std::uint64_t gpa;
        std::uint64_t size;
        std::byte* host;
        // One bit per page of the region, set by slice(); null: not tracked.
        // May be set once later (start_dirty_tracking), so it is read and
        // written through std::atomic_ref.
        std::atomic<std::uint64_t>* dirty { nullptr };
    };

    static constexpr std::uint64_t page_size = 4096;

    GuestMemory() = default;
    // Regions must not overlap; the constructor sorts them by gpa.
    explicit GuestMemory(std::vector<Region> regions);

    std::span<Region const> regions() const { return m_regions; }
    // Sum of all region sizes.
    std::uint64_t total_size() const;

    // The host bytes behind [gpa, gpa+len), which must lie in one region.
    // len == 0 is allowed at any gpa inside a region or at its end. Marks the
    // pages dirty in a tracked region (the caller may write them).
    [[nodiscard]] Result<std::span<std::byte>> slice(std::uint64_t gpa, std::uint64_t len) const;

    // Marks [gpa, gpa+len) dirty in a tracked region (nothing otherwise), for a
    // writer that keeps a slice and writes through it later (a virtqueue's used
    // ring): each write must mark its pages again, or a snapshot taken between
    // the slice and the write misses it.
    void mark_dirty(std::uint64_t gpa, std::uint64_t len) const;
    // The same for bytes named by their host view (a slice taken earlier, such as
    // a receive buffer a network device holds across turns and fills later).
    // Bytes outside every region mark nothing.
    void mark_written(std::span<std::byte const> host) const;

    // Starts tracking region `index` into `bits` (one bit per page, zeroed by
    // the caller, outliving this view), while devices may be using the view:
    // a device sees the bitmap from its next access on. Regions tracked
    // already keep theirs.
    void start_dirty_tracking(std::size_t index, std::atomic<std::uint64_t>* bits);

    [[nodiscard]] Status read_bytes(std::uint64_t gpa, std::span<std::byte> out) const;
    [[nodiscard]] Status write_bytes(std::uint64_t gpa, std::span<std::byte const> in) const;

    template<typename T>
    [[nodiscard]] Result<T> read(std::uint64_t gpa) const
    {
        static_assert(std::is_trivially_copyable_v<T>);
        T value;
        auto s = find(gpa, sizeof(T));
        if (!s)
            return s.error();
        std::memcpy(&value, s.value().data(), sizeof(T));
        return value;
    }

    template<typename T>
    [[nodiscard]] Status write(std::uint64_t gpa, T const& value) const
    {
        static_assert(std::is_trivially_copyable_v<T>);
        auto s = slice(gpa, sizeof(T));
        if (!s)
            return s.error();
        std::memcpy(s.value().data(), &value, sizeof(T));
        return ok();
    }

private:
    // slice() without marking anything dirty, for reads.
    [[nodiscard]] Result<std::span<std::byte>> find(std::uint64_t gpa, std::uint64_t len, Region const** region = nullptr) const;
    static void mark(Region const& region, std::uint64_t gpa, std::uint64_t len);
    std::vector<Region> m_regions;
};

} // namespace strata
