#include "init.h"

#include "agent.h"
#include "mmds_client.h"
#include "provision.h"

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <sys/io.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <termios.h>
#include <thread>
#include <unistd.h>

namespace strata::agent {

namespace fs = std::filesystem;

namespace {

void say(std::string const& s)
{
    std::string line = "strata-agent: " + s + "\n";
    (void)!::write(STDOUT_FILENO, line.data(), line.size());
}

std::string read_file(char const* path)
{
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    std::string s = ss.str();
    while (!s.empty() && (s.back() == '\n' || s.back() == ' '))
        s.pop_back();
    return s;
}

void mount_or_say(char const* src, char const* target, char const* type, unsigned long flags = 0)
{
    ::mkdir(target, 0755);
    if (::mount(src, target, type, flags, nullptr) != 0 && errno != EBUSY)
        say(std::string("mount ") + target + ": " + std::strerror(errno));
}

// PID 1 must reap orphans, or they stay zombies for the VM's life.
void reap_children(int)
{
    int saved = errno;
    while (::waitpid(-1, nullptr, WNOHANG) > 0) {
    }
    errno = saved;
}

// Metadata from strata's metadata service, for a command line without
// strata.meta=: strata.mmds=ADDR says a stored VM's service is there (wait up
// to 10 s for the interface); without it the agent tries 169.254.169.254 once,
// briefly, if an interface is already there (a VM configured over the API).
std::optional<Metadata> metadata_from_service(std::string const& cmdline)
{
    std::string const announced = cmdline_value(cmdline, "strata.mmds");
    MmdsOptions options;
    if (!announced.empty()) {
        auto address = parse_ipv4(announced);
        if (!address) {
            say("metadata service: strata.mmds=" + announced.substr(0, 40) + " is not an IPv4 address");
            return std::nullopt;
        }
        options.address = *address;
    } else {
        options.wait_for_interface = std::chrono::milliseconds(0);
        options.request_timeout = std::chrono::milliseconds(1500);
    }
    auto env = make_system_environment("/");
    if (announced.empty() && env->network_interfaces().empty())
        return std::nullopt;
    auto outcome = fetch_mmds_metadata(*env, options);
    for (auto const& line : outcome.log)
        say("metadata service: " + line);
    if (!outcome.error.empty())
        say("metadata service: " + outcome.error);
    if (outcome.metadata)
        say("metadata service: instance " + outcome.metadata->instance_id);
    return outcome.metadata;
}

[[noreturn]] void idle_forever()
{
    for (;;)
        ::pause();
}

} // namespace

std::string cmdline_value(std::string const& cmdline, std::string const& key, std::string const& fallback)
{
    std::istringstream words(cmdline);
    std::string w, value = fallback;
    while (words >> w)
        if (w.rfind(key + "=", 0) == 0)
            value = w.substr(key.size() + 1); // the last one wins, as in the kernel
    return value;
}

bool cmdline_flag(std::string const& cmdline, std::string const& word)
{
    std::istringstream words(cmdline);
    std::string w;
    while (words >> w)
        if (w == word)
            return true;
    return false;
}

std::vector<std::string> load_modules(std::string const& dir, std::string& log)
{
    std::vector<std::string> loaded;
    std::ifstream order(dir + "/load-order");
    std::string rel;
    while (std::getline(order, rel)) {
        if (rel.empty() || rel[0] == '#')
            continue;
        std::string path = dir + "/" + rel;
        int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            log += "open " + path + ": " + std::strerror(errno) + "\n";
            continue;
        }
        long rc = ::syscall(SYS_finit_module, fd, "", 0);
        int err = errno;
        ::close(fd);
        if (rc == 0 || err == EEXIST)
            loaded.push_back(fs::path(rel).filename().string());
        else
            log += "finit_module " + rel + ": " + std::strerror(err) + "\n";
    }
    return loaded;
}

bool signal_boot_complete()
{
    if (::ioperm(kBootCompletePort, 1, 1) != 0)
        return false;
    outb(kBootCompleteValue, kBootCompletePort);
    return true;
}

