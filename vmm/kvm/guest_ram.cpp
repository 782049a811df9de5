#include "vmm/kvm/guest_ram.h"

#include "vmm/layout.h"

#include <string>
#include <sys/mman.h>
#include <sys/sysinfo.h>

namespace strata {

std::uint64_t host_memory_limit()
{
    // sysinfo(2) rather than parsing /proc/meminfo with iostreams: the first
    // iostream use costs milliseconds of locale set-up on every VM start.
    struct sysinfo info {};
    if (::sysinfo(&info) != 0)
        return 0;
    return (static_cast<std::uint64_t>(info.totalram) + info.totalswap) * info.mem_unit;
}

Result<std::unique_ptr<GuestRam>> GuestRam::create(Vm& vm, std::uint64_t size)
{
    return map(vm, size, -1);
}

Result<std::unique_ptr<GuestRam>> GuestRam::create_from_file(Vm& vm, std::uint64_t size, int fd)
{
    return map(vm, size, fd);
}

Result<std::unique_ptr<GuestRam>> GuestRam::map(Vm& vm, std::uint64_t size, int fd)
{
    using namespace layout;
    if (size < min_mib * MiB)
        return make_error(ErrorKind::Usage, "guest memory of " + std::to_string(size / MiB) + " MiB is too small: at least " + std::to_string(min_mib) + " MiB");
    if (size > max_mib * MiB)
        return make_error(ErrorKind::Usage, "guest memory of " + std::to_string(size / MiB) + " MiB is larger than strata's limit of " + std::to_string(max_mib) + " MiB");
    if (size % (2 * MiB) != 0 && size % MiB != 0)
        return make_error(ErrorKind::Usage, "guest memory must be a whole number of MiB");
    auto limit = host_memory_limit();
    if (limit != 0 && size > limit)
        return make_error(ErrorKind::Usage, "guest memory of " + std::to_string(size / MiB) + " MiB is more than this host's RAM and swap (" + std::to_string(limit / MiB) + " MiB)");

    int const flags = MAP_PRIVATE | MAP_NORESERVE | (fd < 0 ? MAP_ANONYMOUS : 0);
    void* host = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, flags, fd, 0);
    if (host == MAP_FAILED)
        return errno_error("mmap guest RAM of " + std::to_string(size / MiB) + " MiB");
    // Transparent huge pages cut the guest's TLB misses; failure is harmless. Not
    // for a file mapping, whose pages stay shared with other clones until written.
    if (fd < 0)
        ::madvise(host, size, MADV_HUGEPAGE);
    auto* base = static_cast<std::byte*>(host);

    std::vector<GuestMemory::Region> regions;
    std::uint64_t low = size < mmio_hole_start ? size : mmio_hole_start;
    regions.push_back({ 0, low, base });
    if (size > low)
        regions.push_back({ mmio_hole_end, size - low, base + low });

    auto ram = std::unique_ptr<GuestRam>(new GuestRam(size, base, size, GuestMemory(regions)));
    std::uint32_t slot = 0;
    for (auto const& r : regions)
        STRATA_TRY(vm.map_memory(slot++, r.gpa, r.size, r.host));
    return ram;
}

GuestRam::~GuestRam()
{
    ::munmap(m_host, m_host_size);
}

} // namespace strata
