#include "vmm/image_memory.h"

#include "base/fd.h"
#include "base/file.h"
#include "vmm/machine.h"
#include "vmm/machine_state.h"

#include <fcntl.h>
#include <unistd.h>

namespace strata {

std::vector<MemoryChainLayer> link_previous_layers(ImageMemory const& previous, std::filesystem::path const& dir)
{
    // The folder must still be that capture's: its image may have been deleted
    // and another made under the same name since. Asked before and after the
    // links, so that the files linked are the chain's.
    auto same_chain = [&] {
        auto chain = read_memory_chain(previous.dir);
        return chain && chain.value() && *chain.value() == previous.chain;
    };
    if (!same_chain())
        return {};
    std::vector<MemoryChainLayer> linked;
    for (auto layer : previous.chain) {
        std::error_code ec;
        auto const to = dir / ("memory-" + layer.id);
        std::filesystem::create_hard_link(previous.dir / layer.file, to, ec);
        if (ec) {
            for (auto const& l : linked)
                std::filesystem::remove(dir / l.file, ec);
            return {};
        }
        layer.file = to.filename().string();
        linked.push_back(std::move(layer));
    }
    if (!same_chain()) {
        std::error_code ec;
        for (auto const& l : linked)
            std::filesystem::remove(dir / l.file, ec);
        return {};
    }
    return linked;
}

Result<std::vector<MemoryChainLayer>> save_image_memory(Machine& machine, std::filesystem::path const& dir,
    std::vector<MemoryChainLayer> below)
{
    STRATA_TRY(machine.start_dirty_tracking());
    STRATA_TRY(id, new_memory_layer_id());
    bool const diff = !below.empty();
    STRATA_TRY(saved, machine.save_memory_and_state(dir / "memory", diff));
    STRATA_TRY(write_new_file((dir / "state").string(), saved.state));
    below.push_back(MemoryChainLayer { id, "memory", saved.memory.crc, diff, std::move(saved.memory.runs) });
    STRATA_TRY(write_memory_chain(dir, below));
    return below;
}

Result<std::optional<std::vector<MemoryLayer>>> memory_layers_of(std::filesystem::path const& dir)
{
    STRATA_TRY(chain, read_memory_chain(dir));
    if (!chain)
        return std::optional<std::vector<MemoryLayer>> {};
    std::vector<MemoryLayer> layers;
    for (auto& l : *chain)
        layers.push_back(MemoryLayer { dir / l.file, l.crc, l.diff, std::move(l.runs) });
    return std::optional { std::move(layers) };
}

Status check_state_folder(std::filesystem::path const& dir, std::uint64_t memory_bytes)
{
    STRATA_TRY(bytes, read_file((dir / "state").string(), "machine state", max_machine_state_bytes));
    auto state = decode_machine_state(bytes);
    if (!state)
        return state.error().context("state file '" + (dir / "state").string() + "'");
    if (state.value().memory_bytes != memory_bytes)
        return make_error(ErrorKind::BadInput, "the saved state has " + std::to_string(state.value().memory_bytes >> 20)
                + " MiB of RAM, the image's machine " + std::to_string(memory_bytes >> 20) + " MiB");
    STRATA_TRY(chain, memory_layers_of(dir));
    std::vector<MemoryLayer> layers = chain ? std::move(*chain)
                                            : std::vector<MemoryLayer> { MemoryLayer { dir / "memory", state.value().memory_crc, false, {} } };
    if (layers.back().crc != state.value().memory_crc)
        return make_error(ErrorKind::BadInput, "the memory files do not match the saved state (checksum differs)");
    STRATA_TRY(files, open_memory_layers(layers, memory_bytes));
    (void)files;
    return ok();
}

} // namespace strata
