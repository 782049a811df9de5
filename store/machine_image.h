// Machine images ($STRATA_HOME/machine-images/<name>.json): a VM's configuration
// and every disk, captured at one crash-consistent instant. The record holds the
// machine spec (vm_record.h: vCPUs, memory, boot artifacts by digest, cmdline),
// each disk's mapping (id, read-only, boot, cache, scratch, size) with its frozen
// layer IDs bottom..top and a user-visible layer name
// "<image>-disk-<id>-YYYY-MM-DD[-NN]", the image's description and labels, the
// source VM's name, labels and metadata, the capture time, the stall, and whether
// the image is generalized. Not captured: guest memory (unless "running",
// below), the VM's name and API socket, and scratch disks' data (their mapping
// and size are kept, no layers).
//
// Successive images of one VM share layers: a capture freezes each disk's top
// layer and pushes a new empty one, so the next capture's chain repeats the
// earlier frozen layers and adds only the layer written since (differential).
// The store's garbage collection counts every layer a machine image names
// (machine_image_layer_refs, called by Store::gc_locked), so deleting a VM, a
// disk or another image never removes them; deleting a machine image removes
// only the layers nothing else names.
//
// Atomicity: a machine image is its record file, written last and atomically
// (temp + fsync + rename + directory fsync) after every layer it names is checked
// to exist and be frozen; a crash at any earlier point leaves no record, and the
// layers frozen so far stay referenced by their disks (or, unreferenced, are
// collected), so the store is consistent whatever instant the crash hit.
//
// Threading: value types and pure functions; the store functions take or require
// the record lock (record_files.h) and may run in any thread of any process.
#pragma once

#include "imaging/layer/layer_format.h"
#include "store/vm_record.h"

#include <filesystem>
#include <set>

namespace strata {

struct MachineImageDisk {
    std::string id;
    bool read_only { false };
    bool boot { false };
    bool scratch { false };
    std::string cache { "none" };
    std::uint64_t size { 0 };      // bytes
    std::vector<LayerId> layers;   // bottom..top, all frozen; empty for a scratch disk
    std::string layer_name;        // "<image>-disk-<id>-YYYY-MM-DD[-NN]"; empty for scratch
};

struct SourceVmInfo {
    std::string name;
    std::map<std::string, std::string> labels;
    std::map<std::string, std::string> metadata;
    std::string instance_id; // a VM from a specialized image keeps it
};

struct MachineImageRecord {
    std::string name;
    MachineSpec spec;
    std::vector<MachineImageDisk> disks;
    std::string description;
    std::map<std::string, std::string> labels;
    SourceVmInfo source_vm;
    std::string created;          // capture time, UTC ISO 8601
    std::uint64_t stall_us { 0 }; // how long the guest's disk queues were held (0: VM was stopped)
    // The record says "os_state": "generalized" | "specialized" (Azure's two kinds)
    // next to the boolean. A VM from a generalized image must be given
    // provisioning data and gets a new instance id; one from a specialized image
    // keeps the source VM's.
    bool generalized { false };
    std::string source;           // "vm:NAME" when captured, "import" when imported
    // Only for a capture with --guest-flush: "quiesced" (the guest agent froze its
    // file systems for the capture) or "not-quiesced: <reason>" (crash-consistent
    // only). Empty otherwise.
    std::string guest_flush;
    // "state": "running" — the image also holds the VM's memory and device state
    // (machine_state_dir), captured in the same cut as its disks; "stopped" (the
    // default, and what older records mean) — disks only.
    bool running { false };
};

// Where a running-state image keeps its state file ("state") and its memory
// layers ("memory", the ones below it and "memory.json"; store/memory_chain.h):
// <store>/machine-state/<image>.
std::filesystem::path machine_state_dir(std::string const& store_root, std::string const& image);

[[nodiscard]] Status check_machine_image(MachineImageRecord const& m);
nlohmann::json machine_image_json(MachineImageRecord const& m);
std::string encode_machine_image(MachineImageRecord const& m);
[[nodiscard]] Result<MachineImageRecord> parse_machine_image(std::string_view text);
[[nodiscard]] Result<MachineImageRecord> parse_machine_image_json(nlohmann::json const& j);

// Records a captured machine image: checks the record, that the name is free,
// that every layer it names exists and is frozen and every boot artifact is
// stored; fills created (if empty) and each non-scratch disk's layer_name (if
// empty); then writes the record atomically. Takes the record lock exclusively:
// the caller must not hold a Store lock (none is held between Store calls).
// This is what `strata vmm` calls after capture_disks (vmm/capture.h) froze the
// disks; vmm/vm_config.h builds the record from the capture.
[[nodiscard]] Status record_machine_image(Store& store, MachineImageRecord const& record);
[[nodiscard]] Status record_machine_image(RecordLock const& held, MachineImageRecord record);

// Whether record_machine_image would take `name`: a valid store name (Usage) that
// no machine image has (Exists). A live capture asks this before it freezes any
// disk, so that a refused name changes nothing; record_machine_image checks
// again under its lock. Takes the record lock shared.
[[nodiscard]] Status check_machine_image_name_free(Store& store, std::string const& name);

[[nodiscard]] Result<MachineImageRecord> load_machine_image(RecordLock const& held, std::string const& name);
[[nodiscard]] Result<std::vector<MachineImageRecord>> list_machine_images(RecordLock const& held);

// The layer IDs (as strings) every machine image names. For Store's garbage
// collection, which calls it under the Store's own exclusive lock — so it takes
// no lock itself. An unreadable record is an error (never guess).
[[nodiscard]] Result<std::set<std::string>> machine_image_layer_refs(std::string const& store_root);

// The next free "<image>-disk-<id>-YYYY-MM-DD[-NN]" among the machine images'.
std::string next_layer_name(std::vector<MachineImageRecord> const& existing, std::string const& image, std::string const& id,
    std::string const& date);

} // namespace strata
