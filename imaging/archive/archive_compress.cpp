#include "imaging/archive/archive_compress.h"

#include "imaging/archive/archive_format.h"

#include <zstd.h>

namespace strata::archive {

ChunkCompressor::ChunkCompressor(unsigned workers, int level, std::size_t chunk_size)
    : m_level(level)
    , m_chunk_size(chunk_size)
    , m_capacity(2 * std::size_t { workers == 0 ? 1 : workers } + 1)
{
    for (unsigned i = 0; i < (workers == 0 ? 1 : workers); ++i)
        m_threads.emplace_back([this] { run(); });
}

ChunkCompressor::~ChunkCompressor()
{
    {
        std::lock_guard lock(m_mutex);
        m_stop = true;
    }
    m_work.notify_all();
    for (auto& t : m_threads)
        t.join();
}

std::unique_ptr<ChunkJob> ChunkCompressor::take_free()
{
    std::unique_ptr<ChunkJob> job;
    {
        std::lock_guard lock(m_mutex);
        if (!m_free.empty()) {
            job = std::move(m_free.back());
            m_free.pop_back();
        }
    }
    if (!job) {
        job = std::make_unique<ChunkJob>();
        job->raw.resize(m_chunk_size);
        job->packed.resize(ZSTD_compressBound(m_chunk_size));
    }
    job->done = false;
    job->error.clear();
    return job;
}

void ChunkCompressor::push(std::unique_ptr<ChunkJob> job)
{
    {
        std::lock_guard lock(m_mutex);
        m_queue.push_back(std::move(job));
    }
    m_work.notify_one();
}

std::unique_ptr<ChunkJob> ChunkCompressor::pop()
{
    std::unique_lock lock(m_mutex);
    if (m_queue.empty())
        return nullptr;
    m_finished.wait(lock, [this] { return m_queue.front()->done; });
    auto job = std::move(m_queue.front());
    m_queue.pop_front();
    --m_next_unstarted;
    return job;
}

void ChunkCompressor::recycle(std::unique_ptr<ChunkJob> job)
{
    std::lock_guard lock(m_mutex);
    m_free.push_back(std::move(job));
}

std::size_t ChunkCompressor::queued() const
{
    std::lock_guard lock(m_mutex);
    return m_queue.size();
}

void ChunkCompressor::run()
{
    std::unique_ptr<ZSTD_CCtx, decltype(&ZSTD_freeCCtx)> ctx(ZSTD_createCCtx(), ZSTD_freeCCtx);
    std::unique_lock lock(m_mutex);
    for (;;) {
        m_work.wait(lock, [this] { return m_stop || m_next_unstarted < m_queue.size(); });
        if (m_stop)
            return;
        ChunkJob* job = m_queue[m_next_unstarted++].get();
        lock.unlock();
        // The job is ours until done is set: the writer only pops done jobs.
        std::span<std::byte const> raw(job->raw.data(), job->length);
        job->digest = sha256(raw);
        if (!ctx) {
            job->error = "zstd: out of memory";
        } else {
            std::size_t n = ZSTD_compressCCtx(ctx.get(), job->packed.data(), job->packed.size(), raw.data(), raw.size(), m_level);
            if (ZSTD_isError(n))
                job->error = std::string("zstd: ") + ZSTD_getErrorName(n);
            else
                job->packed_length = n;
        }
        lock.lock();
        job->done = true;
        m_finished.notify_all();
    }
}

} // namespace strata::archive
