// VMs restored from a running-state machine image through `strata vms`: `vms
// create X --source-machine-image M` records that X restores, `vms start X`
// restores it (the guest continues where the capture left it, it does not boot
// again) over fresh writable tops on the image's frozen layers, and the saved
// state is used once. The guest is seqwriter: every clone must carry on with
// the rounds after the captured one (no start-up banner, no round reported
// twice), and seqcheck must then find at least the last round the clone
// reported on every one of its disks. --vcpus/--memory overrides are refused
// with nothing created.
#include "tests/support/emulated.h"
#include "tests/support/process.h"
#include "tests/support/seqwriter_progress.h"
#include "tests/support/strata_home.h"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

std::string const seqcheck_bin = STRATA_BUILD_DIR "/seqcheck";
int const disk_count = 2;

struct Env : strata::test::StrataHome {
    Env()
        : StrataHome("strata-vrt", 120s)
    {
    }
    nlohmann::json describe(std::string const& vm) const { return StrataHome::describe("vms", vm); }
};

std::string slurp(fs::path const& p)
{
    std::ifstream in(p, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

// Lets a started clone of the writer run until it has reported `lines` progress
// lines past the captured round, checks that it continued rather than booted
// (no start-up banner; no round at or below the captured one reported again),
// stops it and returns the last round it reported.
std::uint64_t run_clone(Env const& env, std::string const& vm, std::uint64_t captured, int lines = 2)
{
    std::string const log = env.describe(vm)["serial_log"];
    std::uint64_t seen = captured;
    for (int i = 0; i < lines; ++i) {
        auto const next = strata::test::wait_for_progress(log, seen, 180s);
        REQUIRE_MESSAGE(next.has_value(), vm, " reported no round after ", seen, ":\n", slurp(log));
        seen = *next;
    }
    env.run({ "vms", "stop", vm, "--force" });
    auto const text = slurp(log);
    INFO(vm, " serial:\n", text);
    CHECK(text.find("disks, 32 blocks") == std::string::npos);
    for (std::uint64_t r = 99; r <= captured; r += 100)
        CHECK(text.find("seqwriter: round " + std::to_string(r) + " ") == std::string::npos);
    CHECK(text.find("FAIL") == std::string::npos);
    return *strata::test::last_reported_round(log);
}

// Raw copies of a VM's disks, for seqcheck.
std::vector<std::string> export_disks(Env const& env, std::string const& vm)
{
    std::vector<std::string> raws;
    for (int i = 0; i < disk_count; ++i) {
        std::string disk = vm + "-disk-d" + std::to_string(i);
        auto raw = env.dir.path / (disk + ".raw");
        // A VMM killed a moment ago may still hold its layers' locks while the
        // kernel tears down its io_uring (which has the files registered).
        for (int attempt = 0; attempt < 50; ++attempt) {
            auto const r = env.run_raw({ "images", "create", "x-" + disk, "--source-disk", disk });
            if (r.exit_code != 75) {
                INFO(r.describe());
                REQUIRE(r.exit_code == 0);
                break;
            }
            std::this_thread::sleep_for(100ms);
        }
        env.run({ "images", "export", "x-" + disk, raw.string(), "-O", "raw" });
        env.run({ "images", "delete", "x-" + disk });
        raws.push_back(raw.string());
    }
    return raws;
}

strata::test::ProcessResult seqcheck(std::vector<std::string> const& raws, std::uint64_t min_round)
{
    std::vector<std::string> check = { seqcheck_bin, "--blocks", "32", "--min-round", std::to_string(min_round) };
    check.insert(check.end(), raws.begin(), raws.end());
    auto r = strata::test::run_process(check, 60s);
    REQUIRE(r.has_value());
    return r.value();
}

// The writer VM, captured with memory as "img" after its first progress line;
// returns the round reported before the capture.
std::uint64_t make_running_image(Env& env)
{
    std::vector<std::string> args = { "vms", "create", "writer", "--firmware", STRATA_BUILD_DIR "/firmware/seqwriter.elf", "--cmdline",
        "blocks=32", "--memory", "32" };
    for (int i = 0; i < disk_count; ++i) {
        args.push_back("--disk");
        args.push_back("size=1M,id=d" + std::to_string(i));
    }
    env.run(args);
    env.stop_at_end("writer");
    env.run({ "vms", "start", "writer" });
    return env.capture_running_writer("writer", "img");
}

} // namespace

TEST_CASE("vms start of a VM from a running-state machine image restores it and it finishes its run")
{
    Env env;
    auto const before = make_running_image(env);
    auto const image = nlohmann::json::parse(env.run({ "machine-images", "describe", "img", "--json" }).out);
    REQUIRE(image["state"] == "running");

    // Overrides of what a running guest already has are refused, and refused
    // requests leave nothing behind.
    auto refused = env.run_expect({ "vms", "create", "bad", "--source-machine-image", "img", "--vcpus", "2" }, 64);
    CHECK(refused.err.find("vCPUs") != std::string::npos);
    refused = env.run_expect({ "vms", "create", "bad", "--source-machine-image", "img", "--memory", "64" }, 64);
    CHECK(refused.err.find("MiB") != std::string::npos);
    CHECK(env.run({ "vms", "list", "--json" }).out.find("\"bad\"") == std::string::npos);
    CHECK(env.run({ "disks", "list" }).out.find("bad-disk") == std::string::npos);
    CHECK_FALSE(fs::exists(env.dir.path / "store" / "vm-state" / "bad"));
    // The image's own vCPU and memory values are no override.
    env.run({ "vms", "create", "same", "--source-machine-image", "img", "--memory", "32", "--vcpus", "1" });
    env.run({ "vms", "delete", "same" });
    CHECK_FALSE(fs::exists(env.dir.path / "store" / "vm-state" / "same"));

    env.run({ "vms", "create", "clone", "--source-machine-image", "img" });
    env.stop_at_end("clone");
    auto rec = env.describe("clone");
    CHECK(rec["restore_from"] == "machine-image:img");
    CHECK(env.run({ "vms", "describe", "clone" }).out.find("next start: restores") != std::string::npos);
    // The state is linked, not copied: the clone and the image name one file.
    CHECK(fs::equivalent(env.dir.path / "store" / "vm-state" / "clone" / "memory", env.dir.path / "store" / "machine-state" / "img" / "memory"));

    env.run({ "vms", "start", "clone" });
    std::string const log = rec["serial_log"];
    auto const reached = run_clone(env, "clone", before);
    auto const text = slurp(log);
    INFO("clone serial:\n", text, "\nvmm.log:\n", slurp(fs::path(log).parent_path() / "vmm.log"));
    CHECK(slurp(fs::path(log).parent_path() / "vmm.log").find("strata: restored from machine-image:img in ") != std::string::npos);
    // The saved state was used once: the record forgot it and its files are gone,
    // while the image keeps its own.
    rec = env.describe("clone");
    CHECK_FALSE(rec.contains("restore_from"));
    CHECK_FALSE(fs::exists(env.dir.path / "store" / "vm-state" / "clone"));
    CHECK(fs::exists(env.dir.path / "store" / "machine-state" / "img" / "memory"));
    auto check = seqcheck(export_disks(env, "clone"), reached);
    INFO(check.out, check.err);
    CHECK(check.exit_code == 0);
}

TEST_CASE("clones of one running-state image (20 of them) run at once, each on its own disks, and the image does not change")
{
    // Inside the emulated machine 6 clones: what is checked (all run at once,
    // each writes its own tops, seqcheck passes on each, the image's files do not
    // change) does not depend on how many, and 20 of them there cost minutes of
    // emulated strata commands and exports.
    Env env;
    auto const before = make_running_image(env);
    auto const image = nlohmann::json::parse(env.run({ "machine-images", "describe", "img", "--json" }).out);
    std::set<std::string> image_layers;
    std::map<std::string, std::string> image_bytes;
    for (auto const& d : image["disks"])
        for (auto const& l : d["layers"]) {
            image_layers.insert(l.get<std::string>());
            image_bytes[l] = slurp(env.dir.path / "store" / "layers" / l.get<std::string>());
        }
    REQUIRE(image_layers.size() >= disk_count);
    auto const memory_before = slurp(env.dir.path / "store" / "machine-state" / "img" / "memory");

    int const clones = strata::test::emulated_or(6, 20);
    std::vector<std::string> names;
    for (int i = 0; i < clones; ++i) {
        names.push_back("c" + std::to_string(i));
        env.run({ "vms", "create", names.back(), "--source-machine-image", "img" });
        env.stop_at_end(names.back());
    }
    for (auto const& n : names)
        env.run({ "vms", "start", n });
    // All of them run at once: every VMM is up before any is stopped.
    for (auto const& n : names) {
        auto const rec = env.describe(n);
        std::string const serial = rec["serial_log"];
        // A clone that already ended says why in its serial log and VMM log.
        INFO(n, " serial:\n", slurp(serial), "\nvmm.log:\n", slurp(fs::path(serial).parent_path() / "vmm.log"));
        CHECK(rec["state"] == "running");
    }
    std::map<std::string, std::uint64_t> reached;
    for (auto const& n : names)
        reached[n] = run_clone(env, n, before, 1);

    // Each clone wrote its own top layers: none is another's or the image's.
    std::set<std::string> tops;
    for (auto const& n : names) {
        for (int i = 0; i < disk_count; ++i) {
            auto const disk = nlohmann::json::parse(env.run({ "disks", "describe", n + "-disk-d" + std::to_string(i), "--json" }).out);
            auto const& layers = disk["layers"];
            REQUIRE(layers.size() == image["disks"][static_cast<std::size_t>(i)]["layers"].size() + 1);
            std::string top = layers.back().is_object() ? layers.back()["id"].get<std::string>() : layers.back().get<std::string>();
            CHECK(image_layers.count(top) == 0);
            CHECK(tops.insert(top).second);
        }
        auto check = seqcheck(export_disks(env, n), reached[n]);
        INFO(n, ": ", check.out, check.err);
        CHECK(check.exit_code == 0);
    }
    // The image's layers and memory are byte for byte what they were.
    for (auto const& [id, bytes] : image_bytes)
        CHECK_MESSAGE(slurp(env.dir.path / "store" / "layers" / id) == bytes, "image layer ", id, " changed");
    CHECK(slurp(env.dir.path / "store" / "machine-state" / "img" / "memory") == memory_before);
}

TEST_CASE("vms suspend saves a running VM and ends it, its disks are held, vms resume continues it")
{
    Env env;
    std::vector<std::string> args = { "vms", "create", "writer", "--firmware", STRATA_BUILD_DIR "/firmware/seqwriter.elf", "--cmdline",
        "blocks=32", "--memory", "32" };
    for (int i = 0; i < disk_count; ++i) {
        args.push_back("--disk");
        args.push_back("size=1M,id=d" + std::to_string(i));
    }
    env.run(args);
    env.stop_at_end("writer");
    // Only a running VM can be suspended, and only a suspended one resumed.
    env.run_expect({ "vms", "suspend", "writer" }, 64);
    env.run_expect({ "vms", "resume", "writer" }, 64);
    env.run({ "vms", "start", "writer" });
    std::string const log = env.describe("writer")["serial_log"];
    REQUIRE(strata::test::wait_for_progress(log, std::nullopt));
    env.run_expect({ "vms", "resume", "writer" }, 64);

    env.run({ "vms", "suspend", "writer" });
    auto const suspended_at = *strata::test::last_reported_round(log);
    auto const log_size = slurp(log).size();
    auto rec = env.describe("writer");
    CHECK(rec["state"] == "suspended");
    CHECK(rec["pid"] == 0);
    CHECK(env.run({ "vms", "describe", "writer" }).out.find("state: SUSPENDED") != std::string::npos);
    CHECK(env.run({ "vms", "list" }).out.find("suspended") != std::string::npos);
    CHECK(fs::exists(env.dir.path / "store" / "vm-state" / "writer" / "state"));
    CHECK(fs::exists(env.dir.path / "store" / "vm-state" / "writer" / "memory"));
    // Nothing runs any more: the log does not grow.
    std::this_thread::sleep_for(300ms);
    CHECK(slurp(log).size() == log_size);

    // Its disks cannot be opened elsewhere, not even read-only, nor changed.
    auto refused = env.run_expect({ "run", "--firmware", STRATA_BUILD_DIR "/firmware/hello.elf", "--disk", "writer-disk-d0" }, 75);
    CHECK(refused.err.find("suspended vm 'writer'") != std::string::npos);
    env.run_expect({ "run", "--firmware", STRATA_BUILD_DIR "/firmware/hello.elf", "--disk", "writer-disk-d1,readonly=on" }, 75);
    env.run_expect({ "disks", "resize", "writer-disk-d0", "--size", "2M" }, 75);
    // A plain start would boot it and throw the saved state away: refused.
    env.run_expect({ "vms", "start", "writer" }, 64);
    CHECK(env.describe("writer")["state"] == "suspended");

    env.run({ "vms", "resume", "writer" });
    auto const first = strata::test::wait_for_progress(log, suspended_at, 120s);
    REQUIRE_MESSAGE(first.has_value(), slurp(log));
    REQUIRE(strata::test::wait_for_progress(log, *first, 120s));
    CHECK(env.describe("writer")["state"] == "running");
    env.run({ "vms", "stop", "writer", "--force" });
    auto const after = slurp(log).substr(log_size);
    INFO("after resume:\n", after);
    CHECK(after.find("disks, 32 blocks") == std::string::npos);
    for (std::uint64_t r = 99; r <= suspended_at; r += 100)
        CHECK(after.find("seqwriter: round " + std::to_string(r) + " ") == std::string::npos);
    CHECK(after.find("FAIL") == std::string::npos);
    auto const reached = *strata::test::last_reported_round(log);
    // Resumed once: the saved state is gone and the next start boots.
    rec = env.describe("writer");
    CHECK(rec["state"] == "stopped");
    CHECK_FALSE(rec.contains("restore_from"));
    CHECK_FALSE(fs::exists(env.dir.path / "store" / "vm-state" / "writer"));
    auto check = seqcheck(export_disks(env, "writer"), reached);
    INFO(check.out, check.err);
    CHECK(check.exit_code == 0);
}

namespace {

// The text after `prefix` on the first whole line of the log that starts with
// it, once one exists (within the timeout); empty when none came.
std::string wait_for_line(std::string const& log, std::string const& prefix, std::chrono::seconds limit = 60s)
{
    auto const until = std::chrono::steady_clock::now() + limit;
    for (;;) {
        auto const text = slurp(log);
        auto at = text.find(prefix);
        if (at != std::string::npos) {
            auto end = text.find('\n', at);
            if (end != std::string::npos)
                return text.substr(at + prefix.size(), end - at - prefix.size());
        }
        if (std::chrono::steady_clock::now() >= until)
            return {};
        std::this_thread::sleep_for(20ms);
    }
}

std::size_t count_of(std::string const& text, std::string const& what)
{
    std::size_t n = 0;
    for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1))
        ++n;
    return n;
}

} // namespace

