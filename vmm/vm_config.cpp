#include "vmm/vm_config.h"

#include "base/ipv4.h"
#include "store/artifacts.h"
#include "store/store.h"

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

std::string base64(std::string const& in)
{
    static char const alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    std::size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        unsigned v = static_cast<unsigned char>(in[i]) << 16 | static_cast<unsigned char>(in[i + 1]) << 8 | static_cast<unsigned char>(in[i + 2]);
        out += { alphabet[v >> 18], alphabet[(v >> 12) & 63], alphabet[(v >> 6) & 63], alphabet[v & 63] };
    }
    if (i + 1 == in.size()) {
        unsigned v = static_cast<unsigned char>(in[i]) << 16;
        out += { alphabet[v >> 18], alphabet[(v >> 12) & 63], '=', '=' };
    } else if (i + 2 == in.size()) {
        unsigned v = static_cast<unsigned char>(in[i]) << 16 | static_cast<unsigned char>(in[i + 1]) << 8;
        out += { alphabet[v >> 18], alphabet[(v >> 12) & 63], alphabet[(v >> 6) & 63], '=' };
    }
    return out;
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

Result<std::string> guest_metadata_arg(VmRecord const& vm)
{
    // A VM whose metadata service serves the interface its agent reaches gets
    // its metadata there (mmds_data_for), without strata.meta's size limit: the
    // command line only says where the service is.
    if (vm.spec.mmds.enabled())
        return "strata.mmds=" + vm.spec.mmds.ipv4_address;
    nlohmann::json meta = nlohmann::json::object();
    // Records older than instance ids fall back to the VM's name, which is unique
    // in its store.
    meta["instance_id"] = vm.instance_id.empty() ? vm.name : vm.instance_id;
    auto get = [&](char const* key) -> std::string {
        auto it = vm.metadata.find(key);
        return it == vm.metadata.end() ? std::string() : it->second;
    };
    if (auto h = get("hostname"); !h.empty())
        meta["hostname"] = h;
    if (auto u = get("user"); !u.empty())
        meta["user"] = u;
    std::string keys = get("ssh-authorized-keys");
    if (keys.empty())
        keys = get("ssh_authorized_keys");
    if (!keys.empty()) {
        nlohmann::json list = nlohmann::json::array();
        std::size_t at = 0;
        while (at <= keys.size()) {
            std::size_t end = keys.find_first_of(";\n", at);
            if (end == std::string::npos)
                end = keys.size();
            if (end > at)
                list.push_back(keys.substr(at, end - at));
            at = end + 1;
        }
        meta["ssh_authorized_keys"] = list;
    }
    std::string arg = "strata.meta=" + base64(meta.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    // x86 Linux keeps 2048 bytes of command line; leave room for the rest of it.
    if (arg.size() > MaxMetadataArgBytes)
        return make_error(ErrorKind::Usage, "vm '" + vm.name + "': its metadata (hostname, user, SSH keys) needs " + std::to_string(arg.size())
                + " bytes on the kernel command line; at most " + std::to_string(MaxMetadataArgBytes) + " fit");
    return arg;
}

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
    if (!c.kernel.empty()) {
        STRATA_TRY(meta, guest_metadata_arg(vm));
        c.cmdline += (c.cmdline.empty() ? "" : " ") + meta;
    }
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
        disk.owner_vm = vm.name;
        disk.rate_limit = d.rate_limit;
        disk.rate_limit_group = d.rate_limit_group;
        c.disks.push_back(disk);
    }
    STRATA_TRY(check_disks(c.disks));
    for (auto const& n : vm.spec.nets)
        c.nets.push_back(NetConfig { n.id, n.host_dev_name, n.guest_mac, n.netns_auto, n.rx_limit, n.tx_limit });
    STRATA_TRY(check_nets(c.nets));
    if (vm.spec.mmds.enabled()) {
        STRATA_TRY(ip, parse_link_local_ipv4(vm.spec.mmds.ipv4_address));
        c.mmds = MmdsConfig { vm.spec.mmds.interfaces, vm.spec.mmds.version == "V2", ip };
        STRATA_TRY(check_mmds(c.mmds, c.nets));
    }
    return c;
}

std::string mmds_data_for(VmRecord const& vm)
{
    std::string const instance = vm.instance_id.empty() ? vm.name : vm.instance_id;
    nlohmann::json meta_data { { "instance-id", instance } };
    if (auto h = vm.metadata.find("hostname"); h != vm.metadata.end() && !h->second.empty())
        meta_data["local-hostname"] = h->second;
    nlohmann::json data {
        { "latest", { { "meta-data", meta_data } } },
        { "strata", { { "instance-id", instance }, { "name", vm.name }, { "metadata", vm.metadata } } },
    };
    return data.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Result<MachineImageRecord> machine_image_from_capture(Store& store, VmRecord const& vm, MachineImageCapture const& capture)
{
    MachineImageRecord m;
    m.name = capture.request.name;
    m.description = capture.request.description;
    m.labels = capture.request.labels;
    m.spec = vm.spec;
    m.source_vm = SourceVmInfo { vm.name, vm.labels, vm.metadata, vm.instance_id };
    m.guest_flush = capture.guest_flush;
    m.created = capture.captured_at;
    m.stall_us = capture.outcome.stall_us;
    m.generalized = vm.generalized;
    m.source = "vm:" + vm.name;
    m.running = capture.request.memory;
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
