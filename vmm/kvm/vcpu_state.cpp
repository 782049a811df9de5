#include "vmm/kvm/vcpu_state.h"

#include "vmm/kvm/kvm.h"
#include "vmm/kvm/kvm_abi.h"
#include "vmm/kvm/vcpu.h"

#include <algorithm>
#include <cstring>
#include <string>

namespace strata {

namespace {

constexpr std::uint32_t msr_ia32_tsc = 0x10;
constexpr std::uint32_t msr_ia32_tsc_deadline = 0x6e0;
constexpr std::size_t legacy_xsave_bytes = kvm_abi::xsave_legacy_bytes;

// One KVM_GET_MSRS call; returns how many of `entries` (in order) KVM filled.
Result<std::size_t> get_msrs(int fd, std::vector<kvm_msr_entry>& entries)
{
    std::vector<std::byte> buf(sizeof(kvm_abi::MsrsHeader) + entries.size() * sizeof(kvm_msr_entry));
    kvm_abi::MsrsHeader header { static_cast<std::uint32_t>(entries.size()), 0 };
    std::memcpy(buf.data(), &header, sizeof header);
    std::memcpy(buf.data() + sizeof header, entries.data(), entries.size() * sizeof(kvm_msr_entry));
    STRATA_TRY(n, kvm_ioctl(fd, kvm_abi::get_msrs, "KVM_GET_MSRS", buf.data()));
    std::memcpy(entries.data(), buf.data() + sizeof header, entries.size() * sizeof(kvm_msr_entry));
    return static_cast<std::size_t>(n);
}

} // namespace

Result<std::vector<std::uint32_t>> snapshot_msr_indices(Kvm const& kvm)
{
    constexpr std::uint32_t max_msrs = 1024;
    std::vector<std::byte> buf(sizeof(kvm_abi::MsrListHeader) + max_msrs * sizeof(std::uint32_t));
    kvm_abi::MsrListHeader header { max_msrs };
    std::memcpy(buf.data(), &header, sizeof header);
    STRATA_TRY(kvm_ioctl(kvm.fd(), kvm_abi::get_msr_index_list, "KVM_GET_MSR_INDEX_LIST", buf.data()));
    std::memcpy(&header, buf.data(), sizeof header);
    std::vector<std::uint32_t> indices(std::min(header.nmsrs, max_msrs));
    std::memcpy(indices.data(), buf.data() + sizeof header, indices.size() * sizeof(std::uint32_t));
    return indices;
}

Result<std::size_t> xsave_size(Kvm const& kvm)
{
    // 0 means a kernel without KVM_GET_XSAVE2: the legacy 4 KiB call then.
    auto size = kvm.check_extension(KVM_CAP_XSAVE2);
    if (!size || size.value() <= 0)
        return std::size_t { 0 };
    return std::max(legacy_xsave_bytes, static_cast<std::size_t>(size.value()));
}

Result<VcpuState> save_vcpu_state(Vcpu const& vcpu, std::vector<std::uint32_t> const& msr_indices, std::size_t xsave_bytes)
{
    int const fd = vcpu.fd();
    VcpuState s;
    STRATA_TRY(STRATA_KVM_IOCTL(fd, KVM_GET_MP_STATE, &s.mp_state));
    STRATA_TRY(STRATA_KVM_IOCTL(fd, KVM_GET_REGS, &s.regs));
    STRATA_TRY(STRATA_KVM_IOCTL(fd, KVM_GET_SREGS, &s.sregs));
    // KVM_GET_XSAVE2 fills a buffer of the size KVM_CAP_XSAVE2 announced. The
    // plain KVM_GET_XSAVE refuses (EINVAL) on hosts whose XSAVE area is larger
    // than 4 KiB (AMX), even when the guest uses less, so it is only the fallback
    // for kernels without XSAVE2.
    s.xsave.assign(std::max(xsave_bytes, legacy_xsave_bytes), std::byte { 0 });
    if (xsave_bytes > 0) {
        STRATA_TRY(kvm_ioctl(fd, kvm_abi::get_xsave2, "KVM_GET_XSAVE2", s.xsave.data()));
    } else {
        STRATA_TRY(kvm_ioctl(fd, kvm_abi::get_xsave, "KVM_GET_XSAVE", s.xsave.data()));
    }
    STRATA_TRY(STRATA_KVM_IOCTL(fd, KVM_GET_XCRS, &s.xcrs));
    STRATA_TRY(STRATA_KVM_IOCTL(fd, KVM_GET_DEBUGREGS, &s.debugregs));
    STRATA_TRY(STRATA_KVM_IOCTL(fd, KVM_GET_LAPIC, &s.lapic));

    // KVM_GET_MSRS stops at the first MSR it refuses and returns how many it read:
    // skip that one and go on, so one MSR this CPU lacks does not lose the rest.
    std::vector<kvm_msr_entry> pending;
    for (auto index : msr_indices) {
        kvm_msr_entry e {};
        e.index = index;
        pending.push_back(e);
    }
    std::size_t at = 0;
    while (at < pending.size()) {
        std::vector<kvm_msr_entry> batch(pending.begin() + static_cast<std::ptrdiff_t>(at), pending.end());
        STRATA_TRY(n, get_msrs(fd, batch));
        s.msrs.insert(s.msrs.end(), batch.begin(), batch.begin() + static_cast<std::ptrdiff_t>(n));
        at += n + 1; // n read, then the refused one skipped
    }
    rearm_fired_tsc_deadline(s.msrs);
    STRATA_TRY(STRATA_KVM_IOCTL(fd, KVM_GET_VCPU_EVENTS, &s.events));
    return s;
}

void rearm_fired_tsc_deadline(std::vector<kvm_msr_entry>& msrs)
{
    auto tsc = std::find_if(msrs.begin(), msrs.end(), [](kvm_msr_entry const& e) { return e.index == msr_ia32_tsc; });
    auto deadline = std::find_if(msrs.begin(), msrs.end(), [](kvm_msr_entry const& e) { return e.index == msr_ia32_tsc_deadline; });
    if (tsc != msrs.end() && deadline != msrs.end() && deadline->data == 0)
        deadline->data = tsc->data;
}

Status restore_vcpu_state(Vcpu& vcpu, VcpuState const& state)
{
    int const fd = vcpu.fd();
    auto mp_state = state.mp_state;
    STRATA_TRY(STRATA_KVM_IOCTL(fd, KVM_SET_MP_STATE, &mp_state));
    auto regs = state.regs;
    STRATA_TRY(STRATA_KVM_IOCTL(fd, KVM_SET_REGS, &regs));
    auto sregs = state.sregs;
    STRATA_TRY(STRATA_KVM_IOCTL(fd, KVM_SET_SREGS, &sregs));
    if (state.xsave.size() < legacy_xsave_bytes)
        return make_error(ErrorKind::BadInput, "vCPU " + std::to_string(vcpu.index()) + ": the saved XSAVE area is too short");
    auto xsave = state.xsave;
    STRATA_TRY(kvm_ioctl(fd, kvm_abi::set_xsave, "KVM_SET_XSAVE", xsave.data()));
    auto xcrs = state.xcrs;
    STRATA_TRY(STRATA_KVM_IOCTL(fd, KVM_SET_XCRS, &xcrs));
    auto debugregs = state.debugregs;
    STRATA_TRY(STRATA_KVM_IOCTL(fd, KVM_SET_DEBUGREGS, &debugregs));
    auto lapic = state.lapic;
    STRATA_TRY(STRATA_KVM_IOCTL(fd, KVM_SET_LAPIC, &lapic));

    // The TSC first (writing it sets the vCPU's TSC offset), the deadline last.
    std::vector<kvm_msr_entry> msrs = state.msrs;
    std::stable_partition(msrs.begin(), msrs.end(), [](kvm_msr_entry const& e) { return e.index == msr_ia32_tsc; });
    std::stable_partition(msrs.begin(), msrs.end(), [](kvm_msr_entry const& e) { return e.index != msr_ia32_tsc_deadline; });
    STRATA_TRY(vcpu.set_msrs(msrs));

    auto events = state.events;
    STRATA_TRY(STRATA_KVM_IOCTL(fd, KVM_SET_VCPU_EVENTS, &events));
    return ok();
}

} // namespace strata
