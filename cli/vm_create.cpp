// `strata vms create`: a VM record from flags, an image (boot disk cloned in
// O(1)), an instance template, or a machine image (every disk a fresh writable
// layer over the image's frozen layers). Everything is checked before anything
// is created; disks made before a later failure are removed again.
#include "cli/vm_support.h"

#include "store/artifacts.h"
#include "store/machine_image_store.h"
#include "store/template_record.h"
#include "cli/img_util.h"
#include "vmm/disk_config.h"
#include "vmm/net_config.h"
#include "vmm/boot/linux/linux_loader.h"

#include "base/ipv4.h"

#include <algorithm>
#include <filesystem>
#include <set>
#include <sstream>

namespace strata::cli {

namespace {

Error usage(std::string const& why)
{
    return make_error(ErrorKind::Usage, why);
}

// A disk to make for the VM before its record is written.
struct DiskPlan {
    VmDisk disk;
    std::string clone_image; // clone this image, or else
    std::uint64_t size { 0 }; // make an empty disk of this size
};

Result<bool> on_off(std::string const& spec, std::string const& key, std::string const& value)
{
    if (value == "on" || value == "true" || value == "1")
        return true;
    if (value == "off" || value == "false" || value == "0")
        return false;
    return usage("--disk '" + spec + "': " + key + " must be on or off");
}

} // namespace

Result<std::optional<NewDiskSpec>> parse_new_disk(std::string const& spec, unsigned index)
{
    std::stringstream in(spec);
    std::vector<std::pair<std::string, std::string>> items;
    bool has_size = false;
    for (std::string item; std::getline(in, item, ',');) {
        auto eq = item.find('=');
        std::string key = item.substr(0, eq);
        items.emplace_back(key, eq == std::string::npos ? std::string() : item.substr(eq + 1));
        has_size = has_size || (eq != std::string::npos && key == "size");
    }
    if (!has_size)
        return std::optional<NewDiskSpec>();
    NewDiskSpec d;
    d.id = "disk" + std::to_string(index);
    for (auto const& [key, value] : items) {
        if (key == "size") {
            STRATA_TRY(size, parse_size(value));
            d.size = size;
        } else if (key == "id") {
            d.id = value;
        } else if (key == "readonly") {
            STRATA_TRY(v, on_off(spec, key, value));
            d.read_only = v;
        } else if (key == "boot") {
            STRATA_TRY(v, on_off(spec, key, value));
            d.boot = v;
        } else if (key == "scratch") {
            STRATA_TRY(v, on_off(spec, key, value));
            d.scratch = v;
        } else if (key == "cache") {
            STRATA_TRY(check_cache(value));
            d.cache = value;
        } else if (auto limit_key = parse_rate_limit_key(spec, key, value, d.rate_limit, d.rate_limit_group); !limit_key) {
            return limit_key.error();
        } else if (!limit_key.value()) {
            return usage("--disk '" + spec + "': a new disk takes size=, id=, readonly=, boot=, scratch=, cache= and rate limit keys "
                                             "(bps=, iops=, bw_*=, ops_*=, rate_limit_group=), not '" + key + "'");
        }
    }
    STRATA_TRY(check_disk_id(d.id));
    if (auto limit = check_rate_limiter(d.rate_limit); !limit)
        return usage("--disk '" + spec + "': " + limit.error().message);
    if (d.size == 0 || d.size % 512 != 0)
        return usage("--disk '" + spec + "': size must be a non-zero multiple of 512 bytes");
    return std::optional<NewDiskSpec>(d);
}

DiskConfig limit_only(std::string const& id, RateLimiterConfig const& limit, std::string const& group)
{
    DiskConfig d;
    d.id = id;
    d.rate_limit = limit;
    d.rate_limit_group = group;
    return d;
}

Result<std::optional<DiskLimitSpec>> parse_disk_limit(std::string const& spec)
{
    std::stringstream in(spec);
    DiskLimitSpec d;
    bool has_id = false;
    for (std::string item; std::getline(in, item, ',');) {
        auto eq = item.find('=');
        if (eq == std::string::npos)
            return std::optional<DiskLimitSpec>();
        std::string const key = item.substr(0, eq);
        std::string const value = item.substr(eq + 1);
        if (key == "id") {
            d.id = value;
            has_id = true;
            continue;
        }
        STRATA_TRY(known, parse_rate_limit_key(spec, key, value, d.rate_limit, d.rate_limit_group));
        if (!known)
            return std::optional<DiskLimitSpec>();
    }
    if (!has_id)
        return std::optional<DiskLimitSpec>();
    STRATA_TRY(check_disk_id(d.id));
    if (auto limit = check_rate_limiter(d.rate_limit); !limit)
        return usage("--disk '" + spec + "': " + limit.error().message);
    return std::optional<DiskLimitSpec>(d);
}

Result<std::vector<VmNet>> parse_vm_nets(std::vector<std::string> const& specs)
{
    std::vector<VmNet> nets;
    std::vector<NetConfig> configs;
    for (std::size_t i = 0; i < specs.size(); ++i) {
        STRATA_TRY(net, parse_net_spec(specs[i], static_cast<unsigned>(i)));
        configs.push_back(net);
        nets.push_back(VmNet { net.id, net.tap, net.mac, net.netns_auto, net.rx_limit, net.tx_limit });
    }
    STRATA_TRY(check_nets(configs));
    return nets;
}

Result<VmMmds> parse_vm_mmds(std::string const& spec)
{
    if (spec == "off")
        return VmMmds {};
    VmMmds out;
    std::stringstream in(spec);
    std::string part;
    bool first = true;
    std::set<std::string> named;
    while (std::getline(in, part, ',')) {
        if (first) {
            first = false;
            if (part != "V1" && part != "v1" && part != "V2" && part != "v2")
                return usage("--mmds: the version must come first, V1 or V2 (or the word off), not '" + part.substr(0, 32) + "'");
            out.version = part == "V1" || part == "v1" ? "V1" : "V2";
        } else if (part.starts_with("ip=")) {
            STRATA_TRY(ip, parse_link_local_ipv4(part.substr(3)));
            out.ipv4_address = format_ipv4(ip);
        } else if (part.starts_with("iface=")) {
            std::string id = part.substr(6);
            if (!named.insert(id).second)
                return usage("--mmds: iface=" + id.substr(0, 32) + " is given twice");
            out.interfaces.push_back(id);
        } else {
            return usage("--mmds: unknown key in '" + part.substr(0, 32) + "' (ip=, iface=)");
        }
    }
    if (first)
        return usage("--mmds takes V1 or V2[,ip=169.254.x.y][,iface=ID]..., or off");
    return out;
}

VmMmds default_vm_mmds(std::vector<VmNet> const& nets)
{
    VmMmds out;
    if (nets.empty())
        return out;
    out.version = "V2";
    for (auto const& n : nets)
        out.interfaces.push_back(n.id);
    return out;
}

Result<VmRecord> create_vm(Store& store, VmCreateArgs const& a)
{
    STRATA_TRY(check_object_name(a.name));
    STRATA_TRY(nets, parse_vm_nets(a.nets));
    std::optional<VmMmds> mmds;
    if (a.mmds) {
        STRATA_TRY(m, parse_vm_mmds(*a.mmds));
        mmds = m;
    }
    std::optional<std::map<std::string, std::string>> labels, metadata;
    if (a.labels_given) {
        STRATA_TRY(l, parse_labels(a.labels));
        labels = l;
    }
    if (a.metadata_given) {
        STRATA_TRY(m, parse_metadata(a.metadata));
        metadata = m;
    }
    if (!a.machine_image.empty()) {
        if (!a.image.empty() || !a.template_name.empty() || !a.firmware.empty() || !a.kernel.empty() || !a.initrd.empty()
            || !a.disks.empty() || !a.transport.empty() || !a.cpu_template.empty() || !a.boot_protocol.empty())
            return usage("--source-machine-image takes its boot source, disks and transport from the image; "
                         "only --vcpus, --memory, --cmdline, --labels, --metadata, --description, --net and --keep-mac override it");
        VmOverrides overrides { a.vcpus, a.memory_mib, a.cmdline, a.description, labels, metadata, std::nullopt, mmds, false };
        if (!a.nets.empty())
            overrides.nets = nets;
        overrides.keep_macs = a.keep_mac;
        return create_vm_from_machine_image(store, a.name, a.machine_image, overrides);
    }

    VmRecord vm;
    vm.name = a.name;
    vm.source = "flags";
    std::vector<DiskPlan> plan;
    {
        STRATA_TRY(held, RecordLock::take(store.root(), false));
        if (read_record(store.root(), RecordKind::Vm, a.name))
            return make_error(ErrorKind::Exists, "a vm named '" + a.name + "' already exists");
        if (!a.template_name.empty()) {
            STRATA_TRY(t, load_template(held, a.template_name));
            vm.spec = t.spec;
            vm.labels = t.labels;
            vm.metadata = t.metadata;
            vm.description = t.description;
            vm.source = "template:" + t.name;
            if (!a.keep_mac)
                renew_guest_macs(vm.spec.nets);
            plan.push_back(DiskPlan { VmDisk { "boot", a.name + "-disk-boot", false, true, false, "none", true, t.boot_rate_limit,
                                          t.boot_rate_limit_group },
                t.boot_image, 0 });
            for (auto const& d : t.disks)
                plan.push_back(DiskPlan {
                    VmDisk { d.id, a.name + "-disk-" + d.id, d.read_only, false, d.scratch, d.cache, true, d.rate_limit, d.rate_limit_group }, {}, d.size });
        }
    }
    bool boot_flags = !a.firmware.empty() || !a.kernel.empty();
    if (!a.firmware.empty() && !a.kernel.empty())
        return usage("give --firmware or --kernel, not both");
    if (!boot_flags && a.template_name.empty())
        return usage("vms create needs --firmware or --kernel (or --template or --source-machine-image)");
    if (!a.initrd.empty() && !boot_flags)
        return usage("--initrd goes with --firmware or --kernel");
    if (!a.kernel.empty())
        STRATA_TRY(linux_boot::check_kernel_file(a.kernel));
    if (!a.image.empty()) {
        vm.source = "image:" + a.image;
        plan.push_back(DiskPlan { VmDisk { "boot", a.name + "-disk-boot", false, true, false, "none", true }, a.image, 0 });
    }
    VmOverrides overrides { a.vcpus, a.memory_mib, a.cmdline, a.description, labels, metadata, std::nullopt, mmds, false };
    if (!a.nets.empty())
        overrides.nets = nets;
    // A VM from flags with interfaces serves its metadata (V2, every interface)
    // unless --mmds says otherwise; one from a template has the template's.
    if (a.template_name.empty() && !overrides.mmds)
        overrides.mmds = default_vm_mmds(nets);
    apply_overrides(vm, overrides);
    if (!a.transport.empty())
        vm.spec.transport = a.transport;
    if (!a.cpu_template.empty())
        vm.spec.cpu_template = a.cpu_template;
    if (!a.boot_protocol.empty())
        vm.spec.boot.boot_protocol = a.boot_protocol;
    if (!a.initrd.empty() && !a.kernel.empty()) {
        // An initrd that does not fit beside the kernel in the VM's memory can
        // never be loaded: say so now, not when the VMM fails at start.
        STRATA_TRY(protocol, linux_boot::parse_boot_protocol(vm.spec.boot.boot_protocol));
        if (auto fits = linux_boot::check_initrd_fits(a.kernel, a.initrd, std::uint64_t(vm.spec.memory_mib) << 20, protocol); !fits)
            return usage("the initrd '" + a.initrd + "' cannot be loaded in this VM: " + fits.error().message + " (--memory)");
    }
    std::vector<DiskLimitSpec> limits;
    for (std::size_t i = 0; i < a.disks.size(); ++i) {
        STRATA_TRY(fresh, parse_new_disk(a.disks[i], static_cast<unsigned>(i)));
        if (fresh) {
            auto const& d = *fresh;
            plan.push_back(DiskPlan {
                VmDisk { d.id, a.name + "-disk-" + d.id, d.read_only, d.boot, d.scratch, d.cache, true, d.rate_limit, d.rate_limit_group }, {}, d.size });
            continue;
        }
        STRATA_TRY(limit, parse_disk_limit(a.disks[i]));
        if (limit) {
            limits.push_back(*limit);
            continue;
        }
        STRATA_TRY(spec, parse_disk_spec(a.disks[i], static_cast<unsigned>(i)));
        if (!spec.path.empty())
            return usage("--disk '" + a.disks[i] + "': a VM's disks live in the store; import the file first (strata images import) "
                         "or give size=S for a new disk");
        std::string cache = spec.cache == DiskCache::Writeback ? "writeback" : spec.cache == DiskCache::Unsafe ? "unsafe" : "none";
        STRATA_TRY(existing, store.get(ObjectKind::Disk, spec.store_disk));
        (void)existing;
        plan.push_back(DiskPlan {
            VmDisk { spec.id, spec.store_disk, spec.read_only, spec.boot, spec.scratch, cache, false, spec.rate_limit, spec.rate_limit_group }, {}, 0 });
    }
    // Limits for the disks an image or template gives (`--disk id=boot,bps=...`).
    for (auto const& l : limits) {
        auto it = std::find_if(plan.begin(), plan.end(), [&](DiskPlan const& p) { return p.disk.id == l.id; });
        if (it == plan.end())
            return usage("--disk id=" + l.id + ": the VM has no disk '" + l.id + "' to limit (give a store disk or size=S for a new one)");
        it->disk.rate_limit = l.rate_limit;
        it->disk.rate_limit_group = l.rate_limit_group;
    }
    {
        // A group's limit given on one of its disks holds for all of them.
        std::vector<DiskConfig> configs;
        for (auto const& p : plan)
            configs.push_back(limit_only(p.disk.id, p.disk.rate_limit, p.disk.rate_limit_group));
        STRATA_TRY(share_rate_limit_groups(configs));
        for (std::size_t i = 0; i < plan.size(); ++i)
            plan[i].disk.rate_limit = configs[i].rate_limit;
    }
    for (auto const& p : plan)
        vm.disks.push_back(p.disk);
    STRATA_TRY(check_vm_disks(vm.disks));
    STRATA_TRY(check_labels(vm.labels));
    STRATA_TRY(check_metadata(vm.metadata));
    {
        // The spec as it will be, with stand-in digests when they come from files.
        MachineSpec probe = vm.spec;
        if (boot_flags)
            probe.boot = BootSpec { a.firmware.empty() ? "" : std::string(64, '0'), a.kernel.empty() ? "" : std::string(64, '0'),
                a.initrd.empty() ? "" : std::string(64, '0'), probe.boot.cmdline, probe.boot.boot_protocol };
        STRATA_TRY(check_spec(probe));
    }

    // Make the disks, then (under the lock) the artifacts and the record.
    std::vector<std::string> made;
    auto undo = [&] {
        for (auto const& n : made)
            (void)store.remove(ObjectKind::Disk, n);
    };
    for (auto const& p : plan) {
        if (!p.disk.owned)
            continue;
        auto m = p.clone_image.empty() ? store.create_disk(p.disk.disk, p.size)
                                       : store.create_disk_from(p.disk.disk, ObjectKind::Image, p.clone_image);
        if (!m) {
            undo();
            return m.error().context("vm '" + a.name + "', disk '" + p.disk.id + "'");
        }
        made.push_back(p.disk.disk);
    }
    vm.created = utc_now();
    vm.instance_id = new_instance_id();
    Status saved = [&]() -> Status {
        STRATA_TRY(held, RecordLock::take(store.root(), true));
        if (boot_flags)
            STRATA_TRY(put_boot_artifacts(held, vm.spec.boot, a.firmware, a.kernel, a.initrd));
        return save_vm(held, vm, true);
    }();
    if (!saved) {
        undo();
        return saved.error();
    }
    return vm;
}

} // namespace strata::cli
