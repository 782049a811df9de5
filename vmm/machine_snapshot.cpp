// Machine: running-state snapshots — saving a paused machine's state and RAM
// (save_snapshot) and building a machine from them (restore). The formats are
// in machine_state.h and memory_file.h; the KVM parts in kvm/vcpu_state.h and
// kvm/vm_state.h.
#include "vmm/machine.h"

#include "base/fd.h"
#include "base/file.h"
#include "devices/legacy/i8042.h"
#include "devices/legacy/serial.h"
#include "devices/virtio/console/device.h"
#include "devices/virtio/mmio.h"
#include "devices/virtio/net/config.h"
#include "devices/virtio/net/mmds_store.h"
#include "devices/virtio/pci.h"
#include "devices/pci/pci_bus.h"
#include "vmm/agent_channel.h"
#include "vmm/kvm/cpu_template.h"
#include "vmm/kvm/guest_ram.h"
#include "vmm/kvm/kvm.h"
#include "vmm/kvm/vcpu.h"
#include "vmm/kvm/vcpu_state.h"
#include "vmm/kvm/vm.h"
#include "vmm/kvm/vm_state.h"
#include "vmm/machine_disks.h"
#include "vmm/machine_nets.h"
#include "vmm/machine_state.h"
#include "vmm/memory_file.h"
#include "vmm/virtio_slot.h"

#include "vmm/layout.h"

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

