// The jail's rule about the cgroup warm-up (vmm/isolation/jail.h): a process
// that called warm_cgroup_moves never enters a jail, since the warm-up's thread
// may hold the host's cgroup.procs open and a VMM forked from the process would
// keep that descriptor. The case runs in a child process: a jail made against
// the rule would turn the process it runs in into a supervisor.
#include "vmm/isolation/jail.h"

#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

TEST_CASE("enter_jail refuses a process that called warm_cgroup_moves, before it makes anything")
{
    char dir[] = "/tmp/strata-jail-guard-XXXXXX";
    REQUIRE(::mkdtemp(dir) != nullptr);
    pid_t const child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        strata::warm_cgroup_moves();
        strata::JailSpec spec;
        spec.runtime_dir = dir;
        spec.cgroup_name = "strata-jail-guard-" + std::to_string(::getpid());
        spec.landlock = false;
        auto jailed = strata::enter_jail(spec);
        // 0: refused for the warm-up; 1: refused for another reason; 2: jailed.
        if (jailed)
            ::_exit(2);
        ::_exit(jailed.error().message.find("warm_cgroup_moves") != std::string::npos ? 0 : 1);
    }
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    // Nothing of a jail was made: no root folder in the runtime folder.
    CHECK_FALSE(std::filesystem::exists(std::string(dir) + "/root"));
    std::filesystem::remove_all(dir);
}
