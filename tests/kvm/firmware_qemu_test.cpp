// Boots the firmware programs under Debian's QEMU (microvm, and q35 for
// virtio-pci) with KVM and asserts on their serial output and exit status. This
// is the outside check that the very same ELF files strata runs are correct PVH
// guests and correct virtio drivers; strata's own kvm tests boot them under
// strata. QEMU's isa-debug-exit turns the guest's exit value v into (v << 1) | 1;
// with -no-reboot a reset or a triple fault ends QEMU with status 0. One case
// runs cpuid under both VMMs, to hold strata's CPU template to QEMU's result.
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using strata::test::join_argv;
using strata::test::ProcessResult;
using strata::test::run_process;

namespace {

std::string const firmware_dir = STRATA_BUILD_DIR "/firmware";

using strata::test::TempDir;

std::vector<std::string> qemu(std::string const& machine, std::string const& program, std::string const& append)
{
    std::vector<std::string> argv { "qemu-system-x86_64", "-M", machine, "-enable-kvm", "-cpu",
        "max,-arch-capabilities", "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
        "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-no-reboot", "-m", "128",
        "-kernel", firmware_dir + "/" + program + ".elf" };
    if (!append.empty()) {
        argv.push_back("-append");
        argv.push_back(append);
    }
    return argv;
}

void add(std::vector<std::string>& argv, std::vector<std::string> const& more)
{
    argv.insert(argv.end(), more.begin(), more.end());
}

// A virtio-blk disk on QEMU's command line, either transport.
void add_disk(std::vector<std::string>& argv, bool pci, std::string const& id, std::string const& path, bool ro = false)
{
    std::string drive = "file=" + path + ",if=none,id=" + id + ",format=raw";
    drive += ro ? ",readonly=on" : ",aio=io_uring,cache=none";
    add(argv, { "-drive", drive, "-device",
        std::string(pci ? "virtio-blk-pci,disable-legacy=on" : "virtio-blk-device") + ",drive=" + id
            + ",serial=" + id });
}

std::vector<std::string> microvm_blk(std::string const& program, std::string const& append)
{
    auto argv = qemu("microvm,acpi=off", program, append);
    add(argv, { "-global", "virtio-mmio.force-legacy=false" });
    return argv;
}

ProcessResult run(std::vector<std::string> const& argv, std::chrono::milliseconds timeout = 90s)
{
    auto r = run_process(argv, timeout);
    INFO(join_argv(argv));
    REQUIRE(r);
    MESSAGE(join_argv(argv), "\n", r.value().out, r.value().describe());
    return r.value();
}

int guest_exit(int value) { return (value << 1) | 1; }

bool has(ProcessResult const& r, std::string const& s) { return r.out.find(s) != std::string::npos; }

} // namespace

TEST_CASE("hello prints its greeting and command line and exits 0")
{
    auto r = run(qemu("microvm", "hello", "foo=bar baz"));
    CHECK(r.exit_code == guest_exit(0));
    CHECK(has(r, "hello from strata firmware\n"));
    CHECK(has(r, "cmdline: foo=bar baz\n"));
}

TEST_CASE("smp starts every CPU the MADT lists")
{
    auto argv = qemu("microvm", "smp", "");
    add(argv, { "-smp", "2" });
    auto r = run(argv);
    CHECK(r.exit_code == guest_exit(0));
    CHECK(has(r, "cpus: 2\n"));
    CHECK(has(r, "acpi-madt"));
}

TEST_CASE("reboot resets the machine through the i8042")
{
    auto argv = qemu("microvm", "reboot", "");
    add(argv, { "-device", "i8042" }); // microvm has no keyboard controller by default
    auto r = run(argv);
    CHECK(r.exit_code == 0); // -no-reboot: the reset ends QEMU
    CHECK(has(r, "resetting through the i8042"));
    CHECK_FALSE(has(r, "FAIL"));
}

TEST_CASE("reboot exits 1 when nothing resets it")
{
    auto r = run(qemu("microvm", "reboot", ""));
    CHECK(r.exit_code == guest_exit(1));
    CHECK(has(r, "still running"));
}

TEST_CASE("fault triple-faults with ud2 and with a divide error")
{
    for (std::string how : { "ud2", "de" }) {
        auto r = run(qemu("microvm", "fault", "how=" + how));
        CHECK(r.exit_code == 0); // -no-reboot: the shutdown ends QEMU
        CHECK(has(r, "fault: triple fault by"));
        CHECK_FALSE(has(r, "still running"));
    }
}

TEST_CASE("cpuid reports a feature the CPU model hides")
{
    auto argv = qemu("microvm", "cpuid", "");
    for (auto& a : argv)
        if (a == "max,-arch-capabilities")
            a = "max,-arch-capabilities,-cx16";
    auto r = run(argv);
    CHECK(r.exit_code == guest_exit(0));
    CHECK(has(r, " cx16=0 "));
}

// The value cpuid printed for one feature ("name=0|1"), or -1 when absent.
int feature(std::string const& out, std::string const& name)
{
    auto at = out.find(" " + name + "=");
    if (at == std::string::npos || at + name.size() + 2 >= out.size())
        return -1;
    return out[at + name.size() + 2] - '0';
}

