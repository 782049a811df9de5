// The memory of running-state machine images, on the VMM's side: a capture
// writes the image's folder (<store>/machine-state/<image>: "state", its own
// memory layer "memory", the layers below it and "memory.json";
// store/memory_chain.h), and a restore reads such a folder back as the list of
// memory files Machine::restore lays over one another.
//
// Differential captures: the first memory capture of a running VM writes a
// whole memory file and starts dirty page tracking (KVM's log for what the
// vCPUs write, the devices' GuestMemory bits for what the VMM writes: rings,
// buffers, config), so the next capture of the same VM writes only the pages
// written since, over hard links to the earlier capture's layers. The caller
// (VmmController) keeps the last capture's folder and chain.
// Threading: called on the API worker with the machine's vCPUs parked and its
// disk queues held (save_image_memory), or before any (the rest).
#pragma once

#include "base/result.h"
#include "store/memory_chain.h"
#include "vmm/memory_file.h"

#include <filesystem>
#include <optional>
#include <span>
#include <vector>

namespace strata {

class Machine;

// The memory of a machine image this VMM captured: its folder and chain.
struct ImageMemory {
    std::filesystem::path dir;
    std::vector<MemoryChainLayer> chain;
};

// Before the cut: hard-links every layer of `previous` into `dir` as
// "memory-<id>" and returns them as the folder will name them. Empty (and
// nothing left in `dir`) when one of them cannot be linked or `previous.dir`
// no longer holds that chain, e.g. because its image was deleted meanwhile
// (and perhaps another made under its name): the capture is then a whole one.
std::vector<MemoryChainLayer> link_previous_layers(ImageMemory const& previous, std::filesystem::path const& dir);

// In the cut: starts dirty page tracking if the machine has none yet, writes
// the machine's state ("state") and its memory ("memory": the pages written
// since the last save laid over `below` when it is non-empty, else a whole
// file) and then "memory.json" into `dir`. Returns the folder's chain. Either
// way the dirty log starts again here, so on failure the caller must make the
// next capture a whole one.
[[nodiscard]] Result<std::vector<MemoryChainLayer>> save_image_memory(Machine& machine, std::filesystem::path const& dir,
    std::vector<MemoryChainLayer> below);

// The memory files of the state folder `dir` (absolute paths, bottom first),
// or nullopt for a folder with one whole "memory" and no chain.
[[nodiscard]] Result<std::optional<std::vector<MemoryLayer>>> memory_layers_of(std::filesystem::path const& dir);

// Checks a saved machine as an import must before anything enters the store:
// the state decodes (magic, version, CRC) and says `memory_bytes` of RAM, each
// layer file of `dir` is that large with its recorded checksum, and the top
// one's is the state's. BadInput on any mismatch.
[[nodiscard]] Status check_state_folder(std::filesystem::path const& dir, std::uint64_t memory_bytes);

} // namespace strata
