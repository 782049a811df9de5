// MachineState: everything a running-state snapshot holds besides guest RAM and
// the disks — the VM-wide KVM state, every vCPU, the legacy devices and every
// virtio transport with its queue positions — and its file format.
//
// The state file: a 32-byte header (the magic "STRATAST", the format version,
// the CRC-32C of the payload, the payload length, 4 reserved zero bytes) and the
// payload, little-endian, every variable-length part prefixed by its count. A
// reader accepts only its own version: the KVM structures inside are the
// kernel's and this host's (VMM state is not migrated across strata versions).
// The payload also names the host CPU (vendor, family/model/stepping, the XSAVE
// size); restoring on another CPU is refused, since a guest that saw one CPU's
// CPUID and XSAVE layout cannot continue on another.
//
// Guest RAM is a separate file (memory_file.h); the state records its size and
// the checksum of its contents, so a restore finds a file that is not the one
// this state was saved with.
//
// Versions: 1 held the VM, vCPUs, legacy devices and the virtio-mmio transports
// of disks and console. 2 appends the virtio-pci part of every transport and
// the PCI bus (for --transport pci VMs), the network interfaces (their MAC and
// rate limiter levels; their transports follow the console's in `virtio`) and
// the metadata service's data store. A version 1 file still loads (it has none
// of those); any other version is refused.
//
// Errors: a file that is not a state file, is truncated or fails its CRC is
// BadInput (exit 65); another format version or another host CPU is
// Unsupported (exit 78).
// Threading: plain values and pure functions.
#pragma once

#include "base/result.h"
#include "devices/legacy/i8042.h"
#include "devices/legacy/serial.h"
#include "base/rate_limiter.h"
#include "devices/virtio/pci.h"
#include "devices/virtio/transport_state.h"
#include "vmm/kvm/vcpu_state.h"
#include "vmm/kvm/vm_state.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <optional>
#include <string>
#include <vector>

namespace strata {

// The largest state file read back: far above any VM's (vCPUs' registers and
// MSRs, device rings' positions), small enough that a hostile file cannot make
// a load hold gigabytes.
inline constexpr std::uint64_t max_machine_state_bytes = 64ull << 20;

// One network interface beyond its transport. The tap is a host resource and
// not saved: a restore opens the one the new VM's configuration names.
struct NetInterfaceState {
    std::string id;
    std::array<std::uint8_t, 6> mac {}; // what the guest's driver read
    RateLimiter::State rx, tx;
};

struct MachineState {
    static constexpr std::uint32_t format_version = 2;
    static constexpr std::uint32_t oldest_readable_version = 1;

    std::string cpu;               // host_cpu_signature() of the saving host
    std::uint64_t memory_bytes { 0 };
    std::uint32_t memory_crc { 0 }; // memory_file.h: CRC of the non-zero pages
    VmState vm;
    std::vector<VcpuState> vcpus;
    SerialState serial;
    I8042State i8042;
    std::vector<virtio::TransportSnapshot> virtio; // the disks in order, the console, the network interfaces
    // virtio-pci VMs: one per entry of `virtio`, and the bus; empty for virtio-mmio.
    std::vector<virtio::PciTransportSnapshot> pci;
    std::uint32_t pci_config_address { 0 };
    std::array<std::byte, pci::ConfigSize> pci_host_bridge {};
    std::vector<NetInterfaceState> nets;
    // The metadata service's data store (JSON text), when the VM had one; its
    // session tokens are not kept: a restored guest asks for new ones.
    std::optional<std::string> mmds_data;
};

// "GenuineIntel 6/85/7 xsave 4096": what must match for a restore.
std::string host_cpu_signature(std::size_t xsave_bytes);

std::vector<std::byte> encode_machine_state(MachineState const& state);
[[nodiscard]] Result<MachineState> decode_machine_state(std::span<std::byte const> file);

} // namespace strata
