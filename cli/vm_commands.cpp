// `strata vms create|list|describe|start|stop|console|delete`: VMs in the store
// (store/vm_record.h) and their detached VMMs (vm_runtime.cpp). Creation is in
// vm_create.cpp. --json on list and describe; errors map to sysexits codes.
#include "cli/commands.h"
#include "cli/img_util.h"
#include "cli/vm_support.h"
#include "registry/lazy.h"
#include "vmm/net_config.h"
#include "registry/transfer.h"

#include "store/artifacts.h"
#include "store/record_files.h"
#include "vmm/api/client.h"
#include "vmm/disk_config.h"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <unistd.h>

namespace strata::cli {

namespace {

// "running", "suspended" (saved by `vms suspend`, not running) or "stopped".
char const* state_word(VmRuntime const& rt, VmRecord const& vm)
{
    return rt.running ? "running" : vm.suspended() ? "suspended" : "stopped";
}

nlohmann::json runtime_json(VmRuntime const& rt)
{
    return nlohmann::json { { "state", rt.running ? "running" : "stopped" }, { "pid", rt.running ? rt.pid : 0 },
        { "api_ready", rt.api_ready }, { "runtime_dir", rt.paths.dir }, { "api_socket", rt.paths.api_socket },
        { "console_socket", rt.paths.console_socket }, { "serial_log", rt.paths.serial_log }, { "pid_file", rt.paths.pid_file } };
}

std::string boot_word(BootSpec const& b)
{
    return !b.firmware.empty() ? "firmware:" + b.firmware.substr(0, 12) : "kernel:" + b.kernel.substr(0, 12);
}

// A VM disk's layers still being pulled lazily (registry/lazy.h): how many,
// from where, and how much of them is here, from the store's files (what a
// VMM has fetched but not yet marked counts once it marks it). Nothing when
// every layer is local.
std::optional<nlohmann::json> disk_lazy_json(Store& s, std::string const& disk)
{
    auto m = s.get(ObjectKind::Disk, disk);
    if (!m)
        return std::nullopt;
    registry::LazyProgress sum;
    std::uint64_t remote = 0;
    nlohmann::json sources = nlohmann::json::array();
    for (auto const& id : m.value().layers) {
        auto p = registry::lazy_progress(s.root(), id);
        if (!p || !p.value())
            continue;
        ++remote;
        auto const& v = *p.value();
        sum.chunks_present += v.chunks_present;
        sum.chunks_total += v.chunks_total;
        sum.bytes_present += v.bytes_present;
        sum.bytes_total += v.bytes_total;
        sum.blob_bytes_present += v.blob_bytes_present;
        sum.blob_bytes_total += v.blob_bytes_total;
        if (auto info = registry::load_lazy(s.root(), id); info && info.value()) {
            std::string from = info.value()->registry + "/" + info.value()->repository;
            if (std::find(sources.begin(), sources.end(), from) == sources.end())
                sources.push_back(from);
        }
    }
    if (remote == 0)
        return std::nullopt;
    double fill = sum.bytes_total == 0 ? 100.0 : 100.0 * static_cast<double>(sum.bytes_present) / static_cast<double>(sum.bytes_total);
    return nlohmann::json { { "remote_layers", remote }, { "from", sources }, { "chunks_present", sum.chunks_present },
        { "chunks_total", sum.chunks_total }, { "bytes_present", sum.bytes_present }, { "bytes_total", sum.bytes_total },
        { "blob_bytes_fetched", sum.blob_bytes_present }, { "blob_bytes_total", sum.blob_bytes_total },
        { "fill_percent", std::floor(fill * 10) / 10 } };
}

int list_vms_command(bool json)
{
    return with_vm_store([&](Store& s) {
        std::vector<VmRecord> vms;
        {
            auto held = RecordLock::take(s.root(), false);
            if (!held)
                return vm_fail(held.error());
            auto all = list_vms(held.value());
            if (!all)
                return vm_fail(all.error());
            vms = all.value();
        }
        if (json) {
            nlohmann::json out = nlohmann::json::array();
            for (auto const& vm : vms) {
                auto j = vm_json(vm);
                auto const rt = vm_runtime(s, vm.name);
                j.update(runtime_json(rt));
                j["state"] = state_word(rt, vm);
                out.push_back(j);
            }
            std::cout << out.dump(2) << "\n";
            return 0;
        }
        std::printf("%-24s %-9s %5s %8s %5s  %-20s  %s\n", "NAME", "STATE", "VCPUS", "MEMORY", "DISKS", "CREATED", "SOURCE");
        for (auto const& vm : vms) {
            auto rt = vm_runtime(s, vm.name);
            std::printf("%-24s %-9s %5u %7lluM %5zu  %-20s  %s\n", vm.name.c_str(), state_word(rt, vm), vm.spec.vcpus,
                static_cast<unsigned long long>(vm.spec.memory_mib), vm.disks.size(), vm.created.c_str(), vm.source.c_str());
        }
        return 0;
    });
}

// The VMM's counters as `vms describe` shows them: only fields of the expected
// types are taken (the VMM's answer is data, and a malformed one must not stop
// describe); each one left out is said on stderr.
void take_vmm_metrics(std::string const& vm, std::string const& body, std::vector<VmDisk> const& disks,
    std::vector<std::optional<nlohmann::json>>& lazy, nlohmann::json& j)
{
    auto skipped = [&](std::string const& what) {
        std::fprintf(stderr, "strata: vm '%s': its VMM's /metrics has %s; left out\n", vm.c_str(), what.c_str());
    };
    auto metrics = nlohmann::json::parse(body, nullptr, false);
    if (!metrics.is_object()) {
        skipped("no JSON object");
        return;
    }
    if (metrics.contains("boot_complete_us")) {
        auto const& b = metrics["boot_complete_us"];
        if (b.is_number_unsigned() || b.is_null())
            j["boot_complete_us"] = b;
        else
            skipped("a boot_complete_us that is not a count");
    }
    if (!metrics.contains("disks"))
        return;
    if (!metrics["disks"].is_array()) {
        skipped("a 'disks' that is not a list");
        return;
    }
    for (auto const& md : metrics["disks"]) {
        if (!md.is_object() || !md.contains("drive_id") || !md["drive_id"].is_string()) {
            skipped("a disk without a drive_id string");
            continue;
        }
        std::string const id = md["drive_id"].get<std::string>();
        for (std::size_t i = 0; i < disks.size(); ++i) {
            if (!lazy[i] || disks[i].id != id || !md.contains("lazy"))
                continue;
            if (!md["lazy"].is_object()) {
                skipped("disk '" + id + "''s lazy state that is not an object");
                continue;
            }
            nlohmann::json counters = nlohmann::json::object();
            for (auto const& [key, value] : md["lazy"].items()) {
                if (value.is_number_unsigned())
                    counters[key] = value;
                else
                    skipped("disk '" + id + "''s lazy." + key + " that is not a count");
            }
            (*lazy[i])["vmm"] = counters;
        }
    }
}

int describe_vm_command(std::string const& name, bool json)
{
    return with_vm_store([&](Store& s) {
        auto vm = load_vm(s, name);
        if (!vm)
            return vm_fail(vm.error());
        auto rt = vm_runtime(s, name);
        auto j = vm_json(vm.value());
        j.update(runtime_json(rt));
        j["state"] = state_word(rt, vm.value());
        // Disks still being pulled lazily: their remote layers and fill.
        auto const& disks = vm.value().disks;
        std::vector<std::optional<nlohmann::json>> lazy(disks.size());
        for (std::size_t i = 0; i < disks.size(); ++i) {
            if (!disks[i].scratch)
                lazy[i] = disk_lazy_json(s, disks[i].disk);
        }
        // A running VM's boot time, from its VMM (null until the guest signals
        // it), and its lazy disks' state as it serves them (chunks fetched but
        // not yet marked count, and what was fetched on demand and by the fill).
        j["boot_complete_us"] = nullptr;
        if (rt.running && rt.api_ready) {
            auto m = api::api_request(rt.paths.api_socket, "GET", "/metrics", {}, std::chrono::milliseconds(500));
            if (m && m.value().status == 200)
                take_vmm_metrics(name, m.value().body, disks, lazy, j);
        }
        for (std::size_t i = 0; i < disks.size() && j.contains("disks") && j["disks"].is_array() && i < j["disks"].size(); ++i)
            j["disks"][i]["lazy"] = lazy[i] ? *lazy[i] : nlohmann::json(nullptr);
        if (json) {
            std::cout << j.dump(2) << "\n";
            return 0;
        }
        auto const& v = vm.value();
        std::printf("name: %s\nstate: %s\n", v.name.c_str(), v.suspended() && !rt.running ? "SUSPENDED" : state_word(rt, v));
        if (j["boot_complete_us"].is_number_unsigned())
            std::printf("boot_complete_us: %llu\n", static_cast<unsigned long long>(j["boot_complete_us"].get<std::uint64_t>()));
        if (rt.running)
            std::printf("pid: %d\n", static_cast<int>(rt.pid));
        std::printf("vcpus: %u\nmemory: %llu MiB\nboot: %s\ncmdline: %s\ntransport: %s\ncreated: %s\nsource: %s\n", v.spec.vcpus,
            static_cast<unsigned long long>(v.spec.memory_mib), boot_word(v.spec.boot).c_str(), v.spec.boot.cmdline.c_str(),
            v.spec.transport.c_str(), v.created.c_str(), v.source.c_str());
        if (!v.description.empty())
            std::printf("description: %s\n", v.description.c_str());
        std::printf("api_socket: %s\nserial_log: %s\nconsole_socket: %s\n", rt.paths.api_socket.c_str(), rt.paths.serial_log.c_str(),
            rt.paths.console_socket.c_str());
        std::printf("disks:\n");
        for (std::size_t i = 0; i < v.disks.size(); ++i) {
            auto const& d = v.disks[i];
            std::printf("  %-12s %-28s%s%s%s cache=%s", d.id.c_str(), d.disk.c_str(), d.boot ? " boot" : "", d.read_only ? " readonly" : "",
                d.scratch ? " scratch" : "", d.cache.c_str());
            // The limit as --disk keys (what vms create takes back).
            if (auto limit = rate_limit_spec(d.rate_limit, d.rate_limit_group); !limit.empty())
                std::printf(" rate limit: %s", limit.substr(1).c_str());
            std::printf("\n");
            if (!lazy[i])
                continue;
            auto const& l = *lazy[i];
            // Counts only (the VMM's were checked when taken; these are ours).
            auto u64 = [&](nlohmann::json const& o, char const* k) {
                return o.contains(k) && o[k].is_number_unsigned() ? o[k].get<std::uint64_t>() : std::uint64_t { 0 };
            };
            std::string from;
            for (auto const& f : l["from"])
                from += (from.empty() ? "" : ", ") + f.get<std::string>();
            std::printf("    pulled lazily from %s: %llu remote layer%s, %.1f%% here (%llu of %llu chunks, %s of %s; %s of %s fetched)\n",
                from.c_str(), static_cast<unsigned long long>(u64(l, "remote_layers")), u64(l, "remote_layers") == 1 ? "" : "s",
                l["fill_percent"].get<double>(), static_cast<unsigned long long>(u64(l, "chunks_present")),
                static_cast<unsigned long long>(u64(l, "chunks_total")), human_size(u64(l, "bytes_present")).c_str(),
                human_size(u64(l, "bytes_total")).c_str(), human_size(u64(l, "blob_bytes_fetched")).c_str(),
                human_size(u64(l, "blob_bytes_total")).c_str());
            if (l.contains("vmm") && l["vmm"].is_object()) {
                auto const& k = l["vmm"];
                std::printf("    its VMM: %llu of %llu chunks here; fetched on demand %s, by the fill %s; %llu failed fetches\n",
                    static_cast<unsigned long long>(u64(k, "chunks_present")), static_cast<unsigned long long>(u64(k, "chunks_total")),
                    human_size(u64(k, "demand_bytes")).c_str(), human_size(u64(k, "fill_bytes")).c_str(),
                    static_cast<unsigned long long>(u64(k, "failed_fetches")));
            }
        }
        for (auto const& n : v.spec.nets) {
            NetConfig c { n.id, n.host_dev_name, n.guest_mac, n.netns_auto, n.rx_limit, n.tx_limit };
            std::printf("network interface: %s\n", net_spec(c).c_str());
        }
        if (v.spec.mmds.enabled()) {
            std::string ifaces;
            for (auto const& i : v.spec.mmds.interfaces)
                ifaces += (ifaces.empty() ? "" : ",") + i;
            std::printf("metadata service: %s at %s on %s\n", v.spec.mmds.version.c_str(), v.spec.mmds.ipv4_address.c_str(), ifaces.c_str());
        }
        for (auto const& [k, val] : v.labels)
            std::printf("label: %s=%s\n", k.c_str(), val.c_str());
        for (auto const& [k, val] : v.metadata)
            std::printf("metadata: %s=%s\n", k.c_str(), val.c_str());
        if (!v.instance_id.empty())
            std::printf("instance id: %s\n", v.instance_id.c_str());
        if (v.generalized)
            std::printf("generalized: yes (not startable; capture it as a machine image)\n");
        if (!v.restore_from.empty() && !rt.running && !v.suspended())
            std::printf("next start: restores the saved running state (%s)\n", v.restore_from.c_str());
        return 0;
    });
}

int delete_vm_command(std::string const& name, bool stop, unsigned timeout)
{
    return with_vm_store([&](Store& s) {
        auto vm = load_vm(s, name);
        if (!vm)
            return vm_fail(vm.error());
        if (vm_runtime(s, name).running) {
            if (!stop)
                return vm_fail(make_error(ErrorKind::Busy, "vm '" + name + "' is running; stop it first or pass --stop"));
            if (auto st = stop_vm(s, name, false, timeout); !st)
                return vm_fail(st.error());
        }
        {
            // The record goes first: a crash afterwards leaves only disks no VM names.
            auto held = RecordLock::take(s.root(), true);
            if (!held)
                return vm_fail(held.error());
            if (auto st = remove_record(s.root(), RecordKind::Vm, name); !st)
                return vm_fail(st.error());
            if (auto gc = gc_artifacts(held.value()); !gc)
                return vm_fail(gc.error());
        }
        // The runtime folder (logs of past runs) goes with the VM, and so does
        // its saved state, if it had any.
        std::error_code ec;
        std::filesystem::remove_all(vm_runtime(s, name).paths.dir, ec);
        std::filesystem::remove_all(vm_state_dir(s.root(), name), ec);
        for (auto const& d : vm.value().disks) {
            if (!d.owned)
                continue;
            auto st = s.remove(ObjectKind::Disk, d.disk);
            // A VMM that just ended may still be releasing its disks' locks.
            for (int i = 0; i < 50 && !st && st.error().kind == ErrorKind::Busy; ++i) {
                ::usleep(100'000);
                st = s.remove(ObjectKind::Disk, d.disk);
            }
            if (!st && st.error().kind != ErrorKind::NotFound)
                return vm_fail(st.error());
        }
        return 0;
    });
}

struct AgentArgs {
    std::string name, cmd;
    std::optional<unsigned> timeout_s;
    unsigned wait_ms { 2000 };
    unsigned end_timeout_s { 30 };
};

int agent_cli(AgentArgs const& a)
{
    return with_vm_store([&](Store& s) {
        auto vm = load_vm(s, a.name);
        if (!vm)
            return vm_fail(vm.error());
        auto reply = agent_command(s, a.name, a.cmd, a.timeout_s, a.wait_ms);
        if (!reply)
            return vm_fail(reply.error());
        auto j = nlohmann::json::parse(reply.value(), nullptr, false);
        std::cout << (j.is_discarded() ? reply.value() : j.dump(2)) << "\n";
        return 0;
    });
}

// `vms generalize`: the agent removes the guest's identity and powers off; the
// VMM marks the record when the VM ends (vmm_command.cpp); here we wait for that.
int generalize_cli(AgentArgs const& a)
{
    return with_vm_store([&](Store& s) {
        auto vm = load_vm(s, a.name);
        if (!vm)
            return vm_fail(vm.error());
        if (vm.value().generalized) {
            std::printf("vm %s is already generalized\n", a.name.c_str());
            return 0;
        }
        auto reply = agent_command(s, a.name, "generalize", std::nullopt, a.wait_ms);
        if (!reply)
            return vm_fail(reply.error());
        auto j = nlohmann::json::parse(reply.value(), nullptr, false);
        std::size_t removed = 0;
        if (j.is_object() && j.contains("result") && j["result"].is_object() && j["result"].contains("removed") && j["result"]["removed"].is_array())
            removed = j["result"]["removed"].size();
        std::printf("vm %s: the guest agent removed its identity (%zu items) and is powering off\n", a.name.c_str(), removed);
        auto const end = std::chrono::steady_clock::now() + std::chrono::seconds(a.end_timeout_s);
        while (vm_runtime(s, a.name).running) {
            if (std::chrono::steady_clock::now() >= end)
                return vm_fail(make_error(ErrorKind::Timeout, "vm '" + a.name + "' acknowledged generalize but did not end within "
                        + std::to_string(a.end_timeout_s) + " s; it is not marked generalized (look at its console, or stop it and retry)"));
            ::usleep(100'000);
        }
        auto after = load_vm(s, a.name);
        if (!after)
            return vm_fail(after.error());
        if (!after.value().generalized)
            return vm_fail(make_error(ErrorKind::Guest, "vm '" + a.name + "' ended, but not by the guest's reset or power-off, so it is "
                    "not marked generalized (see " + vm_runtime(s, a.name).paths.dir + "/vmm.log)"));
        std::printf("vm %s is generalized; capture it with `strata machine-images create NAME --source-vm %s`\n", a.name.c_str(), a.name.c_str());
        return 0;
    });
}

} // namespace

void register_vms(CLI::App& app, int& exit_code)
{
    auto* vms = app.add_subcommand("vms", "VMs: records in the store and their VMM processes");
    vms->require_subcommand(1);
    auto a = std::make_shared<VmCreateArgs>();
    auto flags = std::make_shared<std::pair<bool, bool>>(false, false); // json, force/stop
    auto timeout = std::make_shared<unsigned>(10);
    auto name = std::make_shared<std::string>();

    auto* create = vms->add_subcommand("create", "Record a VM (does not start it)");
    create->add_option("NAME", a->name)->required();
    auto* src = create->add_option_group("source");
    src->add_option("--image", a->image, "Boot disk: an O(1) clone of this image (with --firmware or --kernel)");
    src->add_option("--template", a->template_name, "An instance template");
    src->add_option("--source-machine-image", a->machine_image, "A machine image: every disk a new layer over its layers");
    src->require_option(0, 1);
    create->add_option("--firmware", a->firmware, "A PVH ELF guest program (copied into the store)");
    create->add_option("--kernel", a->kernel, "A Linux kernel (copied into the store)");
    create->add_option("--initrd", a->initrd, "An initial RAM disk (copied into the store)");
    create->add_option("--cmdline", a->cmdline, "The guest's command line");
    create->add_option("--vcpus", a->vcpus, "Number of vCPUs")->check(CLI::Range(1u, kMaxRecordVcpus));
    create->add_option("--memory", a->memory_mib, "Guest RAM in MiB")->check(CLI::Range(kMinRecordMemoryMib, kMaxRecordMemoryMib));
    create->add_option("--disk", a->disks, "NAME[,id=D][,readonly=on][,boot=on][,cache=..][,scratch=on] (a store disk) or size=S,id=D[,...] (a new one)")
        ->take_all();
    create->add_option("--labels", a->labels, "k=v,...")->each([a](std::string const&) { a->labels_given = true; });
    create->add_option("--metadata", a->metadata, "k=v,...")->each([a](std::string const&) { a->metadata_given = true; });
    create->add_option("--description", a->description);
    create->add_option("--transport", a->transport, "virtio transport: mmio or pci")->check(CLI::IsMember({ "mmio", "pci" }));
    create->add_option("--cpu-template", a->cpu_template, "host or minimal")->check(CLI::IsMember({ "host", "minimal" }));
    create->add_option("--boot-protocol", a->boot_protocol, "auto, pvh or linux")->check(CLI::IsMember({ "auto", "pvh", "linux" }));
    create->add_flag("--lazy", a->lazy, "--source-machine-image is a registry REF: pull it lazily (as NAME-source) and record the VM at once");
    create->add_flag("--insecure", a->insecure, "With --lazy: plain HTTP to the registry the REF names");
    create->add_option("--net", a->nets, "A network interface: tap=NAME|netns=auto[,mac=M][,id=ID][,rx_bps=R][,tx_bps=R][,rx_pps=R][,tx_pps=R] (replaces a template's or machine image's)")->take_all();
    create->add_option("--mmds", a->mmds, "The metadata service serving the VM's metadata: V1|V2[,ip=169.254.x.y][,iface=ID]... or off (default with --net: V2 on every interface)");
    create->add_flag("--keep-mac", a->keep_mac, "A VM from a template or machine image keeps its MACs (default: new ones)");
    create->callback([&exit_code, a] {
        exit_code = with_vm_store([&](Store& s) {
            VmCreateArgs args = *a;
            // A VM's runtime folder is named after the store's path and the VM's
            // name. A VMM can outlive its record when the store is deleted under
            // it; a new store at that path would then make a VM whose `vms start`
            // finds that VMM and says "already running". Refuse the name instead.
            if (!load_vm(s, a->name)) {
                VmRuntime const rt = vm_runtime(s, a->name);
                if (rt.running)
                    return vm_fail(make_error(ErrorKind::Busy, "a VMM (pid " + std::to_string(rt.pid) + ") still runs an earlier vm '" + a->name
                            + "' of a store that was at this path; end it (kill " + std::to_string(rt.pid) + ") or choose another name"));
            }
            if (a->lazy) {
                // The machine image comes from a registry: its layers are
                // recorded at once and fetched when the VM reads them.
                auto ref = registry::parse_reference(a->machine_image);
                if (!ref)
                    return vm_fail(ref.error());
                registry::TransferOptions o;
                auto creds = registry::find_credentials(ref.value().registry, "");
                if (!creds)
                    return vm_fail(creds.error());
                o.client.credentials = creds.value();
                o.client.plain_http = a->insecure;
                o.lazy = true;
                auto pulled = registry::pull_machine_image(s, ref.value(), a->name + "-source", o);
                if (!pulled)
                    return vm_fail(pulled.error());
                args.machine_image = pulled.value().image.name;
            } else if (a->insecure) {
                return vm_fail(make_error(ErrorKind::Usage, "--insecure goes with --lazy"));
            }
            auto vm = create_vm(s, args);
            if (!vm)
                return vm_fail(vm.error());
            std::printf("Created vm %s (%zu disks)\n", vm.value().name.c_str(), vm.value().disks.size());
            return 0;
        });
    });

    auto* list = vms->add_subcommand("list", "List VMs");
    list->add_flag("--json", flags->first, "JSON output");
    list->callback([&exit_code, flags] { exit_code = list_vms_command(flags->first); });

    auto* describe = vms->add_subcommand("describe", "Show a VM (with its runtime files)");
    describe->add_option("NAME", *name)->required();
    describe->add_flag("--json", flags->first, "JSON output");
    describe->callback([&exit_code, flags, name] { exit_code = describe_vm_command(*name, flags->first); });

    auto launch = std::make_shared<VmmLaunch>();
    auto const add_launch_options = [launch](CLI::App* cmd) {
        cmd->add_flag("--no-jail", [launch](std::int64_t) { launch->jail = false; },
            "Run the VMM without its jail (namespaces, a root of its own, cgroup limits, no capabilities)");
        cmd->add_option("--jail-uid", launch->jail_uid, "The uid the jailed VMM runs as (root only; default: the caller's)");
        cmd->add_option("--jail-gid", launch->jail_gid, "The gid the jailed VMM runs as (root only; default: the caller's)");
    };
    auto* start = vms->add_subcommand("start", "Start a VM's VMM in the background (jailed unless --no-jail)");
    start->add_option("NAME", *name)->required();
    add_launch_options(start);
    start->callback([&exit_code, name, launch] {
        exit_code = with_vm_store([&](Store& s) {
            bool already = false;
            auto rt = start_vm(s, *name, already, false, *launch);
            if (!rt)
                return vm_fail(rt.error());
            if (!already && !rt.value().running)
                std::printf("Started vm %s; its guest has already finished (serial log: %s)\n", name->c_str(), rt.value().paths.serial_log.c_str());
            else
                std::printf(already ? "vm %s is already running (pid %d)\n" : "Started vm %s (pid %d)\n", name->c_str(), static_cast<int>(rt.value().pid));
            return 0;
        });
    });

    auto* suspend = vms->add_subcommand("suspend", "Save the running VM's memory, CPU and device state with its disks, and end its VMM");
    suspend->add_option("NAME", *name)->required();
    suspend->callback([&exit_code, name] {
        exit_code = with_vm_store([&](Store& s) {
            auto st = suspend_vm(s, *name);
            if (!st)
                return vm_fail(st.error());
            std::printf("Suspended vm %s\n", name->c_str());
            return 0;
        });
    });

    auto* resume = vms->add_subcommand("resume", "Continue a suspended VM where it was");
    resume->add_option("NAME", *name)->required();
    add_launch_options(resume);
    resume->callback([&exit_code, name, launch] {
        exit_code = with_vm_store([&](Store& s) {
            bool already = false;
            auto rt = start_vm(s, *name, already, true, *launch);
            if (!rt)
                return vm_fail(rt.error());
            if (!rt.value().running)
                std::printf("Resumed vm %s; its guest has already finished (serial log: %s)\n", name->c_str(), rt.value().paths.serial_log.c_str());
            else
                std::printf("Resumed vm %s (pid %d)\n", name->c_str(), static_cast<int>(rt.value().pid));
            return 0;
        });
    });

    auto* stop = vms->add_subcommand("stop", "Ask the guest to shut down, then end the VMM");
    stop->add_option("NAME", *name)->required();
    stop->add_flag("--force", flags->second, "End it at once (SIGKILL)");
    stop->add_option("--timeout", *timeout, "Seconds to wait for the guest (default 10)");
    stop->callback([&exit_code, flags, name, timeout] {
        exit_code = with_vm_store([&](Store& s) {
            auto vm = load_vm(s, *name);
            if (!vm)
                return vm_fail(vm.error());
            auto st = stop_vm(s, *name, flags->second, *timeout);
            return st ? 0 : vm_fail(st.error());
        });
    });

    auto* console = vms->add_subcommand("console", "Attach to the VM's serial console (detach with Ctrl-])");
    console->add_option("NAME", *name)->required();
    console->callback([&exit_code, name] {
        exit_code = with_vm_store([&](Store& s) {
            auto st = attach_console(s, *name);
            return st ? 0 : vm_fail(st.error());
        });
    });

    auto agent_args = std::make_shared<AgentArgs>();
    auto* agent = vms->add_subcommand("agent", "Send one command to the guest agent of a running VM (PUT /agent) and print its reply");
    agent->add_option("NAME", agent_args->name)->required();
    agent->add_option("CMD", agent_args->cmd, "ping, freeze, thaw or generalize")->required()->check(CLI::IsMember({ "ping", "freeze", "thaw", "generalize" }));
    agent->add_option("--timeout-s", agent_args->timeout_s, "freeze: the agent thaws by itself after this many seconds (1-300; default 10)")
        ->check(CLI::Range(1u, 300u));
    agent->add_option("--wait", agent_args->wait_ms, "Milliseconds to wait for the reply (default 2000)")->check(CLI::Range(1u, 60000u));
    agent->callback([&exit_code, agent_args] { exit_code = agent_cli(*agent_args); });

    auto* generalize = vms->add_subcommand("generalize", "Remove the guest's identity through its agent; the VM powers off and is marked generalized");
    generalize->add_option("NAME", agent_args->name)->required();
    generalize->add_option("--wait", agent_args->wait_ms, "Milliseconds to wait for the agent's reply (default 10000)")->check(CLI::Range(1u, 60000u));
    generalize->add_option("--timeout", agent_args->end_timeout_s, "Seconds to wait for the VM to end (default 30)");
    generalize->preparse_callback([agent_args](std::size_t) { agent_args->wait_ms = 10000; });
    generalize->callback([&exit_code, agent_args] { exit_code = generalize_cli(*agent_args); });

    auto* del = vms->add_subcommand("delete", "Delete a VM and the disks it created");
    del->add_option("NAME", *name)->required();
    del->add_flag("--stop", flags->second, "Stop it first if it runs");
    del->add_option("--timeout", *timeout, "With --stop: seconds to wait for the guest (default 10)");
    del->callback([&exit_code, flags, name, timeout] { exit_code = delete_vm_command(*name, flags->second, *timeout); });
}

} // namespace strata::cli
