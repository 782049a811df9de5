#include "imaging/block_backend.h"

#include <optional>

namespace strata {

static Status run_one(BlockBackend& backend, BlockRequest const& request)
{
    STRATA_TRY(backend.submit(request));
    STRATA_TRY(backend.kick());
    std::optional<Status> result;
    while (!result) {
        backend.reap([&](BlockCompletion&& c) {
            if (c.tag == request.tag)
                result = std::move(c.status);
        },
            true);
    }
    return std::move(*result);
}

Status read_sync(BlockBackend& backend, std::uint64_t offset, std::span<std::byte> buf)
{
    iovec iov { buf.data(), buf.size() };
    return run_one(backend, BlockRequest { BlockOp::Read, offset, buf.size(), std::span<iovec const>(&iov, 1), 0x5157 });
}

Status write_sync(BlockBackend& backend, std::uint64_t offset, std::span<std::byte const> buf)
{
    // SAFETY: iovec has no const variant; a write request never writes to its buffers.
    iovec iov { const_cast<std::byte*>(buf.data()), buf.size() };
    return run_one(backend, BlockRequest { BlockOp::Write, offset, buf.size(), std::span<iovec const>(&iov, 1), 0x5157 });
}

Status flush_sync(BlockBackend& backend)
{
    return run_one(backend, BlockRequest { BlockOp::Flush, 0, 0, {}, 0x5157 });
}

Status discard_sync(BlockBackend& backend, std::uint64_t offset, std::uint64_t length)
{
    return run_one(backend, BlockRequest { BlockOp::Discard, offset, length, {}, 0x5157 });
}

Status write_zeroes_sync(BlockBackend& backend, std::uint64_t offset, std::uint64_t length)
{
    return run_one(backend, BlockRequest { BlockOp::WriteZeroes, offset, length, {}, 0x5157 });
}

} // namespace strata
