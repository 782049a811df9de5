// Helpers shared by the qcow2, archive and store tests: shell commands (qemu-img,
// qemu-io), whole-file reads and pattern images; with the TempDir fixture.
// Threading: test main thread only.
#pragma once

#include "tests/support/temp_dir.h"

#include <doctest/doctest.h>

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace strata::test {

// Runs a shell command quietly and returns its exit status.
inline int sh(std::string const& cmd)
{
    int rc = std::system((cmd + " >/dev/null 2>&1").c_str());
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

// Runs a shell command and returns its stdout.
inline std::string sh_out(std::string const& cmd)
{
    std::string out;
    FILE* p = ::popen(cmd.c_str(), "r");
    if (p == nullptr)
        return out;
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0)
        out.append(buf, n);
    ::pclose(p);
    return out;
}

inline std::vector<std::byte> slurp(std::string const& path)
{
    std::ifstream in(path, std::ios::binary);
    std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<std::byte> bytes(chars.size());
    for (std::size_t i = 0; i < chars.size(); ++i)
        bytes[i] = static_cast<std::byte>(chars[i]);
    return bytes;
}

// Writes a raw image of mib MiB with random data, compressible text and zero
// ranges, so that compression, zero detection and sparse reads all matter.
inline void make_pattern_image(std::string const& path, unsigned mib)
{
    REQUIRE(sh("truncate -s " + std::to_string(mib) + "M '" + path + "'") == 0);
    for (unsigned m = 0; m + 1 < mib; m += 3) {
        // 320 KiB of random data starting 4 KiB into MiB m (not cluster aligned).
        REQUIRE(sh("dd if=/dev/urandom of='" + path + "' bs=4k count=80 seek=" + std::to_string(m * 256 + 1)
                   + " conv=notrunc") == 0);
        // Compressible text a little further on.
        REQUIRE(sh("seq 1 40000 | dd of='" + path + "' bs=4k seek=" + std::to_string(m * 256 + 100)
                   + " conv=notrunc iflag=fullblock") == 0);
    }
}

} // namespace strata::test
