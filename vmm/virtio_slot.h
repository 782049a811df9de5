// VirtioSlot: one virtio device's place in a VM — its transport (virtio-mmio or
// virtio-pci), its interrupt (an irqfd line or MSI-X vectors) and the ioeventfds
// for its queue notifications. MachineDisks attaches each disk this way and the
// Machine its console, so every virtio device is wired to KVM the same way.
//
// Placement: slot `index` is the index-th virtio device of the VM. virtio-mmio puts
// it at layout::virtio_mmio_base + index * stride with GSI virtio_mmio_first_irq +
// index and appends its `virtio_mmio.device=` word to the command line;
// virtio-pci gives it the next function on bus 0 and BAR 0 at layout::
// pci_mmio_base + index * BarSize. The VMM attaches the disks first and the
// console after them, so disk numbering in the guest does not depend on it.
//
// Teardown: the transports go first (destroying one resets its device and joins
// the device's I/O thread), then the interrupts; member order encodes that. The
// device itself must outlive the slot.
// Threading: attach on the main thread before vCPUs start; a guest that moves a
// virtio-pci BAR re-registers the notifiers from its vCPU thread.
#pragma once

#include "base/result.h"
#include "devices/bus.h"
#include "devices/guest_memory.h"
#include "vmm/machine_config.h"
#include "vmm/kvm/vm.h"

#include <memory>
#include <string>

namespace strata {

class IrqfdLine;
class KvmMsiVectors;
namespace pci {
class PciBus;
}
namespace virtio {
class VirtioDevice;
class MmioTransport;
class PciTransport;
}

// Where virtio devices are attached: the VM, its RAM, its MMIO bus, and the PCI
// bus (null for virtio-mmio VMs).
struct VirtioBuses {
    Vm& vm;
    GuestMemory const& memory;
    Bus& mmio;
    pci::PciBus* pci;
    Transport transport;
};

struct VirtioSlot {
    std::unique_ptr<IrqfdLine> irq;
    std::unique_ptr<KvmMsiVectors> msi;
    std::unique_ptr<virtio::MmioTransport> mmio;
    std::unique_ptr<virtio::PciTransport> pci;

    ~VirtioSlot();
    virtio::VirtioDevice& device() const;
};

// Where the index-th virtio device sits on the virtio-mmio transport (the
// DSDT describes the same regions for kernels that find devices through ACPI).
struct MmioPlacement {
    std::uint64_t base;
    std::uint32_t gsi;
};
[[nodiscard]] MmioPlacement virtio_mmio_placement(std::uint32_t index);

// Attaches `device` as the VM's index-th virtio device. For virtio-mmio, its
// command-line word is appended to cmdline_extra.
[[nodiscard]] Result<std::unique_ptr<VirtioSlot>> attach_virtio(VirtioBuses const& buses, virtio::VirtioDevice& device,
    std::uint32_t index, std::string& cmdline_extra);

} // namespace strata
