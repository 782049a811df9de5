#include "vmm/capture.h"
#include "base/thread.h"

#include "devices/virtio/blk/device.h"
#include "imaging/chain.h"
#include "store/manifest.h"
#include "store/store.h"
#include "vmm/machine_disks.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fcntl.h>
#include <optional>
#include <string>
#include <thread>
#include <unistd.h>

namespace strata {

namespace {

using Clock = std::chrono::steady_clock;

// How long the disks may take to drain their requests in flight.
constexpr std::chrono::milliseconds DrainDeadline { 10'000 };

#if STRATA_TEST_HOOKS
std::uint64_t env_ms(char const* name);

std::chrono::milliseconds drain_deadline()
{
    auto ms = env_ms("STRATA_TEST_CAPTURE_DRAIN_DEADLINE_MS");
    return ms > 0 ? std::chrono::milliseconds(ms) : DrainDeadline;
}

std::uint64_t env_ms(char const* name)
{
    char const* v = std::getenv(name);
    return v ? std::strtoull(v, nullptr, 10) : 0;
}

std::uint64_t stagger_ms()
{
    return env_ms("STRATA_TEST_CAPTURE_STAGGER_MS");
}

// Appends the point's name to STRATA_TEST_CAPTURE_POINTS and, with hold, waits
// STRATA_TEST_CAPTURE_HOLD_MS (capture.h): the synchronisation a test needs to
// kill the VMM at that point and nowhere else.
void reached(char const* point, bool hold = true)
{
    if (char const* file = std::getenv("STRATA_TEST_CAPTURE_POINTS"); file != nullptr) {
        int fd = ::open(file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0) {
            std::string line = std::string(point) + "\n";
            (void)!::write(fd, line.data(), line.size());
            ::close(fd);
        }
    }
    if (auto ms = env_ms("STRATA_TEST_CAPTURE_HOLD_MS"); hold && ms > 0)
        std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}
#else
std::chrono::milliseconds drain_deadline()
{
    return DrainDeadline;
}

std::uint64_t stagger_ms()
{
    return 0;
}

void reached(char const*, bool = true)
{
}
#endif

// Freezes one paused disk's top and adopts the new top prepared for it. No
// flush first: freezing checkpoints the whole map and syncs, which makes every
// completed write durable, and a journal flush before it would only add syncs to
// the stall. Touches only that disk's chain, so disks run this in parallel.
Status freeze_one(MachineDisks& disks, Store const& store, CapturedDisk const& d)
{
    return disks.chain(d.index)->freeze_top_and_adopt(store.layer_path(d.new_top));
}

std::string snapshot_name(MachineDisks& disks, std::string const& prefix, CapturedDisk const& d)
{
    return prefix + "-" + disks.config(d.index).id;
}

} // namespace

Result<CaptureOutcome> capture_disks(MachineDisks& disks, Store& store, std::string const& snapshot_prefix,
    std::function<Status()> const& while_paused, bool leave_paused)
{
    if (leave_paused && stagger_ms() > 0)
        return make_error(ErrorKind::Usage, "the capture stagger test hook cannot be combined with a suspend");
    if (while_paused && stagger_ms() > 0)
        return make_error(ErrorKind::Usage, "the capture stagger test hook cannot be combined with a memory capture");
    CaptureOutcome outcome;
    for (std::size_t i = 0; i < disks.count(); ++i) {
        auto const& config = disks.config(i);
        if (config.store_disk.empty() || disks.chain(i) == nullptr)
            return make_error(ErrorKind::Unsupported, "disk '" + config.id + "' is a host file; only store disks can be captured");
        if (config.read_only && !config.scratch)
            return make_error(ErrorKind::Unsupported, "disk '" + config.id + "' is attached read-only; capturing read-only disks is not supported yet");
        CapturedDisk d;
        d.index = i;
        d.disk_name = config.store_disk;
        d.scratch = config.scratch;
        outcome.disks.push_back(std::move(d));
    }

    // Every snapshot name must pass the store's own rules before anything is
    // paused: record_snapshot checks them again only after the freeze.
    if (!snapshot_prefix.empty()) {
        for (auto const& d : outcome.disks) {
            if (!d.scratch)
                STRATA_TRY(check_object_name(snapshot_name(disks, snapshot_prefix, d)));
            if (!d.scratch && store.get(ObjectKind::Snapshot, snapshot_name(disks, snapshot_prefix, d)))
                return make_error(ErrorKind::Exists, "a snapshot named '" + snapshot_name(disks, snapshot_prefix, d) + "' already exists");
        }
    }

    // The layer lists as they stand, and each disk's new top, made durable and
    // recorded while the VM still runs (Store::prepare_push): the stall is then
    // only the flush and the freeze.
    auto unprepare = [&](std::size_t upto) {
        for (std::size_t k = 0; k < upto; ++k) {
            if (!outcome.disks[k].scratch)
                (void)store.cancel_push(outcome.disks[k].disk_name, outcome.disks[k].new_top);
        }
    };
    for (std::size_t k = 0; k < outcome.disks.size(); ++k) {
        auto& d = outcome.disks[k];
        if (d.scratch)
            continue;
        auto manifest = store.get(ObjectKind::Disk, d.disk_name);
        auto top = manifest ? store.prepare_push(d.disk_name) : Result<LayerId>(manifest.error());
        if (!top) {
            unprepare(k);
            return top.error().context("capture: disk '" + d.disk_name + "'");
        }
        d.frozen_layers = manifest.value().layers;
        d.new_top = top.value();
    }

    reached("prepared");

    std::vector<Status> results(outcome.disks.size(), ok());
    auto start = Clock::now();
    if (auto ms = stagger_ms(); ms > 0) {
        // Test-only negative control: one disk at a time, with a gap between.
        for (std::size_t k = 0; k < outcome.disks.size(); ++k) {
            auto& d = outcome.disks[k];
            if (d.scratch)
                continue;
            disks.device(d.index).pause();
            results[k] = freeze_one(disks, store, d);
            disks.device(d.index).resume();
            std::this_thread::sleep_for(std::chrono::milliseconds(ms));
        }
    } else {
        // A disk whose host I/O hangs must not hold the API (and the guest's
        // other disks) for ever: past the deadline every queue runs again and the
        // capture fails with Timeout (504), having frozen nothing.
        if (auto paused = disks.pause_all_within(drain_deadline()); !paused) {
            unprepare(outcome.disks.size());
            return paused.error().context("capture");
        }
        reached("paused");
        if (while_paused) {
            if (auto r = while_paused(); !r) {
                disks.resume_all();
                unprepare(outcome.disks.size());
                return r.error();
            }
        }
        reached("freezing", false);
        // Flush and freeze every disk at once, each on its own thread: the stall
        // is then the slowest disk's, not the sum.
        std::vector<std::thread> workers;
        for (std::size_t k = 0; k < outcome.disks.size(); ++k) {
            if (!outcome.disks[k].scratch)
                workers.push_back(start_thread(ThreadKind::ApiWorker, "strata-capture", [&, k] { results[k] = freeze_one(disks, store, outcome.disks[k]); }));
        }
        for (auto& w : workers)
            w.join();
        bool const all_frozen = std::all_of(results.begin(), results.end(), [](Status const& r) { return r.has_value(); });
        if (!leave_paused || !all_frozen)
            disks.resume_all();
    }
    outcome.stall_us = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count());

    // A disk whose freeze failed keeps writing its old top: take its prepared top
    // back out of the store. The disks that froze keep their new tops (an extra
    // layer boundary, harmless), but the capture as a whole failed.
    std::optional<Error> failed;
    for (std::size_t k = 0; k < outcome.disks.size(); ++k) {
        if (results[k])
            continue;
        (void)store.cancel_push(outcome.disks[k].disk_name, outcome.disks[k].new_top);
        if (!failed)
            failed = results[k].error().context("capture: disk '" + outcome.disks[k].disk_name + "'");
    }
    if (failed)
        return *failed;
    if (!snapshot_prefix.empty()) {
        for (auto const& d : outcome.disks) {
            if (!d.scratch)
                STRATA_TRY(store.record_snapshot(snapshot_name(disks, snapshot_prefix, d), d.disk_name, d.frozen_layers));
        }
    }
    return outcome;
}

} // namespace strata
