// `strata instance-templates create|list|describe|delete`: configuration-only
// records (store/template_record.h) that `vms create --template` makes VMs from.
#include "cli/commands.h"
#include "cli/vm_support.h"

#include "store/artifacts.h"
#include "store/template_record.h"
#include "vmm/boot/linux/linux_loader.h"
#include "vmm/disk_config.h"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <iostream>

namespace strata::cli {

namespace {

struct TemplateArgs {
    std::string name, image, firmware, kernel, initrd, cmdline, labels, metadata, description;
    std::string transport { "mmio" }, cpu_template { "host" }, boot_protocol { "auto" };
    std::uint32_t vcpus { 1 };
    std::uint64_t memory_mib { 128 };
    std::vector<std::string> disks;
    std::vector<std::string> nets;
    std::optional<std::string> mmds;
    bool json { false };
};

Result<TemplateRecord> create_template(Store& store, TemplateArgs const& a)
{
    TemplateRecord t;
    t.name = a.name;
    t.boot_image = a.image;
    t.spec.vcpus = a.vcpus;
    t.spec.memory_mib = a.memory_mib;
    t.spec.transport = a.transport;
    t.spec.cpu_template = a.cpu_template;
    t.spec.boot.cmdline = a.cmdline;
    t.spec.boot.boot_protocol = a.boot_protocol;
    STRATA_TRY(nets, parse_vm_nets(a.nets));
    t.spec.nets = nets;
    if (a.mmds) {
        STRATA_TRY(mmds, parse_vm_mmds(*a.mmds));
        if (mmds.enabled() && mmds.interfaces.empty())
            for (auto const& n : nets)
                mmds.interfaces.push_back(n.id);
        t.spec.mmds = mmds;
    } else {
        t.spec.mmds = default_vm_mmds(nets);
    }
    t.description = a.description;
    t.created = utc_now();
    STRATA_TRY(labels, parse_labels(a.labels));
    STRATA_TRY(metadata, parse_metadata(a.metadata));
    t.labels = labels;
    t.metadata = metadata;
    std::vector<DiskLimitSpec> limits;
    for (std::size_t i = 0; i < a.disks.size(); ++i) {
        STRATA_TRY(d, parse_new_disk(a.disks[i], static_cast<unsigned>(i)));
        if (!d) {
            STRATA_TRY(limit, parse_disk_limit(a.disks[i]));
            if (limit) {
                limits.push_back(*limit);
                continue;
            }
        }
        if (!d || d->boot)
            return make_error(ErrorKind::Usage, "--disk '" + a.disks[i] + "': a template's extra disks are size=S,id=D[,readonly=on][,scratch=on][,cache=..]"
                                                "[,bps=N][,iops=N][,rate_limit_group=G]; id=boot,bps=... limits the boot disk");
        t.disks.push_back(TemplateDisk { d->id, d->size, d->read_only, d->scratch, d->cache, d->rate_limit, d->rate_limit_group });
    }
    for (auto const& l : limits) {
        if (l.id == "boot") {
            t.boot_rate_limit = l.rate_limit;
            t.boot_rate_limit_group = l.rate_limit_group;
            continue;
        }
        auto it = std::find_if(t.disks.begin(), t.disks.end(), [&](TemplateDisk const& d) { return d.id == l.id; });
        if (it == t.disks.end())
            return make_error(ErrorKind::Usage, "--disk id=" + l.id + ": the template has no disk '" + l.id + "' to limit");
        it->rate_limit = l.rate_limit;
        it->rate_limit_group = l.rate_limit_group;
    }
    {
        // A group's limit given on one of its disks holds for all of them.
        std::vector<DiskConfig> configs { limit_only("boot", t.boot_rate_limit, t.boot_rate_limit_group) };
        for (auto const& d : t.disks)
            configs.push_back(limit_only(d.id, d.rate_limit, d.rate_limit_group));
        STRATA_TRY(share_rate_limit_groups(configs));
        t.boot_rate_limit = configs[0].rate_limit;
        for (std::size_t i = 0; i < t.disks.size(); ++i)
            t.disks[i].rate_limit = configs[i + 1].rate_limit;
    }
    if (a.firmware.empty() == a.kernel.empty())
        return make_error(ErrorKind::Usage, "instance-templates create needs exactly one of --firmware and --kernel");
    if (!a.kernel.empty())
        STRATA_TRY(linux_boot::check_kernel_file(a.kernel));
    if (!a.kernel.empty() && !a.initrd.empty()) {
        // As vms create: an initrd that cannot go beside the kernel is refused now.
        STRATA_TRY(protocol, linux_boot::parse_boot_protocol(t.spec.boot.boot_protocol));
        if (auto fits = linux_boot::check_initrd_fits(a.kernel, a.initrd, std::uint64_t(t.spec.memory_mib) << 20, protocol); !fits)
            return make_error(ErrorKind::Usage, "the initrd '" + a.initrd + "' cannot be loaded in this template's VMs: " + fits.error().message + " (--memory)");
    }
    STRATA_TRY(image, store.get(ObjectKind::Image, a.image));
    (void)image;
    STRATA_TRY(held, RecordLock::take(store.root(), true));
    STRATA_TRY(put_boot_artifacts(held, t.spec.boot, a.firmware, a.kernel, a.initrd));
    STRATA_TRY(save_template(held, t, true));
    return t;
}

void print_template(TemplateRecord const& t)
{
    auto const& b = t.spec.boot;
    std::printf("name: %s\nvcpus: %u\nmemory: %llu MiB\nboot image: %s\n", t.name.c_str(), t.spec.vcpus,
        static_cast<unsigned long long>(t.spec.memory_mib), t.boot_image.c_str());
    std::printf("%s: %s\n", b.firmware.empty() ? "kernel" : "firmware", (b.firmware.empty() ? b.kernel : b.firmware).c_str());
    if (!b.initrd.empty())
        std::printf("initrd: %s\n", b.initrd.c_str());
    std::printf("cmdline: %s\ntransport: %s\ncreated: %s\n", b.cmdline.c_str(), t.spec.transport.c_str(), t.created.c_str());
    if (!t.description.empty())
        std::printf("description: %s\n", t.description.c_str());
    if (auto limit = rate_limit_spec(t.boot_rate_limit, t.boot_rate_limit_group); !limit.empty())
        std::printf("boot disk rate limit: %s\n", limit.substr(1).c_str());
    for (auto const& d : t.disks) {
        std::printf("disk: %s %llu bytes%s%s cache=%s", d.id.c_str(), static_cast<unsigned long long>(d.size), d.read_only ? " readonly" : "",
            d.scratch ? " scratch" : "", d.cache.c_str());
        if (auto limit = rate_limit_spec(d.rate_limit, d.rate_limit_group); !limit.empty())
            std::printf(" rate limit: %s", limit.substr(1).c_str());
        std::printf("\n");
    }
    for (auto const& [k, v] : t.labels)
        std::printf("label: %s=%s\n", k.c_str(), v.c_str());
    for (auto const& [k, v] : t.metadata)
        std::printf("metadata: %s=%s\n", k.c_str(), v.c_str());
}

} // namespace

void register_templates(CLI::App& app, int& exit_code)
{
    auto* group = app.add_subcommand("instance-templates", "Instance templates: VM configuration without data");
    group->require_subcommand(1);
    auto a = std::make_shared<TemplateArgs>();

    auto* create = group->add_subcommand("create", "Record an instance template");
    create->add_option("NAME", a->name)->required();
    create->add_option("--image", a->image, "The image each VM's boot disk is cloned from")->required();
    create->add_option("--firmware", a->firmware, "A PVH ELF guest program (copied into the store)");
    create->add_option("--kernel", a->kernel, "A Linux kernel (copied into the store)");
    create->add_option("--initrd", a->initrd, "An initial RAM disk (copied into the store)");
    create->add_option("--cmdline", a->cmdline, "The guest's command line");
    create->add_option("--vcpus", a->vcpus, "Number of vCPUs")->check(CLI::Range(1u, kMaxRecordVcpus));
    create->add_option("--memory", a->memory_mib, "Guest RAM in MiB")->check(CLI::Range(kMinRecordMemoryMib, kMaxRecordMemoryMib));
    create->add_option("--disk", a->disks, "An extra empty disk per VM: size=S,id=D[,readonly=on][,scratch=on][,cache=..][,bps=N][,iops=N][,rate_limit_group=G]; id=boot,bps=N,... limits the boot disk")->take_all();
    create->add_option("--labels", a->labels, "k=v,...");
    create->add_option("--metadata", a->metadata, "k=v,...");
    create->add_option("--description", a->description);
    create->add_option("--net", a->nets, "A network interface per VM: tap=NAME|netns=auto[,mac=M][,id=ID][,rx_bps=R][,tx_bps=R][,rx_pps=R][,tx_pps=R] (each VM gets a new MAC unless --keep-mac)")->take_all();
    create->add_option("--mmds", a->mmds, "Each VM's metadata service: V1|V2[,ip=169.254.x.y][,iface=ID]... or off (default with --net: V2 on every interface)");
    create->add_option("--transport", a->transport, "mmio or pci")->check(CLI::IsMember({ "mmio", "pci" }));
    create->add_option("--cpu-template", a->cpu_template, "host or minimal")->check(CLI::IsMember({ "host", "minimal" }));
    create->add_option("--boot-protocol", a->boot_protocol, "auto, pvh or linux")->check(CLI::IsMember({ "auto", "pvh", "linux" }));
    create->callback([&exit_code, a] {
        exit_code = with_vm_store([&](Store& s) {
            auto t = create_template(s, *a);
            return t ? 0 : vm_fail(t.error());
        });
    });

    auto* list = group->add_subcommand("list", "List instance templates");
    list->add_flag("--json", a->json, "JSON output");
    list->callback([&exit_code, a] {
        exit_code = with_vm_store([&](Store& s) {
            auto held = RecordLock::take(s.root(), false);
            if (!held)
                return vm_fail(held.error());
            auto all = list_templates(held.value());
            if (!all)
                return vm_fail(all.error());
            if (a->json) {
                nlohmann::json out = nlohmann::json::array();
                for (auto const& t : all.value())
                    out.push_back(template_json(t));
                std::cout << out.dump(2) << "\n";
                return 0;
            }
            std::printf("%-24s %5s %8s  %-24s  %s\n", "NAME", "VCPUS", "MEMORY", "BOOT IMAGE", "CREATED");
            for (auto const& t : all.value())
                std::printf("%-24s %5u %7lluM  %-24s  %s\n", t.name.c_str(), t.spec.vcpus, static_cast<unsigned long long>(t.spec.memory_mib),
                    t.boot_image.c_str(), t.created.c_str());
            return 0;
        });
    });

    auto* describe = group->add_subcommand("describe", "Show an instance template");
    describe->add_option("NAME", a->name)->required();
    describe->add_flag("--json", a->json, "JSON output");
    describe->callback([&exit_code, a] {
        exit_code = with_vm_store([&](Store& s) {
            auto held = RecordLock::take(s.root(), false);
            if (!held)
                return vm_fail(held.error());
            auto t = load_template(held.value(), a->name);
            if (!t)
                return vm_fail(t.error());
            if (a->json)
                std::cout << template_json(t.value()).dump(2) << "\n";
            else
                print_template(t.value());
            return 0;
        });
    });

    auto* del = group->add_subcommand("delete", "Delete an instance template (VMs made from it stay)");
    del->add_option("NAME", a->name)->required();
    del->callback([&exit_code, a] {
        exit_code = with_vm_store([&](Store& s) {
            auto held = RecordLock::take(s.root(), true);
            if (!held)
                return vm_fail(held.error());
            if (auto st = remove_record(s.root(), RecordKind::Template, a->name); !st)
                return vm_fail(st.error());
            auto gc = gc_artifacts(held.value());
            return gc ? 0 : vm_fail(gc.error());
        });
    });
}

} // namespace strata::cli
