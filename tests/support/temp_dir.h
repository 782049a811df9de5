// A temporary directory for imaging tests, removed with its contents at the end
// of the test. It lives under $TMPDIR or /var/tmp (a real disk file system, so
// O_DIRECT is exercised), never under build/.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>

namespace strata::test {

class TempDir {
public:
    TempDir()
    {
        char const* base = std::getenv("TMPDIR");
        std::string tmpl = std::string(base ? base : "/var/tmp") + "/strata-img-test-XXXXXX";
        if (!::mkdtemp(tmpl.data()))
            throw std::runtime_error("mkdtemp failed");
        m_path = tmpl;
    }
    ~TempDir()
    {
        std::error_code ec;
        std::filesystem::remove_all(m_path, ec);
    }
    TempDir(TempDir const&) = delete;
    TempDir& operator=(TempDir const&) = delete;

    std::string path(std::string const& name) const { return m_path + "/" + name; }

private:
    std::string m_path;
};

} // namespace strata::test
