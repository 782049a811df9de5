// strata's command-line entry point: parses flags with CLI11 and dispatches to the
// subcommand groups in this folder. A malformed command line exits with EX_USAGE.
#include "cli/commands.h"
#include "vmm/isolation/jail.h"

#include <CLI/CLI.hpp>

#include <iostream>
#include <string_view>
#include <sysexits.h>

namespace {

// Whether the command line starts a jailed VMM through `strata vmm --jail`:
// `vms start|resume` without --no-jail. Read from the words alone, before the
// parser: a guess that turns out wrong has only started a cgroup move that
// changes nothing. Never `strata vmm --jail` itself: the move's thread holds a
// descriptor of the host's cgroup.procs while it waits, and the VMM, forked
// (not executed) from that process, would keep it (warm_cgroup_moves).
bool starts_jailed_vmm(int argc, char** argv)
{
    if (argc < 3 || std::string_view(argv[1]) != "vms")
        return false;
    std::string_view const command = argv[2];
    for (int i = 3; i < argc; ++i)
        if (std::string_view(argv[i]) == "--no-jail")
            return false;
    return command == "start" || command == "resume";
}

} // namespace

int main(int argc, char** argv)
{
    // The jail's cgroup move waits for a kernel grace period that the first of
    // these moves starts (vmm/isolation/jail.h): started before the parser and
    // the store (some 2-3 ms of a start), that wait is that much further along
    // when the jail needs it.
    if (starts_jailed_vmm(argc, argv))
        strata::warm_cgroup_moves();
    CLI::App app { "strata: a KVM virtual machine monitor with a copy-on-write block layer", "strata" };
    app.require_subcommand(1);
    int exit_code = 0;
    strata::cli::register_run(app, exit_code);
    strata::cli::register_vmm(app, exit_code);
    strata::cli::register_img(app, exit_code);
    strata::cli::register_store(app, exit_code);
    strata::cli::register_convert(app, exit_code);
    strata::cli::register_vms(app, exit_code);
    strata::cli::register_templates(app, exit_code);
    strata::cli::register_machine_images(app, exit_code);
    strata::cli::register_registry(app, exit_code);
    try {
        app.parse(argc, argv);
    } catch (CLI::CallForHelp const& e) {
        return app.exit(e);
    } catch (CLI::CallForAllHelp const& e) {
        return app.exit(e);
    } catch (CLI::ParseError const& e) {
        std::cerr << "strata: " << e.what() << "\n";
        std::cerr << "Run with --help for more information.\n";
        return EX_USAGE;
    }
    return exit_code;
}
