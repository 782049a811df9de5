#include "store/vm_record.h"

#include "base/ipv4.h"
#include "store/rate_limit_record.h"
#include "store/artifacts.h"
#include "store/manifest.h"
#include "store/store.h"

#include <algorithm>
#include <cstdio>
#include <random>
#include <set>

namespace strata {

using nlohmann::json;
using namespace record_json;

std::vector<std::string> boot_digests(BootSpec const& boot)
{
    std::vector<std::string> out;
    for (auto const* d : { &boot.firmware, &boot.kernel, &boot.initrd })
        if (!d->empty())
            out.push_back(*d);
    return out;
}

Status check_digest(std::string_view digest)
{
    bool good = digest.size() == 64
        && std::all_of(digest.begin(), digest.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
    if (!good)
        return make_error(ErrorKind::BadInput, "'" + std::string(digest.substr(0, 70)) + "' is not a SHA-256 digest (64 lowercase hex digits)");
    return ok();
}

Status check_disk_id(std::string_view id)
{
    bool good = !id.empty() && id.size() <= 20 && id != "." && id != ".."
        && std::all_of(id.begin(), id.end(), [](char c) {
               return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
           });
    if (!good)
        return make_error(ErrorKind::Usage, "disk id '" + std::string(id.substr(0, 32)) + "' must be 1-20 letters, digits, '-', '_' or '.'");
    return ok();
}

Status check_cache(std::string_view cache)
{
    if (cache != "none" && cache != "writeback" && cache != "unsafe")
        return make_error(ErrorKind::Usage, "cache must be none, writeback or unsafe");
    return ok();
}

Status check_spec(MachineSpec const& spec)
{
    if (spec.vcpus < 1 || spec.vcpus > kMaxRecordVcpus)
        return make_error(ErrorKind::Usage, "vcpus must be within 1.." + std::to_string(kMaxRecordVcpus));
    if (spec.memory_mib < kMinRecordMemoryMib || spec.memory_mib > kMaxRecordMemoryMib)
        return make_error(ErrorKind::Usage, "memory must be within 8 MiB..1 TiB");
    auto const& b = spec.boot;
    if (b.firmware.empty() == b.kernel.empty())
        return make_error(ErrorKind::Usage, "a VM boots exactly one of a firmware and a kernel");
    for (auto const& d : boot_digests(b))
        STRATA_TRY(check_digest(d));
    if (b.cmdline.size() > 4096)
        return make_error(ErrorKind::Usage, "the command line is longer than 4096 bytes");
    if (b.boot_protocol != "auto" && b.boot_protocol != "pvh" && b.boot_protocol != "linux")
        return make_error(ErrorKind::Usage, "boot_protocol must be auto, pvh or linux");
    if (spec.cpu_template != "host" && spec.cpu_template != "minimal")
        return make_error(ErrorKind::Usage, "cpu_template must be host or minimal");
    if (spec.transport != "mmio" && spec.transport != "pci")
        return make_error(ErrorKind::Usage, "transport must be mmio or pci");
    STRATA_TRY(check_vm_nets(spec.nets));
    STRATA_TRY(check_vm_mmds(spec.mmds, spec.nets));
    return ok();
}

namespace {

bool valid_interface_name(std::string_view name)
{
    // Linux's rules (dev_valid_name): 1-15 bytes, not "." or "..", no '/', ':' or white space.
    if (name.empty() || name.size() > 15 || name == "." || name == "..")
        return false;
    return std::all_of(name.begin(), name.end(), [](char c) {
        auto u = static_cast<unsigned char>(c);
        return u > 32 && u < 127 && c != '/' && c != ':';
    });
}

bool valid_mac(std::string_view mac)
{
    if (mac.size() != 17)
        return false;
    for (std::size_t i = 0; i < 17; ++i) {
        char c = mac[i];
        bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
        if (i % 3 == 2 ? c != ':' : !hex)
            return false;
    }
    int first = std::stoi(std::string(mac.substr(0, 2)), nullptr, 16);
    return (first & 1) == 0; // unicast
}

} // namespace

Status check_vm_nets(std::vector<VmNet> const& nets)
{
    if (nets.size() > kMaxRecordNets)
        return make_error(ErrorKind::Usage, "a VM has at most " + std::to_string(kMaxRecordNets) + " network interfaces");
    std::set<std::string> ids, taps, macs;
    for (auto const& n : nets) {
        if (auto st = check_disk_id(n.id); !st)
            return make_error(ErrorKind::Usage, "network interface id '" + n.id.substr(0, 32) + "' must be 1-20 letters, digits, '-', '_' or '.'");
        if (n.netns_auto ? !n.host_dev_name.empty() : !valid_interface_name(n.host_dev_name))
            return make_error(ErrorKind::Usage, "network interface '" + n.id + "': '" + n.host_dev_name.substr(0, 32) + "' is not a valid host interface name");
        if (!n.guest_mac.empty() && !valid_mac(n.guest_mac))
            return make_error(ErrorKind::Usage, "network interface '" + n.id + "': '" + n.guest_mac.substr(0, 32) + "' is not a lower-case unicast MAC address");
        if (!ids.insert(n.id).second)
            return make_error(ErrorKind::Usage, "two network interfaces have the id '" + n.id + "'");
        if (!n.netns_auto && !taps.insert(n.host_dev_name).second)
            return make_error(ErrorKind::Usage, "two network interfaces use the tap '" + n.host_dev_name + "'");
        if (!n.guest_mac.empty() && !macs.insert(n.guest_mac).second)
            return make_error(ErrorKind::Usage, "two network interfaces have the MAC " + n.guest_mac);
        if (auto st = check_rate_limiter(n.rx_limit); !st)
            return make_error(ErrorKind::Usage, "network interface '" + n.id + "': rx rate limiter: " + st.error().message);
        if (auto st = check_rate_limiter(n.tx_limit); !st)
            return make_error(ErrorKind::Usage, "network interface '" + n.id + "': tx rate limiter: " + st.error().message);
    }
    return ok();
}

Status check_vm_mmds(VmMmds const& mmds, std::vector<VmNet> const& nets)
{
    if (!mmds.enabled())
        return ok();
    if (mmds.version != "V1" && mmds.version != "V2")
        return make_error(ErrorKind::Usage, "the metadata service's version must be V1 or V2");
    if (auto ip = parse_link_local_ipv4(mmds.ipv4_address); !ip)
        return make_error(ErrorKind::Usage, "the metadata service's address: " + ip.error().message);
    if (mmds.interfaces.empty())
        return make_error(ErrorKind::Usage, "the metadata service needs a network interface to serve on");
    std::set<std::string> named;
    for (auto const& id : mmds.interfaces) {
        bool found = std::any_of(nets.begin(), nets.end(), [&](VmNet const& n) { return n.id == id; });
        if (!found)
            return make_error(ErrorKind::Usage, "the metadata service names network interface '" + id.substr(0, 32) + "', which the VM does not have");
        if (!named.insert(id).second)
            return make_error(ErrorKind::Usage, "the metadata service names network interface '" + id + "' twice");
    }
    return ok();
}

void retarget_mmds(VmMmds& mmds, std::vector<VmNet> const& nets)
{
    if (!mmds.enabled())
        return;
    mmds.interfaces.clear();
    for (auto const& n : nets)
        mmds.interfaces.push_back(n.id);
    if (mmds.interfaces.empty())
        mmds = VmMmds {};
}

std::string new_guest_mac()
{
    std::random_device random;
    std::uint64_t value = (std::uint64_t { random() } << 32) ^ random();
    unsigned char b[6];
    for (int i = 0; i < 6; ++i)
        b[i] = static_cast<unsigned char>(value >> (8 * i));
    b[0] = static_cast<unsigned char>((b[0] & 0xfc) | 0x02);
    char text[18];
    std::snprintf(text, sizeof text, "%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4], b[5]);
    return text;
}

void renew_guest_macs(std::vector<VmNet>& nets)
{
    for (auto& n : nets)
        n.guest_mac = new_guest_mac();
}

void fill_guest_macs(std::vector<VmNet>& nets)
{
    for (auto& n : nets)
        if (n.guest_mac.empty())
            n.guest_mac = new_guest_mac();
}

Status check_vm_disks(std::vector<VmDisk> const& disks)
{
    if (disks.size() > kMaxRecordDisks)
        return make_error(ErrorKind::Usage, "a VM has at most " + std::to_string(kMaxRecordDisks) + " disks");
    std::set<std::string> ids, names;
    std::map<std::string, RateLimiterConfig> groups;
    unsigned boot = 0;
    for (auto const& d : disks) {
        STRATA_TRY(check_disk_id(d.id));
        STRATA_TRY(check_object_name(d.disk));
        STRATA_TRY(check_cache(d.cache));
        if (!ids.insert(d.id).second)
            return make_error(ErrorKind::Usage, "two disks have the id '" + d.id + "'");
        if (!names.insert(d.disk).second)
            return make_error(ErrorKind::Usage, "the store disk '" + d.disk + "' is attached twice");
        boot += d.boot ? 1 : 0;
        if (auto limit = check_rate_limiter(d.rate_limit); !limit)
            return make_error(ErrorKind::Usage, "disk '" + d.id + "': " + limit.error().message);
        if (d.rate_limit_group.empty())
            continue;
        if (auto group = check_disk_id(d.rate_limit_group); !group)
            return make_error(ErrorKind::Usage, "disk '" + d.id + "': rate limit group '" + d.rate_limit_group.substr(0, 32) + "' must be 1-20 letters, digits, '-', '_' or '.'");
        auto [it, fresh] = groups.emplace(d.rate_limit_group, d.rate_limit);
        if (!fresh && it->second != d.rate_limit)
            return make_error(ErrorKind::Usage, "the disks of rate limit group '" + d.rate_limit_group + "' have different limits");
    }
    if (boot > 1)
        return make_error(ErrorKind::Usage, "at most one disk may have boot=on");
    return ok();
}

json spec_json(MachineSpec const& spec)
{
    auto const& b = spec.boot;
    json boot { { "cmdline", b.cmdline }, { "boot_protocol", b.boot_protocol } };
    if (!b.firmware.empty())
        boot["firmware"] = b.firmware;
    if (!b.kernel.empty())
        boot["kernel"] = b.kernel;
    if (!b.initrd.empty())
        boot["initrd"] = b.initrd;
    json j { { "vcpus", spec.vcpus }, { "memory_mib", spec.memory_mib }, { "boot", boot }, { "cpu_template", spec.cpu_template },
        { "transport", spec.transport } };
    // Written only when there are any, so records without networking read as before.
    if (!spec.nets.empty()) {
        json nets = json::array();
        for (auto const& n : spec.nets) {
            json one { { "iface_id", n.id } };
            if (n.netns_auto)
                one["netns"] = "auto";
            else
                one["host_dev_name"] = n.host_dev_name;
            if (!n.guest_mac.empty())
                one["guest_mac"] = n.guest_mac;
            if (!n.rx_limit.unlimited())
                one["rx_rate_limiter"] = record_rate_limiter_json(n.rx_limit);
            if (!n.tx_limit.unlimited())
                one["tx_rate_limiter"] = record_rate_limiter_json(n.tx_limit);
            nets.push_back(one);
        }
        j["network_interfaces"] = nets;
    }
    if (spec.mmds.enabled())
        j["mmds"] = json { { "version", spec.mmds.version }, { "ipv4_address", spec.mmds.ipv4_address },
            { "network_interfaces", spec.mmds.interfaces } };
    return j;
}

Result<MachineSpec> parse_spec(json const& j)
{
    MachineSpec s;
    STRATA_TRY(vcpus, uint_field(j, "vcpus", true, 1, kMaxRecordVcpus));
    s.vcpus = static_cast<std::uint32_t>(vcpus);
    STRATA_TRY(memory, uint_field(j, "memory_mib", true, kMinRecordMemoryMib, kMaxRecordMemoryMib));
    s.memory_mib = memory;
    auto boot = j.find("boot");
    if (boot == j.end() || !boot->is_object())
        return bad("record", "'boot' is not an object");
    STRATA_TRY(firmware, string_field(*boot, "firmware", false, 64));
    STRATA_TRY(kernel, string_field(*boot, "kernel", false, 64));
    STRATA_TRY(initrd, string_field(*boot, "initrd", false, 64));
    STRATA_TRY(cmdline, string_field(*boot, "cmdline", false));
    STRATA_TRY(protocol, string_field(*boot, "boot_protocol", false, 16));
    s.boot = BootSpec { firmware, kernel, initrd, cmdline, protocol.empty() ? "auto" : protocol };
    STRATA_TRY(cpu_template, string_field(j, "cpu_template", false, 16));
    STRATA_TRY(transport, string_field(j, "transport", false, 16));
    s.cpu_template = cpu_template.empty() ? "host" : cpu_template;
    s.transport = transport.empty() ? "mmio" : transport;
    if (auto nets = j.find("network_interfaces"); nets != j.end()) {
        if (!nets->is_array() || nets->size() > kMaxRecordNets)
            return bad("record", "'network_interfaces' is not an array of at most " + std::to_string(kMaxRecordNets));
        for (auto const& n : *nets) {
            if (!n.is_object())
                return bad("record", "a network interface is not an object");
            STRATA_TRY(id, string_field(n, "iface_id", true, 20));
            STRATA_TRY(netns, string_field(n, "netns", false, 8));
            if (!netns.empty() && netns != "auto")
                return bad("record", "a network interface's 'netns' must be \"auto\"");
            STRATA_TRY(tap, string_field(n, "host_dev_name", netns.empty(), 15));
            STRATA_TRY(mac, string_field(n, "guest_mac", false, 17));
            STRATA_TRY(rx, parse_record_rate_limiter_field(n, "record", "rx_rate_limiter"));
            STRATA_TRY(tx, parse_record_rate_limiter_field(n, "record", "tx_rate_limiter"));
            s.nets.push_back(VmNet { id, tap, mac, !netns.empty(), rx, tx });
        }
    }
    if (auto mmds = j.find("mmds"); mmds != j.end()) {
        if (!mmds->is_object())
            return bad("record", "'mmds' is not an object");
        STRATA_TRY(version, string_field(*mmds, "version", true, 2));
        STRATA_TRY(address, string_field(*mmds, "ipv4_address", true, 15));
        auto ifaces = mmds->find("network_interfaces");
        if (ifaces == mmds->end() || !ifaces->is_array() || ifaces->empty() || ifaces->size() > kMaxRecordNets)
            return bad("record", "'mmds.network_interfaces' is not an array of 1 to " + std::to_string(kMaxRecordNets) + " interface ids");
        s.mmds.version = version;
        s.mmds.ipv4_address = address;
        for (auto const& id : *ifaces) {
            if (!id.is_string() || id.get_ref<std::string const&>().size() > 20)
                return bad("record", "'mmds.network_interfaces' holds something other than an interface id");
            s.mmds.interfaces.push_back(id.get<std::string>());
        }
    }
    if (auto st = check_spec(s); !st)
        return bad("record", st.error().message);
    return s;
}

json vm_disk_json(VmDisk const& d)
{
    json j { { "id", d.id }, { "disk", d.disk }, { "read_only", d.read_only }, { "boot", d.boot }, { "scratch", d.scratch },
        { "cache", d.cache }, { "owned", d.owned } };
    put_disk_rate_limit(j, d.rate_limit, d.rate_limit_group);
    return j;
}

Result<VmDisk> parse_vm_disk(json const& j)
{
    if (!j.is_object())
        return bad("record", "a disk is not an object");
    VmDisk d;
    STRATA_TRY(id, string_field(j, "id", true, 20));
    STRATA_TRY(disk, string_field(j, "disk", true, 128));
    STRATA_TRY(cache, string_field(j, "cache", false, 16));
    STRATA_TRY(read_only, bool_field(j, "read_only"));
    STRATA_TRY(boot, bool_field(j, "boot"));
    STRATA_TRY(scratch, bool_field(j, "scratch"));
    STRATA_TRY(owned, bool_field(j, "owned"));
    d = VmDisk { id, disk, read_only, boot, scratch, cache.empty() ? "none" : cache, owned };
    STRATA_TRY(get_disk_rate_limit(j, "record", d.rate_limit, d.rate_limit_group));
    return d;
}

json vm_json(VmRecord const& vm)
{
    json disks = json::array();
    for (auto const& d : vm.disks)
        disks.push_back(vm_disk_json(d));
    json j = spec_json(vm.spec);
    j["kind"] = "vm";
    j["name"] = vm.name;
    j["disks"] = disks;
    j["labels"] = from_map(vm.labels);
    j["metadata"] = from_map(vm.metadata);
    j["description"] = vm.description;
    j["created"] = vm.created;
    j["source"] = vm.source;
    j["generalized"] = vm.generalized;
    if (!vm.instance_id.empty())
        j["instance_id"] = vm.instance_id;
    if (!vm.restore_from.empty())
        j["restore_from"] = vm.restore_from;
    return j;
}

std::string encode_vm(VmRecord const& vm)
{
    return vm_json(vm).dump(2) + "\n";
}

Result<VmRecord> parse_vm(std::string_view text)
{
    if (text.size() > kMaxManifestBytes)
        return bad("vm record", "larger than 1 MiB");
    json j = json::parse(text.begin(), text.end(), nullptr, false);
    if (j.is_discarded() || !j.is_object())
        return bad("vm record", "not a JSON object");
    auto kind = j.find("kind");
    if (kind == j.end() || *kind != "vm")
        return bad("vm record", "'kind' is not \"vm\"");
    VmRecord vm;
    STRATA_TRY(name, string_field(j, "name", true, kMaxObjectName));
    if (auto st = check_object_name(name); !st)
        return bad("vm record", st.error().message);
    vm.name = name;
    STRATA_TRY(spec, parse_spec(j));
    vm.spec = spec;
    auto disks = j.find("disks");
    if (disks != j.end()) {
        if (!disks->is_array() || disks->size() > kMaxRecordDisks)
            return bad("vm record", "'disks' is not an array of at most " + std::to_string(kMaxRecordDisks));
        for (auto const& d : *disks) {
            STRATA_TRY(disk, parse_vm_disk(d));
            vm.disks.push_back(disk);
        }
    }
    if (auto st = check_vm_disks(vm.disks); !st)
        return bad("vm record", st.error().message);
    STRATA_TRY(labels, string_map(j, "labels"));
    STRATA_TRY(metadata, string_map(j, "metadata"));
    if (auto st = check_labels(labels); !st)
        return bad("vm record", st.error().message);
    if (auto st = check_metadata(metadata); !st)
        return bad("vm record", st.error().message);
    vm.labels = labels;
    vm.metadata = metadata;
    STRATA_TRY(description, string_field(j, "description", false));
    STRATA_TRY(created, string_field(j, "created", false, 64));
    STRATA_TRY(source, string_field(j, "source", false, 256));
    STRATA_TRY(generalized, bool_field(j, "generalized"));
    STRATA_TRY(instance_id, string_field(j, "instance_id", false, 64));
    if (auto st = check_instance_id(instance_id); !st)
        return bad("vm record", st.error().message);
    vm.instance_id = instance_id;
    STRATA_TRY(restore_from, string_field(j, "restore_from", false, 256));
    if (!restore_from.empty() && restore_from != "suspended") {
        if (!restore_from.starts_with("machine-image:"))
            return bad("vm record", "'restore_from' is neither \"suspended\" nor \"machine-image:NAME\"");
        if (auto st = check_object_name(restore_from.substr(14)); !st)
            return bad("vm record", "'restore_from': " + st.error().message);
    }
    vm.restore_from = restore_from;
    vm.description = description;
    vm.created = created;
    vm.source = source;
    vm.generalized = generalized;
    return vm;
}

std::filesystem::path vm_state_dir(std::string const& store_root, std::string const& vm)
{
    return std::filesystem::path(store_root) / "vm-state" / vm;
}

std::string new_instance_id()
{
    std::random_device random;
    std::uint64_t value = (std::uint64_t { random() } << 32) ^ random();
    char text[32];
    std::snprintf(text, sizeof text, "i-%016llx", static_cast<unsigned long long>(value));
    return text;
}

Status check_instance_id(std::string_view id)
{
    if (id.empty())
        return ok();
    bool good = id.size() > 2 && id.size() <= 34 && id.starts_with("i-");
    for (char c : id.substr(std::min<std::size_t>(2, id.size())))
        good = good && ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
    if (!good)
        return make_error(ErrorKind::BadInput, "instance id '" + std::string(id.substr(0, 40)) + "' is not \"i-\" and 1-32 lowercase hex digits");
    return ok();
}

Result<VmRecord> load_vm(RecordLock const& held, std::string const& name)
{
    STRATA_TRY(text, read_record(held.root(), RecordKind::Vm, name));
    auto vm = parse_vm(text);
    if (!vm)
        return vm.error().context("vm '" + name + "'");
    if (vm.value().name != name)
        return make_error(ErrorKind::BadInput, "the record of vm '" + name + "' names '" + vm.value().name + "'");
    return vm;
}

Result<VmRecord> load_vm(Store& store, std::string const& name)
{
    STRATA_TRY(held, RecordLock::take(store.root(), false));
    return load_vm(held, name);
}

Result<std::vector<VmRecord>> list_vms(RecordLock const& held)
{
    STRATA_TRY(names, record_names(held.root(), RecordKind::Vm));
    std::vector<VmRecord> out;
    for (auto const& n : names) {
        STRATA_TRY(vm, load_vm(held, n));
        out.push_back(std::move(vm));
    }
    return out;
}

Status put_boot_artifacts(RecordLock const& held, BootSpec& boot, std::string const& firmware, std::string const& kernel,
    std::string const& initrd)
{
    auto put = [&](std::string const& path) -> Result<std::string> {
        if (path.empty())
            return std::string();
        return put_artifact(held, path);
    };
    STRATA_TRY(f, put(firmware));
    STRATA_TRY(k, put(kernel));
    STRATA_TRY(i, put(initrd));
    boot.firmware = f;
    boot.kernel = k;
    boot.initrd = i;
    return ok();
}

Status save_vm(RecordLock const& held, VmRecord const& vm, bool must_be_new)
{
    STRATA_TRY(held.require_exclusive());
    STRATA_TRY(check_object_name(vm.name));
    STRATA_TRY(check_spec(vm.spec));
    STRATA_TRY(check_vm_disks(vm.disks));
    STRATA_TRY(check_labels(vm.labels));
    STRATA_TRY(check_metadata(vm.metadata));
    for (auto const& d : boot_digests(vm.spec.boot))
        STRATA_TRY(require_artifact(held, d));
    return write_record(held.root(), RecordKind::Vm, vm.name, encode_vm(vm), must_be_new);
}

Status refuse_if_suspended_vm_disk(std::string const& store_root, std::string const& disk, std::string const& except_vm)
{
    // Only a VM with a folder in vm-state can be suspended: `vms suspend` moves
    // the saved state there before it marks the record, a restore forgets the
    // state in the record before it removes the folder, and `vms delete` removes
    // the record before the folder. So the records read are those of the VMs
    // with such a folder (suspended ones, and VMs made from a running-state
    // image that have not started yet), not every VM's: every VMM start opens
    // its disks through here, and a store of many VMs made it read and parse
    // all their records each time.
    auto const states = std::filesystem::path(store_root) / "vm-state";
    std::error_code ec;
    std::filesystem::directory_iterator it(states, ec);
    if (ec) {
        if (ec == std::errc::no_such_file_or_directory)
            return ok();
        return make_error(ErrorKind::Io, "list '" + states.string() + "': " + ec.message());
    }
    std::vector<std::string> names;
    for (; it != std::filesystem::directory_iterator(); it.increment(ec)) {
        auto n = it->path().filename().string();
        // A suspend's folder in the making ("NAME.new") names no VM, unless
        // one is called that: its record is then read for nothing.
        if (n != except_vm && check_object_name(n))
            names.push_back(std::move(n));
    }
    if (ec)
        return make_error(ErrorKind::Io, "list '" + states.string() + "': " + ec.message());
    std::sort(names.begin(), names.end());
    for (auto const& n : names) {
        auto text = read_record(store_root, RecordKind::Vm, n);
        if (!text)
            continue; // no such VM, or deleted meanwhile
        STRATA_TRY(vm, parse_vm(text.value()));
        if (!vm.suspended())
            continue;
        for (auto const& d : vm.disks)
            if (d.disk == disk)
                return make_error(ErrorKind::Busy, "disk '" + disk + "' belongs to the suspended vm '" + vm.name + "'; resume it (strata vms resume "
                        + vm.name + ") or delete it first");
    }
    return ok();
}

Result<std::vector<std::string>> vms_using_disk(std::string const& store_root, std::string const& disk)
{
    STRATA_TRY(names, record_names(store_root, RecordKind::Vm));
    std::vector<std::string> users;
    for (auto const& n : names) {
        STRATA_TRY(text, read_record(store_root, RecordKind::Vm, n));
        STRATA_TRY(vm, parse_vm(text));
        for (auto const& d : vm.disks)
            if (d.disk == disk)
                users.push_back(vm.name);
    }
    return users;
}

} // namespace strata
