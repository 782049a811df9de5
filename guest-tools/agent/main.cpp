// strata-agent: the guest side of strata. As PID 1 of an initramfs it is the
// init (init.h); otherwise its subcommands run single steps by hand:
//   strata-agent serve [DEVICE]          serve the VMM protocol on DEVICE
//   strata-agent provision [ROOT]        first-boot provisioning from /proc/cmdline
//   strata-agent generalize [ROOT]       remove instance identity (no power-off)
//   strata-agent boot-complete           write the boot-complete port
#include "agent.h"
#include "init.h"
#include "provision.h"

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <unistd.h>

using namespace strata::agent;

int main(int argc, char** argv)
{
    if (::getpid() == 1)
        run_init();
    std::string cmd = argc > 1 ? argv[1] : "";
    std::string arg = argc > 2 ? argv[2] : "";
    if (cmd == "serve")
        serve_channel_forever(arg.empty() ? "/dev/hvc0" : arg, "");
    if (cmd == "provision" || cmd == "generalize") {
        std::string root = arg.empty() ? "/" : arg;
        ProvisionResult r;
        if (cmd == "generalize") {
            r = generalize(root);
        } else {
            std::ifstream in("/proc/cmdline");
            std::stringstream ss;
            ss << in.rdbuf();
            std::string error;
            auto meta = metadata_from_cmdline(ss.str(), error);
            if (!meta) {
                std::fprintf(stderr, "strata-agent: no usable strata.meta= on the command line%s%s\n",
                    error.empty() ? "" : ": ", error.c_str());
                return 1;
            }
            r = provision(root, *meta);
        }
        for (auto const& a : r.actions)
            std::printf("%s\n", a.c_str());
        if (!r.error.empty()) {
            std::fprintf(stderr, "strata-agent: %s\n", r.error.c_str());
            return 1;
        }
        return 0;
    }
    if (cmd == "boot-complete")
        return signal_boot_complete() ? 0 : 1;
    std::fprintf(stderr, "usage: strata-agent serve [DEVICE] | provision [ROOT] | generalize [ROOT] | boot-complete\n");
    return 64;
}