void serve_channel_forever(std::string const& device, std::string const& instance_id)
{
    auto env = make_system_environment("/");
    Agent agent(*env, instance_id);
    bool told = false;
    for (;;) {
        int fd = ::open(device.c_str(), O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (fd < 0) {
            if (!told)
                say("waiting for the channel " + device + ": " + std::strerror(errno));
            told = true;
            std::this_thread::sleep_for(std::chrono::seconds(2));
            continue;
        }
        // /dev/hvc0 is a tty: in its default cooked mode it would echo every
        // request back to the VMM and turn "\n" into "\r\n". Raw mode passes the
        // protocol's bytes through unchanged (the VMM copes with both anyway).
        termios tio {};
        if (::isatty(fd) && ::tcgetattr(fd, &tio) == 0) {
            ::cfmakeraw(&tio);
            ::tcsetattr(fd, TCSANOW, &tio);
        }
        say("serving the VMM on " + device);
        told = false;
        serve(fd, agent, *env);
        ::close(fd);
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
}

void run_init()
{
    mount_or_say("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC);
    mount_or_say("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC);
    mount_or_say("devtmpfs", "/dev", "devtmpfs", MS_NOSUID);
    struct sigaction sa {};
    sa.sa_handler = reap_children;
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    ::sigaction(SIGCHLD, &sa, nullptr);

    std::string cmdline = read_file("/proc/cmdline");
    say("init, command line: " + cmdline);
    utsname u {};
    ::uname(&u);
    std::string log;
    auto loaded = load_modules(std::string("/lib/modules/") + u.release, log);
    say("loaded " + std::to_string(loaded.size()) + " module(s)");
    if (!log.empty())
        say(log);

    std::string meta_error;
    auto meta = metadata_from_cmdline(cmdline, meta_error);
    if (!meta_error.empty())
        say("metadata: " + meta_error);
    if (!meta && meta_error.empty())
        meta = metadata_from_service(cmdline);
    std::string instance_id = meta ? meta->instance_id : "";
    std::string channel = cmdline_value(cmdline, "strata.channel", "/dev/hvc0");
    std::string root_dev = cmdline_value(cmdline, "root");

    if (root_dev.empty()) {
        say("no root= given; staying in the initramfs");
        if (meta) {
            provision("/", *meta);
            if (!meta->hostname.empty())
                (void)!::sethostname(meta->hostname.data(), meta->hostname.size());
        }
        say(signal_boot_complete() ? "boot-complete" : "boot-complete (port write denied)");
        serve_channel_forever(channel, instance_id);
    }

    // Wait for the disk: its driver may still be probing.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    struct stat st {};
    while (::stat(root_dev.c_str(), &st) != 0 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::string fstype = cmdline_value(cmdline, "rootfstype", "ext4");
    unsigned long flags = cmdline_flag(cmdline, "ro") ? MS_RDONLY : 0;
    ::mkdir("/newroot", 0755);
    if (::mount(root_dev.c_str(), "/newroot", fstype.c_str(), flags, nullptr) != 0) {
        say("cannot mount root " + root_dev + " (" + fstype + "): " + std::strerror(errno) + "; staying in the initramfs");
        say(signal_boot_complete() ? "boot-complete" : "boot-complete (port write denied)");
        serve_channel_forever(channel, instance_id);
    }
    say("mounted " + root_dev + " on /newroot");
    // /dev, /proc and /sys move into the root first: provisioning runs the root's
    // own programs there (ssh-keygen opens /dev/null, or exits 1).
    for (char const* m : { "/dev", "/proc", "/sys" }) {
        std::string target = std::string("/newroot") + m;
        ::mkdir(target.c_str(), 0755);
        if (::mount(m, target.c_str(), nullptr, MS_MOVE, nullptr) != 0)
            say(std::string("move ") + m + ": " + std::strerror(errno));
    }
    if (meta && !(flags & MS_RDONLY)) {
        auto r = provision("/newroot", *meta);
        if (!r.error.empty())
            say("provisioning failed: " + r.error);
        else if (r.ran)
            say("provisioned instance " + meta->instance_id);
        if (!meta->hostname.empty())
            (void)!::sethostname(meta->hostname.data(), meta->hostname.size());
    }
    // As cloud images do, the console shows the host keys' fingerprints, for a
    // user to compare with what their SSH client is shown.
    for (auto const& k : ssh_host_keys("/newroot"))
        say("SSH host key " + k.type + " " + k.fingerprint);

    if (::chdir("/newroot") != 0 || ::mount(".", "/", nullptr, MS_MOVE, nullptr) != 0 || ::chroot(".") != 0
        || ::chdir("/") != 0) {
        say(std::string("switch_root failed: ") + std::strerror(errno));
        idle_forever();
    }
    say(signal_boot_complete() ? "boot-complete" : "boot-complete (port write denied)");

    std::string init = cmdline_value(cmdline, "init", "/sbin/init");
    if (::access(init.c_str(), X_OK) == 0) {
        pid_t child = ::fork();
        if (child == 0) {
            ::setsid();
            serve_channel_forever(channel, instance_id);
        }
        char* argv[] = { const_cast<char*>(init.c_str()), nullptr };
        ::execv(init.c_str(), argv);
        say("exec " + init + ": " + std::strerror(errno));
    }
    say("no init in the root file system; strata-agent stays PID 1");
    serve_channel_forever(channel, instance_id);
}

} // namespace strata::agent
