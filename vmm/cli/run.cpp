#include "vmm/cli/commands.h"

#include <CLI/CLI.hpp>

#include <iostream>
#include <sysexits.h>

namespace strata::cli {

void register_run(CLI::App& app, int& exit_code)
{
    auto* run = app.add_subcommand("run", "Boot a VM in the foreground");
    run->callback([&exit_code] {
        std::cerr << "strata run: not built yet\n";
        exit_code = EX_SOFTWARE;
    });
}

} // namespace strata::cli
