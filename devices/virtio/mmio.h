// MmioTransport: the virtio-mmio transport, version 2 (virtio 1.2 §4.2.2), as a
// BusDevice on the MMIO bus. Linux finds it through `virtio_mmio.device=
// <size>@<base>:<irq>` on the command line (cmdline_entry()).
//
// Register map (offset, all 32-bit; the device config at 0x100 takes any width):
//   MagicValue 0x000 r "virt" | Version 0x004 r 2 | DeviceID 0x008 r | VendorID 0x00c r
//   DeviceFeatures 0x010 r | DeviceFeaturesSel 0x014 w | DriverFeatures 0x020 w |
//   DriverFeaturesSel 0x024 w | QueueSel 0x030 w | QueueNumMax 0x034 r | QueueNum 0x038 w |
//   QueueReady 0x044 rw | QueueNotify 0x050 w | InterruptStatus 0x060 r |
//   InterruptACK 0x064 w | Status 0x070 rw | QueueDesc 0x080/0x084 w |
//   QueueDriver 0x090/0x094 w | QueueDevice 0x0a0/0x0a4 w | SHMSel 0x0ac w |
//   SHMLen 0x0b0/0x0b4 r (all ones: no shared memory) | SHMBase 0x0b8/0x0bc r |
//   ConfigGeneration 0x0fc r | Config 0x100+ rw.
// Not implemented: the legacy version 1 layout, QueueReset, notification data.
//
// Notifications: notifiers() lists, per queue, the QueueNotify address with the
// queue index as datamatch and the queue's eventfd; the VMM registers each with
// KVM_IOEVENTFD. A QueueNotify write that reaches write() (no ioeventfd) signals
// the same eventfd, so both paths end in the device's I/O thread.
// Interrupts: InterruptStatus bit 0 (used buffer) / bit 1 (config change), then one
// InterruptLine::trigger() (an irqfd edge).
//
// Threading: BusDevice calls from any vCPU thread are serialized by a lock;
// VirtioSignals calls from the device's threads take no lock.
#pragma once

#include "devices/bus.h"
#include "devices/interrupt.h"
#include "devices/virtio/device.h"
#include "devices/virtio/transport_state.h"

#include <atomic>
#include <memory>
#include <mutex>
#include <string>

namespace strata::virtio {

class MmioTransport final : public BusDevice, public VirtioSignals {
public:
    static constexpr std::uint64_t Size = 0x200;

    // base is where the VMM inserts the device on the MMIO bus; irq is the GSI of
    // `interrupt`, used only for cmdline_entry().
    [[nodiscard]] static Result<std::unique_ptr<MmioTransport>> create(VirtioDevice& device, GuestMemory const& mem,
        InterruptLine& interrupt, std::uint64_t base, std::uint32_t irq);

    // Resets the device (stopping its I/O thread, which calls back into the
    // transport), so the VMM must destroy the transport before the device.
    ~MmioTransport() override;

    void read(std::uint64_t offset, std::span<std::byte> data) override;
    void write(std::uint64_t offset, std::span<std::byte const> data) override;

    void signal_used(std::uint16_t queue) override;
    void signal_config_change() override;
    void set_needs_reset() override;

    // The transport's state for a running-state snapshot; the device's queues must
    // be paused (TransportState::save). restore_state puts one into a transport
    // no driver has touched yet and, if the driver had set DRIVER_OK, activates
    // the device.
    [[nodiscard]] Result<TransportSnapshot> save_state();
    [[nodiscard]] Status restore_state(TransportSnapshot const& snapshot);

    std::vector<QueueNotifier> notifiers() const;
    // "virtio_mmio.device=512@0xd0000000:5"
    std::string cmdline_entry() const;
    std::uint64_t base() const { return m_base; }
    VirtioDevice& device() const { return m_state->device(); }

private:
    MmioTransport(InterruptLine& interrupt, std::uint64_t base, std::uint32_t irq)
        : m_interrupt(interrupt)
        , m_base(base)
        , m_irq(irq)
    {
    }
    std::uint32_t read_register(std::uint64_t offset);
    void write_register(std::uint64_t offset, std::uint32_t value);

    InterruptLine& m_interrupt;
    std::uint64_t m_base;
    std::uint32_t m_irq;
    std::unique_ptr<TransportState> m_state;
    std::mutex m_mutex;
    std::atomic<std::uint32_t> m_interrupt_status { 0 };
    std::atomic<std::uint32_t> m_config_generation { 0 };
};

} // namespace strata::virtio
