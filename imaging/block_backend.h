// The imaging/ folder: block devices and the files behind them, knowing nothing of
// VMs or of the store. At the top: this interface, chains of layers (chain.h), the
// raw backend, opening an image by format (open_image.h) and the whole-disk copy
// vocabulary (store_io.h). layer/: the strata layer format and Layer; io/: the
// io_uring and synchronous engines; qcow2/: qcow2 read and write; archive/: the
// portable archive. imaging/ depends on base/ only.
//
// BlockBackend: the small block interface every disk in strata is served through
// (STYLE.md point 12). Raw files, strata layer chains and the qcow2 reader all
// implement it; virtio-blk and the img tools only ever see this interface.
//
// The interface is asynchronous because io_uring carries all data I/O: callers
// queue requests with submit(), push them to the kernel with kick(), wait on
// completion_fd() (an eventfd) and collect results with reap(). Each submitted
// request completes exactly once, carrying its own Status. A full queue answers
// submit() with ErrorKind::Busy, which callers treat as backpressure.
//
// The free functions at the bottom (read_sync, ...) are a synchronous convenience
// for tools and tests; use them only while no asynchronous request is in flight.
//
// Threading: one thread drives a backend at a time (the device's I/O thread, or
// the tool's main thread). Handing a backend to another thread requires the
// caller to have reaped every request first.
#pragma once

#include "base/result.h"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <sys/uio.h>

namespace strata {

enum class BlockOp {
    Read,
    Write,
    Flush,       // completes only once every write completed before it is durable
    Discard,     // the range reads as zeros afterwards; no data is written
    WriteZeroes, // the range reads as zeros afterwards; no data is written
};

struct BlockRequest {
    BlockOp op { BlockOp::Read };
    std::uint64_t offset { 0 }; // bytes; Read/Write/Discard/WriteZeroes
    std::uint64_t length { 0 }; // bytes; for Read/Write it equals the iovec total
    std::span<iovec const> iov; // host buffers, valid until the request completes
    std::uint64_t tag { 0 };    // handed back with the completion
};

struct BlockCompletion {
    std::uint64_t tag;
    Status status;
};

class BlockBackend {
public:
    virtual ~BlockBackend() = default;

    // Size in bytes; a multiple of 512.
    virtual std::uint64_t size() const = 0;
    virtual bool read_only() const = 0;
    // The most requests that may be in flight at once.
    virtual unsigned queue_depth() const = 0;

    // Queues one request. Offsets and lengths must be multiples of 512 and lie
    // inside size(); a request that breaks this is refused here with Usage and never
    // completes.
    [[nodiscard]] virtual Status submit(BlockRequest const& request) = 0;
    // Hands queued requests to the kernel in one batch.
    [[nodiscard]] virtual Status kick() = 0;
    // An eventfd that becomes readable when completions may be waiting.
    virtual int completion_fd() const = 0;
    // Calls on_complete for each finished request; with wait, blocks until at
    // least one has finished (if any is in flight). Returns how many it reaped.
    virtual std::size_t reap(std::function<void(BlockCompletion&&)> const& on_complete, bool wait) = 0;
};

[[nodiscard]] Status read_sync(BlockBackend& backend, std::uint64_t offset, std::span<std::byte> buf);
[[nodiscard]] Status write_sync(BlockBackend& backend, std::uint64_t offset, std::span<std::byte const> buf);
[[nodiscard]] Status flush_sync(BlockBackend& backend);
[[nodiscard]] Status discard_sync(BlockBackend& backend, std::uint64_t offset, std::uint64_t length);
[[nodiscard]] Status write_zeroes_sync(BlockBackend& backend, std::uint64_t offset, std::uint64_t length);

} // namespace strata
