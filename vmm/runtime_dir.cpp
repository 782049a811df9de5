#include "vmm/runtime_dir.h"

#include <cstdlib>
#include "base/sha256.h"

#include <cerrno>
#include <span>
#include <sys/stat.h>
#include <unistd.h>

namespace strata {

RuntimePaths runtime_paths(std::string const& store_root, std::string const& vm_name)
{
    std::string key_input = store_root + '\0' + vm_name;
    std::string const key = sha256_hex(sha256_bytes(std::as_bytes(std::span(key_input))), 8);
    std::string base;
    if (char const* xdg = std::getenv("XDG_RUNTIME_DIR"); xdg && *xdg && std::string(xdg).size() < 60)
        base = std::string(xdg) + "/strata";
    else
        base = "/tmp/strata-" + std::to_string(::getuid());
    RuntimePaths p;
    p.dir = base + "/" + key;
    p.api_socket = p.dir + "/api.sock";
    p.console_socket = p.dir + "/console.sock";
    p.serial_log = p.dir + "/serial.log";
    p.pid_file = p.dir + "/pid";
    return p;
}

Status make_runtime_dir(std::string const& dir)
{
    std::string partial;
    for (std::size_t at = 1; at != std::string::npos;) {
        at = dir.find('/', at + 1);
        partial = dir.substr(0, at);
        if (::mkdir(partial.c_str(), 0700) < 0 && errno != EEXIST)
            return errno_error("create runtime folder '" + partial + "'");
    }
    return ok();
}

} // namespace strata
