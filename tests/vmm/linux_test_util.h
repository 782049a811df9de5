// Shared helpers for the Linux loader tests: lazily-zeroed guest RAM backed by an
// anonymous mapping, running a host compressor over a buffer, temp directories.
#pragma once

#include "devices/guest_memory.h"

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace strata::test {

class TestRam {
public:
    explicit TestRam(std::uint64_t size, std::uint8_t fill = 0)
        : m_size(size)
    {
        void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED)
            std::abort();
        // SAFETY: the mapping is size bytes of readable, writable memory owned here.
        m_host = static_cast<std::byte*>(p);
        if (fill)
            std::memset(m_host, fill, size);
        m_mem = GuestMemory({ GuestMemory::Region { 0, size, m_host } });
    }
    ~TestRam() { ::munmap(m_host, m_size); }
    TestRam(TestRam const&) = delete;
    TestRam& operator=(TestRam const&) = delete;

    GuestMemory const& mem() const { return m_mem; }
    std::byte* host() const { return m_host; }

private:
    std::uint64_t m_size;
    std::byte* m_host;
    GuestMemory m_mem;
};

inline std::filesystem::path make_temp_dir(char const* tag)
{
    std::string templ = (std::filesystem::temp_directory_path() / (std::string("strata-") + tag + "-XXXXXX")).string();
    if (!::mkdtemp(templ.data()))
        std::abort();
    return templ;
}

inline std::vector<std::byte> read_file(std::filesystem::path const& p)
{
    std::ifstream in(p, std::ios::binary);
    std::vector<char> c((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<std::byte> out(c.size());
    std::memcpy(out.data(), c.data(), c.size());
    return out;
}

inline void write_file(std::filesystem::path const& p, std::vector<std::byte> const& data)
{
    std::ofstream out(p, std::ios::binary);
    // SAFETY: std::byte and char have the same representation.
    out.write(reinterpret_cast<char const*>(data.data()), static_cast<std::streamsize>(data.size()));
}

// Pipes `data` through a shell command (a compressor) and returns its output;
// an empty result means the command failed.
inline std::vector<std::byte> run_filter(std::string const& command, std::vector<std::byte> const& data)
{
    auto dir = make_temp_dir("filter");
    write_file(dir / "in", data);
    std::string cmd = command + " < " + (dir / "in").string() + " > " + (dir / "out").string();
    int rc = std::system(cmd.c_str());
    std::vector<std::byte> out;
    if (rc == 0)
        out = read_file(dir / "out");
    std::filesystem::remove_all(dir);
    return out;
}

} // namespace strata::test

// REQUIRE that a Result holds a value, printing its error otherwise.
#define STRATA_REQUIRE_OK(r)                                                          \
    do {                                                                              \
        INFO(((r).has_value() ? std::string() : (r).error().message));                \
        REQUIRE((r).has_value());                                                     \
    } while (0)
