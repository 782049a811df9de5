// Machine: creation, boot (firmware, Linux, ACPI), the console and pause/resume.
// The vCPU and input threads are in machine_run.cpp, the port and MMIO exits in
// machine_exits.cpp.
#include "vmm/machine.h"

#include "base/file.h"
#include "base/thread.h"
#include "devices/legacy/boot_timer.h"
#include "devices/legacy/cmos_rtc.h"
#include "devices/legacy/debug_exit.h"
#include "devices/legacy/i8042.h"
#include "devices/legacy/serial.h"
#include "devices/pci/pci_bus.h"
#include "devices/virtio/console/device.h"
#include "devices/virtio/mmio.h"
#include "vmm/agent_channel.h"
#include "vmm/boot/acpi.h"
#include "vmm/kvm/guest_ram.h"
#include "vmm/kvm/kvm.h"
#include "vmm/boot/aml.h"
#include "vmm/layout.h"
#include "vmm/boot/loader/elf.h"
#include "vmm/kvm/cpu_template.h"
#include "vmm/boot/linux/kernel_cache.h"
#include "vmm/boot/linux/linux_loader.h"
#include "vmm/machine_disks.h"
#include "vmm/machine_nets.h"
#include "vmm/prepared_vm.h"
#include "vmm/boot/loader/memory_map.h"
#include "vmm/boot/loader/pvh.h"
#include "vmm/kvm/vcpu.h"
#include "vmm/virtio_slot.h"
#include "vmm/kvm/vm.h"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

namespace strata {

namespace {

constexpr std::uint64_t max_boot_file = 512ull << 20;

} // namespace

Machine::Machine() = default;

Machine::~Machine()
{
    stop();
    for (auto& t : m_threads)
        if (t.joinable())
            t.join();
    if (m_input_stop.valid())
        eventfd_signal(m_input_stop.get());
    if (m_input_thread.joinable())
        m_input_thread.join();
    if (m_mac_thread.joinable()) {
        m_agent->close();
        m_mac_thread.join();
    }
    if (m_kernel_cache_writer.joinable())
        m_kernel_cache_writer.join();
    // The disks' and the console's I/O threads write guest RAM, so they stop before
    // anything else goes; then members are destroyed in reverse order: vCPUs,
    // devices, RAM, VM, KVM.
    m_nets.reset();
    m_disks.reset();
    m_console_slot.reset();
    m_console.reset();
}

// A Machine with its events and KVM open, nothing else: what create and restore
// both start from.
Result<std::unique_ptr<Machine>> Machine::open_shell(MachineConfig const& config, MachineIo io)
{
    auto machine = std::unique_ptr<Machine>(new Machine());
    machine->m_created = std::chrono::steady_clock::now();
    machine->m_config = config;
    machine->m_io = io;
    int done = ::eventfd(0, EFD_CLOEXEC);
    int stop = ::eventfd(0, EFD_CLOEXEC);
    if (done < 0 || stop < 0)
        return errno_error("eventfd");
    machine->m_done_event = Fd(done);
    machine->m_input_stop = Fd(stop);
    // The machine keeps no hold on a preparation: take_prepared_vm used it or not.
    machine->m_io.prepared.reset();
    return machine;
}

Status Machine::take_prepared_vm(MachineIo const& io)
{
    std::uint64_t const bytes = m_config.memory_mib << 20;
    std::optional<PreparedVm> taken;
    if (io.prepared)
        taken = io.prepared->take(bytes, m_config.track_dirty_pages);
    if (!taken) {
        STRATA_TRY(made, prepare_vm(bytes, m_config.track_dirty_pages));
        taken = std::move(made);
    }
    m_kvm = std::move(taken->kvm);
    m_vm = std::move(taken->vm);
    m_ram = std::move(taken->ram);
    return ok();
}

Result<std::unique_ptr<Machine>> Machine::create(MachineConfig const& config, MachineIo io)
{
    if (config.vcpus == 0)
        return make_error(ErrorKind::Usage, "a VM needs at least 1 vCPU");
    if (config.vcpus > MachineConfig::max_vcpus)
        return make_error(ErrorKind::Usage, "at most " + std::to_string(MachineConfig::max_vcpus) + " vCPUs are supported");
    if (config.firmware.empty() == config.kernel.empty())
        return make_error(ErrorKind::Usage, "give exactly one of --firmware and --kernel");

    STRATA_TRY(machine, open_shell(config, io));
    STRATA_TRY(machine->take_prepared_vm(io));
    STRATA_TRY(machine->boot(config));
    return machine;
}

namespace {

// True when a word of the command line starts with prefix ("reboot=").
bool has_word_prefix(std::string const& cmdline, std::string const& prefix)
{
    std::size_t at = 0;
    while ((at = cmdline.find(prefix, at)) != std::string::npos) {
        if (at == 0 || cmdline[at - 1] == ' ')
            return true;
        at += prefix.size();
    }
    return false;
}

} // namespace

Status Machine::attach_devices(MachineConfig const& config, std::string& cmdline)
{
    Machine* self = this;
    Vm* vm = m_vm.get();
    m_serial = std::make_unique<Serial>(m_io.serial_out, [vm] {
        // The line is edge-triggered for the guest: raise and lower at once.
        (void)vm->set_irq_line(layout::irq_serial0, true);
        (void)vm->set_irq_line(layout::irq_serial0, false);
    });
    m_i8042 = std::make_unique<I8042>([self] { self->finish({ MachineExit::Kind::Reset, 0, {} }); }, [vm] {
        (void)vm->set_irq_line(1, true);
        (void)vm->set_irq_line(1, false);
    });
    m_exit_port = std::make_unique<DebugExit>([self](std::uint32_t value) { self->finish({ MachineExit::Kind::GuestExit, value, {} }); });
    STRATA_TRY(m_pio.insert(*m_serial, layout::port_serial0, 8));
    STRATA_TRY(m_pio.insert(*m_i8042, layout::port_i8042, 5));
    m_rtc = std::make_unique<CmosRtc>();
    STRATA_TRY(m_pio.insert(*m_rtc, layout::port_rtc, 2));
    STRATA_TRY(m_pio.insert(*m_exit_port, layout::port_debug_exit, 4));
    m_boot_timer = std::make_unique<BootTimer>([self] {
        auto const us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - self->m_created).count();
        self->m_boot_complete_us.store(us);
        std::fprintf(stderr, "strata: guest boot completed in %lld ms\n", static_cast<long long>(us / 1000));
    });
    STRATA_TRY(m_pio.insert(*m_boot_timer, BootTimer::Port, 1));

