// Differential memory snapshots (Machine::save_memory_and_state with diff, KVM
// dirty logging and the devices' dirty bits), proven with memwriter: a guest
// that fills 32 MiB with a known pattern and then rewrites a few pages every
// few milliseconds, checking the whole region against its own table of page
// generations. A Full snapshot, then, some rounds later, a Diff and a second
// Full in the same pause: the Diff must be a small fraction of the Full, and a
// machine restored from the first Full with the Diff laid over it must hold
// RAM identical to the second Full (same checksum over every non-zero page),
// and continue: memwriter's later checks pass.
#include "tests/support/memwriter_progress.h"
#include "tests/support/read_text.h"
#include "tests/support/temp_dir.h"
#include "vmm/machine.h"

#include <doctest/doctest.h>

#include <chrono>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <sys/stat.h>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>
#include <unistd.h>

using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

std::string const memwriter_elf = STRATA_BUILD_DIR "/firmware/memwriter.elf";

std::string slurp(fs::path const& p) { return strata::test::read_text(p); }
std::uint64_t last_ok(std::string const& log) { return strata::test::memwriter_last_ok(log); }

struct Running {
    std::unique_ptr<strata::Machine> machine;
    fs::path log;
    int fd { -1 };
    std::thread thread;

    Running(std::unique_ptr<strata::Machine> m, fs::path l, int log_fd)
        : machine(std::move(m))
        , log(std::move(l))
        , fd(log_fd)
    {
        thread = std::thread([this] { (void)machine->run(); });
    }
    ~Running()
    {
        machine->stop();
        thread.join();
        machine.reset();
        ::close(fd);
    }
    // Waits for a check at or past `round`; false on a failure or after 240 s (a
    // bound on a hang: guests inside the emulated machine on a loaded host took
    // over 60 s to get where hardware gets in under one).
    bool wait_ok(std::uint64_t round) const
    {
        auto const until = std::chrono::steady_clock::now() + 240s;
        while (std::chrono::steady_clock::now() < until) {
            auto const s = slurp(log);
            if (s.find("FAIL") != std::string::npos)
                return false;
            if (last_ok(s) >= round)
                return true;
            std::this_thread::sleep_for(5ms);
        }
        return false;
    }
    // Saves RAM to `memory` (the pages since the last save when diff) and the
    // state; the vCPUs must be paused.
    strata::Machine::SavedSnapshot save(fs::path const& memory, bool diff) const
    {
        auto saved = machine->save_memory_and_state(memory, diff);
        REQUIRE_MESSAGE(saved.has_value(), saved.error().message);
        return std::move(saved.value());
    }
    // Waits for `round`, pauses, and takes a Full snapshot to `memory`; returns
    // it and the last round memwriter checked before the pause. The vCPUs run
    // on after it.
    std::pair<strata::Machine::SavedSnapshot, std::uint64_t> full_after(std::uint64_t round, fs::path const& memory) const
    {
        REQUIRE_MESSAGE(wait_ok(round), slurp(log));
        machine->pause_vcpus();
        auto const at = last_ok(slurp(log));
        auto full = save(memory, false);
        machine->resume_vcpus();
        return { std::move(full), at };
    }
};

int open_log(fs::path const& p)
{
    int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    REQUIRE(fd >= 0);
    return fd;
}

std::uint64_t allocated_bytes(fs::path const& p)
{
    struct stat st {};
    REQUIRE(::stat(p.c_str(), &st) == 0);
    return static_cast<std::uint64_t>(st.st_blocks) * 512;
}

// Restores `state` over the memory `chain` in `dir` (its serial log
// restored.log), checks that its RAM is `full`'s, page for page (a Full saved
// before it runs), and that memwriter then checks past `round` without filling
// its region again (it continued, not rebooted).
void check_restored(strata::MachineConfig const& c, std::vector<std::byte> const& state, std::vector<strata::MemoryLayer> const& chain,
    fs::path const& dir, strata::Machine::SavedSnapshot const& full, std::uint64_t round)
{
    int log = open_log(dir / "restored.log");
    auto restored = strata::Machine::restore(c, strata::MachineIo { log, -1 }, state, chain);
    REQUIRE_MESSAGE(restored.has_value(), restored.error().message);
    restored.value()->start_paused();
    Running vm(std::move(restored.value()), dir / "restored.log", log);
    vm.machine->pause_vcpus();
    auto const again = vm.save(dir / "restored.mem", false);
    CHECK(again.memory.crc == full.memory.crc);
    CHECK(slurp(dir / "restored.mem") == slurp(full.memory.path));
    // And it runs on: memwriter checks every page again and again.
    vm.machine->resume_vcpus();
    CHECK_MESSAGE(vm.wait_ok(round), slurp(vm.log));
    CHECK(slurp(vm.log).find("memwriter: filled") == std::string::npos);
}

