// C++-correct spellings of the KVM structures that end in a flexible array.
//
// linux/kvm.h declares them with __DECLARE_FLEX_ARRAY, which wraps the array in a
// struct holding an empty struct. An empty struct is 0 bytes in C but 1 byte in
// C++, so under g++ the array moves (kvm_cpuid2::entries sits at offset 12, not 8)
// and, worse, the ioctl numbers built from sizeof() change, so KVM rejects them
// with EINVAL. Every strata file uses the headers and numbers below instead of
// KVM_GET_SUPPORTED_CPUID, KVM_SET_CPUID2, KVM_GET_MSRS, KVM_SET_MSRS,
// KVM_GET_MSR_INDEX_LIST, KVM_SET_GSI_ROUTING and KVM_GET_XSAVE/KVM_GET_XSAVE2/
// KVM_SET_XSAVE (struct kvm_xsave ends in a flexible array too) from linux/kvm.h.
// Threading: declarations only.
#pragma once

#include <linux/kvm.h>

#include <cstddef>
#include <cstdint>

namespace strata::kvm_abi {

struct CpuidHeader { // struct kvm_cpuid2 without its entries
    std::uint32_t nent;
    std::uint32_t padding;
};
struct MsrsHeader { // struct kvm_msrs without its entries
    std::uint32_t nmsrs;
    std::uint32_t pad;
};
struct MsrListHeader { // struct kvm_msr_list without its indices
    std::uint32_t nmsrs;
};
struct IrqRoutingHeader { // struct kvm_irq_routing without its entries
    std::uint32_t nr;
    std::uint32_t flags;
};
static_assert(sizeof(CpuidHeader) == 8 && sizeof(MsrsHeader) == 8 && sizeof(IrqRoutingHeader) == 8);

constexpr unsigned long get_supported_cpuid = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x05, sizeof(CpuidHeader));
constexpr unsigned long set_cpuid2 = _IOC(_IOC_WRITE, KVMIO, 0x90, sizeof(CpuidHeader));
constexpr unsigned long get_msrs = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x88, sizeof(MsrsHeader));
constexpr unsigned long set_msrs = _IOC(_IOC_WRITE, KVMIO, 0x89, sizeof(MsrsHeader));
constexpr unsigned long get_msr_index_list = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x02, sizeof(MsrListHeader));
// struct kvm_xsave without its flexible tail: the legacy 4 KiB area.
constexpr std::size_t xsave_legacy_bytes = 4096;
constexpr unsigned long get_xsave = _IOC(_IOC_READ, KVMIO, 0xa4, xsave_legacy_bytes);
constexpr unsigned long set_xsave = _IOC(_IOC_WRITE, KVMIO, 0xa5, xsave_legacy_bytes);
constexpr unsigned long get_xsave2 = _IOC(_IOC_READ, KVMIO, 0xcf, xsave_legacy_bytes);
constexpr unsigned long set_gsi_routing = _IOC(_IOC_WRITE, KVMIO, 0x6a, sizeof(IrqRoutingHeader));

} // namespace strata::kvm_abi