    auto const& memory = m_ram->memory();
    if (config.transport == Transport::Pci) {
        m_pci = std::make_unique<pci::PciBus>();
        STRATA_TRY(m_pio.insert(*m_pci, pci::PciBus::PortBase, pci::PciBus::PortLength));
    }
    STRATA_TRY(disks, MachineDisks::create(*m_vm, memory, m_mmio, m_pci.get(), config.disks, config.transport, cmdline));
    m_disks = std::move(disks);
    STRATA_TRY(attach_console(cmdline));
    auto const first_net = static_cast<std::uint32_t>(m_disks->count() + 1);
    STRATA_TRY(nets, MachineNets::create(VirtioBuses { *m_vm, memory, m_mmio, m_pci.get(), config.transport }, config.nets, first_net, cmdline,
        config.mmds, m_io.mmds, m_io.prepared_nets));
    m_nets = std::move(nets);
    return ok();
}

Status Machine::boot(MachineConfig const& config)
{
    std::string cmdline = config.cmdline;
    if (!config.kernel.empty() && !has_word_prefix(cmdline, "reboot="))
        // On a hardware-reduced ACPI platform Linux's default reboot tries EFI
        // first, and without EFI firmware it hangs there: the guest's reboot
        // never ends the VM. The i8042's reset line is the reset strata has.
        cmdline += " reboot=k";
    STRATA_TRY(attach_devices(config, cmdline));
    auto const& memory = m_ram->memory();
    STRATA_TRY(rsdp, write_acpi_tables(memory, AcpiConfig { config.vcpus, dsdt_body(config) }));
    STRATA_TRY(generation, new_generation_id(false));
    (void)generation;

    STRATA_TRY(cpuid, m_kvm->supported_cpuid());
    apply_cpu_template(config.cpu_template, cpuid);

    if (!config.kernel.empty())
        return boot_linux(config, cmdline, rsdp, cpuid);

    STRATA_TRY(file, read_file(config.firmware, "firmware", max_boot_file));
    auto image = parse_elf(file);
    if (!image)
        return image.error().context("firmware '" + config.firmware + "'");
    if (!image.value().pvh_entry)
        return make_error(ErrorKind::BadInput, "firmware '" + config.firmware + "' is not PVH-bootable: it has no XEN_ELFNOTE_PHYS32_ENTRY note");
    if (auto r = load_elf_segments(image.value(), file, memory, layout::high_memory); !r)
        return r.error().context("firmware '" + config.firmware + "'");

    PvhBootInfo info;
    info.cmdline = cmdline;
    info.memory_map = build_memory_map(m_ram->size());
    info.rsdp = rsdp;
    if (!config.initrd.empty()) {
        STRATA_TRY(initrd, read_file(config.initrd, "initrd", max_boot_file));
        STRATA_TRY(at, place_initrd(m_ram->size(), image.value().highest, initrd.size(), layout::mmio_hole_start));
        STRATA_TRY(memory.write_bytes(at, initrd));
        info.initrd_addr = at;
        info.initrd_size = initrd.size();
    }
    STRATA_TRY(start_info, write_pvh_start_info(memory, info));

    for (std::uint32_t i = 0; i < config.vcpus; ++i) {
        STRATA_TRY(vcpu, Vcpu::create(*m_vm, i));
        STRATA_TRY(vcpu->set_cpuid(cpuid, config.vcpus));
        STRATA_TRY(vcpu->setup_lapic());
        if (i == 0)
            STRATA_TRY(vcpu->setup_pvh_entry(*image.value().pvh_entry, start_info));
        m_vcpus.push_back(std::move(vcpu));
    }
    return ok();
}

