// Machine: port I/O and MMIO exits, dispatched to the devices on the buses.
#include "vmm/machine.h"

#include <linux/kvm.h>

namespace strata {

bool Machine::handle_io(kvm_run& run)
{
    // SAFETY: KVM places the port data inside the kvm_run mapping at data_offset,
    // count * size bytes long.
    auto* data = reinterpret_cast<std::byte*>(&run) + run.io.data_offset;
    for (std::uint32_t i = 0; i < run.io.count; ++i) {
        std::span<std::byte> bytes(data + i * run.io.size, run.io.size);
        if (run.io.direction == KVM_EXIT_IO_OUT)
            m_pio.write(run.io.port, bytes);
        else
            m_pio.read(run.io.port, bytes);
    }
    return true;
}

bool Machine::handle_mmio(kvm_run& run)
{
    std::size_t len = run.mmio.len <= 8 ? run.mmio.len : 8;
    // SAFETY: run.mmio.data is an 8-byte array inside the kvm_run mapping, and len is
    // capped at 8; viewing it as bytes aliases nothing else.
    std::span<std::byte> bytes(reinterpret_cast<std::byte*>(run.mmio.data), len);
    if (run.mmio.is_write)
        m_mmio.write(run.mmio.phys_addr, bytes);
    else
        m_mmio.read(run.mmio.phys_addr, bytes);
    return true;
}

} // namespace strata
