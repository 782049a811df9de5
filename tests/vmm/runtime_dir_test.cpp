// The runtime folder (vmm/runtime_dir.h): made 0700, and refused unless it and
// its parent are this user's own real folders with mode 0700, whoever made them
// (a /tmp/strata-<uid> made by someone else first must not be trusted).
#include "tests/support/temp_dir.h"
#include "vmm/runtime_dir.h"

#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

using namespace strata;

namespace {

unsigned mode_of(std::string const& path)
{
    struct stat st {};
    REQUIRE(::lstat(path.c_str(), &st) == 0);
    return st.st_mode & 07777;
}

} // namespace

TEST_CASE("a new runtime folder and its base are made 0700 and accepted")
{
    test::TempDir dir;
    std::string const base = dir.path("strata-1000");
    REQUIRE(make_runtime_dir(base + "/key").has_value());
    CHECK(mode_of(base) == 0700);
    CHECK(mode_of(base + "/key") == 0700);
    CHECK(make_runtime_dir(base + "/key").has_value()); // again: still accepted
}

TEST_CASE("a runtime base or folder open to others, not a folder, or a link is refused")
{
    test::TempDir dir;
    std::string const base = dir.path("strata-1000");
    SUBCASE("base mode 0777 (made by another user in /tmp)")
    {
        REQUIRE(::mkdir(base.c_str(), 0700) == 0);
        REQUIRE(::chmod(base.c_str(), 0777) == 0);
        auto r = make_runtime_dir(base + "/key");
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().kind == ErrorKind::Permission);
        CHECK(r.error().message.find("mode 0777") != std::string::npos);
    }
    SUBCASE("VM folder mode 0755")
    {
        REQUIRE(::mkdir(base.c_str(), 0700) == 0);
        REQUIRE(::mkdir((base + "/key").c_str(), 0755) == 0);
        REQUIRE(::chmod((base + "/key").c_str(), 0755) == 0);
        auto r = make_runtime_dir(base + "/key");
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().message.find("mode 0755") != std::string::npos);
    }
    SUBCASE("VM folder a link to a folder elsewhere")
    {
        std::string const elsewhere = dir.path("elsewhere");
        REQUIRE(::mkdir(elsewhere.c_str(), 0700) == 0);
        REQUIRE(::mkdir(base.c_str(), 0700) == 0);
        REQUIRE(::symlink(elsewhere.c_str(), (base + "/key").c_str()) == 0);
        auto r = make_runtime_dir(base + "/key");
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().message.find("symbolic link") != std::string::npos);
    }
    SUBCASE("base owned by another user")
    {
        if (::geteuid() != 0)
            return; // only root can give a folder away
        REQUIRE(::mkdir(base.c_str(), 0700) == 0);
        REQUIRE(::chown(base.c_str(), 4242, 4242) == 0);
        auto r = make_runtime_dir(base + "/key");
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().message.find("belongs to uid 4242") != std::string::npos);
    }
}
