// Crash-consistent capture of every disk of a running VM at one instant: the
// operation behind `PUT /snapshot/disks` and `PUT /machine-images`.
//
// The sequence (DESIGN.md, Processes): while the VM runs, make each disk's new
// empty top layer and record it in the store above the top being written
// (Store::prepare_push; the durable file and manifest work stays out of the
// stall). Then stop taking new requests from every virtio-blk queue and wait for
// the requests in flight (MachineDisks::pause_all), flush and freeze each disk's
// top and adopt the prepared one, all disks in parallel, and resume the queues.
// Snapshot or machine-image manifests are written after resuming, since by then
// the frozen layers can no longer change. A VMM killed between the record and
// the freeze leaves manifests that Store::open_disk completes without loss (the
// queues were held, so the new tops are empty). The stall is measured from the
// first pause request to the last resume.
//
// Test hooks, compiled in only when the build has STRATA_TEST_HOOKS (the
// default build, which CI tests; not the release preset), and read from the
// environment:
// - STRATA_TEST_CAPTURE_STAGGER_MS turns the capture into a deliberately
//   inconsistent one (each disk paused, frozen and resumed on its own, with that
//   many milliseconds between disks), the negative control that the seqwriter
//   checker must catch, for snapshots and machine images alike;
// - STRATA_TEST_CAPTURE_POINTS names a file to which the capture appends a line
//   at each point a SIGKILL test aims at: `prepared` (every new top recorded in
//   the store, nothing frozen yet) and `paused` (every queue held, nothing
//   frozen yet); STRATA_TEST_CAPTURE_HOLD_MS makes it wait that long after each,
//   so that a test that saw the line can kill the VMM there. A `freezing` line
//   (no wait) marks the end of the pause's hold: a VMM killed before writing it
//   had frozen nothing.
// - The disks get 10 s to drain their requests in flight; past that every queue
//   runs again and the capture fails with Timeout (504), nothing frozen.
//   STRATA_TEST_CAPTURE_DRAIN_DEADLINE_MS shortens the deadline, and
//   STRATA_TEST_BLK_DRAIN_STALL_MS makes each disk's I/O thread take that long
//   over its first drain, as a hung host I/O would.
// Threading: runs on the API's worker thread while vCPUs and disk I/O threads run.
#pragma once

#include "base/result.h"
#include "imaging/layer/layer_format.h"

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace strata {

class MachineDisks;
class Store;

struct CapturedDisk {
    std::size_t index;                 // in MachineDisks
    std::string disk_name;             // the store disk
    std::vector<LayerId> frozen_layers; // bottom..top, all frozen: the captured data
    LayerId new_top;                   // the disk's new writable top
    bool scratch { false };            // scratch disks are not frozen: frozen_layers is empty
};

struct CaptureOutcome {
    std::vector<CapturedDisk> disks;
    std::uint64_t stall_us { 0 };
};

// Captures every disk. snapshot_prefix, if not empty, also records one store
// snapshot per disk named "<prefix>-<disk id>". Host-file disks, a snapshot
// name the store refuses and a snapshot name already taken all fail before
// anything is paused or prepared: a refused capture changes nothing.
// while_paused, if given, runs while every queue is held and before any disk is
// frozen (a running-state capture saves memory and device state there, in the
// same cut); if it fails, nothing is frozen, the prepared tops are taken back and
// its error returned. It cannot be combined with the stagger test hook (Usage).
// leave_paused: on success the queues stay held (a suspend, which ends the VM
// next: requests the guest posted before the cut must not reach the disks after
// it); on failure they are resumed as always.
[[nodiscard]] Result<CaptureOutcome> capture_disks(MachineDisks& disks, Store& store, std::string const& snapshot_prefix,
    std::function<Status()> const& while_paused = {}, bool leave_paused = false);

} // namespace strata
