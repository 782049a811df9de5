#include "vmm/kvm/vcpu.h"

#include "vmm/kvm/kvm_abi.h"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

namespace strata {

static int kick_signal() { return SIGRTMIN; }

void Vcpu::install_kick_signal()
{
    struct sigaction sa {};
    // The handler does nothing: its only job is to make KVM_RUN return EINTR.
    sa.sa_handler = [](int) {};
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; // no SA_RESTART, so the ioctl is interrupted
    sigaction(kick_signal(), &sa, nullptr);
}

Result<std::unique_ptr<Vcpu>> Vcpu::create(Vm& vm, std::uint32_t index)
{
    // A vCPU made before the irqchip would get no in-kernel LAPIC.
    if (!vm.has_interrupt_controllers())
        return make_error(ErrorKind::Internal, "a vCPU needs the VM's interrupt controllers first (Vm::add_interrupt_controllers)");
    STRATA_TRY(fd, STRATA_KVM_IOCTL(vm.fd(), KVM_CREATE_VCPU, index));
    Fd owned(fd);
    STRATA_TRY(size, vm.kvm().vcpu_mmap_size());
    void* run = ::mmap(nullptr, static_cast<std::size_t>(size), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (run == MAP_FAILED)
        return errno_error("mmap kvm_run");
    // SAFETY: KVM maps a kvm_run structure at offset 0 of the vCPU fd.
    return std::unique_ptr<Vcpu>(new Vcpu(index, std::move(owned), static_cast<kvm_run*>(run), static_cast<std::size_t>(size)));
}

Vcpu::~Vcpu()
{
    ::munmap(m_run, m_run_size);
}

Status Vcpu::set_cpuid(std::vector<kvm_cpuid_entry2> entries, std::uint32_t vcpu_count)
{
    for (auto& e : entries) {
        switch (e.function) {
        case 0x1:
            // EBX[31:24] initial APIC id, EBX[23:16] logical processors per package.
            e.ebx = (e.ebx & 0x0000ffffu) | (m_index << 24) | ((vcpu_count & 0xff) << 16);
            e.ecx |= 1u << 31; // hypervisor present
            if (vcpu_count > 1)
                e.edx |= 1u << 28; // HTT: the logical-processor count is valid
            break;
        case 0xb:
        case 0x1f:
            e.edx = m_index; // x2APIC id
            break;
        default:
            break;
        }
    }
    std::vector<std::byte> buf(sizeof(kvm_abi::CpuidHeader) + entries.size() * sizeof(kvm_cpuid_entry2));
    kvm_abi::CpuidHeader header { static_cast<std::uint32_t>(entries.size()), 0 };
    std::memcpy(buf.data(), &header, sizeof header);
    std::memcpy(buf.data() + sizeof header, entries.data(), entries.size() * sizeof(kvm_cpuid_entry2));
    STRATA_TRY(kvm_ioctl(m_fd.get(), kvm_abi::set_cpuid2, "KVM_SET_CPUID2", buf.data()));
    return ok();
}

Status Vcpu::setup_lapic()
{
    kvm_lapic_state lapic {};
    STRATA_TRY(STRATA_KVM_IOCTL(m_fd.get(), KVM_GET_LAPIC, &lapic));
    auto set_lvt = [&](std::size_t reg, std::uint32_t mode) {
        std::uint32_t v;
        std::memcpy(&v, lapic.regs + reg, sizeof v);
        v = (v & ~0x700u) | (mode << 8);
        std::memcpy(lapic.regs + reg, &v, sizeof v);
    };
    set_lvt(0x350, 0x7); // LINT0: ExtINT
    set_lvt(0x360, 0x4); // LINT1: NMI
    STRATA_TRY(STRATA_KVM_IOCTL(m_fd.get(), KVM_SET_LAPIC, &lapic));
    return ok();
}

Status Vcpu::setup_pvh_entry(std::uint32_t entry, std::uint32_t start_info)
{
    STRATA_TRY(sregs, get_sregs());
    auto flat = [](kvm_segment& s, std::uint16_t selector, std::uint8_t type) {
        s.base = 0;
        s.limit = 0xffffffff;
        s.selector = selector;
        s.type = type;
        s.present = 1;
        s.dpl = 0;
        s.db = 1;
        s.s = 1;
        s.l = 0;
        s.g = 1;
        s.avl = 0;
        s.unusable = 0;
    };
    flat(sregs.cs, 0x10, 0xb); // execute/read, accessed
    flat(sregs.ds, 0x18, 0x3); // read/write, accessed
    sregs.es = sregs.ds;
    sregs.fs = sregs.ds;
    sregs.gs = sregs.ds;
    sregs.ss = sregs.ds;
    sregs.tr.base = 0;
    sregs.tr.limit = 0x67;
    sregs.tr.type = 0xb;
    sregs.tr.present = 1;
    sregs.tr.s = 0;
    sregs.cr0 = (sregs.cr0 | 0x1) & ~(0x80000000ull); // PE on, PG off
    sregs.cr4 = 0;
    sregs.efer = 0;
    STRATA_TRY(set_sregs(sregs));
    kvm_regs regs {};
    regs.rip = entry;
    regs.rbx = start_info;
    regs.rflags = 0x2;
    STRATA_TRY(set_regs(regs));
    return ok();
}

Result<kvm_regs> Vcpu::get_regs() const
{
    kvm_regs regs {};
    STRATA_TRY(STRATA_KVM_IOCTL(m_fd.get(), KVM_GET_REGS, &regs));
    return regs;
}

Status Vcpu::set_regs(kvm_regs const& regs)
{
    STRATA_TRY(STRATA_KVM_IOCTL(m_fd.get(), KVM_SET_REGS, &regs));
    return ok();
}

Result<kvm_sregs> Vcpu::get_sregs() const
{
    kvm_sregs sregs {};
    STRATA_TRY(STRATA_KVM_IOCTL(m_fd.get(), KVM_GET_SREGS, &sregs));
    return sregs;
}

Status Vcpu::set_sregs(kvm_sregs const& sregs)
{
    STRATA_TRY(STRATA_KVM_IOCTL(m_fd.get(), KVM_SET_SREGS, &sregs));
    return ok();
}

Status Vcpu::set_msrs(std::vector<kvm_msr_entry> const& msrs)
{
    std::vector<std::byte> buf(sizeof(kvm_abi::MsrsHeader) + msrs.size() * sizeof(kvm_msr_entry));
    kvm_abi::MsrsHeader header { static_cast<std::uint32_t>(msrs.size()), 0 };
    std::memcpy(buf.data(), &header, sizeof header);
    std::memcpy(buf.data() + sizeof header, msrs.data(), msrs.size() * sizeof(kvm_msr_entry));
    STRATA_TRY(n, kvm_ioctl(m_fd.get(), kvm_abi::set_msrs, "KVM_SET_MSRS", buf.data()));
    if (static_cast<std::size_t>(n) != msrs.size())
        return make_error(ErrorKind::Internal, "KVM_SET_MSRS: MSR 0x" + std::to_string(msrs[static_cast<std::size_t>(n)].index) + " was refused");
    return ok();
}

Result<bool> Vcpu::run()
{
    if (__atomic_load_n(&m_run->immediate_exit, __ATOMIC_ACQUIRE)) {
        return false;
    }
    int r = ::ioctl(m_fd.get(), KVM_RUN, 0);
    if (r < 0) {
        if (errno == EINTR || errno == EAGAIN)
            return false;
        return errno_error("KVM_RUN");
    }
    return true;
}

Status Vcpu::complete_pending_exit()
{
    __atomic_store_n(&m_run->immediate_exit, 1, __ATOMIC_RELEASE);
    int r = ::ioctl(m_fd.get(), KVM_RUN, 0);
    if (r < 0 && errno != EINTR && errno != EAGAIN)
        return errno_error("KVM_RUN (completing the last exit)");
    return ok();
}

void Vcpu::clear_exit_request()
{
    __atomic_store_n(&m_run->immediate_exit, 0, __ATOMIC_RELEASE);
}

void Vcpu::bind_to_current_thread()
{
    m_thread.store(static_cast<unsigned long>(pthread_self()), std::memory_order_release);
}

void Vcpu::request_exit()
{
    __atomic_store_n(&m_run->immediate_exit, 1, __ATOMIC_RELEASE);
    auto thread = m_thread.load(std::memory_order_acquire);
    if (thread != 0)
        pthread_kill(static_cast<pthread_t>(thread), kick_signal());
}

std::string Vcpu::dump_registers() const
{
    auto regs = get_regs();
    auto sregs = get_sregs();
    if (!regs || !sregs)
        return "  (registers unavailable)\n";
    auto const& r = regs.value();
    auto const& s = sregs.value();
    char buf[1024];
    std::snprintf(buf, sizeof buf,
        "  rip=%016llx rsp=%016llx rflags=%016llx\n"
        "  rax=%016llx rbx=%016llx rcx=%016llx rdx=%016llx\n"
        "  rsi=%016llx rdi=%016llx rbp=%016llx\n"
        "  cr0=%016llx cr2=%016llx cr3=%016llx cr4=%016llx efer=%016llx\n"
        "  cs=%04x (base %llx, l=%u, db=%u) ss=%04x idt=%llx/%x gdt=%llx/%x\n",
        r.rip, r.rsp, r.rflags, r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp,
        s.cr0, s.cr2, s.cr3, s.cr4, s.efer, s.cs.selector, s.cs.base, s.cs.l, s.cs.db, s.ss.selector,
        s.idt.base, s.idt.limit, s.gdt.base, s.gdt.limit);
    return buf;
}

} // namespace strata
