// `strata vms`, `instance-templates` and `machine-images` end to end: build/strata
// with a temporary STRATA_HOME, real KVM, the `echo` firmware (it waits for input,
// so a started VM keeps running until stopped or sent 'q'). Covers create from
// flags, an image, a template and a machine image; start/describe/console/stop/
// delete; capture of a stopped VM and three VMs from it; export/import into a
// second store (and a corrupted archive); live capture through `strata vmm`.
#include "store/store.h"
#include "tests/support/process.h"
#include "tests/support/strata_home.h"
#include "tests/support/temp_store.h"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <sysexits.h>
#include <thread>
#include <unistd.h>

using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

std::string const strata_bin = STRATA_BUILD_DIR "/strata";
std::string const echo_fw = STRATA_BUILD_DIR "/firmware/echo.elf";
std::string const probe_kernel = STRATA_BUILD_DIR "/firmware/probe.vmlinux";
std::string const hello_fw = STRATA_BUILD_DIR "/firmware/hello.elf";

bool contains(std::string const& haystack, std::string const& needle) { return haystack.find(needle) != std::string::npos; }

struct Home {
    strata::test::TempDir dir { "strata-vms" };
    fs::path path = dir.path;
    std::set<std::string> started;

    Home() = default;
    ~Home()
    {
        // Started VMMs run in their own sessions: end them whatever the test did.
        for (auto const& vm : started)
            (void)raw({ "vms", "stop", vm, "--force" });
    }
    Home(Home const&) = delete;
    Home& operator=(Home const&) = delete;

    strata::test::ProcessResult raw(std::vector<std::string> args, std::optional<std::string> stdin_path = {}) const
    {
        auto r = strata::test::run_strata(path.string(), args, { {}, std::move(stdin_path), 60s });
        REQUIRE_MESSAGE(r.has_value(), "could not spawn strata");
        return r.value();
    }

    // Runs strata and requires the exit code.
    strata::test::ProcessResult run(std::vector<std::string> args, int expect = 0, std::optional<std::string> stdin_path = {})
    {
        if (args.size() >= 2 && args[0] == "vms" && args[1] == "start")
            started.insert(args[2]);
        auto r = raw(args, std::move(stdin_path));
        INFO(strata::test::join_argv(args), "\n", r.describe(), "\nstdout:\n", r.out, "\nstderr:\n", r.err);
        REQUIRE_FALSE(r.timed_out);
        REQUIRE(r.exited);
        REQUIRE(r.exit_code == expect);
        return r;
    }

    nlohmann::json json(std::vector<std::string> args)
    {
        auto r = run(std::move(args));
        auto j = nlohmann::json::parse(r.out, nullptr, false);
        REQUIRE_FALSE(j.is_discarded());
        return j;
    }

    std::unique_ptr<strata::Store> store() const
    {
        return strata::test::open_store(path.string(), false);
    }
};

std::string slurp(std::string const& path)
{
    std::ifstream in(path, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Waits until the file holds needle (the serial log fills as the guest runs).
bool wait_for_text(std::string const& path, std::string const& needle, std::chrono::seconds timeout = 30s)
{
    auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
        if (contains(slurp(path), needle))
            return true;
        std::this_thread::sleep_for(50ms);
    }
    return false;
}

bool wait_state(Home& home, std::string const& vm, std::string const& state, std::chrono::seconds timeout = 30s)
{
    auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
        if (home.json({ "vms", "describe", vm, "--json" })["state"] == state)
            return true;
        std::this_thread::sleep_for(100ms);
    }
    return false;
}

void write_disk(strata::Store& store, std::string const& disk, std::uint64_t offset, char value)
{
    auto chain = store.open_disk(disk, strata::ChainOptions { strata::CacheMode::Writeback, strata::EngineKind::Sync, 8, false });
    REQUIRE(chain);
    std::vector<std::byte> buf(4096, std::byte(value));
    REQUIRE(strata::write_sync(*chain.value(), offset, buf));
    REQUIRE(strata::flush_sync(*chain.value()));
}

