// The strata CLI's subcommand groups. Each group registers its subcommands on the
// top-level CLI11 app; when one runs, it stores its exit code in exit_code.
// strata's own failures use the sysexits.h codes from base/sysexits.h.
// Threading: the CLI runs on the main thread only.
#pragma once

namespace CLI {
class App;
}

namespace strata::cli {

void register_run(CLI::App& app, int& exit_code);

} // namespace strata::cli