TEST_CASE("every VM restored from a running-state image gets a new VM generation ID, a resumed VM keeps its own")
{
    Env env;
    env.run({ "vms", "create", "gen", "--firmware", STRATA_BUILD_DIR "/firmware/vmgenid.elf", "--memory", "32", "--disk", "size=1M,id=d0" });
    env.stop_at_end("gen");
    env.run({ "vms", "start", "gen" });
    std::string const source_log = env.describe("gen")["serial_log"];
    // The guest found the ID through the DSDT's ADDR method, as Linux does.
    CHECK(wait_for_line(source_log, "vmgenid: address ") == "0xa0000");
    auto const original = wait_for_line(source_log, "vmgenid: guid ");
    INFO(slurp(source_log));
    REQUIRE(original.size() == 32);
    CHECK(original != std::string(32, '0'));
    env.run({ "machine-images", "create", "img", "--source-vm", "gen", "--with-memory" });
    env.run({ "vms", "stop", "gen", "--force" });

    std::vector<std::string> ids;
    for (std::string name : { "c1", "c2" }) {
        env.run({ "vms", "create", name, "--source-machine-image", "img" });
        env.stop_at_end(name);
        env.run({ "vms", "start", name });
        std::string const log = env.describe(name)["serial_log"];
        // The guest was polling when captured; it sees the ID change under it.
        auto const id = wait_for_line(log, "vmgenid: changed ");
        INFO(name, " serial:\n", slurp(log));
        REQUIRE(id.size() == 32);
        CHECK(id != original);
        CHECK(slurp(log).find("vmgenid: guid ") == std::string::npos); // restored, not booted
        // The VMM logged the same ID it gave.
        CHECK(slurp(fs::path(log).parent_path() / "vmm.log").find("strata: new VM generation ID " + id) != std::string::npos);
        ids.push_back(id);
    }
    CHECK(ids[0] != ids[1]);

    // Suspend and resume is the same VM going on: its ID stays.
    std::string const log = env.describe("c1")["serial_log"];
    env.run({ "vms", "suspend", "c1" });
    env.run({ "vms", "resume", "c1" });
    std::this_thread::sleep_for(500ms);
    CHECK(env.describe("c1")["state"] == "running");
    CHECK(count_of(slurp(log), "vmgenid: changed ") == 1);
}
