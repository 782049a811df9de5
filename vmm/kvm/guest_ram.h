// GuestRam owns the host mapping of guest RAM and registers it with KVM: one
// region below the 32-bit MMIO hole and, for VMs larger than 3 GiB, one above it.
// It hands out the GuestMemory view devices use.
// Threading: immutable after create(); the mapping outlives every vCPU and device
// because the Machine destroys them first.
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
    [[nodiscard]] static Result<std::unique_ptr<GuestRam>> create(Vm& vm, std::uint64_t size);
    // The same, with RAM's initial contents the file `fd` (a snapshot's memory
    // file of exactly `size` bytes), mapped MAP_PRIVATE: pages are read from the
    // file (and shared through the page cache) until the guest writes them.
    [[nodiscard]] static Result<std::unique_ptr<GuestRam>> create_from_file(Vm& vm, std::uint64_t size, int fd);
    ~GuestRam();
    GuestRam(GuestRam const&) = delete;
    GuestRam& operator=(GuestRam const&) = delete;

    GuestMemory const& memory() const { return m_memory; }
    std::uint64_t size() const { return m_size; }
    // All of RAM as the host sees it, for saving it into a snapshot while the
    // guest and the devices are paused.
    std::span<std::byte const> contents() const { return { m_host, m_size }; }

    // Memory-size bounds, in MiB, checked by create and by the CLI.
    static constexpr std::uint64_t min_mib = 8;
    static constexpr std::uint64_t max_mib = 1024 * 1024; // 1 TiB

private:
    [[nodiscard]] static Result<std::unique_ptr<GuestRam>> map(Vm& vm, std::uint64_t size, int fd);
    GuestRam(std::uint64_t size, std::byte* host, std::uint64_t host_size, GuestMemory memory)
        : m_size(size)
        , m_host(host)
        , m_host_size(host_size)
        , m_memory(std::move(memory))
    {
    }
    std::uint64_t m_size;
    std::byte* m_host;
    std::uint64_t m_host_size;
    GuestMemory m_memory;
};

// Total RAM plus swap of this host, in bytes (0 if unknown).
std::uint64_t host_memory_limit();

} // namespace strata
