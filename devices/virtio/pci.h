// PciTransport: the modern (non-transitional) virtio-pci transport (virtio 1.2
// §4.1) for one virtio device: a PCI function 0x1af4:0x1040+id (0x1042 for blk,
// class 0x018000) whose structures all live in one 64-bit memory BAR (BAR 0):
//
//   0x0000 common configuration (VIRTIO_PCI_CAP_COMMON_CFG, §4.1.4.3)
//   0x1000 ISR status           (VIRTIO_PCI_CAP_ISR_CFG; read clears)
//   0x2000 device configuration (VIRTIO_PCI_CAP_DEVICE_CFG)
//   0x3000 notifications        (VIRTIO_PCI_CAP_NOTIFY_CFG, notify_off_multiplier
//                                4: queue q at 0x3000 + 4q; queue_notify_off = q)
//   0x4000 MSI-X table, 0x5000 MSI-X PBA (vectors: one per queue plus one)
//
// plus VIRTIO_PCI_CAP_PCI_CFG (BAR access through configuration space) and the
// MSI-X capability. Interrupts go through MSI-X when the driver enabled it
// (msix_config / queue_msix_vector select the vectors; NO_VECTOR means none);
// otherwise through the ISR and the optional INTx line.
// Not implemented: the legacy/transitional interface, VIRTIO_F_NOTIFICATION_DATA,
// queue_reset (VIRTIO_F_RING_RESET), shared memory capabilities.
//
// For the VMM: insert the transport on the MMIO bus at bar_address() for BarSize
// bytes and on the PciBus; register notifiers() with KVM_IOEVENTFD (a notify write
// that reaches write() instead signals the same eventfd); and on relocation (the
// guest moved BAR 0) move both, using the handler set with set_relocation_handler().
//
// Threading: configuration and BAR accesses from vCPU threads are serialized by a
// lock; VirtioSignals calls from the device's threads do not take it.
#pragma once

#include "devices/bus.h"
#include "devices/interrupt.h"
#include "devices/pci/config_space.h"
#include "devices/pci/msix.h"
#include "devices/pci/pci_bus.h"
#include "devices/virtio/device.h"
#include "devices/virtio/spec.h"
#include "devices/virtio/transport_state.h"

#include <array>
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>

namespace strata::virtio {

// What a running-state snapshot keeps of a virtio-pci function besides the
// transport-independent TransportSnapshot (whose interrupt_status is the ISR and
// config_generation the common configuration's): its configuration space
// (command register, BAR address, the PCI_CFG window, MSI-X control), the MSI-X
// table and PBA, and the vectors the driver chose for the configuration and
// each queue.
struct PciTransportSnapshot {
    std::array<std::byte, pci::ConfigSize> config {};
    std::array<std::uint64_t, 6> bars {};
    pci::MsixSnapshot msix;
    std::uint16_t config_vector { NoVector };
    std::vector<std::uint16_t> queue_vectors; // one per queue
};

class PciTransport final : public pci::PciDevice, public BusDevice, public VirtioSignals {
public:
    static constexpr std::uint64_t BarSize = 0x8000;
    static constexpr std::uint64_t CommonOffset = 0x0000;
    static constexpr std::uint64_t IsrOffset = 0x1000;
    static constexpr std::uint64_t DeviceOffset = 0x2000;
    static constexpr std::uint64_t NotifyOffset = 0x3000;
    static constexpr std::uint64_t MsixTableOffset = 0x4000;
    static constexpr std::uint64_t MsixPbaOffset = 0x5000;
    static constexpr std::uint32_t NotifyMultiplier = 4;

    // bar_address must be aligned to BarSize. intx may be null (no INTx pin).
    [[nodiscard]] static Result<std::unique_ptr<PciTransport>> create(VirtioDevice& device, GuestMemory const& mem,
        MsiSink& msi, std::uint64_t bar_address, InterruptLine* intx = nullptr);

    // Resets the device (stopping its I/O thread, which calls back into the
    // transport), so the VMM must destroy the transport before the device.
    ~PciTransport() override;

    // PciDevice: configuration space.
    void config_read(std::uint64_t offset, std::span<std::byte> data) override;
    void config_write(std::uint64_t offset, std::span<std::byte const> data) override;
    // BusDevice: BAR 0, offset relative to its base.
    void read(std::uint64_t offset, std::span<std::byte> data) override;
    void write(std::uint64_t offset, std::span<std::byte const> data) override;

    void signal_used(std::uint16_t queue) override;
    void signal_config_change() override;
    void set_needs_reset() override;

    // Running-state snapshots, taken with the vCPUs parked and the device's
    // queues paused (TransportState::save). restore_state() puts a snapshot into
    // a freshly attached transport: the configuration space, then, when BAR 0
    // was elsewhere, the relocation handler (the VMM moves the MMIO range and
    // the ioeventfds), then the MSI-X table (every vector's route reported to
    // the MsiSink, so the KVM routes are the guest's again), the vectors, and
    // last the transport state, which re-activates the device. A snapshot that
    // does not fit this function (vector or queue counts) is BadInput.
    [[nodiscard]] Result<TransportSnapshot> save_state(PciTransportSnapshot& pci);
    [[nodiscard]] Status restore_state(TransportSnapshot const& snapshot, PciTransportSnapshot const& pci);

    std::uint64_t bar_address() const;
    std::vector<QueueNotifier> notifiers() const;
    // Called (from a vCPU thread, with the transport's lock held) when the guest
    // moves BAR 0; the VMM re-inserts the MMIO range and re-registers notifiers.
    void set_relocation_handler(std::function<void(std::uint64_t old_base, std::uint64_t new_base)> handler);
    VirtioDevice& device() const { return m_state->device(); }

private:
    PciTransport(MsiSink& msi, std::uint16_t vectors, InterruptLine* intx);
    void build_config_space(std::uint64_t bar_address);
    void bar_read(std::uint64_t offset, std::span<std::byte> data);
    void bar_write(std::uint64_t offset, std::span<std::byte const> data);
    void common_read(std::uint64_t offset, std::span<std::byte> data);
    void common_write(std::uint64_t offset, std::span<std::byte const> data);
    void apply_common_field(std::uint64_t field, std::uint64_t value);
    void reset_vectors();
    void raise_intx(std::uint32_t isr_bit);

    std::unique_ptr<pci::PciConfigSpace> m_config;
    std::unique_ptr<TransportState> m_state;
    pci::MsixTable m_msix;
    InterruptLine* m_intx;
    std::uint8_t m_msix_cap { 0 };
    std::uint8_t m_pci_cfg_cap { 0 };
    std::atomic<std::uint64_t> m_bar_address_cached { 0 };

    mutable std::mutex m_mutex;
    std::atomic<std::uint32_t> m_isr { 0 };
    std::atomic<std::uint8_t> m_config_generation { 0 };
    std::atomic<std::uint16_t> m_config_vector { NoVector };
    std::unique_ptr<std::atomic<std::uint16_t>[]> m_queue_vectors;
    std::function<void(std::uint64_t, std::uint64_t)> m_on_relocate;
};

} // namespace strata::virtio
