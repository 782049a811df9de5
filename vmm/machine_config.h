// What a VM is made of, as the CLI, the API and the store describe it: boot
// source, CPUs, memory, and what to do on reboot. The Machine is built from it.
// Threading: a plain value.
#pragma once

#include "vmm/disk_config.h"
#include "vmm/net_config.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace strata {

enum class OnReboot {
    Exit,    // a guest reset ends the VM and strata exits 0
    Restart, // a guest reset boots the VM again from the same configuration
};

enum class CpuTemplate {
    Host,    // everything KVM supports
    Minimal, // hides what instruction emulators commonly lack (see cpu_template.h)
};

enum class BootProtocol {
    Auto, // PVH for firmware; the 64-bit Linux entry for kernels that have one
    Pvh,
    Linux64,
};

enum class Transport {
    Mmio, // virtio-mmio version 2, announced on the kernel command line
    Pci,  // modern virtio-pci on bus 0, MSI-X
};

struct MachineConfig {
    // Exactly one of firmware and kernel is set.
    std::string firmware;
    std::string kernel;
    std::string initrd;
    std::string cmdline;
    BootProtocol boot_protocol { BootProtocol::Auto };
    std::uint32_t vcpus { 1 };
    std::uint64_t memory_mib { 128 };
    CpuTemplate cpu_template { CpuTemplate::Host };
    OnReboot on_reboot { OnReboot::Exit };
    Transport transport { Transport::Mmio };
    std::vector<DiskConfig> disks;
    // Network interfaces (virtio-net over host taps), attached after the console.
    std::vector<NetConfig> nets;
    // The metadata service: which interfaces serve it (its data: MachineIo::mmds).
    MmdsConfig mmds;
    // Log the pages the guest and the devices write, so that a snapshot can
    // hold only what changed since the last one (Firecracker's track_dirty_pages).
    bool track_dirty_pages { false };

    static constexpr std::uint32_t max_vcpus = 254;
};

} // namespace strata
