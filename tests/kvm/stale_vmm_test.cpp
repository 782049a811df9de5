// A VM's liveness comes from something that dies with its VMM (the lock the VMM
// holds on its runtime folder's `lock` file), never from a pid alone: a stale
// runtime folder whose pid file names a live process that looks like the VM's
// VMM (as after a reboot, when small pids come back) is a stopped VM, which
// starts and stops cleanly, and the impostor is left alone.
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <csignal>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

std::string const strata_bin = STRATA_BUILD_DIR "/strata";

struct Env {
    strata::test::TempDir dir { "strata-stale" };
    ~Env()
    {
        strata::test::ProcessOptions options;
        options.argv = { strata_bin, "vms", "stop", "web", "--force" };
        options.env = { { "STRATA_HOME", dir.path("store") } };
        (void)strata::test::run_process(options);
    }
    strata::test::ProcessResult run(std::vector<std::string> args, bool must_succeed = true) const
    {
        strata::test::ProcessOptions options;
        options.argv = { strata_bin };
        options.argv.insert(options.argv.end(), args.begin(), args.end());
        options.env = { { "STRATA_HOME", dir.path("store") } };
        options.timeout = 60s;
        auto r = strata::test::run_process(options);
        REQUIRE(r.has_value());
        INFO(strata::test::join_argv(options.argv), "\n", r.value().describe(), "\n", r.value().out);
        REQUIRE_FALSE(r.value().timed_out);
        if (must_succeed)
            REQUIRE(r.value().exit_code == 0);
        return r.value();
    }
    nlohmann::json describe() const { return nlohmann::json::parse(run({ "vms", "describe", "web", "--json" }).out); }
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
