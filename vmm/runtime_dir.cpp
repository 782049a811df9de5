#include "vmm/runtime_dir.h"

#include <cstdlib>
#include <openssl/sha.h>
#include <unistd.h>

namespace strata {

RuntimePaths runtime_paths(std::string const& store_root, std::string const& vm_name)
{
    std::string key_input = store_root + '\0' + vm_name;
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<unsigned char const*>(key_input.data()), key_input.size(), digest);
    static char const hex[] = "0123456789abcdef";
    std::string key;
    for (int i = 0; i < 8; ++i) {
        key += hex[digest[i] >> 4];
        key += hex[digest[i] & 15];
    }
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

} // namespace strata
