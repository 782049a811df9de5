#include "vmm/kvm/kvm.h"

#include "vmm/kvm/kvm_abi.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <fcntl.h>
#include <sys/ioctl.h>

namespace strata {

Result<int> kvm_ioctl(int fd, unsigned long request, char const* name, unsigned long arg)
{
    int r;
    do {
        r = ::ioctl(fd, request, arg);
    } while (r < 0 && errno == EINTR);
    if (r < 0)
        return errno_error(name);
    return r;
}

int kvm_ioctl_or_die(int fd, unsigned long request, char const* name, unsigned long arg)
{
    auto r = kvm_ioctl(fd, request, name, arg);
    if (!r) {
        std::fprintf(stderr, "fatal: %s\n", r.error().message.c_str());
        std::abort();
    }
    return r.value();
}

Result<std::unique_ptr<Kvm>> Kvm::open(char const* path)
{
    int fd = ::open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        int err = errno;
        if (err == ENOENT || err == ENXIO || err == ENODEV)
            return Error { ErrorKind::Unavailable, err,
                std::string(path) + " does not exist: this machine has no KVM (load kvm-intel or kvm-amd, or enable nested virtualization)" };
        if (err == EACCES || err == EPERM)
            return Error { ErrorKind::Permission, err,
                std::string("no permission to open ") + path + ": add your user to the 'kvm' group or run as root" };
        return errno_error(std::string("open ") + path, err);
    }
    Fd owned(fd);
    STRATA_TRY(version, STRATA_KVM_IOCTL(fd, KVM_GET_API_VERSION, 0));
    if (version != KVM_API_VERSION)
        return make_error(ErrorKind::Unavailable, "KVM API version " + std::to_string(version) + " is not the expected 12");
    return std::unique_ptr<Kvm>(new Kvm(std::move(owned)));
}

Result<int> Kvm::check_extension(int cap) const
{
    return STRATA_KVM_IOCTL(m_fd.get(), KVM_CHECK_EXTENSION, static_cast<unsigned long>(cap));
}

Result<int> Kvm::vcpu_mmap_size() const
{
    return STRATA_KVM_IOCTL(m_fd.get(), KVM_GET_VCPU_MMAP_SIZE, 0);
}

Result<std::vector<kvm_cpuid_entry2>> Kvm::supported_cpuid() const
{
    constexpr std::size_t max_entries = 256;
    std::vector<std::byte> buf(sizeof(kvm_abi::CpuidHeader) + max_entries * sizeof(kvm_cpuid_entry2));
    kvm_abi::CpuidHeader header { max_entries, 0 };
    std::memcpy(buf.data(), &header, sizeof header);
    STRATA_TRY(kvm_ioctl(m_fd.get(), kvm_abi::get_supported_cpuid, "KVM_GET_SUPPORTED_CPUID", buf.data()));
    std::memcpy(&header, buf.data(), sizeof header);
    std::vector<kvm_cpuid_entry2> entries(header.nent);
    std::memcpy(entries.data(), buf.data() + sizeof header, header.nent * sizeof(kvm_cpuid_entry2));
    return entries;
}

} // namespace strata