char read_disk(strata::Store& store, std::string const& disk, std::uint64_t offset)
{
    auto chain = store.open_disk(disk, strata::ChainOptions { strata::CacheMode::Writeback, strata::EngineKind::Sync, 8, true });
    REQUIRE(chain);
    std::vector<std::byte> buf(4096);
    REQUIRE(strata::read_sync(*chain.value(), offset, buf));
    return static_cast<char>(buf[0]);
}

} // namespace

TEST_CASE("vms: create, start, describe, console, stop and delete an echo VM")
{
    Home home;
    home.run({ "vms", "create", "e", "--firmware", echo_fw, "--disk", "size=8M,id=data", "--labels", "team=blue", "--metadata",
        "role=test", "--description", "an echo VM" });
    auto d = home.json({ "vms", "describe", "e", "--json" });
    CHECK(d["state"] == "stopped");
    CHECK(d["disks"][0]["disk"] == "e-disk-data");
    CHECK(d["labels"]["team"] == "blue");
    CHECK(d["boot"]["firmware"].get<std::string>().size() == 64);
    CHECK(d["api_socket"].get<std::string>().size() < 108);
    // No host path in the record: the firmware is referred to by digest.
    CHECK_FALSE(contains(slurp((home.path / "vms/e.json").string()), echo_fw));

    home.run({ "vms", "start", "e" });
    auto again = home.run({ "vms", "start", "e" }); // already running: success
    CHECK(contains(again.out, "already running"));
    d = home.json({ "vms", "describe", "e", "--json" });
    CHECK(d["state"] == "running");
    CHECK(d["pid"].get<int>() > 0);
    CHECK(fs::exists(d["api_socket"].get<std::string>()));
    CHECK(wait_for_text(d["serial_log"], "echo: ready"));
    auto list = home.json({ "vms", "list", "--json" });
    REQUIRE(list.size() == 1);
    CHECK(list[0]["state"] == "running");

    // A running VM is not deleted without --stop.
    home.run({ "vms", "delete", "e" }, EX_TEMPFAIL);

    // The console: what we type comes back; 'q' ends the guest.
    std::string input = (home.path / "input").string();
    std::ofstream(input) << "ping-123 q";
    auto console = home.run({ "vms", "console", "e" }, 0, input);
    CHECK(contains(console.out, "ping-123"));
    CHECK(wait_state(home, "e", "stopped"));

    // stop asks the guest, then ends the VMM after --timeout; --force at once.
    home.run({ "vms", "start", "e" });
    home.run({ "vms", "stop", "e", "--timeout", "1" });
    CHECK(home.json({ "vms", "describe", "e", "--json" })["state"] == "stopped");
    home.run({ "vms", "start", "e" });
    home.run({ "vms", "stop", "e", "--force" });
    CHECK(home.json({ "vms", "describe", "e", "--json" })["state"] == "stopped");
    home.run({ "vms", "stop", "e" }); // stopping a stopped VM succeeds

    home.run({ "vms", "start", "e" });
    home.run({ "vms", "delete", "e", "--stop", "--timeout", "1" });
    home.run({ "vms", "describe", "e" }, EX_NOINPUT);
    CHECK_FALSE(contains(home.run({ "disks", "list" }).out, "e-disk-data"));
    CHECK(fs::is_empty(home.path / "artifacts"));
}

TEST_CASE("vms create: a VMM left running by a deleted store at the same path is not taken for the new VM's")
{
    Home home;
    home.run({ "vms", "create", "o", "--firmware", echo_fw });
    home.run({ "vms", "start", "o" });
    int const pid = home.json({ "vms", "describe", "o", "--json" })["pid"].get<int>();
    REQUIRE(pid > 0);
    // The store goes while its VMM runs; a new one is made at the same path.
    fs::path const moved = home.path.string() + ".old";
    fs::rename(home.path, moved);
    fs::create_directories(home.path);
    auto refused = home.run({ "vms", "create", "o", "--firmware", echo_fw }, EX_TEMPFAIL);
    CHECK(contains(refused.err, "still runs an earlier vm 'o'"));
    CHECK(contains(refused.err, std::to_string(pid)));
    home.run({ "vms", "describe", "o" }, EX_NOINPUT); // nothing was recorded
    home.run({ "vms", "create", "p", "--firmware", echo_fw }); // another name is fine
    // Put the old store back so the fixture stops its VMM.
    fs::remove_all(home.path);
    fs::rename(moved, home.path);
    home.run({ "vms", "stop", "o", "--force" });
}

