#include "imaging/qcow2/qcow2_decompress.h"

#include <zlib.h>
#include <zstd.h>

#include <memory>

namespace strata::qcow2 {

static Status inflate_raw(std::span<std::byte const> in, std::span<std::byte> out)
{
    z_stream zs {};
    // Window bits -12: a raw deflate stream with a 4 KiB window, as QEMU writes it.
    if (inflateInit2(&zs, -12) != Z_OK)
        return make_error(ErrorKind::NoSpace, "qcow2: cannot set up zlib");
    // SAFETY: zlib's API takes non-const byte pointers but never writes through next_in.
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<std::byte*>(in.data()));
    zs.avail_in = static_cast<uInt>(in.size());
    // SAFETY: std::byte and Bytef are both single bytes.
    zs.next_out = reinterpret_cast<Bytef*>(out.data());
    zs.avail_out = static_cast<uInt>(out.size());
    int rc = inflate(&zs, Z_FINISH);
    std::size_t produced = out.size() - zs.avail_out;
    inflateEnd(&zs);
    // A full output buffer is success even if the stream has no end marker yet
    // (Z_BUF_ERROR), which is how QEMU reads it too.
    if ((rc == Z_STREAM_END || rc == Z_BUF_ERROR || rc == Z_OK) && produced == out.size())
        return ok();
    return make_error(ErrorKind::BadInput, "qcow2: compressed cluster does not inflate to one cluster (zlib)");
}

static Status decompress_zstd(std::span<std::byte const> in, std::span<std::byte> out)
{
    std::unique_ptr<ZSTD_DCtx, decltype(&ZSTD_freeDCtx)> ctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
    if (!ctx)
        return make_error(ErrorKind::NoSpace, "qcow2: cannot set up zstd");
    // Bound the window so a hostile frame can't make zstd allocate much.
    ZSTD_DCtx_setParameter(ctx.get(), ZSTD_d_windowLogMax, 22);
    ZSTD_inBuffer input { in.data(), in.size(), 0 };
    ZSTD_outBuffer output { out.data(), out.size(), 0 };
    // Streaming decompression: the compressed data may be followed by padding up to
    // the sector end, so stop as soon as the cluster is full or a frame ends.
    while (output.pos < output.size) {
        std::size_t rc = ZSTD_decompressStream(ctx.get(), &output, &input);
        if (ZSTD_isError(rc))
            return make_error(ErrorKind::BadInput, std::string("qcow2: bad zstd compressed cluster: ") + ZSTD_getErrorName(rc));
        if (rc == 0 || input.pos == input.size)
            break;
    }
    if (output.pos != output.size)
        return make_error(ErrorKind::BadInput, "qcow2: compressed cluster does not decompress to one cluster (zstd)");
    return ok();
}

Status decompress_cluster(CompressionType type, std::span<std::byte const> in, std::span<std::byte> out)
{
    if (type == CompressionType::Zstd)
        return decompress_zstd(in, out);
    return inflate_raw(in, out);
}

} // namespace strata::qcow2