TEST_CASE("--cpu-template minimal hides under strata every feature QEMU's guest loses with the same -cpu flags")
{
    // A hypervisor may keep some CPUID bits whatever the VMM asks (this machine's
    // KVM keeps XSAVE and AVX visible to QEMU's guests too), so strata is held to
    // QEMU's result, feature by feature, and to CX16 outright.
    std::vector<std::string> const hidden { "cx16", "xsave", "xsaveopt", "xsavec", "xsaves", "avx", "avx2", "avx512f" };
    auto argv = qemu("microvm", "cpuid", "");
    std::string flags = "max,-arch-capabilities";
    for (auto const& f : hidden)
        flags += ",-" + f;
    for (auto& a : argv)
        if (a == "max,-arch-capabilities")
            a = flags;
    auto q = run(argv);
    REQUIRE(q.exit_code == guest_exit(0));
    auto s = run({ STRATA_BUILD_DIR "/strata", "run", "--firmware", firmware_dir + "/cpuid.elf", "--cpu-template", "minimal" });
    REQUIRE(s.exit_code == 0);
    CHECK(feature(s.out, "cx16") == 0);
    std::string kept;
    for (auto const& f : hidden) {
        INFO(f, ": qemu ", feature(q.out, f), ", strata ", feature(s.out, f));
        REQUIRE(feature(q.out, f) >= 0);
        if (feature(q.out, f) == 0)
            CHECK(feature(s.out, f) == 0);
        else
            kept += " " + f;
    }
    MESSAGE("features this hypervisor keeps visible to both VMMs' guests:", kept.empty() ? " none" : kept);
    // The host template changes nothing the CPU has.
    auto host = run({ STRATA_BUILD_DIR "/strata", "run", "--firmware", firmware_dir + "/cpuid.elf" });
    REQUIRE(host.exit_code == 0);
    CHECK(feature(host.out, "sse2") == 1);
}

TEST_CASE("blkcheck passes on virtio-mmio disks, read-write and read-only")
{
    TempDir dir;
    auto argv = microvm_blk("blkcheck", "transport=mmio disks=3");
    add_disk(argv, false, "disk-a", dir.file("a.raw", 32 << 20));
    add_disk(argv, false, "disk-b", dir.file("b.raw", 8 << 20));
    add_disk(argv, false, "disk-ro", dir.file("ro.raw", 4 << 20), true);
    auto r = run(argv);
    CHECK(r.exit_code == guest_exit(0));
    CHECK(has(r, "blkcheck: OK (3 disks)"));
    CHECK(has(r, "id=disk-a "));
    CHECK(has(r, "id=disk-ro sectors=8192 read-only refused-write ok"));
}

TEST_CASE("blkcheck passes on virtio-pci disks under q35, with BARs from the BIOS or its own")
{
    // SeaBIOS assigns the BARs before the PVH kernel runs; pci_bars=reset makes
    // the driver clear and place them itself, as it must without a BIOS.
    for (std::string bars : { "", " pci_bars=reset" }) {
        TempDir dir;
        auto argv = qemu("q35", "blkcheck", "transport=pci disks=2" + bars);
        add_disk(argv, true, "disk-a", dir.file("a.raw", 16 << 20));
        add_disk(argv, true, "disk-ro", dir.file("ro.raw", 4 << 20), true);
        auto r = run(argv);
        CHECK(r.exit_code == guest_exit(0));
        CHECK(has(r, "blkcheck: OK (2 disks)"));
        CHECK(has(r, "pci 00:"));
        CHECK(has(r, "BAR4 assigned 0xe000") == !bars.empty());
    }
}

TEST_CASE("blkcheck fails when a disk it was told about is missing")
{
    TempDir dir;
    auto argv = microvm_blk("blkcheck", "transport=mmio disks=2");
    add_disk(argv, false, "disk-a", dir.file("a.raw", 8 << 20));
    auto r = run(argv);
    CHECK(r.exit_code == guest_exit(3));
    CHECK(has(r, "found 1 disks, expected 2"));
}

TEST_CASE("seqwriter leaves consistent disks, and disks copied at different moments fail seqcheck")
{
    TempDir dir;
    auto a = dir.file("a.raw", 1 << 20);
    auto b = dir.file("b.raw", 1 << 20);
    auto seqwriter = [&](std::string const& append) {
        auto argv = microvm_blk("seqwriter", append);
        add_disk(argv, false, "d0", a);
        add_disk(argv, false, "d1", b);
        return run(argv);
    };
    auto r = seqwriter("rounds=200");
    CHECK(r.exit_code == guest_exit(0));
    CHECK(has(r, "seqwriter: round 99 maxgap_us "));
    CHECK(has(r, "seqwriter: round 199 maxgap_us "));
    CHECK(has(r, "seqwriter: done rounds 200"));
    std::string const seqcheck = STRATA_BUILD_DIR "/seqcheck";
    auto ok = run({ seqcheck, a, b });
    CHECK(ok.exit_code == 0);
    CHECK(has(ok, "highest round 199"));

    // Negative case: disk A copied now, disk B only after 100 more rounds.
    auto a_early = (dir.path / "a-early.raw").string();
    fs::copy_file(a, a_early);
    r = seqwriter("start=200 rounds=100");
    CHECK(r.exit_code == guest_exit(0));
    auto b_late = (dir.path / "b-late.raw").string();
    fs::copy_file(b, b_late);
    auto bad = run({ seqcheck, a_early, b_late });
    CHECK(bad.exit_code == 1);
    CHECK(has(bad, "differ by more than 1"));
    // The pair copied at the same moment still passes.
    CHECK(run({ seqcheck, a, b }).exit_code == 0);
}
