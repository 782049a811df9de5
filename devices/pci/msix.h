// MsixTable: one PCI function's MSI-X state (PCI Local Bus 3.0 §6.8.2): the vector
// table and pending-bit array the guest reaches through a BAR, the enable and
// function-mask bits of the capability's Message Control, and the delivery rule:
// a vector that is masked (by its own mask bit or the function mask) when it fires
// sets its pending bit instead, and is delivered when unmasked.
//
// Every change the guest makes to a vector's message or mask, and every change of
// enable/function mask, is reported to the MsiSink (update_route), so the VMM can
// keep a KVM GSI route per vector; fire() hands the sink the current message.
// Table accesses are 4 or 8 bytes, naturally aligned; others read as zero and are
// dropped, as the spec allows.
//
// Threading: thread-safe. The vCPU threads access the table and control bits, the
// device's I/O thread calls fire(). The sink's fire() is called without the lock
// held; update_route() with it held.
#pragma once

#include "devices/interrupt.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <span>
#include <vector>

namespace strata::pci {

inline constexpr std::uint8_t MsixCapabilityId = 0x11;
inline constexpr std::uint16_t MsixControlEnable = 1 << 15;
inline constexpr std::uint16_t MsixControlFunctionMask = 1 << 14;

// The table's state in a running-state snapshot.
struct MsixVectorSnapshot {
    std::uint32_t address_lo { 0 };
    std::uint32_t address_hi { 0 };
    std::uint32_t data { 0 };
    std::uint32_t control { 1 };
    bool pending { false };
};
struct MsixSnapshot {
    bool enabled { false };
    bool function_mask { false };
    std::vector<MsixVectorSnapshot> vectors;
};

class MsixTable {
public:
    MsixTable(std::uint16_t vectors, MsiSink& sink);

    std::uint16_t size() const { return static_cast<std::uint16_t>(m_entries.size()); }
    std::uint64_t table_bytes() const { return 16ULL * m_entries.size(); }
    std::uint64_t pba_bytes() const { return 8ULL * ((m_entries.size() + 63) / 64); }

    // The capability body after id/next: Message Control, Table offset/BIR,
    // PBA offset/BIR; and its write mask (only enable and function mask).
    std::array<std::byte, 10> capability_body(std::uint8_t bir, std::uint32_t table_offset, std::uint32_t pba_offset) const;
    static std::array<std::byte, 10> capability_mask();
    // Applies the Message Control bits the guest wrote.
    void set_control(std::uint16_t control);

    void table_read(std::uint64_t offset, std::span<std::byte> data) const;
    void table_write(std::uint64_t offset, std::span<std::byte const> data);
    void pba_read(std::uint64_t offset, std::span<std::byte> data) const;

    bool enabled() const;
    // Delivers vector, or marks it pending if masked. Returns false when MSI-X is
    // disabled (the caller may fall back to INTx) or the vector does not exist.
    bool fire(std::uint16_t vector);
    // Back to the power-on state: disabled, every vector masked, nothing pending.
    void reset();

    MsixSnapshot save() const;
    // Puts a saved table back and reports every vector's route to the sink (so
    // the VMM's KVM routes match the guest's messages again). Pending vectors
    // stay pending until the guest unmasks them. A snapshot with another number
    // of vectors is refused (false) and changes nothing.
    [[nodiscard]] bool restore(MsixSnapshot const& snapshot);

private:
    struct Entry {
        std::uint32_t address_lo { 0 };
        std::uint32_t address_hi { 0 };
        std::uint32_t data { 0 };
        std::uint32_t control { 1 }; // bit 0: masked
        bool pending { false };
    };
    bool masked(Entry const& e) const { return m_function_mask || (e.control & 1); }
    MsiMessage message(Entry const& e) const { return { (std::uint64_t(e.address_hi) << 32) | e.address_lo, e.data }; }
    // Reports vector's route and collects it for delivery if it was pending and is now unmasked.
    void refresh(std::uint16_t vector, std::vector<std::pair<std::uint16_t, MsiMessage>>& deliver);
    void deliver(std::vector<std::pair<std::uint16_t, MsiMessage>> const& list);

    MsiSink& m_sink;
    mutable std::mutex m_mutex;
    std::vector<Entry> m_entries;
    bool m_enabled { false };
    bool m_function_mask { false };
};

} // namespace strata::pci
