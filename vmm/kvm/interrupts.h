// KVM-backed implementations of the devices' interrupt interfaces
// (devices/interrupt.h): an irqfd line for virtio-mmio and legacy INTx, and
// per-vector MSI routes with one irqfd each for MSI-X, so raising an interrupt
// from a device's I/O thread is one eventfd write and no vCPU exit.
// Threading: trigger() and fire() from any thread; update_route() from vCPU
// threads (the guest programming its MSI-X table).
#pragma once

#include "base/fd.h"
#include "base/result.h"
#include "devices/interrupt.h"
#include "vmm/kvm/vm.h"

#include <memory>
#include <mutex>
#include <vector>

namespace strata {

class IrqfdLine final : public InterruptLine {
public:
    [[nodiscard]] static Result<std::unique_ptr<IrqfdLine>> create(Vm& vm, std::uint32_t gsi);
    ~IrqfdLine() override;
    void trigger() override;
    std::uint32_t gsi() const { return m_gsi; }

private:
    IrqfdLine(Vm& vm, std::uint32_t gsi, Fd fd)
        : m_vm(vm)
        , m_gsi(gsi)
        , m_fd(std::move(fd))
    {
    }
    Vm& m_vm;
    std::uint32_t m_gsi;
    Fd m_fd;
};

class KvmMsiVectors final : public MsiSink {
public:
    // Allocates a GSI and an irqfd for each of `vectors` vectors, routed nowhere
    // (a zero message) until the guest programs the table.
    [[nodiscard]] static Result<std::unique_ptr<KvmMsiVectors>> create(Vm& vm, std::uint16_t vectors);
    ~KvmMsiVectors() override;
    void update_route(std::uint16_t vector, MsiMessage const& message, bool masked) override;
    void fire(std::uint16_t vector, MsiMessage const& message) override;

private:
    struct Vector {
        std::uint32_t gsi;
        Fd fd;
        MsiMessage routed;
    };
    explicit KvmMsiVectors(Vm& vm)
        : m_vm(vm)
    {
    }
    Vm& m_vm;
    std::mutex m_lock;
    std::vector<Vector> m_vectors;
};

} // namespace strata
