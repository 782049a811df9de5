// PciConfigSpace: the 256-byte type-0 configuration header of one PCI function
// (PCI Local Bus 3.0 §6.1-6.2, §6.7 capabilities): identity registers, the command
// register, 64-bit memory BARs with size probing, the capability list, and
// per-byte write masks so that read-only fields stay read-only whatever the
// guest writes.
//
// BARs: the VMM assigns each BAR an address before the guest runs (strata's guests
// have no BIOS to do it). The guest may still probe sizes (write all ones, read
// back) and move a BAR; when a BAR's address changes while memory decoding is on
// (or decoding is switched on at a new address), the relocation callback tells the
// VMM, which moves its MMIO range and ioeventfds. Intermediate values written while
// decoding is off (as Linux does when probing) are never reported.
// Not implemented: I/O BARs, 32-bit BARs, the expansion ROM (reads 0), extended
// (PCIe) configuration space, bridges.
//
// Threading: not thread-safe; the owning device serializes accesses.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>

namespace strata::pci {

namespace reg {
inline constexpr std::uint64_t VendorId = 0x00;
inline constexpr std::uint64_t Command = 0x04;
inline constexpr std::uint64_t Status = 0x06;
inline constexpr std::uint64_t Bar0 = 0x10;
inline constexpr std::uint64_t CapabilitiesPointer = 0x34;
inline constexpr std::uint64_t InterruptLine = 0x3c;
inline constexpr std::uint64_t InterruptPin = 0x3d;
} // namespace reg

inline constexpr std::uint16_t CommandMemory = 1 << 1;
inline constexpr std::uint16_t StatusCapList = 1 << 4;
inline constexpr std::size_t ConfigSize = 256;

struct PciIdentity {
    std::uint16_t vendor { 0 };
    std::uint16_t device { 0 };
    std::uint32_t class_code { 0 }; // class << 16 | subclass << 8 | prog-if
    std::uint8_t revision { 0 };
    std::uint16_t subsystem_vendor { 0 };
    std::uint16_t subsystem { 0 };
    std::uint8_t header_type { 0 };
    std::uint8_t interrupt_pin { 0 }; // 0 none, 1 INTA
};

class PciConfigSpace {
public:
    using RelocationHandler = std::function<void(unsigned bar, std::uint64_t old_address, std::uint64_t new_address)>;

    explicit PciConfigSpace(PciIdentity const& id);

    // A 64-bit, non-prefetchable memory BAR in slots index and index + 1. size is a
    // power of 2 of at least 16; address must be size-aligned.
    void add_bar64(unsigned index, std::uint64_t size, std::uint64_t address);
    std::uint64_t bar_address(unsigned index) const { return m_bars[index].address; }
    std::uint64_t bar_size(unsigned index) const { return m_bars[index].size; }
    void set_relocation_handler(RelocationHandler handler) { m_on_relocate = std::move(handler); }

    // Appends a capability: id, then body (everything after the id and next
    // bytes), with a per-byte write mask of the body's size. Returns its offset.
    std::uint8_t add_capability(std::uint8_t id, std::span<std::byte const> body, std::span<std::byte const> write_mask);

    void read(std::uint64_t offset, std::span<std::byte> data) const;
    void write(std::uint64_t offset, std::span<std::byte const> data);

    // Direct access for the owning device (capability registers it interprets).
    std::span<std::byte const> bytes() const { return m_bytes; }
    void poke(std::uint64_t offset, std::span<std::byte const> data);
    bool memory_enabled() const;

    // Running-state snapshots: the raw bytes (bytes()) and each BAR's address
    // (0 for a slot without a BAR). restore() puts back the guest-writable bits
    // of the bytes and the addresses, without reporting a relocation: the owning device compares the restored
    // addresses with where the VMM placed it and moves what it must. BAR sizes
    // and the write masks are the device's own and are not restored.
    std::array<std::uint64_t, 6> bar_addresses() const;
    void restore(std::span<std::byte const, ConfigSize> bytes, std::array<std::uint64_t, 6> const& bar_addresses);

private:
    struct Bar {
        std::uint64_t size { 0 };
        std::uint64_t address { 0 };
        std::uint64_t reported { 0 }; // last address the VMM knows about
        bool present { false };
    };
    std::uint32_t bar_dword(unsigned slot) const;
    void write_bar_byte(unsigned slot, unsigned byte, std::uint8_t value);
    void check_relocation();

    std::array<std::byte, ConfigSize> m_bytes {};
    std::array<std::byte, ConfigSize> m_mask {};
    std::array<Bar, 6> m_bars {};
    std::uint8_t m_next_cap { 0x40 };
    std::uint8_t m_last_cap { 0 };
    RelocationHandler m_on_relocate;
};

} // namespace strata::pci
