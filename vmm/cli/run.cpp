// `strata run`: boots one VM in the foreground. The guest's serial port is this
// process's stdout/stdin; strata's own messages go to stderr. The exit status is
// the value the guest wrote to the exit port, or a sysexits.h code for strata's
// own failures (README.md lists them).
#include "vmm/cli/commands.h"

#include "base/sysexits.h"
#include "vmm/machine.h"

#include <CLI/CLI.hpp>

#include <csignal>
#include <fcntl.h>
#include <cstdio>
#include <iostream>
#include <memory>
#include <poll.h>
#include <sys/signalfd.h>
#include <thread>
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
};

int report(Error const& error)
{
    std::cerr << "strata: " << error.message << "\n";
    return exit_code_for(error.kind);
}

// Runs the machine while a helper thread turns SIGINT/SIGTERM into stop().
MachineExit run_with_signals(Machine& machine, int& signal_number)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    int sfd = ::signalfd(-1, &set, SFD_CLOEXEC);
    int wake[2];
    if (::pipe2(wake, O_CLOEXEC) < 0)
        wake[0] = wake[1] = -1;
    std::thread watcher([&] {
        pollfd fds[2] = { { sfd, POLLIN, 0 }, { wake[0], POLLIN, 0 } };
        while (::poll(fds, 2, -1) < 0 && errno == EINTR) {
        }
        if (fds[0].revents & POLLIN) {
            signalfd_siginfo info {};
            if (::read(sfd, &info, sizeof info) == sizeof info)
                signal_number = static_cast<int>(info.ssi_signo);
            machine.stop();
        }
    });
    auto exit = machine.run();
    char byte = 0;
    [[maybe_unused]] auto n = ::write(wake[1], &byte, 1);
    watcher.join();
    ::close(sfd);
    ::close(wake[0]);
    ::close(wake[1]);
    return exit;
}

int run_vm(RunOptions& options)
{
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
    // The guest's console must never block strata or kill it with SIGPIPE.
    std::signal(SIGPIPE, SIG_IGN);

    for (unsigned boots = 1;; ++boots) {
        auto machine = Machine::create(config, MachineIo { STDOUT_FILENO, STDIN_FILENO });
        if (!machine)
            return report(machine.error());
        int signal_number = 0;
        auto exit = run_with_signals(*machine.value(), signal_number);
        switch (exit.kind) {
        case MachineExit::Kind::GuestExit:
            return static_cast<int>(exit.value & 0xff);
        case MachineExit::Kind::Reset:
            if (config.on_reboot == OnReboot::Restart) {
                std::cerr << "strata: guest reset; restarting (boot " << boots + 1 << ")\n";
                continue;
            }
            std::cerr << "strata: guest reset; exiting (--on-reboot exit)\n";
            return 0;
        case MachineExit::Kind::PowerOff:
            std::cerr << "strata: guest powered off\n";
            return 0;
        case MachineExit::Kind::TripleFault:
            std::cerr << "strata: guest " << exit.details;
            return exit_code_for(ErrorKind::Guest);
        case MachineExit::Kind::Stopped:
            std::cerr << "strata: stopped by " << (signal_number ? strsignal(signal_number) : "request") << "\n";
            return signal_number ? 128 + signal_number : 0;
        case MachineExit::Kind::Failed:
            std::cerr << "strata: guest failed: " << exit.details << "\n";
            return exit_code_for(ErrorKind::Guest);
        }
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
    run->callback([options, &exit_code] { exit_code = run_vm(*options); });
}

} // namespace strata::cli
