#include "vmm/kvm/interrupts.h"

#include <cstdio>
#include <sys/eventfd.h>
#include <unistd.h>

namespace strata {

Result<std::unique_ptr<IrqfdLine>> IrqfdLine::create(Vm& vm, std::uint32_t gsi)
{
    int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0)
        return errno_error("eventfd");
    Fd owned(fd);
    STRATA_TRY(vm.add_irqfd(fd, gsi));
    return std::unique_ptr<IrqfdLine>(new IrqfdLine(vm, gsi, std::move(owned)));
}

IrqfdLine::~IrqfdLine()
{
    (void)m_vm.remove_irqfd(m_fd.get(), m_gsi);
}

void IrqfdLine::trigger()
{
    eventfd_signal(m_fd.get());
}

Result<std::unique_ptr<KvmMsiVectors>> KvmMsiVectors::create(Vm& vm, std::uint16_t vectors)
{
    auto sink = std::unique_ptr<KvmMsiVectors>(new KvmMsiVectors(vm));
    for (std::uint16_t i = 0; i < vectors; ++i) {
        int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (fd < 0)
            return errno_error("eventfd");
        Fd owned(fd);
        STRATA_TRY(gsi, vm.add_msi_route(0, 0));
        STRATA_TRY(vm.add_irqfd(fd, gsi));
        sink->m_vectors.push_back(Vector { gsi, std::move(owned), {} });
    }
    return sink;
}

KvmMsiVectors::~KvmMsiVectors()
{
    for (auto& v : m_vectors)
        (void)m_vm.remove_irqfd(v.fd.get(), v.gsi);
}

void KvmMsiVectors::update_route(std::uint16_t vector, MsiMessage const& message, bool masked)
{
    (void)masked; // a masked vector is never fired, so its route may stay current
    std::lock_guard guard(m_lock);
    if (vector >= m_vectors.size())
        return;
    auto& v = m_vectors[vector];
    if (v.routed.address == message.address && v.routed.data == message.data)
        return;
    if (auto r = m_vm.set_msi_route(v.gsi, message.address, message.data); !r) {
        std::fprintf(stderr, "strata: MSI-X vector %u: %s\n", vector, r.error().message.c_str());
        return;
    }
    v.routed = message;
}

void KvmMsiVectors::fire(std::uint16_t vector, MsiMessage const& message)
{
    int fd = -1;
    bool current = false;
    {
        std::lock_guard guard(m_lock);
        if (vector < m_vectors.size()) {
            fd = m_vectors[vector].fd.get();
            current = m_vectors[vector].routed.address == message.address && m_vectors[vector].routed.data == message.data;
        }
    }
    if (fd < 0)
        return;
    if (current)
        eventfd_signal(fd);
    else
        (void)m_vm.signal_msi(message.address, message.data); // route not updated yet: inject directly
}

} // namespace strata
