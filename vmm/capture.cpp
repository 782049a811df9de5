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

// Flushes, freezes and records one paused disk.
Status freeze_one(MachineDisks& disks, Store& store, std::size_t i, std::string const& snapshot_prefix, CapturedDisk& out)
{
    auto const& config = disks.config(i);
    Chain& chain = *disks.chain(i);
    STRATA_TRY(flush_sync(chain));
    STRATA_TRY(before, store.get(ObjectKind::Disk, config.store_disk));
    out.frozen_layers = before.layers;
    out.new_top = store.new_layer_id();
    STRATA_TRY(chain.freeze_top_and_push(store.layer_path(out.new_top), out.new_top));
    std::string snapshot = snapshot_prefix.empty() ? std::string() : snapshot_prefix + "-" + config.id;
    STRATA_TRY(store.record_push(config.store_disk, out.new_top, snapshot));
    return ok();
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

    if (auto ms = stagger_ms(); ms > 0) {
        // Test-only negative control: one disk at a time, with a gap between.
        auto start = Clock::now();
        for (auto& d : outcome.disks) {
            if (d.scratch)
                continue;
            disks.device(d.index).pause();
            Status s = freeze_one(disks, store, d.index, snapshot_prefix, d);
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
    Status status = ok();
    for (auto& d : outcome.disks) {
        if (d.scratch)
            continue;
        status = freeze_one(disks, store, d.index, snapshot_prefix, d);
        if (!status)
            break;
    }
    disks.resume_all();
    outcome.stall_us = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count());
    if (!status)
        return status.error().context("capture");
    return outcome;
}

} // namespace strata
