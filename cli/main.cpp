// strata's command-line entry point: parses flags with CLI11 and dispatches to the
// subcommand groups in this folder. A malformed command line exits with EX_USAGE.
#include "cli/commands.h"

#include <CLI/CLI.hpp>

#include <iostream>
#include <sysexits.h>

int main(int argc, char** argv)
{
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
