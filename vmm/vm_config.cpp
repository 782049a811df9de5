#include "vmm/vm_config.h"

#include "imaging/artifacts.h"
#include "imaging/store.h"

#include <unistd.h>

namespace strata {

namespace {

Result<std::string> artifact_file(Store const& store, std::string const& digest)
{
    if (digest.empty())
        return std::string();
    STRATA_TRY(check_digest(digest));
    std::string path = artifact_path(store.root(), digest);
    if (::access(path.c_str(), R_OK) != 0)
        return make_error(ErrorKind::NotFound, "boot artifact " + digest.substr(0, 12) + " is missing from the store");
    return path;
}

DiskCache cache_of(std::string const& cache)
{
    if (cache == "writeback")
        return DiskCache::Writeback;
    if (cache == "unsafe")
        return DiskCache::Unsafe;
    return DiskCache::None;
}

} // namespace

Result<MachineConfig> machine_config_for(Store const& store, VmRecord const& vm)
{
    STRATA_TRY(check_spec(vm.spec));
    STRATA_TRY(check_vm_disks(vm.disks));
    MachineConfig c;
    auto const& boot = vm.spec.boot;
    STRATA_TRY(firmware, artifact_file(store, boot.firmware));
    STRATA_TRY(kernel, artifact_file(store, boot.kernel));
    STRATA_TRY(initrd, artifact_file(store, boot.initrd));
    c.firmware = firmware;
    c.kernel = kernel;
    c.initrd = initrd;
    c.cmdline = boot.cmdline;
    c.boot_protocol = boot.boot_protocol == "pvh" ? BootProtocol::Pvh : boot.boot_protocol == "linux" ? BootProtocol::Linux64 : BootProtocol::Auto;
    c.vcpus = vm.spec.vcpus;
    c.memory_mib = vm.spec.memory_mib;
    c.cpu_template = vm.spec.cpu_template == "minimal" ? CpuTemplate::Minimal : CpuTemplate::Host;
    c.transport = vm.spec.transport == "pci" ? Transport::Pci : Transport::Mmio;
    c.on_reboot = OnReboot::Exit;
    for (auto const& d : vm.disks) {
        DiskConfig disk;
        disk.store_disk = d.disk;
        disk.id = d.id;
        disk.read_only = d.read_only;
        disk.boot = d.boot;
        disk.scratch = d.scratch;
        disk.cache = cache_of(d.cache);
        c.disks.push_back(disk);
    }
    STRATA_TRY(check_disks(c.disks));
    return c;
}

Result<MachineImageRecord> machine_image_from_capture(Store& store, VmRecord const& vm, MachineImageCapture const& capture)
{
    MachineImageRecord m;
    m.name = capture.request.name;
    m.description = capture.request.description;
    m.labels = capture.request.labels;
    m.spec = vm.spec;
    m.source_vm = SourceVmInfo { vm.name, vm.labels, vm.metadata };
    m.created = capture.captured_at;
    m.stall_us = capture.outcome.stall_us;
    m.generalized = vm.generalized;
    m.source = "vm:" + vm.name;
    for (auto const& d : vm.disks) {
        CapturedDisk const* captured = nullptr;
        for (auto const& c : capture.outcome.disks)
            if (c.disk_name == d.disk)
                captured = &c;
        if (captured == nullptr)
            return make_error(ErrorKind::Io, "machine image: disk '" + d.id + "' of vm '" + vm.name + "' was not captured");
        STRATA_TRY(manifest, store.get(ObjectKind::Disk, d.disk));
        MachineImageDisk out { d.id, d.read_only, d.boot, d.scratch, d.cache, manifest.size, {}, {} };
        if (!d.scratch)
            out.layers = captured->frozen_layers;
        m.disks.push_back(std::move(out));
    }
    return m;
}

Status record_vm_capture(Store& store, VmRecord const& vm, MachineImageCapture const& capture)
{
    STRATA_TRY(record, machine_image_from_capture(store, vm, capture));
    return record_machine_image(store, record);
}

} // namespace strata
