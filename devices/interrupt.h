// How a device interrupts the guest. Devices only see these two small interfaces;
// the VMM implements them with KVM so that raising an interrupt never needs a
// vCPU exit or a syscall other than one eventfd write.
//
// InterruptLine is one wire (a GSI): virtio-mmio and legacy PCI INTx use it. The
// VMM implements trigger() as a write to an eventfd bound with KVM_IRQFD to the
// line's GSI. The line is edge-triggered, as in Firecracker: the device keeps its
// own interrupt status register (virtio-mmio InterruptStatus, virtio-pci ISR) and
// calls trigger() each time it sets a bit there; the driver reads and acknowledges
// that register. A level-triggered implementation (irqfd with a resample fd) also
// satisfies the contract.
//
// MsiSink is one PCI function's MSI-X vectors. The device's MSI-X table (see
// devices/pci/msix.h) tells the sink the guest's message for each vector whenever
// the guest programs it, and asks it to fire a vector when an interrupt is due and
// the vector is unmasked. The intended VMM implementation keeps one eventfd and one
// GSI per vector: update_route() rewrites that GSI's MSI route (KVM_SET_GSI_ROUTING)
// and fire() writes the eventfd (bound with KVM_IRQFD), so the data path never
// leaves the kernel. fire() also receives the message, so an implementation may
// instead use KVM_SIGNAL_MSI (one ioctl per interrupt) where routing is missing.
//
// Threading: trigger() and fire() are called from device I/O threads and must be
// cheap and thread-safe; update_route() is called from vCPU threads (the guest's
// MMIO write to the table), with the table's lock held, so it must not call back
// into the device. None of them may block for long or fail: an implementation that
// cannot deliver logs the fact and drops the interrupt.
#pragma once

#include <cstdint>

namespace strata {

class InterruptLine {
public:
    virtual ~InterruptLine() = default;
    // Raises the line once (an edge).
    virtual void trigger() = 0;
};

// An MSI message as the guest wrote it into an MSI-X table entry.
struct MsiMessage {
    std::uint64_t address { 0 };
    std::uint32_t data { 0 };
};

class MsiSink {
public:
    virtual ~MsiSink() = default;
    // The guest changed vector's message, or its mask, or the function's MSI-X
    // enable or function mask. masked is true when the vector must not fire (the
    // device then keeps the interrupt pending in the PBA instead of calling fire()).
    virtual void update_route(std::uint16_t vector, MsiMessage const& message, bool masked) = 0;
    // Delivers vector, whose current message is message.
    virtual void fire(std::uint16_t vector, MsiMessage const& message) = 0;
};

} // namespace strata
