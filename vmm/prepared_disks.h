// DiskPreparation: a stored VM's store disks opened ahead of the machine, on a
// thread of its own, while the VMM goes on with the rest of its start (the VM
// itself is made ahead the same way, prepared_vm.h).
//
// Why ahead of time: opening a store disk is a few small synchronous reads of
// every layer's header with O_DIRECT (so from the device, not the page cache),
// the store lock, the disk's manifest and the VM records, and, at a clone's
// first start, a new writable top made durable (fsyncs). Under load that was
// most of a restore's time (1-19 ms of 2-20 ms, measured inside the VMM), spent
// waiting for the device. Started as soon as the VMM knows its disks, the waits
// overlap its console relay, its API socket, the reading and checking of the
// saved state and memory, and the KVM VM's own preparation. MachineDisks takes
// the chain of each disk whose configuration it was opened for, and opens any
// other disk in line (which also meets, with its own context, a failure the
// preparation met).
//
// What it opens is what MachineDisks::attach would open at the same point of
// the start: open_store_disk (machine_disks.h), the store disk's layer chain,
// writable unless the disk is read-only. A lazily pulled disk is wrapped, and
// its fetchers started, by MachineDisks as before (those threads are filtered
// by seccomp; this one is not, see below). A start that is refused after the
// disks opened (a bad state or memory file) has made at most the empty
// writable top a disk gets at its first writable open, as a refusal after
// MachineDisks opened them did before; no byte the disk reads changes.
//
// Threading: start on the thread that will build the machine; take() on that
// same thread, once. The preparing thread has every signal blocked, runs
// unfiltered (a stored VM's VMM starts it, with the VM's preparation, before
// seccomp's spawner, as the main thread is unfiltered while it builds the
// machine) and ends once the disks are open. What take() hands over belongs to
// the caller.
#pragma once

#include "vmm/disk_config.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace strata {

class Chain;
class Store;

// What the preparation opened: the store (absent when no disk is a store
// disk or it could not be opened) and, for each disk of the configuration in
// order, its chain or nothing (not a store disk, or its open failed, or one
// before it did).
struct PreparedDisks {
    PreparedDisks();
    ~PreparedDisks();
    PreparedDisks(PreparedDisks&&) noexcept;
    PreparedDisks& operator=(PreparedDisks&&) noexcept;

    std::unique_ptr<Store> store;
    std::vector<DiskConfig> configs;        // what each chain was opened for
    std::vector<std::unique_ptr<Chain>> chains; // one per config, null where not opened

    // The chain opened for disk `index` when that disk's configuration opens
    // the same way (the store disk, read-only or not, cache mode, owner);
    // null otherwise. Each chain is handed over once.
    std::unique_ptr<Chain> take_chain(std::size_t index, DiskConfig const& config);
};

class DiskPreparation {
public:
    // Starts opening the store disks of `disks` in the store at `store_root`
    // on a thread of its own (start_thread, ThreadKind::Vmm).
    [[nodiscard]] static std::shared_ptr<DiskPreparation> start(std::string store_root, std::vector<DiskConfig> disks);
    ~DiskPreparation();
    DiskPreparation(DiskPreparation const&) = delete;
    DiskPreparation& operator=(DiskPreparation const&) = delete;

    // Waits for the thread and hands over what it opened; nullopt when taken
    // already.
    [[nodiscard]] std::optional<PreparedDisks> take();

    // Microseconds the opening took on its thread, and how long take() waited
    // for it.
    std::uint64_t prepare_us() const { return m_prepare_us; }
    std::uint64_t waited_us() const { return m_waited_us; }

private:
    DiskPreparation(std::string store_root, std::vector<DiskConfig> disks);
    void run();

    std::string m_store_root;
    std::vector<DiskConfig> m_disks;
    std::thread m_thread;
    std::optional<PreparedDisks> m_result; // written by the thread before it ends
    std::uint64_t m_prepare_us { 0 };
    std::uint64_t m_waited_us { 0 };
    bool m_taken { false };
};

} // namespace strata
