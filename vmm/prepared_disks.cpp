#include "vmm/prepared_disks.h"

#include "base/thread.h"
#include "imaging/chain.h"
#include "store/store.h"
#include "vmm/machine_disks.h"

#include <chrono>
#include <csignal>
#include <pthread.h>

namespace strata {

PreparedDisks::PreparedDisks() = default;
PreparedDisks::~PreparedDisks() = default;
PreparedDisks::PreparedDisks(PreparedDisks&&) noexcept = default;
PreparedDisks& PreparedDisks::operator=(PreparedDisks&&) noexcept = default;

std::unique_ptr<Chain> PreparedDisks::take_chain(std::size_t index, DiskConfig const& config)
{
    if (index >= chains.size() || !chains[index])
        return nullptr;
    auto const& opened = configs[index];
    // The fields open_store_disk reads: anything else (the id, rate limits) is
    // the device's, not the chain's.
    if (opened.store_disk != config.store_disk || opened.read_only != config.read_only || opened.cache != config.cache
        || opened.owner_vm != config.owner_vm)
        return nullptr;
    return std::move(chains[index]);
}

DiskPreparation::DiskPreparation(std::string store_root, std::vector<DiskConfig> disks)
    : m_store_root(std::move(store_root))
    , m_disks(std::move(disks))
{
}

std::shared_ptr<DiskPreparation> DiskPreparation::start(std::string store_root, std::vector<DiskConfig> disks)
{
    auto preparation = std::shared_ptr<DiskPreparation>(new DiskPreparation(std::move(store_root), std::move(disks)));
    DiskPreparation* self = preparation.get();
    // Every signal blocked in it, as in the VM's preparation (prepared_vm.cpp):
    // the main thread reads SIGTERM and SIGINT from a signalfd.
    sigset_t all, before;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &before);
    // The thread only writes m_result and m_prepare_us; take() reads them after join.
    self->m_thread = start_thread(ThreadKind::Vmm, "strata-prepdisk", [self] { self->run(); });
    pthread_sigmask(SIG_SETMASK, &before, nullptr);
    return preparation;
}

void DiskPreparation::run()
{
    auto const began = std::chrono::steady_clock::now();
    PreparedDisks out;
    out.configs = m_disks;
    out.chains.resize(m_disks.size());
    for (std::size_t i = 0; i < m_disks.size(); ++i) {
        if (m_disks[i].store_disk.empty())
            continue;
        if (!out.store) {
            auto store = Store::open(m_store_root);
            if (!store)
                break;
            out.store = std::move(store.value());
        }
        // The first failure ends the preparation: MachineDisks opens that disk
        // and the ones after it in line, in order, and so reports it as before.
        auto chain = open_store_disk(*out.store, m_disks[i]);
        if (!chain)
            break;
        out.chains[i] = std::move(chain.value());
    }
    m_result = std::move(out);
    m_prepare_us = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - began).count());
}

DiskPreparation::~DiskPreparation()
{
    if (m_thread.joinable())
        m_thread.join();
}

std::optional<PreparedDisks> DiskPreparation::take()
{
    if (m_taken)
        return std::nullopt;
    m_taken = true;
    auto const began = std::chrono::steady_clock::now();
    if (m_thread.joinable())
        m_thread.join();
    m_waited_us = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - began).count());
    auto out = std::move(m_result);
    m_result.reset();
    return out;
}

} // namespace strata
