// VmmController (vmm/vmm_controller.h) through the API dispatcher, before any
// VM starts (no KVM needed): a host path the client names that cannot be used
// (missing, a directory, under a file) is the client's error, 400 with the
// reason, at its PUT and again at InstanceStart — never a 404 or 500 as if
// strata had failed.
#include "tests/support/temp_dir.h"
#include "vmm/api/dispatch.h"
#include "vmm/vmm_controller.h"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <unistd.h>

using namespace strata;
using nlohmann::json;

namespace {

struct Fixture {
    test::TempDir dir;
    VmmController controller { "vm-under-test", MachineConfig {}, MachineIo {} };

    api::HttpReply put(std::string const& target, json const& body)
    {
        return api::handle_request(controller, "PUT", target, body.dump());
    }
    std::string make_file(std::string const& name)
    {
        std::string path = dir.path(name);
        std::ofstream(path) << std::string(4096, '\0');
        return path;
    }
};

std::string fault(api::HttpReply const& reply)
{
    return json::parse(reply.body).value("fault_message", "");
}

} // namespace

TEST_CASE("a drive whose path_on_host cannot be used is refused with 400 at its PUT")
{
    Fixture f;
    std::string const file = f.make_file("disk.img");
    struct Case {
        std::string path;
        char const* reason;
    };
    for (auto const& c : { Case { f.dir.path("missing.img"), "No such file" }, Case { f.dir.path(""), "not a regular file" },
             Case { file + "/under", "Not a directory" } }) {
        auto reply = f.put("/drives/d", { { "drive_id", "d" }, { "path_on_host", c.path }, { "is_root_device", false } });
        INFO(c.path, ": ", reply.status, " ", reply.body);
        CHECK(reply.status == 400);
        CHECK(fault(reply).find("path_on_host") != std::string::npos);
        CHECK(fault(reply).find(c.reason) != std::string::npos);
    }
    CHECK(f.put("/drives/d", { { "drive_id", "d" }, { "path_on_host", file }, { "is_root_device", false } }).status == 204);
}

TEST_CASE("a boot file that cannot be used is refused with 400 at its PUT")
{
    Fixture f;
    auto reply = f.put("/boot-source", { { "firmware_path", f.dir.path("missing.elf") } });
    CHECK(reply.status == 400);
    CHECK(fault(reply).find("firmware_path") != std::string::npos);
    reply = f.put("/boot-source", { { "kernel_image_path", f.dir.path("") } });
    CHECK(reply.status == 400);
    CHECK(fault(reply).find("kernel_image_path") != std::string::npos);
}

TEST_CASE("a drive file gone between its PUT and InstanceStart is the client's error, 400")
{
    Fixture f;
    std::string const fw = f.make_file("fw.elf");
    std::string const disk = f.make_file("disk.img");
    REQUIRE(f.put("/boot-source", { { "firmware_path", fw } }).status == 204);
    REQUIRE(f.put("/drives/d", { { "drive_id", "d" }, { "path_on_host", disk }, { "is_root_device", false } }).status == 204);
    REQUIRE(::unlink(disk.c_str()) == 0);
    auto reply = f.put("/actions", { { "action_type", "InstanceStart" } });
    INFO(reply.status, " ", reply.body);
    CHECK(reply.status == 400);
    CHECK(fault(reply).find("path_on_host") != std::string::npos);
    CHECK(json::parse(api::handle_request(f.controller, "GET", "/", "").body)["state"] == "Not started");
}

TEST_CASE("PUT /drives puts a drive in a rate limit group, and a refused PUT changes nothing")
{
    Fixture f;
    std::string const a = f.make_file("a.img");
    std::string const b = f.make_file("b.img");
    auto drive = [](std::string const& id, std::string const& path, json extra) {
        json d = { { "drive_id", id }, { "path_on_host", path }, { "is_root_device", false } };
        d.update(extra);
        return d;
    };
    json const limit = { { "ops", { { "size", 50 }, { "one_time_burst", 0 }, { "refill_time", 100 } } } };
    auto config = [&] { return json::parse(api::handle_request(f.controller, "GET", "/vm/config", "").body); };
    REQUIRE(f.put("/drives/a", drive("a", a, { { "rate_limit_group", "g1" }, { "rate_limiter", limit } })).status == 204);
    // A drive of the group without a limit of its own takes the group's.
    REQUIRE(f.put("/drives/b", drive("b", b, { { "rate_limit_group", "g1" } })).status == 204);
    json const before = config();
    REQUIRE(before["drives"].size() == 2);
    for (auto const& d : before["drives"]) {
        CHECK(d["rate_limit_group"] == "g1");
        CHECK(d["rate_limiter"] == limit);
    }
    // Refused, each with the configuration left as it was: a bad group name, and
    // a second limit for the group (its drives share one limiter).
    auto bad_name = f.put("/drives/b", drive("b", b, { { "rate_limit_group", "g/1" } }));
    CHECK(bad_name.status == 400);
    CHECK(fault(bad_name).find("rate_limit_group") != std::string::npos);
    json const other = { { "ops", { { "size", 10 }, { "refill_time", 100 } } } };
    auto conflict = f.put("/drives/c", drive("c", f.make_file("c.img"), { { "rate_limit_group", "g1" }, { "rate_limiter", other } }));
    CHECK(conflict.status == 400);
    CHECK(fault(conflict).find("g1") != std::string::npos);
    auto replaced = f.put("/drives/b", drive("b", b, { { "rate_limit_group", "g1" }, { "rate_limiter", other } }));
    CHECK(replaced.status == 400);
    CHECK(config() == before);
    // A drive leaves the group by a PUT without one.
    REQUIRE(f.put("/drives/b", drive("b", b, json::object())).status == 204);
    CHECK(config()["drives"][1].contains("rate_limit_group") == false);
}
