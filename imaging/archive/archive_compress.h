// ChunkCompressor: zstd-compresses and SHA-256-hashes archive chunks on worker
// threads and hands them back in submission order, so the archive writer reads
// the source and writes the file on its own thread while every core compresses.
// Jobs are recycled (their buffers kept) to avoid page-faulting fresh memory for
// every chunk.
//
// Threading: push/pop/take_free from one thread (the writer's); the workers only
// touch jobs between push and pop, under the compressor's mutex hand-offs.
#pragma once

#include "imaging/layer/layer_format.h"

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace strata::archive {

struct ChunkJob {
    std::uint64_t offset { 0 };     // of the chunk in its entry or layer
    std::vector<std::byte> raw;     // capacity: the chunk size
    std::size_t length { 0 };       // bytes of raw in use
    std::vector<std::byte> packed;  // the zstd frame
    std::size_t packed_length { 0 };
    Sha256 digest;                  // over raw[0, length)
    std::string error;              // non-empty when compression failed
    bool done { false };
};

class ChunkCompressor {
public:
    ChunkCompressor(unsigned workers, int level, std::size_t chunk_size);
    ~ChunkCompressor();
    ChunkCompressor(ChunkCompressor const&) = delete;
    ChunkCompressor& operator=(ChunkCompressor const&) = delete;

    // A job to fill (recycled or new), its raw buffer sized to the chunk size.
    std::unique_ptr<ChunkJob> take_free();
    // Queues a filled job.
    void push(std::unique_ptr<ChunkJob> job);
    // Waits for the oldest queued job and returns it; nullptr if none is queued.
    std::unique_ptr<ChunkJob> pop();
    // Gives a popped job back for reuse.
    void recycle(std::unique_ptr<ChunkJob> job);
    std::size_t queued() const;
    // How many jobs may be queued before the writer should pop one.
    std::size_t capacity() const { return m_capacity; }

private:
    void run();

    int m_level;
    std::size_t m_chunk_size;
    std::size_t m_capacity;
    mutable std::mutex m_mutex;
    std::condition_variable m_work;
    std::condition_variable m_finished;
    std::deque<std::unique_ptr<ChunkJob>> m_queue; // in submission order
    std::size_t m_next_unstarted { 0 };            // index into m_queue
    std::vector<std::unique_ptr<ChunkJob>> m_free;
    bool m_stop { false };
    std::vector<std::thread> m_threads;
};

} // namespace strata::archive
