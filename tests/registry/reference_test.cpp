// Unit tests of registry/client.h's pure parts: references and credentials.
#include "registry/client.h"

#include <doctest/doctest.h>

#include <cstdlib>
#include <fstream>
#include <unistd.h>

using namespace strata;
using namespace strata::registry;

TEST_CASE("references name registry, repository, tag and digest")
{
    auto r = parse_reference("localhost:5000/team/web:v3");
    REQUIRE(r);
    CHECK(r.value().registry == "localhost:5000");
    CHECK(r.value().repository == "team/web");
    CHECK(r.value().tag == "v3");
    CHECK(r.value().target() == "v3");

    std::string d = "sha256:" + std::string(64, 'a');
    r = parse_reference("ghcr.io/org/img@" + d);
    REQUIRE(r);
    CHECK(r.value().tag.empty());
    CHECK(r.value().target() == d);

    r = parse_reference("127.0.0.1:5000/a/b/c");
    REQUIRE(r);
    CHECK(r.value().tag == "latest");
    CHECK(r.value().to_string() == "127.0.0.1:5000/a/b/c:latest");

    r = parse_reference("localhost/x:t@" + d); // both: the digest wins
    REQUIRE(r);
    CHECK(r.value().target() == d);
}

TEST_CASE("malformed references are usage errors")
{
    for (char const* bad : { "", "web", "web:v3", "team/web:v3", "localhost:5000/", "localhost:5000/Team/web",
             "localhost:5000/team//web", "localhost:5000/team/web:", "localhost:5000/team/web:-x",
             "localhost:5000/team/web@sha256:abc", "localhost:5000/team/web@md5:" "0123", "host with space.io/a",
             "localhost:5000/-a", "localhost:5000/a-", "localhost:5000/a/b:t:u" }) {
        CAPTURE(bad);
        auto r = parse_reference(bad);
        CHECK(!r);
        if (!r)
            CHECK(r.error().kind == ErrorKind::Usage);
    }
}

TEST_CASE("credentials: --creds, then the environment, then config.json")
{
    char dir[] = "/tmp/strata-creds-XXXXXX";
    REQUIRE(::mkdtemp(dir) != nullptr);
    std::string cfg = std::string(dir) + "/config.json";
    std::ofstream(cfg) << R"({"auths": {"reg.example:5000": {"auth": "YWxpY2U6czNjcjN0"},
                            "https://other.example": {"username": "bob", "password": "pw"}}})";
    ::setenv("STRATA_REGISTRY_AUTH_FILE", cfg.c_str(), 1);
    ::unsetenv("STRATA_REGISTRY_CREDS");

    auto c = find_credentials("reg.example:5000", "");
    REQUIRE(c);
    REQUIRE(c.value());
    CHECK(c.value()->user == "alice");
    CHECK(c.value()->password == "s3cr3t");
    c = find_credentials("other.example", "");
    REQUIRE(c);
    REQUIRE(c.value());
    CHECK(c.value()->user == "bob");
    c = find_credentials("unknown.example", "");
    REQUIRE(c);
    CHECK(!c.value());

    ::setenv("STRATA_REGISTRY_CREDS", "carol:x:y", 1); // the password may hold ':'
    c = find_credentials("reg.example:5000", "");
    REQUIRE(c);
    CHECK(c.value()->user == "carol");
    CHECK(c.value()->password == "x:y");
    c = find_credentials("reg.example:5000", "dave:z");
    REQUIRE(c);
    CHECK(c.value()->user == "dave");
    CHECK(!find_credentials("reg.example:5000", "no-colon"));

    ::unsetenv("STRATA_REGISTRY_CREDS");
    std::ofstream(cfg) << "not json";
    c = find_credentials("reg.example:5000", "");
    CHECK(!c);
    if (!c)
        CHECK(c.error().kind == ErrorKind::BadInput);
    ::unsetenv("STRATA_REGISTRY_AUTH_FILE");
    ::unlink(cfg.c_str());
    ::rmdir(dir);
}
