// Unit tests of the process-spawning helper, with /bin/sh as the child.
#include "tests/support/process.h"

#include <doctest/doctest.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <unistd.h>

using namespace std::chrono_literals;
using strata::test::ProcessOptions;
using strata::test::run_process;

TEST_CASE("run_process captures stdout, stderr and the exit code")
{
    auto r = run_process({ "sh", "-c", "echo out; echo err >&2; exit 3" });
    REQUIRE(r);
    CHECK(r.value().exited);
    CHECK(r.value().exit_code == 3);
    CHECK(r.value().out == "out\n");
    CHECK(r.value().err == "err\n");
    CHECK_FALSE(r.value().timed_out);
}

TEST_CASE("run_process kills the child's process group on timeout")
{
    auto r = run_process({ "sh", "-c", "sleep 30 & sleep 30; echo never" }, 300ms);
    REQUIRE(r);
    CHECK(r.value().timed_out);
    CHECK_FALSE(r.value().exited);
    CHECK(r.value().signal == SIGKILL);
    CHECK(r.value().seconds < 10);
    CHECK(r.value().out.empty());
}

TEST_CASE("run_process feeds a stdin file and sets environment variables")
{
    char path[] = "/tmp/strata-process-test-XXXXXX";
    int fd = ::mkstemp(path);
    REQUIRE(fd >= 0);
    REQUIRE(::write(fd, "from stdin\n", 11) == 11);
    ::close(fd);
    ProcessOptions o;
    o.argv = { "sh", "-c", "cat; echo \"$STRATA_TEST_VAR\"" };
    o.stdin_path = path;
    o.env = { { "STRATA_TEST_VAR", "set" } };
    auto r = run_process(o);
    ::unlink(path);
    REQUIRE(r);
    CHECK(r.value().exit_code == 0);
    CHECK(r.value().out == "from stdin\nset\n");
}

TEST_CASE("run_process reports a program that cannot be executed as an error")
{
    auto r = run_process({ "/nonexistent/strata-no-such-program" });
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == strata::ErrorKind::NotFound);
    CHECK(r.error().message.find("strata-no-such-program") != std::string::npos);
}
