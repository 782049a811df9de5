// `strata machine-images create|list|describe|delete|export|import`
// (store/machine_image.h). create on a running VM asks its VMM (PUT
// /machine-images on the API socket), which captures every disk at one instant
// and records the image; on a stopped VM the store does it directly.
#include "cli/commands.h"
#include "cli/vm_support.h"

#include "store/machine_image_store.h"
#include "vmm/api/client.h"
#include "vmm/image_memory.h"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>
#include <unistd.h>

namespace strata::cli {

namespace {

struct ImageArgs {
    std::string name, source_vm, description, labels, file;
    bool guest_flush { false };
    unsigned guest_flush_wait_ms { 2000 };
    bool with_memory { false };
    bool json { false };
};

ProgressFn progress_on_tty(char const* what)
{
    if (!::isatty(2))
        return {};
    auto last = std::make_shared<int>(-1);
    return [what, last](std::uint64_t done, std::uint64_t total) {
        int pct = total == 0 ? 100 : static_cast<int>(done * 100 / total);
        if (pct != *last)
            std::fprintf(stderr, "\r%s %3d%%%s", what, pct, pct == 100 ? "\n" : "");
        *last = pct;
    };
}

int create_image(Store& s, ImageArgs const& a)
{
    auto labels = parse_labels(a.labels);
    if (!labels)
        return vm_fail(labels.error());
    if (auto st = check_object_name(a.name); !st)
        return vm_fail(st.error());
    auto vm = load_vm(s, a.source_vm);
    if (!vm)
        return vm_fail(vm.error());
    auto rt = vm_runtime(s, a.source_vm);
    if (rt.running) {
        nlohmann::json body { { "name", a.name }, { "description", a.description }, { "labels", record_json::from_map(labels.value()) },
            { "guest_flush", a.guest_flush } };
        if (a.guest_flush)
            body["guest_flush_wait_ms"] = a.guest_flush_wait_ms;
        if (a.with_memory)
            body["memory"] = true;
        auto r = api::api_request(rt.paths.api_socket, "PUT", "/machine-images", body.dump());
        if (!r)
            return vm_fail(r.error().context("vm '" + a.source_vm + "'"));
        if (r.value().status >= 300) {
            auto kind = r.value().status == 409 ? ErrorKind::Exists : r.value().status == 404 ? ErrorKind::NotFound
                : r.value().status < 500                                                      ? ErrorKind::Usage
                                                                                              : ErrorKind::Io;
            return vm_fail(make_error(kind, "vm '" + a.source_vm + "': " + r.value().fault_message()));
        }
        auto reply = nlohmann::json::parse(r.value().body, nullptr, false);
        std::printf("Created machine image %s from running vm %s (stall %llu us)\n", a.name.c_str(), a.source_vm.c_str(),
            static_cast<unsigned long long>(reply.is_object() ? reply.value("stall_us", 0ULL) : 0ULL));
        if (a.guest_flush) {
            std::string flush = reply.is_object() ? reply.value("guest_flush", std::string()) : std::string();
            if (flush == "quiesced")
                std::printf("guest flush: quiesced\n");
            else
                std::fprintf(stderr, "strata: warning: machine image %s is %s; it is crash-consistent only\n", a.name.c_str(),
                    flush.empty() ? "not-quiesced" : flush.c_str());
        }
        return 0;
    }
    if (a.with_memory)
        return vm_fail(make_error(ErrorKind::Usage, "vm '" + a.source_vm + "' is stopped: --with-memory captures a running VM's memory"));
    if (a.guest_flush)
        std::fprintf(stderr, "strata: note: vm %s is stopped, so --guest-flush has no guest to freeze\n", a.source_vm.c_str());
    MachineImageRecord image;
    image.name = a.name;
    image.description = a.description;
    image.labels = labels.value();
    auto m = capture_stopped_vm(s, vm.value(), image);
    if (!m)
        return vm_fail(m.error());
    std::printf("Created machine image %s from stopped vm %s\n", a.name.c_str(), a.source_vm.c_str());
    return 0;
}

void print_image(MachineImageRecord const& m)
{
    auto const& b = m.spec.boot;
    std::printf("name: %s\ncreated: %s\nsource: %s\n", m.name.c_str(), m.created.c_str(), m.source.c_str());
    if (!m.description.empty())
        std::printf("description: %s\n", m.description.c_str());
    std::printf("source vm: %s\nos state: %s\nstate: %s\nstall: %llu us\n", m.source_vm.name.c_str(), m.generalized ? "generalized" : "specialized",
        m.running ? "running" : "stopped", static_cast<unsigned long long>(m.stall_us));
    if (!m.guest_flush.empty())
        std::printf("guest flush: %s\n", m.guest_flush.c_str());
    std::printf("vcpus: %u\nmemory: %llu MiB\n", m.spec.vcpus, static_cast<unsigned long long>(m.spec.memory_mib));
    std::printf("%s: %s\n", b.firmware.empty() ? "kernel" : "firmware", (b.firmware.empty() ? b.kernel : b.firmware).c_str());
    if (!b.initrd.empty())
        std::printf("initrd: %s\n", b.initrd.c_str());
    std::printf("cmdline: %s\n", b.cmdline.c_str());
    for (auto const& [k, v] : m.labels)
        std::printf("label: %s=%s\n", k.c_str(), v.c_str());
    std::printf("disks:\n");
    for (auto const& d : m.disks) {
        std::printf("  %s: %llu bytes%s%s%s cache=%s\n", d.id.c_str(), static_cast<unsigned long long>(d.size), d.boot ? " boot" : "",
            d.read_only ? " readonly" : "", d.scratch ? " scratch (not captured)" : "", d.cache.c_str());
        if (!d.scratch)
            std::printf("    layer: %s (%zu layers, top %s)\n", d.layer_name.c_str(), d.layers.size(), d.layers.back().to_string().c_str());
    }
}

template<typename F>
int with_images(F&& fn)
{
    return with_vm_store([&](Store& s) {
        auto held = RecordLock::take(s.root(), false);
        if (!held)
            return vm_fail(held.error());
        return fn(held.value());
    });
}

} // namespace

void register_machine_images(CLI::App& app, int& exit_code)
{
    auto* group = app.add_subcommand("machine-images", "Machine images: configuration and every disk of a VM at one instant");
    group->require_subcommand(1);
    auto a = std::make_shared<ImageArgs>();

    auto* create = group->add_subcommand("create", "Capture a VM (running or stopped) as a machine image");
    create->add_option("NAME", a->name)->required();
    create->add_option("--source-vm", a->source_vm, "The VM to capture")->required();
    create->add_option("--description", a->description);
    create->add_option("--labels", a->labels, "k=v,...");
    create->add_flag("--with-memory", a->with_memory, "Also capture memory, vCPUs and devices in the same cut (running VMs): the image records state running");
    create->add_flag("--guest-flush", a->guest_flush, "Ask the guest agent to freeze its file systems first (running VMs)");
    create->add_option("--guest-flush-wait", a->guest_flush_wait_ms, "With --guest-flush: milliseconds to wait for each agent reply (default 2000)")
        ->check(CLI::Range(1u, 60000u));
    create->callback([&exit_code, a] { exit_code = with_vm_store([&](Store& s) { return create_image(s, *a); }); });

    auto* list = group->add_subcommand("list", "List machine images");
    list->add_flag("--json", a->json, "JSON output");
    list->callback([&exit_code, a] {
        exit_code = with_images([&](RecordLock const& held) {
            auto all = list_machine_images(held);
            if (!all)
                return vm_fail(all.error());
            if (a->json) {
                nlohmann::json out = nlohmann::json::array();
                for (auto const& m : all.value())
                    out.push_back(machine_image_json(m));
                std::cout << out.dump(2) << "\n";
                return 0;
            }
            std::printf("%-24s %-20s %-20s %5s %10s  %s\n", "NAME", "CREATED", "SOURCE VM", "DISKS", "STALL_US", "STATUS");
            for (auto const& m : all.value())
                std::printf("%-24s %-20s %-20s %5zu %10llu  %s\n", m.name.c_str(), m.created.c_str(), m.source_vm.name.c_str(), m.disks.size(),
                    static_cast<unsigned long long>(m.stall_us), m.generalized ? "generalized" : "specialized");
            return 0;
        });
    });

    auto* describe = group->add_subcommand("describe", "Show a machine image");
    describe->add_option("NAME", a->name)->required();
    describe->add_flag("--json", a->json, "JSON output");
    describe->callback([&exit_code, a] {
        exit_code = with_images([&](RecordLock const& held) {
            auto m = load_machine_image(held, a->name);
            if (!m)
                return vm_fail(m.error());
            if (a->json)
                std::cout << machine_image_json(m.value()).dump(2) << "\n";
            else
                print_image(m.value());
            return 0;
        });
    });

    auto* del = group->add_subcommand("delete", "Delete a machine image (layers VMs or other images use stay)");
    del->add_option("NAME", a->name)->required();
    del->callback([&exit_code, a] {
        exit_code = with_vm_store([&](Store& s) {
            auto st = delete_machine_image(s, a->name);
            return st ? 0 : vm_fail(st.error());
        });
    });

    auto* exp = group->add_subcommand("export", "Write a machine image to one portable archive (zstd, SHA-256)");
    exp->add_option("NAME", a->name)->required();
    exp->add_option("FILE", a->file)->required();
    exp->callback([&exit_code, a] {
        exit_code = with_vm_store([&](Store& s) {
            auto st = export_machine_image(s, a->name, a->file, 1, progress_on_tty("exporting"));
            return st ? 0 : vm_fail(st.error());
        });
    });

    auto* imp = group->add_subcommand("import", "Import a machine image archive (verified before anything is stored)");
    imp->add_option("NAME", a->name)->required();
    imp->add_option("FILE", a->file)->required();
    imp->callback([&exit_code, a] {
        exit_code = with_vm_store([&](Store& s) {
            auto m = import_machine_image(s, a->name, a->file, progress_on_tty("verifying"), check_state_folder);
            return m ? 0 : vm_fail(m.error());
        });
    });
}

} // namespace strata::cli
