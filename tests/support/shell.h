// Helpers shared by the qcow2, archive and store tests: a temporary directory
// removed at scope exit, shell commands (qemu-img, qemu-io) and whole-file reads.
// Threading: test main thread only.
#pragma once

#include <doctest/doctest.h>

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace strata::test {

class TempDir {
public:
    TempDir()
    {
        char tmpl[] = "/tmp/strata-store-test-XXXXXX";
        char* made = ::mkdtemp(tmpl);
        REQUIRE(made != nullptr);
        m_path = made;
    }
    ~TempDir()
    {
        std::string cmd = "rm -rf '" + m_path + "'";
        [[maybe_unused]] int rc = std::system(cmd.c_str());
    }
    TempDir(TempDir const&) = delete;
    TempDir& operator=(TempDir const&) = delete;
    std::string const& path() const { return m_path; }
    std::string operator/(std::string const& name) const { return m_path + "/" + name; }

private:
    std::string m_path;
};

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