std::vector<std::byte> Machine::dsdt_body(MachineConfig const& config) const
{
    aml::DsdtDevices devices;
    devices.serial_ports.push_back({ layout::port_serial0, static_cast<std::uint8_t>(layout::irq_serial0) });
    devices.rtc = aml::LegacyRtc { layout::port_rtc, static_cast<std::uint8_t>(layout::irq_rtc) };
    if (config.transport == Transport::Pci) {
        devices.pci_host_bridge = true;
        devices.pci = { layout::pci_mmio_base, layout::pci_mmio_end };
    } else {
        // The disks, the console, then the network interfaces: the slots
        // attach_virtio gave them.
        auto const slots = static_cast<std::uint32_t>(m_disks->count() + 1 + m_nets->count());
        for (std::uint32_t i = 0; i < slots; ++i) {
            auto const [base, gsi] = virtio_mmio_placement(i);
            devices.virtio_mmio.push_back({ base, static_cast<std::uint32_t>(virtio::MmioTransport::Size), gsi });
        }
    }
    devices.vmgenid = aml::VmGenId { layout::vmgenid_guid, layout::irq_ged };
    return aml::build_dsdt_body(devices);
}

Status Machine::attach_console(std::string& cmdline)
{
    // The agent channel and the console point at each other: the console's sink
    // feeds the channel, the channel writes into the console. Both exist before
    // any vCPU runs, and the console's I/O thread starts only at the guest's
    // DRIVER_OK, so neither sees the other half-built.
    m_agent = std::make_unique<AgentChannel>(AgentIo {
        [this](std::span<std::byte const> bytes) { return m_console->write(bytes); },
        [this] { return m_console->discard_pending(); },
    });
    AgentChannel* agent = m_agent.get();
    virtio::console::ConsoleOptions options;
    options.name = "agent";
    STRATA_TRY(console, virtio::console::VirtioConsole::create(options, [agent](std::span<std::byte const> bytes) {
        agent->on_guest_bytes(bytes);
    }));
    m_console = std::move(console);
    auto const index = static_cast<std::uint32_t>(m_disks->count());
    auto slot = attach_virtio(VirtioBuses { *m_vm, m_ram->memory(), m_mmio, m_pci.get(), m_config.transport }, *m_console, index, cmdline);
    if (!slot)
        return slot.error().context("virtio-console");
    m_console_slot = std::move(slot.value());
    return ok();
}

