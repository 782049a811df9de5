// A VM's liveness comes from something that dies with its VMM (the lock the VMM
// holds on its runtime folder's `lock` file), never from a pid alone: a stale
// runtime folder whose pid file names a live process that looks like the VM's
// VMM (as after a reboot, when small pids come back) is a stopped VM, which
// starts and stops cleanly, and the impostor is left alone.
#include "tests/support/strata_home.h"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <csignal>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <string>
#include <sys/file.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

struct Env : strata::test::StrataHome {
    Env()
        : StrataHome("strata-stale", 60s)
    {
        stop_at_end("web");
        stop_at_end("db");
    }
    nlohmann::json describe() const { return StrataHome::describe("vms", "web"); }
};

} // namespace

TEST_CASE("a stale runtime folder whose pid names a live look-alike process is a stopped VM")
{
    Env env;
    env.run({ "vms", "create", "web", "--firmware", STRATA_BUILD_DIR "/firmware/echo.elf" });
    // A real start and a SIGKILL: the folder, its sockets and pid file stay behind.
    env.run({ "vms", "start", "web" });
    auto running = env.describe();
    REQUIRE(running["state"] == "running");
    std::string const dir = fs::path(running["api_socket"].get<std::string>()).parent_path();
    REQUIRE(::kill(static_cast<pid_t>(running["pid"].get<long>()), SIGKILL) == 0);
    for (int i = 0; i < 200 && env.describe()["state"] == "running"; ++i)
        std::this_thread::sleep_for(20ms);
    REQUIRE(fs::exists(dir + "/api.sock"));

    // The pid comes back as another process whose command line has `vmm` and the
    // VM's name in it.
    pid_t impostor = ::fork();
    REQUIRE(impostor >= 0);
    if (impostor == 0) {
        // Not on the test's output: ctest waits for every holder of its pipe to
        // close it, and the shell's `sleep` outlives the SIGKILL below by a minute.
        int null = ::open("/dev/null", O_RDWR);
        ::dup2(null, 1);
        ::dup2(null, 2);
        ::execl("/bin/sh", "sh", "-c", "sleep 60", "vmm", "web", static_cast<char*>(nullptr));
        ::_exit(127);
    }
    std::this_thread::sleep_for(100ms);
    std::ofstream(dir + "/pid") << impostor << "\n";

    auto stale = env.describe();
    CHECK(stale["state"] == "stopped");
    // A start is a real start, and the VM then answers on its API.
    auto started = env.run({ "vms", "start", "web" });
    CHECK(started.out.find("Started vm web") != std::string::npos);
    auto now = env.describe();
    CHECK(now["state"] == "running");
    CHECK(now["api_ready"] == true);
    CHECK(now["pid"].get<long>() != impostor);
    env.run({ "vms", "stop", "web", "--force" });
    CHECK(env.describe()["state"] == "stopped");
    // Nobody signalled the impostor.
    CHECK(::kill(impostor, 0) == 0);
    ::kill(impostor, SIGKILL);
    ::waitpid(impostor, nullptr, 0);
}

TEST_CASE("a killed VMM's disks still held by the kernel: the VM is stopped once they are let go")
{
    // After a SIGKILL the kernel may keep a VMM's layer files (and their write
    // locks) a while after the VMM lock is gone: io_uring drops a ring's
    // registered files in a worker. The test plays that part by holding the
    // disk's top layer itself once the VMM has ended, and lets it go only when
    // the command run meanwhile on the stopped VM says it is waiting for it:
    // the command must wait, not fail "in use", however late it starts.
    Env env;
    env.run({ "vms", "create", "db", "--firmware", STRATA_BUILD_DIR "/firmware/echo.elf", "--disk", "size=1M,id=d0" });
    env.run({ "vms", "start", "db" });
    auto running = env.strata::test::StrataHome::describe("vms", "db");
    REQUIRE(running["state"] == "running");
    std::string const dir = fs::path(running["api_socket"].get<std::string>()).parent_path();
    auto layers = nlohmann::json::parse(env.run({ "disks", "describe", "db-disk-d0", "--json" }).out)["layers"];
    std::string const top = (env.dir.path / "store" / "layers" / layers.back().get<std::string>()).string();
    REQUIRE(::kill(static_cast<pid_t>(running["pid"].get<long>()), SIGKILL) == 0);

    // The VMM has ended when its lock is free (looked at directly: a strata
    // command would settle the VM before the test holds the layer).
    auto const deadline = std::chrono::steady_clock::now() + 20s;
    for (;;) {
        int fd = ::open((dir + "/lock").c_str(), O_RDONLY | O_CLOEXEC);
        REQUIRE(fd >= 0);
        bool const free = ::flock(fd, LOCK_SH | LOCK_NB) == 0;
        ::close(fd);
        if (free)
            break;
        REQUIRE(std::chrono::steady_clock::now() < deadline);
        std::this_thread::sleep_for(5ms);
    }
    int layer = ::open(top.c_str(), O_RDWR | O_CLOEXEC);
    REQUIRE(layer >= 0);
    struct flock fl {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    while (::fcntl(layer, F_OFD_SETLK, &fl) != 0) {
        REQUIRE(std::chrono::steady_clock::now() < deadline); // the kernel's own hold, let go
        std::this_thread::sleep_for(5ms);
    }
    // Held until the command says it waits (cli/vm_runtime.cpp,
    // settle_killed_vmm); a command that never waits meets the lock.
    bool waited = false;
    strata::test::ProcessOptions options;
    options.argv = { strata::test::strata_bin, "machine-images", "create", "db-image", "--source-vm", "db" };
    options.env = { { "STRATA_HOME", env.store() } };
    options.timeout = 90s;
    options.on_stderr = [&](std::string const& err) {
        if (layer >= 0 && err.find("the kernel still holds its disk 'db-disk-d0'; waiting") != std::string::npos) {
            waited = true;
            ::close(layer);
            layer = -1;
        }
    };
    auto image = strata::test::run_process(options);
    if (layer >= 0)
        ::close(layer);
    REQUIRE(image.has_value());
    INFO(image.value().describe());
    CHECK_MESSAGE(waited, "the command never said it waited for the layer");
    CHECK(image.value().exit_code == 0);
    CHECK(env.strata::test::StrataHome::describe("vms", "db")["state"] == "stopped");
    CHECK_FALSE(fs::exists(dir + "/pid"));
}
