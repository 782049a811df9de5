// Boots each firmware program under strata with real KVM and checks its serial
// output, strata's messages and the exit status; then feeds strata every kind of
// bad input the walking-skeleton issue names and checks the exit code and message.
#include "tests/support/emulated.h"
#include "tests/support/process.h"
#include "tests/support/strata_home.h"
#include "tests/support/temp_dir.h"

#include <doctest/doctest.h>

#include <cstring>
#include <elf.h>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <sysexits.h>
#include <unistd.h>
#include <vector>

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using strata::test::ProcessOptions;
using strata::test::ProcessResult;

namespace {

std::string const strata_bin = STRATA_BUILD_DIR "/strata";
std::string firmware(std::string const& name) { return STRATA_BUILD_DIR "/firmware/" + name + ".elf"; }

ProcessResult run(std::vector<std::string> args, std::vector<std::pair<std::string, std::string>> env = {}, std::optional<std::string> stdin_path = {})
{
    auto r = strata::test::run_strata({}, args, { std::move(env), std::move(stdin_path), 60s });
    REQUIRE_MESSAGE(r.has_value(), "could not spawn strata");
    INFO(strata::test::join_argv(args), "\n", r.value().describe(), "\nstdout:\n", r.value().out);
    REQUIRE_FALSE(r.value().timed_out);
    return r.value();
}

using strata::test::TempDir;

std::vector<char> slurp(std::string const& path)
{
    std::ifstream in(path, std::ios::binary);
    return std::vector<char>(std::istreambuf_iterator<char>(in), {});
}

void spit(fs::path const& path, std::vector<char> const& data)
{
    std::ofstream out(path, std::ios::binary);
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

bool contains(std::string const& haystack, std::string const& needle) { return haystack.find(needle) != std::string::npos; }

// Returns the hello program with its first PT_LOAD program header edited by fn.
std::vector<char> hello_with_phdr(void (*fn)(Elf64_Phdr&, std::vector<Elf64_Phdr>&))
{
    auto data = slurp(firmware("hello"));
    Elf64_Ehdr eh;
    std::memcpy(&eh, data.data(), sizeof eh);
    std::vector<Elf64_Phdr> phdrs(eh.e_phnum);
    std::memcpy(phdrs.data(), data.data() + eh.e_phoff, phdrs.size() * sizeof(Elf64_Phdr));
    for (auto& ph : phdrs) {
        if (ph.p_type == PT_LOAD) {
            fn(ph, phdrs);
            break;
        }
    }
    std::memcpy(data.data() + eh.e_phoff, phdrs.data(), phdrs.size() * sizeof(Elf64_Phdr));
    return data;
}

// Calls fn with the first PT_LOAD program header of an ELF64 image.
template<typename Fn>
void hello_with_phdr_visit(std::vector<char> const& data, Fn fn)
{
    Elf64_Ehdr eh;
    std::memcpy(&eh, data.data(), sizeof eh);
    for (unsigned i = 0; i < eh.e_phnum; ++i) {
        Elf64_Phdr ph;
        std::memcpy(&ph, data.data() + eh.e_phoff + i * sizeof ph, sizeof ph);
        if (ph.p_type == PT_LOAD) {
            fn(ph);
            return;
        }
    }
}

} // namespace

TEST_CASE("hello prints to the serial port and exits 0")
{
    auto r = run({ "run", "--firmware", firmware("hello"), "--cmdline", "answer=42 name=strata" });
    CHECK(r.exit_code == 0);
    CHECK(contains(r.out, "hello from strata firmware"));
    CHECK(contains(r.out, "answer=42 name=strata"));
    CHECK_FALSE(contains(r.out, "strata:")); // strata's own messages go to stderr only
}

TEST_CASE("only guest exit values 0-63 pass through, any other is EX_PROTOCOL, never a strata code or a signal")
{
    struct Case {
        std::string value;
        int status;
    };
    // 261 is 5 in its low byte: it must not pass as 5.
    std::vector<Case> const cases = { { "0", 0 }, { "5", 5 }, { "63", 63 }, { "64", 76 }, { "70", 76 }, { "130", 76 },
        { "143", 76 }, { "255", 76 }, { "261", 76 }, { "4294967295", 76 } };
    for (auto const& c : cases) {
        auto r = run({ "run", "--firmware", firmware("hello"), "--cmdline", "exit=" + c.value });
        INFO("exit=", c.value, ": ", r.err);
        CHECK(r.exit_code == c.status);
        if (c.status == 76)
            CHECK(contains(r.err, "outside 0-63"));
    }
}

TEST_CASE("two VMs in a row on one strata layer file: the second is not refused as busy")
{
    // A VMM's layer lock must be gone when it exits, even while the kernel still
    // holds the file through io_uring's deferred teardown; a user who stops a VM
    // and starts it again, or a script that runs VMs in turn, depends on it.
    TempDir dir;
    std::string disk = (dir.path / "s.strata").string();
    REQUIRE(run({ "img", "create", "-f", "strata", disk, "8M" }).exit_code == 0);
    for (int i = 0; i < 5; ++i) {
        CAPTURE(i);
        auto r = run({ "run", "--firmware", firmware("hello"), "--disk", "path=" + disk + ",format=strata" });
        INFO(r.err);
        CHECK(r.exit_code == 0);
        CHECK(contains(r.out, "hello from strata firmware"));
    }
}

TEST_CASE("smp starts every vCPU the ACPI MADT lists")
{
    for (int n : { 1, 2, 4 }) {
        auto r = run({ "run", "--firmware", firmware("smp"), "--vcpus", std::to_string(n) });
        CHECK(r.exit_code == 0);
        CHECK(contains(r.out, "cpus: " + std::to_string(n) + "\n"));
    }
}

TEST_CASE("reboot exits 0 by default and restarts with --on-reboot restart")
{
    auto r = run({ "run", "--firmware", firmware("reboot") });
    CHECK(r.exit_code == 0);
    CHECK(contains(r.err, "guest reset"));

    // With restart the guest resets forever; strata must boot it again each time.
    // The VM is killed once the guest has said it resets a second time: those two
    // boots are what is checked. Letting it restart for a fixed time made a new VM
    // many times a second, and inside the emulated machine 30 s of that stopped
    // the machine itself (no heartbeat for 60 s, twice in a row, in two CI-like
    // runs). The timeout only bounds a VM that never restarts.
    auto count_boots = [](std::string const& out) {
        std::size_t boots = 0;
        for (auto at = out.find("resetting"); at != std::string::npos; at = out.find("resetting", at + 1))
            ++boots;
        return boots;
    };
    ProcessOptions options;
    options.argv = { strata_bin, "run", "--firmware", firmware("reboot"), "--on-reboot", "restart" };
    options.timeout = 60s;
    options.stop_when = [&](std::string const& out, std::string const&) { return count_boots(out) >= 2; };
    auto restarted = strata::test::run_process(options);
    REQUIRE(restarted.has_value());
    CHECK(restarted.value().stopped);
    CHECK(count_boots(restarted.value().out) >= 2);
    CHECK(contains(restarted.value().err, "restarting"));
}

TEST_CASE("a triple fault is a reset, reported with registers: exit 0 with --on-reboot exit")
{
    auto r = run({ "run", "--firmware", firmware("fault") });
    CHECK(r.exit_code == 0);
    CHECK(contains(r.out, "fault: triple fault by"));
    CHECK(contains(r.err, "reset by a triple fault"));
    CHECK(contains(r.err, "rip="));
    CHECK(contains(r.err, "cr0="));
}

TEST_CASE("a guest with the runtime's exception handlers reports the exception instead of triple-faulting")
{
    // What seqwriter installs, so that a fault in a test guest says where it was.
    auto ud = run({ "run", "--firmware", firmware("fault"), "--cmdline", "traps=1" });
    INFO(ud.out, ud.err);
    CHECK(ud.exit_code == 62);
    CHECK(contains(ud.out, "fault: FAIL: exception 6 error 0x0 at rip 0x"));
    auto de = run({ "run", "--firmware", firmware("fault"), "--cmdline", "traps=1 how=de" });
    INFO(de.out, de.err);
    CHECK(de.exit_code == 62);
    CHECK(contains(de.out, "fault: FAIL: exception 0 error 0x0 at rip 0x"));
    CHECK_FALSE(contains(de.err, "triple fault"));
}

TEST_CASE("serial input reaches the guest from a file and from a pipe")
{
    TempDir dir;
    auto input = dir.path / "input.txt";
    spit(input, { 'a', 'b', 'c', '\n', 'q' });
    auto r = run({ "run", "--firmware", firmware("echo") }, {}, input.string());
    CHECK(r.exit_code == 0);
    CHECK(contains(r.out, "echo: ready\nabc\n"));
    CHECK(contains(r.out, "echo: bye"));

    // A pipe whose writer is slower than the guest. The limit is for a hang:
    // inside the emulated machine on a loaded host this run passed 30 s.
    ProcessOptions options;
    options.argv = { "/bin/sh", "-c", "(sleep 0.3; printf xyz; sleep 0.2; printf q) | " + strata_bin + " run --firmware " + firmware("echo") };
    options.timeout = strata::test::in_emulated_machine() ? std::chrono::milliseconds(180s) : std::chrono::milliseconds(30s);
    auto piped = strata::test::run_process(options);
    REQUIRE(piped.has_value());
    CHECK(piped.value().exit_code == 0);
    CHECK(contains(piped.value().out, "xyz"));
}

TEST_CASE("stdin at end of file leaves the guest running until a signal stops it")
{
    // The signal goes once the guest has said it is ready (and a second later, with
    // stdin long at its end), not after a fixed sleep: inside the emulated machine on
    // a loaded host strata was seen not started yet after a second, so the signal
    // ended it before it had run anything. The wait is bounded (120 s).
    ProcessOptions options;
    options.argv = { "/bin/sh", "-c",
        "out=$(mktemp) err=$(mktemp); " + strata_bin + " run --firmware " + firmware("echo")
            + " </dev/null >\"$out\" 2>\"$err\" & pid=$!; i=0; "
              "while ! grep -q 'echo: ready' \"$out\" && [ $i -lt 1200 ]; do sleep 0.1; i=$((i + 1)); done; "
              "sleep 1; kill -TERM $pid; wait $pid; rc=$?; cat \"$out\"; cat \"$err\" >&2; rm -f \"$out\" \"$err\"; exit $rc" };
    options.timeout = 180s;
    auto r = strata::test::run_process(options);
    REQUIRE(r.has_value());
    CHECK(r.value().exit_code == 128 + 15);
    CHECK(contains(r.value().out, "echo: ready"));
    CHECK(contains(r.value().err, "stopped by"));
}

TEST_CASE("bad input: usage errors exit EX_USAGE with a message")
{
    auto r = run({ "run", "--firmware", firmware("hello"), "--no-such-flag" });
    CHECK(r.exit_code == EX_USAGE);
    CHECK(contains(r.err, "--no-such-flag"));

    r = run({ "run", "--firmware", firmware("hello"), "--vcpus", "0" });
    CHECK(r.exit_code == EX_USAGE);
    CHECK(contains(r.err, "--vcpus"));

    r = run({ "run", "--firmware", firmware("hello"), "--memory", "2" });
    CHECK(r.exit_code == EX_USAGE);
    CHECK(contains(r.err, "too small"));

    r = run({ "run", "--firmware", firmware("hello"), "--memory", "1048576" });
    CHECK(r.exit_code == EX_USAGE);
    CHECK(contains(r.err, "memory"));

    r = run({ "run", "--firmware", firmware("hello"), "--memory", "2000000" });
    CHECK(r.exit_code == EX_USAGE);
    CHECK(contains(r.err, "limit"));

    r = run({ "run" });
    CHECK(r.exit_code == EX_USAGE);

    r = run({ "run", "--firmware", firmware("hello"), "--on-reboot", "sometimes" });
    CHECK(r.exit_code == EX_USAGE);
}

TEST_CASE("bad input: missing KVM is EX_UNAVAILABLE and says so")
{
    auto r = run({ "run", "--firmware", firmware("hello") }, { { "STRATA_KVM_DEVICE", "/nonexistent/kvm" } });
    CHECK(r.exit_code == EX_UNAVAILABLE);
    CHECK(contains(r.err, "no KVM"));
}

TEST_CASE("bad input: firmware files")
{
    TempDir dir;
    auto r = run({ "run", "--firmware", (dir.path / "missing.elf").string() });
    CHECK(r.exit_code == EX_NOINPUT);
    CHECK(contains(r.err, "missing.elf"));
    CHECK(contains(r.err, "No such file"));

    auto text = dir.path / "text.elf";
    spit(text, { 'h', 'e', 'l', 'l', 'o' });
    r = run({ "run", "--firmware", text.string() });
    CHECK(r.exit_code == EX_DATAERR);
    CHECK(contains(r.err, "not an ELF file"));

    auto truncated = dir.path / "truncated.elf";
    // Cut the file in the middle of its loadable segment.
    std::uint64_t cut = 0;
    auto data = hello_with_phdr([](Elf64_Phdr&, std::vector<Elf64_Phdr>&) {});
    hello_with_phdr_visit(data, [&](Elf64_Phdr const& ph) { cut = ph.p_offset + ph.p_filesz / 2; });
    REQUIRE(cut > 0);
    data.resize(cut);
    spit(truncated, data);
    r = run({ "run", "--firmware", truncated.string() });
    CHECK(r.exit_code == EX_DATAERR);
    CHECK(contains(r.err, "truncated"));

    auto outside = dir.path / "outside.elf";
    spit(outside, hello_with_phdr([](Elf64_Phdr& ph, std::vector<Elf64_Phdr>&) { ph.p_paddr = 0x7f000000; }));
    r = run({ "run", "--firmware", outside.string(), "--memory", "64" });
    CHECK(r.exit_code == EX_DATAERR);
    CHECK(contains(r.err, "outside guest memory"));

    auto low = dir.path / "low.elf";
    spit(low, hello_with_phdr([](Elf64_Phdr& ph, std::vector<Elf64_Phdr>&) { ph.p_paddr = 0x1000; }));
    r = run({ "run", "--firmware", low.string() });
    CHECK(r.exit_code == EX_DATAERR);
    CHECK(contains(r.err, "boot area"));

    auto overlap = dir.path / "overlap.elf";
    spit(overlap, hello_with_phdr([](Elf64_Phdr& ph, std::vector<Elf64_Phdr>& all) {
        // Turn the note's program header into a second PT_LOAD on top of the first.
        for (auto& other : all) {
            if (&other != &ph) {
                other.p_type = PT_LOAD;
                other.p_paddr = ph.p_paddr + 0x10;
                break;
            }
        }
    }));
    r = run({ "run", "--firmware", overlap.string() });
    CHECK(r.exit_code == EX_DATAERR);
    CHECK(contains(r.err, "overlap"));

    auto past = dir.path / "past.elf";
    spit(past, hello_with_phdr([](Elf64_Phdr& ph, std::vector<Elf64_Phdr>&) { ph.p_offset = 1ull << 40; }));
    r = run({ "run", "--firmware", past.string() });
    CHECK(r.exit_code == EX_DATAERR);
    CHECK(contains(r.err, "past the end"));
}
