#include "vmm/capture.h"

#include "devices/virtio/blk/device.h"
#include "imaging/chain.h"
#include "imaging/store.h"
#include "vmm/machine_disks.h"

#include <chrono>
#include <cstdlib>
#include <thread>

namespace strata {

namespace {

using Clock = std::chrono::steady_clock;

std::uint64_t stagger_ms()
{
    char const* v = std::getenv("STRATA_TEST_CAPTURE_STAGGER_MS");
    return v ? std::strtoull(v, nullptr, 10) : 0;
}

// Flushes one paused disk and freezes its top under a new empty layer. Touches only
// that disk's chain, so disks run this in parallel.
Status freeze_one(MachineDisks& disks, Store const& store, std::size_t i, std::vector<LayerId> const& layers, CapturedDisk& out)
{
    Chain& chain = *disks.chain(i);
    STRATA_TRY(flush_sync(chain));
    out.frozen_layers = layers;
    out.new_top = store.new_layer_id();
    STRATA_TRY(chain.freeze_top_and_push(store.layer_path(out.new_top), out.new_top));
    return ok();
}

// Records a frozen disk's new chain (and its snapshot) in the store. The store is
// used by one thread at a time, so this runs disk after disk.
Status record_one(MachineDisks& disks, Store& store, std::string const& snapshot_prefix, CapturedDisk const& d)
{
    auto const& config = disks.config(d.index);
    std::string snapshot = snapshot_prefix.empty() ? std::string() : snapshot_prefix + "-" + config.id;
    return store.record_push(config.store_disk, d.new_top, snapshot);
}

} // namespace

Result<CaptureOutcome> capture_disks(MachineDisks& disks, Store& store, std::string const& snapshot_prefix)
{
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

    // The layer lists as they stand before the capture, read before the pause so
    // the store's manifest reads stay out of the stall.
    std::vector<std::vector<LayerId>> layers(disks.count());
    for (auto const& d : outcome.disks) {
        STRATA_TRY(manifest, store.get(ObjectKind::Disk, d.disk_name));
        layers[d.index] = manifest.layers;
    }

    if (auto ms = stagger_ms(); ms > 0) {
        // Test-only negative control: one disk at a time, with a gap between.
        auto start = Clock::now();
        for (auto& d : outcome.disks) {
            if (d.scratch)
                continue;
            disks.device(d.index).pause();
            Status s = freeze_one(disks, store, d.index, layers[d.index], d);
            if (s)
                s = record_one(disks, store, snapshot_prefix, d);
            disks.device(d.index).resume();
            if (!s)
                return s.error();
            std::this_thread::sleep_for(std::chrono::milliseconds(ms));
        }
        outcome.stall_us = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count());
        return outcome;
    }

    auto start = Clock::now();
    disks.pause_all();
    // Flush and freeze every disk at once, each on its own thread: the stall is then
    // the slowest disk's, not the sum. The store records follow, in order.
    std::vector<Status> results(outcome.disks.size(), ok());
    {
        std::vector<std::thread> workers;
        for (std::size_t k = 0; k < outcome.disks.size(); ++k) {
            auto& d = outcome.disks[k];
            if (d.scratch)
                continue;
            workers.emplace_back([&, k] { results[k] = freeze_one(disks, store, d.index, layers[d.index], d); });
        }
        for (auto& w : workers)
            w.join();
    }
    Status status = ok();
    for (std::size_t k = 0; k < outcome.disks.size() && status; ++k) {
        if (!results[k]) {
            status = results[k];
            break;
        }
        if (!outcome.disks[k].scratch)
            status = record_one(disks, store, snapshot_prefix, outcome.disks[k]);
    }
    disks.resume_all();
    outcome.stall_us = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count());
    if (!status)
        return status.error().context("capture");
    return outcome;
}

} // namespace strata
