// MachineDisks: a VM's virtio-blk disks — for each, the BlockBackend (a store
// disk's layer chain or a host file), the VirtioBlk device and its VirtioSlot
// (transport and interrupt, wired to KVM; vmm/virtio_slot.h), and their rate
// limiters (one per disk, or one per rate limit group shared by its disks:
// disk_config.h). Disk i is the VM's
// i-th virtio device; devices attached after the disks (the console) follow them.
//
// Teardown order matters: slots first (the transport resets the device and stops
// its I/O thread), then devices, then backends; Disk's member order encodes that.
// Threading: created on the main thread before vCPUs start; pause_all/resume_all
// and metrics from any thread (machine-image capture, the API).
#pragma once

#include "base/result.h"
#include "devices/bus.h"
#include "devices/guest_memory.h"
#include "vmm/disk_config.h"
#include "vmm/machine_config.h"
#include "vmm/kvm/vm.h"

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace strata {

class BlockBackend;
class Chain;
class Store;
struct VirtioSlot;
namespace pci {
class PciBus;
}
namespace virtio {
namespace blk {
class VirtioBlk;
}
}

class MachineDisks {
public:
    // Opens every disk and attaches it. For mmio, the command-line entries Linux
    // needs (virtio_mmio.device=...) are appended to cmdline_extra; for pci, `pci`
    // is the VM's bus 0 (null for mmio).
    [[nodiscard]] static Result<std::unique_ptr<MachineDisks>> create(Vm& vm, GuestMemory const& memory,
        Bus& mmio, pci::PciBus* pci, std::vector<DiskConfig> const& disks, Transport transport, std::string& cmdline_extra);
    ~MachineDisks();

    std::size_t count() const { return m_disks.size(); }
    DiskConfig const& config(std::size_t i) const;
    BlockBackend& backend(std::size_t i);
    // The store disk's chain, or nullptr for a host file.
    Chain* chain(std::size_t i);
    virtio::blk::VirtioBlk& device(std::size_t i);
    // Where disk i is attached (its transport), for saving and restoring its state.
    VirtioSlot& slot(std::size_t i);
    Store* store() { return m_store.get(); }

    // Stops every device taking requests and waits until all in-flight requests
    // have completed: the disks are then quiet together (one instant for all).
    void pause_all();
    // pause_all with a deadline: when some disk has not drained by then (its
    // host I/O hangs), every disk is resumed and the result is Timeout.
    [[nodiscard]] Status pause_all_within(std::chrono::milliseconds deadline);
    void resume_all();

private:
    struct Disk;
    MachineDisks() = default;
    [[nodiscard]] Status attach(Vm& vm, GuestMemory const& memory, Bus& mmio, pci::PciBus* pci, DiskConfig const& config,
        std::shared_ptr<RateLimiter> limiter, Transport transport, std::string& cmdline_extra);

    std::unique_ptr<Store> m_store;
    std::vector<std::unique_ptr<Disk>> m_disks;
};

} // namespace strata
