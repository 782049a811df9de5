// The one temporary-directory fixture of the tests: a fresh directory under $TMPDIR
// or /var/tmp (a real disk file system, so O_DIRECT is exercised; never under
// build/), removed with its contents when the fixture goes out of scope.
//
// The tests name places in it three ways, and all three work: `dir.path / "x"` and
// `dir.path.string()` (path is a std::filesystem::path), `dir.path()` and
// `dir.path("x")` (strings), and `dir / "x"`. file() makes a sparse file of a size.
// Threading: test main thread only.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <system_error>

namespace strata::test {

class TempDir {
public:
    // A std::filesystem::path that can also be called for its text, or for the text
    // of a name inside it.
    struct Path : std::filesystem::path {
        std::string const& operator()() const { return native(); }
        std::string operator()(std::string const& name) const { return (*this / name).string(); }
    };

    explicit TempDir(std::string const& prefix = "strata-test")
    {
        char const* base = std::getenv("TMPDIR");
        std::string tmpl = std::string(base && *base ? base : "/var/tmp") + "/" + prefix + "-XXXXXX";
        if (!::mkdtemp(tmpl.data()))
            throw std::runtime_error("mkdtemp failed for " + tmpl);
        static_cast<std::filesystem::path&>(path) = tmpl;
    }
    ~TempDir()
    {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    TempDir(TempDir const&) = delete;
    TempDir& operator=(TempDir const&) = delete;

    std::string operator/(std::string const& name) const { return path(name); }

    // Creates (or truncates) name as a sparse file of size bytes; returns its path.
    std::string file(std::string const& name, std::uintmax_t size) const
    {
        std::string p = path(name);
        { std::ofstream touch(p); }
        std::filesystem::resize_file(p, size);
        return p;
    }

    Path path;
};

} // namespace strata::test
