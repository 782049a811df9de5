// GuestRam owns the host mapping of guest RAM and registers it with KVM: one
// region below the 32-bit MMIO hole and, for VMs larger than 3 GiB, one above it.
// It hands out the GuestMemory view devices use.
//
// Dirty tracking (for differential snapshots, track_dirty): the slots log dirty
// pages in KVM (what vCPUs and KVM write) and the GuestMemory view marks what
// the VMM's devices touch (guest_memory.h); take_dirty_pages() joins the two.
// Tracking costs the guest KVM's huge pages, so it is asked for, never the
// default: at create, or from a point on (start_dirty_tracking, which a
// machine image's first memory capture calls so that the next one can be a
// differential one).
// Threading: immutable after create() but for the dirty bits; the mapping
// outlives every vCPU and device because the Machine destroys them first.
// take_dirty_pages() runs while the vCPUs and the devices are paused.
#pragma once

#include "base/result.h"
#include "devices/guest_memory.h"
#include "vmm/kvm/vm.h"

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace strata {

class GuestRam {
public:
    // Checks the size against the host (it must fit in the host's RAM and swap)
    // and against strata's limits, maps it (MAP_NORESERVE: pages are touched
    // lazily), and registers the slots with the VM.
    [[nodiscard]] static Result<std::unique_ptr<GuestRam>> create(Vm& vm, std::uint64_t size, bool track_dirty = false);
    // Lays the file `fd` (a snapshot's memory file of exactly size() bytes) over
    // RAM made by create(): mapped MAP_PRIVATE, so pages are read from the file
    // (and shared through the page cache) until the guest writes them, and
    // MAP_FIXED at the same address,
    // so KVM's slots, which name the address and not the mapping, now read the
    // file's pages. For a prepared VM (prepared_vm.h) before any vCPU or device
    // ran: whatever was in RAM is gone.
    [[nodiscard]] Status map_file(int fd);
    ~GuestRam();
    GuestRam(GuestRam const&) = delete;
    GuestRam& operator=(GuestRam const&) = delete;

    GuestMemory const& memory() const { return m_memory; }
    std::uint64_t size() const { return m_size; }
    // All of RAM as the host sees it, for saving it into a snapshot while the
    // guest and the devices are paused.
    std::span<std::byte const> contents() const { return { m_host, m_size }; }
    // RAM to fill before any vCPU or device runs (a restore laying a
    // differential memory file over its base); such writes are not tracked.
    std::span<std::byte> contents_for_restore() { return { m_host, m_size }; }

    bool tracks_dirty() const { return !m_dirty.empty(); }
    // The pages written since the last call (or since create): one bit per page
    // of contents(), page 0 at bit 0 of word 0. Clears both logs. Unsupported
    // unless the RAM was created with track_dirty.
    [[nodiscard]] Result<std::vector<std::uint64_t>> take_dirty_pages();
    // Starts tracking now (nothing if tracking already): KVM logs the slots'
    // writes from here on and the devices' view marks theirs. Called with the
    // vCPUs parked; the devices may run (their view picks the bitmaps up
    // atomically), but what they write before the caller's next
    // take_dirty_pages is only in the log from this call on.
    [[nodiscard]] Status start_dirty_tracking();

    // Memory-size bounds, in MiB, checked by create and by the CLI.
    static constexpr std::uint64_t min_mib = 8;
    static constexpr std::uint64_t max_mib = 1024 * 1024; // 1 TiB

private:
    GuestRam(Vm& vm, std::uint64_t size, std::byte* host, std::uint64_t host_size)
        : m_vm(vm)
        , m_size(size)
        , m_host(host)
        , m_host_size(host_size)
    {
    }
    Vm& m_vm;
    std::uint64_t m_size;
    std::byte* m_host;
    std::uint64_t m_host_size;
    // With tracking: the devices' dirty bits, one word per 64 pages of RAM
    // (each region's bits start on a word boundary: the low region is a whole
    // number of MiB).
    std::unique_ptr<std::atomic<std::uint64_t>[]> m_dirty_bits;
    std::vector<std::uint64_t> m_dirty; // non-empty: tracking; the slots' first words
    GuestMemory m_memory;
};

// Total RAM plus swap of this host, in bytes (0 if unknown).
std::uint64_t host_memory_limit();

} // namespace strata