TEST_CASE("vms start: a guest that finishes before the API is polled is a successful start")
{
    Home home;
    home.run({ "vms", "create", "h", "--firmware", hello_fw });
    // hello prints and exits within tens of milliseconds, a race with start's
    // polling of the API socket; either outcome must be a success.
    for (int i = 0; i < 5; ++i) {
        auto started = home.run({ "vms", "start", "h" });
        CHECK((contains(started.out, "already finished") || contains(started.out, "Started vm h (pid")));
        CHECK(wait_state(home, "h", "stopped"));
        auto d = home.json({ "vms", "describe", "h", "--json" });
        CHECK(wait_for_text(d["serial_log"], "hello from strata"));
    }
}

TEST_CASE("vms create: from an image and a template, and bad input is refused with the right code")
{
    Home home;
    home.run({ "disks", "create", "base", "--size", "4M" });
    write_disk(*home.store(), "base", 0, 'I');
    home.run({ "images", "create", "img", "--source-disk", "base" });
    home.run({ "vms", "create", "fromimg", "--image", "img", "--firmware", echo_fw, "--vcpus", "2", "--memory", "64" });
    auto d = home.json({ "vms", "describe", "fromimg", "--json" });
    CHECK(d["source"] == "image:img");
    CHECK(d["disks"][0]["boot"] == true);
    CHECK(read_disk(*home.store(), "fromimg-disk-boot", 0) == 'I');

    home.run({ "instance-templates", "create", "small", "--image", "img", "--firmware", echo_fw, "--memory", "96", "--disk",
        "size=2M,id=scratch,scratch=on", "--labels", "tier=web" });
    auto t = home.json({ "instance-templates", "describe", "small", "--json" });
    CHECK(t["memory_mib"] == 96);
    home.run({ "vms", "create", "fromtpl", "--template", "small", "--vcpus", "3" });
    d = home.json({ "vms", "describe", "fromtpl", "--json" });
    CHECK(d["vcpus"] == 3);
    CHECK(d["memory_mib"] == 96);
    CHECK(d["labels"]["tier"] == "web");
    CHECK(d["disks"].size() == 2);
    CHECK(read_disk(*home.store(), "fromtpl-disk-boot", 0) == 'I');
    CHECK(home.json({ "instance-templates", "list", "--json" }).size() == 1);
    home.run({ "instance-templates", "delete", "small" });
    CHECK(d["boot"]["firmware"] == home.json({ "vms", "describe", "fromimg", "--json" })["boot"]["firmware"]);

    home.run({ "vms", "create", "../x", "--firmware", echo_fw }, EX_USAGE);
    home.run({ "vms", "create", "nofw" }, EX_USAGE);
    home.run({ "vms", "create", "both", "--firmware", echo_fw, "--kernel", echo_fw }, EX_USAGE);
    home.run({ "vms", "create", "badlabel", "--firmware", echo_fw, "--labels", "Bad=1" }, EX_USAGE);
    home.run({ "vms", "create", "hostfile", "--firmware", echo_fw, "--disk", "path=/etc/passwd" }, EX_USAGE);
    home.run({ "vms", "create", "nodisk", "--firmware", echo_fw, "--disk", "missing" }, EX_NOINPUT);
    home.run({ "vms", "create", "notpl", "--template", "missing" }, EX_NOINPUT);
    home.run({ "vms", "create", "fromimg", "--firmware", echo_fw }, EX_CANTCREAT);
    home.run({ "vms", "create", "nofile", "--firmware", (home.path / "nope").string() }, EX_NOINPUT);
    // A kernel the loader cannot boot is refused at creation, with no record or disk left.
    auto junk = home.path / "junk-kernel";
    std::ofstream(junk) << std::string(8192, 'x');
    auto bad = home.run({ "vms", "create", "badkernel", "--kernel", junk.string(), "--image", "img" }, EX_DATAERR);
    CHECK(contains(bad.err, "neither a bzImage nor an ELF file"));
    CHECK_FALSE(contains(home.run({ "vms", "list" }).out, "badkernel"));
    CHECK_FALSE(contains(home.run({ "disks", "list" }).out, "badkernel"));
    home.run({ "instance-templates", "create", "badkernel", "--image", "img", "--kernel", junk.string() }, EX_DATAERR);
    // An initrd that cannot fit in the VM's memory is refused at creation (64), with no record or disk.
    auto big_initrd = home.path / "big-initrd";
    std::ofstream(big_initrd).close();
    std::filesystem::resize_file(big_initrd, 80ull << 20);
    auto big = home.run({ "vms", "create", "bigrd", "--kernel", probe_kernel, "--initrd", big_initrd.string(), "--memory", "64",
                            "--image", "img" }, EX_USAGE);
    CHECK(contains(big.err, "cannot be loaded in this VM"));
    CHECK(contains(big.err, "does not fit in guest memory"));
    CHECK_FALSE(contains(home.run({ "vms", "list" }).out, "bigrd"));
    CHECK_FALSE(contains(home.run({ "disks", "list" }).out, "bigrd"));
    // One smaller than the memory that still cannot go beside the kernel: refused
    // at creation too, not at the first start.
    std::filesystem::resize_file(big_initrd, (63ull << 20) - 4096);
    auto beside = home.run({ "vms", "create", "bigrd", "--kernel", probe_kernel, "--initrd", big_initrd.string(), "--memory", "64",
                               "--image", "img" }, EX_USAGE);
    CHECK(contains(beside.err, "beside the kernel"));
    CHECK_FALSE(contains(home.run({ "vms", "list" }).out, "bigrd"));
    auto tpl = home.run({ "instance-templates", "create", "bigrd", "--image", "img", "--kernel", probe_kernel, "--initrd",
                            big_initrd.string(), "--memory", "64" }, EX_USAGE);
    CHECK(contains(tpl.err, "beside the kernel"));
    CHECK_FALSE(contains(home.run({ "instance-templates", "list" }).out, "bigrd"));
    // With room beside the kernel it is recorded.
    std::filesystem::resize_file(big_initrd, 32ull << 20);
    home.run({ "vms", "create", "bigrd", "--kernel", probe_kernel, "--initrd", big_initrd.string(), "--memory", "64", "--image", "img" });
    // Failed creations leave no disks behind.
    home.run({ "vms", "create", "twoboot", "--firmware", echo_fw, "--disk", "size=1M,id=a,boot=on", "--disk", "size=1M,id=b,boot=on" }, EX_USAGE);
    CHECK_FALSE(contains(home.run({ "disks", "list" }).out, "twoboot"));
}

