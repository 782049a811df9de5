// `strata run`: boots one VM in the foreground. The guest's serial port is this
// process's stdout/stdin; strata's own messages go to stderr. The exit status is
// the value the guest wrote to the exit port, or a sysexits.h code for strata's
// own failures (README.md lists them).
#include "cli/commands.h"

#include "base/sysexits.h"
#include "cli/run_support.h"
#include "devices/virtio/net/mmds_store.h"
#include "vmm/isolation/seccomp.h"
#include "vmm/machine.h"
#include "vmm/prepared_nets.h"
#include "vmm/vmm_controller.h"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <csignal>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <unistd.h>

namespace strata::cli {

namespace {

struct RunOptions {
    MachineConfig config;
    std::string on_reboot { "exit" };
    std::string cpu_template { "host" };
    std::string boot_protocol { "auto" };
    std::string transport { "mmio" };
    std::vector<std::string> disks;
    std::vector<std::string> nets;
    std::string api_socket;
    std::string seccomp;
    std::string mmds;      // --mmds V1|V2[,ip=..][,iface=..]
    std::string mmds_data; // --mmds-data FILE: the data store's first contents (JSON)
};

// The metadata service's data store for --mmds, filled from --mmds-data.
Result<std::shared_ptr<virtio::net::MmdsStore>> make_mmds_store(RunOptions const& options)
{
    auto store = virtio::net::MmdsStore::create(options.config.mmds.v2 ? virtio::net::MmdsVersion::V2 : virtio::net::MmdsVersion::V1);
    if (!options.mmds_data.empty()) {
        std::ifstream in(options.mmds_data);
        if (!in)
            return make_error(ErrorKind::NotFound, "--mmds-data " + options.mmds_data + ": cannot be read");
        std::stringstream text;
        text << in.rdbuf();
        if (auto r = store->put(text.str()); !r)
            return r.error().context("--mmds-data " + options.mmds_data);
    }
    return store;
}

// With --api-socket the VM also serves the REST API while it runs, so it can be
// paused, captured and asked to shut down; a reset ends it whatever --on-reboot says.
int run_with_api(MachineConfig const& config, std::string const& socket, std::shared_ptr<virtio::net::MmdsStore> mmds)
{
    VmmController controller("strata-run", config, MachineIo { STDOUT_FILENO, STDIN_FILENO, std::move(mmds) });
    return serve_until_exit(controller, socket, true);
}

int run_vm(RunOptions& options)
{
    block_stop_signals();
    use_one_malloc_arena();
    auto& config = options.config;
    config.on_reboot = options.on_reboot == "restart" ? OnReboot::Restart : OnReboot::Exit;
    config.cpu_template = options.cpu_template == "minimal" ? CpuTemplate::Minimal : CpuTemplate::Host;
    config.boot_protocol = options.boot_protocol == "pvh" ? BootProtocol::Pvh : options.boot_protocol == "linux" ? BootProtocol::Linux64 : BootProtocol::Auto;
    config.transport = options.transport == "pci" ? Transport::Pci : Transport::Mmio;
    config.disks.clear();
    for (std::size_t i = 0; i < options.disks.size(); ++i) {
        auto disk = parse_disk_spec(options.disks[i], static_cast<unsigned>(i));
        if (!disk)
            return report(disk.error());
        config.disks.push_back(disk.value());
    }
    if (auto shared = share_rate_limit_groups(config.disks); !shared)
        return report(shared.error());
    config.nets.clear();
    for (std::size_t i = 0; i < options.nets.size(); ++i) {
        auto net = parse_net_spec(options.nets[i], static_cast<unsigned>(i));
        if (!net)
            return report(net.error());
        config.nets.push_back(net.value());
    }
    if (auto r = check_nets(config.nets); !r)
        return report(r.error());
    config.mmds = {};
    if (!options.mmds.empty()) {
        auto mmds = parse_mmds_spec(options.mmds, config.nets);
        if (!mmds)
            return report(mmds.error());
        config.mmds = mmds.value();
    } else if (!options.mmds_data.empty()) {
        return report(make_error(ErrorKind::Usage, "--mmds-data needs --mmds"));
    }
    auto store = make_mmds_store(options);
    if (!store)
        return report(store.error());
    // The guest's console must never block strata or kill it with SIGPIPE.
    std::signal(SIGPIPE, SIG_IGN);
    if (auto filtering = enable_seccomp_option(options.seccomp); !filtering)
        return report(filtering.error());

    if (!options.api_socket.empty())
        return run_with_api(config, options.api_socket, store.value());
    // The netns=auto namespaces and their taps are made once, before the first
    // machine (making one runs ip, which no filter allows): a machine rebuilt
    // after a reset uses the same taps, so the main thread is filtered from the
    // first machine on. They are deleted when this process ends.
    auto prepared = PreparedNets::create(config.nets);
    if (!prepared)
        return report(prepared.error());
    MachineIo io { STDOUT_FILENO, STDIN_FILENO, store.value() };
    io.prepared_nets = prepared.value();
    for (;;) {
        auto machine = Machine::create(config, io);
        if (!machine)
            return report(machine.error());
        int signal_number = 0;
        Machine& m = *machine.value();
        // The machine is built: from here the main thread only waits for it.
        if (auto filtered = apply_seccomp(ThreadKind::Vmm); !filtered)
            return report(filtered.error());
        auto exit = with_signals<MachineExit>([&] { return m.run(); }, [&] { m.stop(); }, signal_number);
        bool restart = false;
        int status = exit_status(exit, config.on_reboot, signal_number, restart);
        if (!restart)
            return status;
    }
}

} // namespace

void register_run(CLI::App& app, int& exit_code)
{
    auto options = std::make_shared<RunOptions>();
    auto* run = app.add_subcommand("run", "Boot a VM in the foreground; its serial console is stdin/stdout");
    auto* boot = run->add_option_group("boot source");
    boot->add_option("--firmware", options->config.firmware, "A PVH-bootable ELF guest program");
    boot->add_option("--kernel", options->config.kernel, "A Linux kernel: bzImage, vmlinux or PVH ELF");
    boot->require_option(1);
    run->add_option("--initrd", options->config.initrd, "An initial RAM disk (a PVH module for firmware)");
    run->add_option("--cmdline", options->config.cmdline, "The guest's command line");
    run->add_option("--vcpus", options->config.vcpus, "Number of vCPUs")->default_val(1)->check(CLI::Range(1u, MachineConfig::max_vcpus));
    run->add_option("--memory", options->config.memory_mib, "Guest RAM in MiB")->default_val(128)->check(CLI::PositiveNumber);
    run->add_option("--on-reboot", options->on_reboot, "What a guest reset does")->default_val("exit")->check(CLI::IsMember({ "exit", "restart" }));
    run->add_option("--cpu-template", options->cpu_template, "CPUID template")->default_val("host")->check(CLI::IsMember({ "host", "minimal" }));
    run->add_option("--boot-protocol", options->boot_protocol, "Kernel entry: auto, pvh or linux")->default_val("auto")->check(CLI::IsMember({ "auto", "pvh", "linux" }));
    run->add_option("--transport", options->transport, "virtio transport for disks")->default_val("mmio")->check(CLI::IsMember({ "mmio", "pci" }));
    run->add_option("--disk", options->disks, "A disk: NAME[,id=D][,readonly=on] (store) or path=P,format=raw|strata[,id=D][,readonly=on]")->take_all();
    run->add_option("--net", options->nets, "A network interface: tap=NAME|netns=auto[,mac=52:54:00:xx:xx:xx][,id=ID][,rx_bps=R][,tx_bps=R][,rx_pps=R][,tx_pps=R] (an existing host tap, or a namespace of its own)")->take_all();
    run->add_option("--mmds", options->mmds, "Serve a metadata service (Firecracker's MMDS) to the guest: V1|V2[,ip=169.254.x.y][,iface=ID]... (default: every --net interface, 169.254.169.254)");
    run->add_option("--mmds-data", options->mmds_data, "A JSON file: the metadata service's first contents (PUT /mmds changes them)");
    run->add_option("--api-socket", options->api_socket, "Serve the REST API on this Unix socket while the VM runs");
    run->add_option("--seccomp", options->seccomp, "System call filters per VMM thread: default (a forbidden call ends the VMM), log or off; $STRATA_SECCOMP when not given")->check(CLI::IsMember({ "default", "log", "off" }));
    run->callback([options, &exit_code] { exit_code = run_vm(*options); });
}

} // namespace strata::cli