namespace strata {

namespace {

// The slots of a VM's virtio devices in snapshot order: the disks, the console,
// then the network interfaces (the order they are attached in).
std::vector<VirtioSlot*> virtio_slots(MachineDisks& disks, VirtioSlot& console, MachineNets* nets)
{
    std::vector<VirtioSlot*> out;
    for (std::size_t i = 0; i < disks.count(); ++i)
        out.push_back(&disks.slot(i));
    out.push_back(&console);
    for (std::size_t i = 0; nets && i < nets->count(); ++i)
        out.push_back(&nets->slot(i));
    return out;
}

// Holds every network device's I/O thread parked for as long as it lives.
class NetsPaused {
public:
    explicit NetsPaused(MachineNets* nets)
        : m_nets(nets)
    {
        if (m_nets)
            m_nets->pause_all();
    }
    ~NetsPaused()
    {
        if (m_nets)
            m_nets->resume_all();
    }
    NetsPaused(NetsPaused const&) = delete;
    NetsPaused& operator=(NetsPaused const&) = delete;

private:
    MachineNets* m_nets;
};

} // namespace

Status Machine::save_snapshot(std::filesystem::path const& state_file, std::filesystem::path const& memory_file)
{
    STRATA_TRY(saved, save_memory_and_state(memory_file, false));
    if (auto r = write_new_file(state_file.string(), saved.state); !r) {
        std::error_code ec;
        std::filesystem::remove(state_file, ec);
        std::filesystem::remove(memory_file, ec);
        return r.error();
    }
    return ok();
}

bool Machine::tracks_dirty_pages() const
{
    return m_ram->tracks_dirty();
}

Status Machine::start_dirty_tracking()
{
    return m_ram->start_dirty_tracking();
}

void Machine::start_paused()
{
    std::lock_guard guard(m_pause_lock);
    m_pause_requested = true;
}

Result<Machine::SavedSnapshot> Machine::save_memory_and_state(std::filesystem::path const& memory_file, bool diff)
{
    if (diff && !m_ram->tracks_dirty())
        return make_error(ErrorKind::Usage, "a Diff snapshot needs dirty page tracking (machine-config track_dirty_pages, or enable_diff_snapshots on load)");
    {
        std::lock_guard guard(m_pause_lock);
        if (!m_pause_requested || m_vcpus_parked != m_vcpus.size())
            return make_error(ErrorKind::Internal, "save_snapshot needs every vCPU parked");
    }
    // The network devices write RAM and their rings on their own threads: parked
    // from here until the state and RAM are saved. (The disks' queues are the
    // caller's to pause: they must drain into the disks captured in this cut.)
    NetsPaused nets_paused(m_nets.get());
    STRATA_TRY(xsave_bytes, xsave_size(*m_kvm));
    STRATA_TRY(msr_indices, snapshot_msr_indices(*m_kvm));

    MachineState state;
    state.cpu = host_cpu_signature(xsave_bytes);
    state.memory_bytes = m_ram->size();
    STRATA_TRY(vm_state, save_vm_state(*m_vm));
    state.vm = vm_state;
    for (auto const& vcpu : m_vcpus) {
        auto saved = save_vcpu_state(*vcpu, msr_indices, xsave_bytes);
        if (!saved)
            return saved.error().context("save vCPU " + std::to_string(vcpu->index()));
        state.vcpus.push_back(std::move(saved.value()));
    }
    state.serial = m_serial->save_state();
    state.i8042 = m_i8042->save_state();
    for (auto* slot : virtio_slots(*m_disks, *m_console_slot, m_nets.get())) {
        if (slot->mmio) {
            STRATA_TRY(snapshot, slot->mmio->save_state());
            state.virtio.push_back(std::move(snapshot));
        } else {
            virtio::PciTransportSnapshot pci;
            STRATA_TRY(snapshot, slot->pci->save_state(pci));
            state.virtio.push_back(std::move(snapshot));
            state.pci.push_back(std::move(pci));
        }
    }
    if (m_pci) {
        state.pci_config_address = m_pci->config_address();
        state.pci_host_bridge = m_pci->host_bridge_bytes();
    }
    for (std::size_t i = 0; m_nets && i < m_nets->count(); ++i)
        state.nets.push_back(m_nets->save_state(i));
    if (m_io.mmds && m_nets && m_nets->count() > 0)
        state.mmds_data = m_io.mmds->get();

    // RAM first: the state file names its checksum, and a state file that exists
    // is the sign that the pair is complete. The dirty log is taken (and so
    // cleared) for a whole file too, so that the next Diff is relative to this.
    SavedSnapshot saved;
    saved.memory.path = memory_file;
    saved.memory.diff = diff;
    std::vector<std::uint64_t> dirty;
    if (m_ram->tracks_dirty()) {
        STRATA_TRY(bits, m_ram->take_dirty_pages());
        dirty = std::move(bits);
    }
    Result<std::uint32_t> crc = std::uint32_t { 0 };
    if (diff) {
        saved.memory.runs = page_runs(dirty, m_ram->size() / GuestMemory::page_size);
        crc = write_memory_diff(memory_file, m_ram->contents(), saved.memory.runs);
    } else {
        crc = write_memory_file(memory_file, m_ram->contents());
    }
    if (!crc) {
        // The pages taken from the log are now in no file: the caller must not
        // lay a later Diff over the previous snapshot (vmm_controller.cpp).
        std::error_code ec;
        std::filesystem::remove(memory_file, ec);
        return crc.error();
    }
    state.memory_crc = crc.value();
    saved.memory.crc = crc.value();
    saved.state = encode_machine_state(state);
    return saved;
}

namespace {

// What a restore supports, checked before any file is read or VM made.
Status check_restorable(MachineConfig const& config)
{
    if (config.vcpus == 0 || config.vcpus > MachineConfig::max_vcpus)
        return make_error(ErrorKind::Usage, "a VM needs 1 to " + std::to_string(MachineConfig::max_vcpus) + " vCPUs");
    return ok();
}

// Whether the saved devices are the configured VM's, before anything is built.
Status check_devices(MachineConfig const& config, MachineState const& state)
{
    std::size_t const devices = config.disks.size() + 1 + config.nets.size();
    if (state.virtio.size() != devices)
        return make_error(ErrorKind::BadInput, "the snapshot has " + std::to_string(state.virtio.size()) + " virtio devices, the VM "
                + std::to_string(devices) + " (" + std::to_string(config.disks.size()) + " disks, the console, "
                + std::to_string(config.nets.size()) + " network interfaces)");
    if (state.nets.size() != config.nets.size())
        return make_error(ErrorKind::BadInput, "the snapshot has " + std::to_string(state.nets.size()) + " network interfaces, the VM "
                + std::to_string(config.nets.size()));
    bool const pci = config.transport == Transport::Pci;
    if (pci && state.pci.size() != devices)
        return make_error(ErrorKind::BadInput, "the VM uses virtio-pci but the snapshot holds virtio-pci state for "
                + std::to_string(state.pci.size()) + " of its " + std::to_string(devices) + " virtio devices (a snapshot of a virtio-mmio VM?)");
    if (!pci && !state.pci.empty())
        return make_error(ErrorKind::BadInput, "the VM uses virtio-mmio but the snapshot is of a virtio-pci VM");
    for (std::size_t i = 0; i < config.nets.size(); ++i) {
        auto const& want = config.nets[i];
        auto const& saved = state.nets[i];
        if (saved.id != want.id)
            return make_error(ErrorKind::BadInput, "the snapshot's network interface " + std::to_string(i) + " is '" + saved.id
                    + "', the VM's '" + want.id + "'");
        // Another MAC than the saved one is a clone's own: the restored
        // device presents it and the guest agent is asked to move the
        // interface to it (MachineNets::apply_new_macs, Machine::run).
    }
    return ok();
}

} // namespace

Result<std::unique_ptr<Machine>> Machine::restore(MachineConfig const& config, MachineIo io,
    std::filesystem::path const& state_file, std::filesystem::path const& memory_file)
{
    STRATA_TRY(check_restorable(config));

    // Everything about the files is checked before a VM exists.
    STRATA_TRY(bytes, read_file(state_file.string(), "machine state", max_machine_state_bytes));
    auto decoded = decode_machine_state(bytes);
    if (!decoded)
        return decoded.error().context("state file '" + state_file.string() + "'");
    MemoryLayer whole;
    whole.path = memory_file;
    whole.crc = decoded.value().memory_crc;
    return restore_checked(config, io, decoded.value(), std::span(&whole, 1));
}

Result<std::unique_ptr<Machine>> Machine::restore(MachineConfig const& config, MachineIo io,
    std::span<std::byte const> state_bytes, std::span<MemoryLayer const> memory)
{
    STRATA_TRY(state, decode_machine_state(state_bytes));
    if (memory.empty() || memory.back().crc != state.memory_crc)
        return make_error(ErrorKind::BadInput, "the memory files do not match the state (checksum differs)");
    return restore_checked(config, io, state, memory);
}

Result<std::unique_ptr<Machine>> Machine::restore_checked(MachineConfig const& config, MachineIo io,
    MachineState const& state, std::span<MemoryLayer const> memory)
{
    STRATA_TRY(check_restorable(config));
    if (state.vcpus.size() != config.vcpus)
        return make_error(ErrorKind::BadInput, "the snapshot has " + std::to_string(state.vcpus.size()) + " vCPUs, the VM " + std::to_string(config.vcpus));
    if (state.memory_bytes != (config.memory_mib << 20))
        return make_error(ErrorKind::BadInput, "the snapshot has " + std::to_string(state.memory_bytes >> 20) + " MiB of RAM, the VM " + std::to_string(config.memory_mib) + " MiB");
    STRATA_TRY(check_devices(config, state));

    // Every memory file is opened and checked: the first whole, the rest
    // differential, each against the checksum its snapshot recorded.
    STRATA_TRY(files, open_memory_layers(memory, state.memory_bytes));

    STRATA_TRY(machine, open_shell(config, io));
    // The VM, its RAM in KVM's slots and its interrupt controllers, made ahead
    // when io.prepared was (prepared_vm.h); nothing has run in it.
    STRATA_TRY(machine->take_prepared_vm(io));
    STRATA_TRY(xsave_bytes, xsave_size(*machine->m_kvm));
    if (auto here = host_cpu_signature(xsave_bytes); here != state.cpu)
        return make_error(ErrorKind::Unsupported, "the snapshot was taken on another CPU (" + state.cpu + "; this host is " + here + ")");
    auto& ram = *machine->m_ram;
    STRATA_TRY(ram.map_file(files[0].get()));
    // The differential files' pages over the base, oldest first. They are
    // copied, so each clone owns them; a Diff holds few pages by design. The
    // copies are not dirty: they are what the chain holds.
    for (std::size_t i = 1; i < memory.size(); ++i)
        STRATA_TRY(read_memory_diff(files[i].get(), memory[i].runs, ram.contents_for_restore()));
    if (config.track_dirty_pages)
        STRATA_TRY(ram.take_dirty_pages());
    std::string cmdline = config.cmdline;
    STRATA_TRY(machine->attach_devices(config, cmdline));
    STRATA_TRY(machine->restore_state(state));
    return machine;
}

Result<std::string> Machine::new_generation_id(bool notify)
{
    std::array<std::byte, 16> id {};
    std::size_t got = 0;
    while (got < id.size()) {
        ssize_t n = ::getrandom(id.data() + got, id.size() - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno_error("getrandom for the VM generation ID");
        }
        got += static_cast<std::size_t>(n);
    }
    STRATA_TRY(m_ram->memory().write_bytes(layout::vmgenid_guid, id));
    // An edge on the GED's line; with no driver bound (the IOAPIC pin masked)
    // it is dropped, which is what a guest that never looked expects.
    if (notify) {
        STRATA_TRY(m_vm->set_irq_line(layout::irq_ged, true));
        STRATA_TRY(m_vm->set_irq_line(layout::irq_ged, false));
    }
    static char const digits[] = "0123456789abcdef";
    std::string hex;
    for (auto b : id) {
        hex += digits[std::to_integer<unsigned>(b) >> 4];
        hex += digits[std::to_integer<unsigned>(b) & 15];
    }
    return hex;
}

Status Machine::restore_state(MachineState const& state)
{
    auto const slots = virtio_slots(*m_disks, *m_console_slot, m_nets.get());
    if (slots.size() != state.virtio.size() || (m_pci && state.pci.size() != slots.size()) || m_nets->count() != state.nets.size())
        return make_error(ErrorKind::BadInput, "the snapshot's devices are not the VM's");
    STRATA_TRY(cpuid, m_kvm->supported_cpuid());
    apply_cpu_template(m_config.cpu_template, cpuid);

    // The clock before the vCPUs' kvm-clock MSRs, the PIC/IOAPIC/PIT before the
    // vCPUs run (vm_state.h).
    STRATA_TRY(restore_vm_clock(*m_vm, state.vm));
    STRATA_TRY(restore_vm_irqchips(*m_vm, state.vm));
    for (std::uint32_t i = 0; i < m_config.vcpus; ++i) {
        STRATA_TRY(vcpu, Vcpu::create(*m_vm, i));
        STRATA_TRY(vcpu->set_cpuid(cpuid, m_config.vcpus));
        if (auto r = restore_vcpu_state(*vcpu, state.vcpus[i]); !r)
            return r.error().context("restore vCPU " + std::to_string(i));
        m_vcpus.push_back(std::move(vcpu));
    }
    m_serial->restore_state(state.serial);
    m_i8042->restore_state(state.i8042);
    if (m_pci) {
        m_pci->set_config_address(state.pci_config_address);
        m_pci->restore_host_bridge(state.pci_host_bridge);
    }
    // The network devices' own state goes in before their transports activate them.
    for (std::size_t i = 0; i < m_nets->count(); ++i) {
        if (auto r = m_nets->restore_state(i, state.nets[i]); !r)
            return r.error().context("restore network interface '" + state.nets[i].id + "'");
    }
    for (std::size_t i = 0; i < slots.size(); ++i) {
        auto r = slots[i]->mmio ? slots[i]->mmio->restore_state(state.virtio[i]) : slots[i]->pci->restore_state(state.virtio[i], state.pci[i]);
        if (!r)
            return r.error().context("restore virtio device " + std::to_string(i));
    }
    // The transports are active again: a clone's own MACs go into the config
    // space now, so a driver that asked for configuration changes hears of them.
    STRATA_TRY(m_nets->apply_new_macs());
    // The metadata store's data, unless the VMM's own (its API, its
    // configuration) filled the store already. Tokens are not carried over.
    // Last: the store outlives this machine, and a load refused above must leave
    // it as it was. (The vCPUs are not running yet, so no guest asks before.)
    if (state.mmds_data && m_io.mmds && m_io.mmds->get() == "{}") {
        if (auto r = m_io.mmds->put(*state.mmds_data); !r)
            return r.error().context("restore the metadata store");
    }
    return ok();
}

} // namespace strata