TEST_CASE("machine images of a stopped VM: three VMs from one image, differential, export/import into another store")
{
    Home home;
    home.run({ "vms", "create", "src", "--firmware", echo_fw, "--disk", "size=4M,id=data", "--disk", "size=1M,id=tmp,scratch=on",
        "--metadata", "k=v" });
    write_disk(*home.store(), "src-disk-data", 0, 'A');
    home.run({ "machine-images", "create", "mi1", "--source-vm", "src", "--description", "first", "--labels", "env=ci" });
    write_disk(*home.store(), "src-disk-data", 4096, 'B');
    home.run({ "machine-images", "create", "mi2", "--source-vm", "src" });
    auto m1 = home.json({ "machine-images", "describe", "mi1", "--json" });
    auto m2 = home.json({ "machine-images", "describe", "mi2", "--json" });
    CHECK(m1["description"] == "first");
    CHECK(m1["source_vm"]["name"] == "src");
    CHECK(m1["source_vm"]["metadata"]["k"] == "v");
    CHECK(m1["stall_us"] == 0);
    CHECK(m1["disks"][1]["scratch"] == true);
    CHECK(m1["disks"][1]["layers"].empty());
    // Differential: mi2 repeats mi1's layer and adds one.
    REQUIRE(m2["disks"][0]["layers"].size() == 2);
    CHECK(m2["disks"][0]["layers"][0] == m1["disks"][0]["layers"][0]);
    home.run({ "machine-images", "create", "mi1", "--source-vm", "src" }, EX_CANTCREAT);

    for (std::string n : { "c1", "c2", "c3" })
        home.run({ "vms", "create", n, "--source-machine-image", "mi2", "--memory", "64", "--cmdline", "who=" + n });
    auto c = home.json({ "vms", "describe", "c2", "--json" });
    CHECK(c["memory_mib"] == 64);
    CHECK(c["boot"]["cmdline"] == "who=c2");
    CHECK(c["metadata"]["k"] == "v");
    CHECK(c["source"] == "machine-image:mi2");
    CHECK(read_disk(*home.store(), "c3-disk-data", 0) == 'A');
    CHECK(read_disk(*home.store(), "c3-disk-data", 4096) == 'B');
    home.run({ "vms", "create", "c4", "--source-machine-image", "mi2", "--firmware", echo_fw }, EX_USAGE);
    CHECK(home.json({ "vms", "list", "--json" }).size() == 4);

    // Deleting the source VM and the images keeps what the clones use.
    home.run({ "vms", "delete", "src" });
    home.run({ "machine-images", "delete", "mi1" });
    CHECK(read_disk(*home.store(), "c1-disk-data", 0) == 'A');

    std::string archive = (home.path / "mi2.strata").string();
    home.run({ "machine-images", "export", "mi2", archive });
    Home other;
    // A corrupted copy imports nothing.
    std::string bad = (home.path / "bad.strata").string();
    fs::copy_file(archive, bad);
    {
        std::fstream f(bad, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(static_cast<std::streamoff>(fs::file_size(bad) / 3));
        f.put('\x7f');
    }
    auto r = other.run({ "machine-images", "import", "got", bad }, EX_DATAERR);
    CHECK(other.json({ "machine-images", "list", "--json" }).empty());
    other.run({ "machine-images", "import", "got", archive });
    auto got = other.json({ "machine-images", "describe", "got", "--json" });
    CHECK(got["disks"][0]["layers"].size() == 2);
    CHECK(got["boot"]["firmware"] == m2["boot"]["firmware"]);
    other.run({ "vms", "create", "there", "--source-machine-image", "got" });
    CHECK(read_disk(*other.store(), "there-disk-data", 4096) == 'B');
    other.run({ "vms", "start", "there" });
    CHECK(wait_for_text(other.json({ "vms", "describe", "there", "--json" })["serial_log"], "echo: ready"));
    other.run({ "vms", "stop", "there", "--force" });
}

TEST_CASE("machine images of a running VM")
{
    Home home;
    home.run({ "vms", "create", "live", "--firmware", echo_fw, "--disk", "size=4M,id=a", "--disk", "size=4M,id=b" });
    write_disk(*home.store(), "live-disk-a", 0, 'L');
    home.run({ "vms", "start", "live" });
    home.run({ "machine-images", "create", "snap1", "--source-vm", "live", "--labels", "kind=live" });
    home.run({ "machine-images", "create", "snap2", "--source-vm", "live" });
    CHECK(home.json({ "vms", "describe", "live", "--json" })["state"] == "running");
    auto m1 = home.json({ "machine-images", "describe", "snap1", "--json" });
    auto m2 = home.json({ "machine-images", "describe", "snap2", "--json" });
    CHECK(m1["labels"]["kind"] == "live");
    CHECK(m1["source_vm"]["name"] == "live");
    REQUIRE(m1["disks"].size() == 2);
    CHECK(m2["disks"][0]["layers"][0] == m1["disks"][0]["layers"][0]);
    home.run({ "machine-images", "create", "snap1", "--source-vm", "live" }, EX_CANTCREAT);
    home.run({ "vms", "create", "copy", "--source-machine-image", "snap1" });
    CHECK(read_disk(*home.store(), "copy-disk-a", 0) == 'L');
    home.run({ "vms", "start", "copy" });
    CHECK(wait_for_text(home.json({ "vms", "describe", "copy", "--json" })["serial_log"], "echo: ready"));
    home.run({ "vms", "stop", "copy", "--force" });
    home.run({ "vms", "stop", "live", "--force" });
}
