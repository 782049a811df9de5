// The agent's Environment on a real Linux guest: /proc/self/mounts, FIFREEZE and
// FITHAW, sethostname(2), and reboot(2) to end the VM.
#include "environment.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <linux/fs.h>
#include <sstream>
#include <sys/ioctl.h>
#include <sys/reboot.h>
#include <unistd.h>

namespace strata::agent {

namespace {

// /proc/self/mounts escapes space, tab, newline and backslash as \ooo.
std::string unescape(std::string const& s)
{
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\\' && i + 3 < s.size()) {
            int v = 0;
            bool ok = true;
            for (int k = 1; k <= 3; ++k) {
                char c = s[i + static_cast<std::size_t>(k)];
                ok = ok && c >= '0' && c <= '7';
                v = v * 8 + (c - '0');
            }
            if (ok) {
                out += static_cast<char>(v);
                i += 3;
                continue;
            }
        }
        out += s[i];
    }
    return out;
}

class SystemEnvironment final : public Environment {
public:
    explicit SystemEnvironment(std::filesystem::path root)
        : m_root(std::move(root))
    {
    }
    std::filesystem::path root() const override { return m_root; }

    std::vector<Mount> mounts() override
    {
        std::vector<Mount> out;
        std::ifstream in("/proc/self/mounts");
        std::string line;
        while (std::getline(in, line)) {
            std::istringstream ls(line);
            std::string dev, path, type, opts;
            if (!(ls >> dev >> path >> type >> opts))
                continue;
            bool ro = ("," + opts + ",").find(",ro,") != std::string::npos;
            out.push_back(Mount { unescape(dev), unescape(path), type, ro });
        }
        return out;
    }

    std::string freeze(std::string const& path) override { return fs_ioctl(path, FIFREEZE); }
    std::string thaw(std::string const& path) override { return fs_ioctl(path, FITHAW); }

    void power_off() override
    {
        ::sync();
        // With reboot=k on the command line the kernel resets through the i8042,
        // which strata takes as the end of the VM.
        ::reboot(RB_AUTOBOOT);
    }

    void set_hostname(std::string const& name) override { (void)!::sethostname(name.data(), name.size()); }
    std::chrono::steady_clock::time_point now() override { return std::chrono::steady_clock::now(); }

private:
    static std::string fs_ioctl(std::string const& path, unsigned long request)
    {
        int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
            return std::strerror(errno);
        int rc = ::ioctl(fd, request, 0);
        int err = errno;
        ::close(fd);
        return rc == 0 ? std::string() : std::string(std::strerror(err));
    }

    std::filesystem::path m_root;
};

} // namespace

std::unique_ptr<Environment> make_system_environment(std::filesystem::path root)
{
    return std::make_unique<SystemEnvironment>(std::move(root));
}

} // namespace strata::agent