strata::MachineConfig config()
{
    strata::MachineConfig c;
    c.firmware = memwriter_elf;
    c.cmdline = "mb=32 touch=4 period_ms=2 check_every=10";
    c.memory_mib = 64;
    c.track_dirty_pages = true;
    return c;
}

} // namespace

TEST_CASE("a Diff snapshot holds only the pages written since the Full below it, and the two restore the RAM exactly")
{
    strata::test::TempDir tmp;
    fs::path const dir = tmp.path;
    int log1 = open_log(dir / "source.log");
    auto m = strata::Machine::create(config(), strata::MachineIo { log1, -1 });
    REQUIRE_MESSAGE(m.has_value(), m.error().message);
    strata::Machine::SavedSnapshot base, diff, full;
    std::uint64_t at_base = 0, at_diff = 0;
    {
        Running vm(std::move(m.value()), dir / "source.log", log1);
        std::tie(base, at_base) = vm.full_after(20, dir / "base.mem");
        REQUIRE_MESSAGE(vm.wait_ok(at_base + 50), slurp(vm.log));
        vm.machine->pause_vcpus();
        at_diff = last_ok(slurp(vm.log));
        diff = vm.save(dir / "diff.mem", true);
        // Nothing runs between the two: the second Full is the RAM the Diff ends at.
        full = vm.save(dir / "full.mem", false);
        vm.machine->resume_vcpus();
    }

    auto const diff_pages = strata::page_count(diff.memory.runs);
    auto const diff_bytes = allocated_bytes(dir / "diff.mem");
    auto const full_bytes = allocated_bytes(dir / "full.mem");
    INFO("diff: ", diff_pages, " pages in ", diff.memory.runs.size(), " runs, ", diff_bytes, " bytes allocated; full: ", full_bytes,
        " bytes allocated");
    MESSAGE("diff: ", diff_pages, " pages in ", diff.memory.runs.size(), " runs, ", diff_bytes, " bytes allocated; full: ", full_bytes,
        " bytes allocated");
    // 50+ rounds of 4 pages, the generation table and the stack: far below the
    // 32 MiB region every Full holds.
    CHECK(diff_pages >= 4 * (at_diff - at_base - 10));
    CHECK(full_bytes >= (32u << 20));
    CHECK(diff_bytes * 10 < full_bytes);

    // Base + Diff restore the RAM of the second Full, page for page.
    check_restored(config(), diff.state, { base.memory, diff.memory }, dir, full, at_diff + 30);

    // Without the Diff, the Full below it does not match the Diff's state.
    std::vector<strata::MemoryLayer> base_only { base.memory };
    auto refused = strata::Machine::restore(config(), strata::MachineIo { -1, -1 }, diff.state, base_only);
    CHECK_FALSE(refused.has_value());
}

TEST_CASE("over virtio-pci, memwriter's RAM restores exactly and its checks pass after the restore")
{
    // memwriter drives no virtio device itself, but every VM has a virtio
    // console: over --transport pci its function's configuration space, BAR and
    // MSI-X state are saved and restored with the RAM.
    strata::test::TempDir tmp;
    fs::path const dir = tmp.path;
    auto pci_config = [] {
        auto c = config();
        c.transport = strata::Transport::Pci;
        return c;
    };
    int log1 = open_log(dir / "source.log");
    auto m = strata::Machine::create(pci_config(), strata::MachineIo { log1, -1 });
    REQUIRE_MESSAGE(m.has_value(), m.error().message);
    strata::Machine::SavedSnapshot full;
    std::uint64_t at = 0;
    {
        Running vm(std::move(m.value()), dir / "source.log", log1);
        std::tie(full, at) = vm.full_after(20, dir / "full.mem");
    }
    check_restored(pci_config(), full.state, { full.memory }, dir, full, at + 30);
}
