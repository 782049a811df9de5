// The vmm/kvm/ folder: KVM and nothing else strata-specific: the three file
// descriptors (this header, vm.h, vcpu.h), the ABI structures whose sizes vary
// (kvm_abi.h), guest RAM, the interrupt lines devices raise, CPU templates.
//
// Thin owners of the three KVM file descriptors: the system (/dev/kvm), a VM and a
// vCPU. Every failing ioctl yields an Error naming the ioctl (STYLE.md point 13);
// the *_or_die forms abort with that name and are for tests only.
// Threading: Kvm and Vm may be used from any thread after creation; a Vcpu is
// driven by its own thread only (KVM_RUN must come from one thread).
#pragma once

#include "base/fd.h"
#include "base/result.h"

#include <linux/kvm.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace strata {

// Issues ioctl(fd, request, arg) and returns its non-negative result, or an Error
// that names the ioctl.
[[nodiscard]] Result<int> kvm_ioctl(int fd, unsigned long request, char const* name, unsigned long arg = 0);
int kvm_ioctl_or_die(int fd, unsigned long request, char const* name, unsigned long arg = 0);

// The typed form, for ioctls whose argument is a KVM structure (or a buffer holding
// one and its flexible array): the one place where a pointer becomes ioctl's
// untyped argument word, so callers pass &regs rather than casting.
template<typename T>
[[nodiscard]] Result<int> kvm_ioctl(int fd, unsigned long request, char const* name, T* arg)
{
    // SAFETY: ioctl(2) takes its argument as one machine word; the kernel reads or
    // writes through it the structure that request names. arg points to such a
    // structure (or a buffer the caller sized for it) that outlives the call.
    return kvm_ioctl(fd, request, name, reinterpret_cast<unsigned long>(arg));
}

#define STRATA_KVM_IOCTL(fd, req, arg) ::strata::kvm_ioctl((fd), (req), #req, (arg))

class Kvm {
public:
    // Opens /dev/kvm and checks the API version; a missing or inaccessible device is
    // ErrorKind::Unavailable or Permission with a message saying what to do.
    [[nodiscard]] static Result<std::unique_ptr<Kvm>> open(char const* path = "/dev/kvm");

    int fd() const { return m_fd.get(); }
    [[nodiscard]] Result<int> check_extension(int cap) const;
    [[nodiscard]] Result<int> vcpu_mmap_size() const;
    // KVM_GET_SUPPORTED_CPUID, as a vector of entries.
    [[nodiscard]] Result<std::vector<kvm_cpuid_entry2>> supported_cpuid() const;

private:
    explicit Kvm(Fd fd)
        : m_fd(std::move(fd))
    {
    }
    Fd m_fd;
};

} // namespace strata