virtio::console::ConsoleMetrics Machine::console_metrics() const
{
    return m_console->metrics();
}

std::optional<std::uint64_t> Machine::boot_complete_us() const
{
    auto const us = m_boot_complete_us.load();
    if (us < 0)
        return std::nullopt;
    return static_cast<std::uint64_t>(us);
}

Status Machine::boot_linux(MachineConfig const& config, std::string const& cmdline, std::uint64_t rsdp, std::vector<kvm_cpuid_entry2> const& cpuid)
{
    linux_boot::LinuxLoadOptions options;
    options.cmdline = cmdline;
    options.protocol = config.boot_protocol;
    options.rsdp_addr = rsdp;
    options.cache_dir = linux_boot::default_kernel_cache_dir();
    // Guest RAM was mapped anonymous when this machine was made and the kernel's
    // range has not been written since: its bss is zero already.
    options.memory_is_zero = true;
    options.defer_cache_write = true;
    std::optional<std::filesystem::path> initrd;
    if (!config.initrd.empty())
        initrd = config.initrd;
    STRATA_TRY(setup, linux_boot::load_linux_files(m_ram->memory(), config.kernel, initrd, options));
    if (!setup.cache_note.empty())
        std::fprintf(stderr, "strata: kernel cache: %s\n", setup.cache_note.c_str());
    if (setup.cache_entry) {
        // Some 50 MB written and fsynced: the guest need not wait for it.
        // std::function needs a copyable callable: the kernel travels in a shared_ptr.
        auto data = std::make_shared<std::vector<std::byte>>(std::move(setup.decompressed));
        m_kernel_cache_writer = start_thread(ThreadKind::Vmm, "strata-kcache", [entry = *setup.cache_entry, data] {
            if (auto s = linux_boot::store_in_cache(entry, *data); !s)
                std::fprintf(stderr, "strata: kernel cache: could not cache the decompressed kernel: %s\n",
                    s.error().message.c_str());
        });
    }
    for (std::uint32_t i = 0; i < config.vcpus; ++i) {
        STRATA_TRY(vcpu, Vcpu::create(*m_vm, i));
        STRATA_TRY(vcpu->set_cpuid(cpuid, config.vcpus));
        STRATA_TRY(vcpu->setup_lapic());
        if (i == 0) {
            STRATA_TRY(regs, vcpu->get_regs());
            STRATA_TRY(sregs, vcpu->get_sregs());
            kvm_regs r = regs;
            kvm_sregs s = sregs;
            linux_boot::apply_entry_state(setup.entry, r, s);
            STRATA_TRY(vcpu->set_sregs(s));
            STRATA_TRY(vcpu->set_regs(r));
        }
        m_vcpus.push_back(std::move(vcpu));
    }
    return ok();
}

void Machine::finish(MachineExit exit)
{
    bool expected = false;
    if (!m_finished.compare_exchange_strong(expected, true))
        return;
    m_exit = std::move(exit);
    for (auto& v : m_vcpus)
        v->request_exit();
    eventfd_signal(m_done_event.get());
}

void Machine::stop()
{
    finish({ MachineExit::Kind::Stopped, 0, {} });
    std::lock_guard guard(m_pause_lock);
    m_pause_cv.notify_all();
}

void Machine::pause_vcpus()
{
    std::unique_lock guard(m_pause_lock);
    // Already paused: still wait until every vCPU has parked (a machine started
    // paused has its vCPU threads park only once run() starts them).
    if (!m_pause_requested) {
        m_pause_requested = true;
        for (auto& v : m_vcpus)
            v->request_exit();
    }
    // A vCPU thread that has not started yet parks as soon as it does.
    m_pause_cv.wait(guard, [&] { return m_vcpus_parked == m_vcpus.size() || m_finished.load(); });
}

void Machine::resume_vcpus()
{
    std::lock_guard guard(m_pause_lock);
    m_pause_requested = false;
    m_pause_cv.notify_all();
}

bool Machine::vcpus_paused() const
{
    std::lock_guard guard(m_pause_lock);
    return m_pause_requested;
}

void Machine::send_ctrl_alt_del()
{
    m_i8042->press_ctrl_alt_del();
}

} // namespace strata
