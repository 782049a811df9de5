#include "vmm/boot/linux/decompress.h"

#include "base/thread.h"

#include <bzlib.h>
#include <lz4.h>
#include <lzma.h>
#include <lzo/lzo1x.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstring>
#include <optional>
#include <string>
#include <system_error>
#include <thread>

namespace strata::linux_boot {

namespace {

bool starts_with(std::span<std::byte const> d, std::initializer_list<unsigned> magic)
{
    if (d.size() < magic.size())
        return false;
    std::size_t i = 0;
    for (unsigned m : magic)
        if (std::to_integer<unsigned>(d[i++]) != m)
            return false;
    return true;
}

Error corrupt(Compression c, std::string const& what)
{
    return make_error(ErrorKind::BadInput, std::string("corrupt ") + compression_name(c) + " payload: " + what);
}

// A growing output buffer that refuses to pass the cap.
class Output {
public:
    Output(Compression c, std::uint64_t cap)
        : m_format(c)
        , m_cap(cap)
    {
    }

    // Sizes the buffer once for `bytes` of output (the payload's size trailer) and
    // `slack` more (a decoder's largest single step), so a 50 MB kernel is not
    // grown by doubling, zero-filling and copying it seven times. A hint past the
    // cap is ignored: the cap still decides.
    void expect(std::uint64_t bytes, std::size_t slack)
    {
        if (bytes == 0 || bytes > m_cap || !m_data.empty())
            return;
        m_data.resize(static_cast<std::size_t>(std::min<std::uint64_t>(bytes + slack, m_cap)));
    }

    // Room for at least one more byte, up to `want` bytes; fails at the cap.
    Result<std::span<std::byte>> room(std::size_t want = 1 << 20)
    {
        if (m_used >= m_cap)
            return make_error(ErrorKind::BadInput,
                std::string(compression_name(m_format)) + " payload inflates past the limit of "
                    + std::to_string(m_cap) + " bytes (a decompression bomb or a corrupt kernel)");
        std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(want, m_cap - m_used));
        // What is already there is offered whole, so streaming decoders fill the
        // presized buffer without asking it to grow.
        if (m_data.size() > m_used)
            n = std::max(n, m_data.size() - m_used);
        if (m_data.size() < m_used + n)
            m_data.resize(std::max(m_used + n, std::min<std::size_t>(m_data.size() * 2, static_cast<std::size_t>(m_cap))));
        return std::span<std::byte>(m_data).subspan(m_used, n);
    }
    void commit(std::size_t n) { m_used += n; }
    std::vector<std::byte> take() &&
    {
        m_data.resize(m_used);
        return std::move(m_data);
    }

private:
    Compression m_format;
    std::uint64_t m_cap;
    std::vector<std::byte> m_data;
    std::size_t m_used { 0 };
};

// Room past the expected size each decoder gets: lz4's legacy chunks inflate to
// at most 8 MiB and its decoder needs room for a whole chunk.
constexpr std::size_t kSlack = 8u << 20;

unsigned clamp_uint(std::size_t n) { return static_cast<unsigned>(std::min<std::size_t>(n, UINT_MAX)); }

// SAFETY (all of the casts below): the libraries take byte pointers typed as
// Bytef/char/uint8_t; std::byte has the same size and representation.
template<typename P>
P* as(std::byte* p) { return reinterpret_cast<P*>(p); }
template<typename P>
P const* as(std::byte const* p) { return reinterpret_cast<P const*>(p); }

Result<std::vector<std::byte>> gunzip(std::span<std::byte const> in, std::uint64_t cap, std::uint64_t expected)
{
    Output out(Compression::Gzip, cap);
    out.expect(expected, 1 << 20);
    z_stream zs {};
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK)
        return make_error(ErrorKind::Internal, "zlib inflateInit2 failed");
    struct Guard { z_stream* z; ~Guard() { inflateEnd(z); } } guard { &zs };
    zs.next_in = const_cast<Bytef*>(as<Bytef>(in.data()));
    zs.avail_in = clamp_uint(in.size());
    for (;;) {
        STRATA_TRY(r, out.room());
        zs.next_out = as<Bytef>(r.data());
        zs.avail_out = clamp_uint(r.size());
        int ret = inflate(&zs, Z_NO_FLUSH);
        out.commit(r.size() - zs.avail_out);
        if (ret == Z_STREAM_END)
            return std::move(out).take();
        if (ret == Z_BUF_ERROR && zs.avail_in == 0)
            return corrupt(Compression::Gzip, "truncated");
        if (ret != Z_OK && ret != Z_BUF_ERROR)
            return corrupt(Compression::Gzip, zs.msg ? zs.msg : "inflate failed");
    }
}

Result<std::vector<std::byte>> bunzip2(std::span<std::byte const> in, std::uint64_t cap, std::uint64_t expected)
{
    Output out(Compression::Bzip2, cap);
    out.expect(expected, 1 << 20);
    bz_stream bs {};
    if (BZ2_bzDecompressInit(&bs, 0, 0) != BZ_OK)
        return make_error(ErrorKind::Internal, "BZ2_bzDecompressInit failed");
    struct Guard { bz_stream* b; ~Guard() { BZ2_bzDecompressEnd(b); } } guard { &bs };
    bs.next_in = const_cast<char*>(as<char>(in.data()));
    bs.avail_in = clamp_uint(in.size());
    for (;;) {
        STRATA_TRY(r, out.room());
        bs.next_out = as<char>(r.data());
        bs.avail_out = clamp_uint(r.size());
        int ret = BZ2_bzDecompress(&bs);
        out.commit(r.size() - bs.avail_out);
        if (ret == BZ_STREAM_END)
            return std::move(out).take();
        if (ret != BZ_OK)
            return corrupt(Compression::Bzip2, "BZ2_bzDecompress returned " + std::to_string(ret));
        if (bs.avail_in == 0 && bs.avail_out != 0)
            return corrupt(Compression::Bzip2, "truncated");
    }
}

Result<std::vector<std::byte>> unxz(Compression c, std::span<std::byte const> in, std::uint64_t cap, std::uint64_t expected)
{
    Output out(c, cap);
    out.expect(expected, kSlack);
    lzma_stream ls = LZMA_STREAM_INIT;
    constexpr std::uint64_t memlimit = 1ull << 30;
    lzma_ret init = c == Compression::Xz ? lzma_stream_decoder(&ls, memlimit, 0) : lzma_alone_decoder(&ls, memlimit);
    if (init != LZMA_OK)
        return make_error(ErrorKind::Internal, "liblzma decoder init failed");
    struct Guard { lzma_stream* l; ~Guard() { lzma_end(l); } } guard { &ls };
    ls.next_in = as<std::uint8_t>(in.data());
    ls.avail_in = in.size();
    for (;;) {
        STRATA_TRY(r, out.room());
        ls.next_out = as<std::uint8_t>(r.data());
        ls.avail_out = r.size();
        lzma_ret ret = lzma_code(&ls, ls.avail_in == 0 ? LZMA_FINISH : LZMA_RUN);
        out.commit(r.size() - ls.avail_out);
        if (ret == LZMA_STREAM_END)
            return std::move(out).take();
        if (ret == LZMA_BUF_ERROR)
            return corrupt(c, "truncated");
        if (ret != LZMA_OK)
            return corrupt(c, "liblzma returned " + std::to_string(static_cast<int>(ret)));
    }
}

// The lzop file format as the kernel's lib/decompress_unlzo.c reads it.
Result<std::vector<std::byte>> unlzo(std::span<std::byte const> in, std::uint64_t cap, std::uint64_t expected)
{
    constexpr auto c = Compression::Lzo;
    if (lzo_init() != LZO_E_OK)
        return make_error(ErrorKind::Internal, "lzo_init failed");
    std::size_t pos = 9; // the 9-byte magic, checked by detect_compression
    auto need = [&](std::size_t n) { return in.size() - pos >= n; };
    auto be16 = [&]() { std::uint16_t v = static_cast<std::uint16_t>(std::to_integer<unsigned>(in[pos]) << 8 | std::to_integer<unsigned>(in[pos + 1])); pos += 2; return v; };
    auto be32 = [&]() { std::uint32_t v = 0; for (int i = 0; i < 4; ++i) v = v << 8 | std::to_integer<std::uint32_t>(in[pos++]); return v; };

    constexpr std::uint32_t F_ADLER32_D = 0x1, F_ADLER32_C = 0x2, F_H_FILTER = 0x800, F_CRC32_D = 0x100, F_CRC32_C = 0x200;
    if (!need(2 + 2))
        return corrupt(c, "truncated header");
    std::uint16_t version = be16();
    be16(); // library version
    if (version >= 0x0940) {
        if (!need(2))
            return corrupt(c, "truncated header");
        be16(); // version needed to extract
    }
    if (!need(1))
        return corrupt(c, "truncated header");
    ++pos; // method
    if (version >= 0x0940) {
        if (!need(1))
            return corrupt(c, "truncated header");
        ++pos; // level
    }
    if (!need(4))
        return corrupt(c, "truncated header");
    std::uint32_t flags = be32();
    std::size_t skip = (flags & F_H_FILTER ? 4 : 0) + 4 + 4 + (version >= 0x0940 ? 4 : 0);
    if (!need(skip + 1))
        return corrupt(c, "truncated header");
    pos += skip;
    std::size_t name_len = std::to_integer<std::size_t>(in[pos++]);
    if (!need(name_len + 4))
        return corrupt(c, "truncated header");
    pos += name_len + 4; // file name and header checksum

    Output out(c, cap);
    out.expect(expected, kSlack);
    for (;;) {
        if (!need(4))
            return corrupt(c, "truncated block header");
        std::uint32_t dst_len = be32();
        if (dst_len == 0)
            return std::move(out).take();
        if (dst_len > 64u << 20)
            return corrupt(c, "block larger than 64 MiB");
        if (!need(4))
            return corrupt(c, "truncated block header");
        std::uint32_t src_len = be32();
        std::size_t sums = (flags & F_ADLER32_D ? 4 : 0) + (flags & F_CRC32_D ? 4 : 0);
        if (src_len < dst_len)
            sums += (flags & F_ADLER32_C ? 4 : 0) + (flags & F_CRC32_C ? 4 : 0);
        if (!need(sums) || in.size() - pos - sums < src_len)
            return corrupt(c, "truncated block");
        pos += sums;
        if (src_len > dst_len)
            return corrupt(c, "block's compressed size exceeds its size");
        STRATA_TRY(r, out.room(dst_len));
        if (r.size() < dst_len)
            return make_error(ErrorKind::BadInput, "lzo payload inflates past the limit");
        if (src_len == dst_len) {
            std::memcpy(r.data(), in.data() + pos, dst_len); // stored block
        } else {
            lzo_uint n = dst_len;
            int ret = lzo1x_decompress_safe(as<unsigned char>(in.data() + pos), src_len, as<unsigned char>(r.data()), &n, nullptr);
            if (ret != LZO_E_OK || n != dst_len)
                return corrupt(c, "lzo1x_decompress_safe returned " + std::to_string(ret));
        }
        out.commit(dst_len);
        pos += src_len;
    }
}

constexpr std::uint32_t kLz4LegacyMagic = 0x184C2102;
constexpr std::size_t kLz4ChunkMax = 8u << 20;

// lz4 -l writes every chunk but the last as a whole 8 MiB of output, and each chunk
// inflates on its own, so a kernel's six or seven chunks can be inflated at once,
// each straight to its place. Returns nullopt (the caller inflates them one after
// another, which also reports any error) unless every chunk but the last inflated
// to exactly 8 MiB and the last to at most that.
std::optional<std::vector<std::byte>> unlz4_parallel(std::span<std::byte const> in, std::uint64_t cap)
{
    auto le32 = [&](std::size_t p) { std::uint32_t v; std::memcpy(&v, in.data() + p, 4); return v; };
    std::vector<std::span<std::byte const>> chunks;
    std::size_t pos = 4;
    while (in.size() - pos > 4) {
        std::uint32_t size = le32(pos);
        pos += 4;
        if (size == kLz4LegacyMagic)
            continue;
        if (size == 0 || size > in.size() - pos)
            return std::nullopt;
        chunks.push_back(in.subspan(pos, size));
        pos += size;
    }
    unsigned const threads = std::min<unsigned>(static_cast<unsigned>(chunks.size()), std::max(2u, std::thread::hardware_concurrency()));
    if (chunks.size() < 2 || threads < 2 || std::uint64_t(chunks.size()) * kLz4ChunkMax > cap)
        return std::nullopt;
    std::vector<std::byte> out(chunks.size() * kLz4ChunkMax);
    std::vector<int> made(chunks.size(), -1);
    std::atomic<std::size_t> next { 0 };
    auto work = [&] {
        for (std::size_t i; (i = next.fetch_add(1)) < chunks.size();)
            made[i] = LZ4_decompress_safe(as<char>(chunks[i].data()), as<char>(out.data() + i * kLz4ChunkMax),
                static_cast<int>(chunks[i].size()), static_cast<int>(kLz4ChunkMax));
    };
    // Through start_thread: a machine built on a filtered thread (the API's
    // worker) gets helpers with a filter of their own (base/thread.h).
    std::vector<std::thread> pool;
    try {
        for (unsigned t = 1; t < threads; ++t)
            pool.push_back(start_thread(ThreadKind::Vmm, "strata-unlz4", work));
    } catch (std::system_error const&) {
        // No thread to be had: the calling thread does all of it.
    }
    work();
    for (auto& t : pool)
        t.join();
    for (std::size_t i = 0; i + 1 < chunks.size(); ++i)
        if (made[i] != static_cast<int>(kLz4ChunkMax))
            return std::nullopt;
    if (made.back() < 0)
        return std::nullopt;
    out.resize((chunks.size() - 1) * kLz4ChunkMax + static_cast<std::size_t>(made.back()));
    return out;
}

// lz4's legacy frame (lz4 -l), as lib/decompress_unlz4.c reads it: a magic, then
// chunks each preceded by a little-endian compressed size and inflating to at most
// 8 MiB. The kernel's build appends the 4-byte output size, which ends the stream.
Result<std::vector<std::byte>> unlz4(std::span<std::byte const> in, std::uint64_t cap, std::uint64_t expected)
{
    if (auto fast = unlz4_parallel(in, cap))
        return std::move(*fast);
    constexpr auto c = Compression::Lz4;
    constexpr std::uint32_t magic = kLz4LegacyMagic;
    constexpr std::size_t chunk_max = kLz4ChunkMax;
    auto le32 = [&](std::size_t p) { std::uint32_t v; std::memcpy(&v, in.data() + p, 4); return v; };
    Output out(c, cap);
    out.expect(expected, kSlack);
    std::size_t pos = 4;
    while (in.size() - pos > 4) {
        std::uint32_t size = le32(pos);
        pos += 4;
        if (size == magic)
            continue; // a concatenated stream starts
        if (size == 0 || size > in.size() - pos)
            return corrupt(c, "chunk size runs past the end of the payload");
        STRATA_TRY(r, out.room(chunk_max));
        int n = LZ4_decompress_safe(as<char>(in.data() + pos), as<char>(r.data()), static_cast<int>(size),
            static_cast<int>(r.size()));
        if (n < 0) {
            if (r.size() < chunk_max)
                return make_error(ErrorKind::BadInput, "lz4 payload inflates past the limit (or is corrupt)");
            return corrupt(c, "LZ4_decompress_safe failed");
        }
        out.commit(static_cast<std::size_t>(n));
        pos += size;
    }
    return std::move(out).take();
}

Result<std::vector<std::byte>> unzstd(std::span<std::byte const> in, std::uint64_t cap, std::uint64_t expected)
{
    constexpr auto c = Compression::Zstd;
    Output out(c, cap);
    out.expect(expected, kSlack);
    ZSTD_DStream* ds = ZSTD_createDStream();
    if (!ds)
        return make_error(ErrorKind::NoSpace, "ZSTD_createDStream failed");
    struct Guard { ZSTD_DStream* d; ~Guard() { ZSTD_freeDStream(d); } } guard { ds };
    ZSTD_inBuffer ib { in.data(), in.size(), 0 };
    for (;;) {
        STRATA_TRY(r, out.room());
        ZSTD_outBuffer ob { r.data(), r.size(), 0 };
        std::size_t ret = ZSTD_decompressStream(ds, &ob, &ib);
        if (ZSTD_isError(ret))
            return corrupt(c, ZSTD_getErrorName(ret));
        out.commit(ob.pos);
        if (ret == 0)
            return std::move(out).take();
        if (ib.pos == ib.size && ob.pos < ob.size)
            return corrupt(c, "truncated");
    }
}

} // namespace

Compression detect_compression(std::span<std::byte const> d)
{
    if (starts_with(d, { 0x7f, 'E', 'L', 'F' }))
        return Compression::Uncompressed;
    if (starts_with(d, { 0x1f, 0x8b }) || starts_with(d, { 0x1f, 0x9e }))
        return Compression::Gzip;
    if (starts_with(d, { 'B', 'Z', 'h' }))
        return Compression::Bzip2;
    if (starts_with(d, { 0x5d, 0x00, 0x00 }))
        return Compression::Lzma;
    if (starts_with(d, { 0xfd, '7', 'z', 'X', 'Z', 0x00 }))
        return Compression::Xz;
    if (starts_with(d, { 0x89, 'L', 'Z', 'O', 0x00, 0x0d, 0x0a, 0x1a, 0x0a }))
        return Compression::Lzo;
    if (starts_with(d, { 0x02, 0x21, 0x4c, 0x18 }))
        return Compression::Lz4;
    if (starts_with(d, { 0x28, 0xb5, 0x2f, 0xfd }))
        return Compression::Zstd;
    return Compression::Unknown;
}

char const* compression_name(Compression c)
{
    switch (c) {
    case Compression::Unknown: return "unknown";
    case Compression::Uncompressed: return "uncompressed";
    case Compression::Gzip: return "gzip";
    case Compression::Bzip2: return "bzip2";
    case Compression::Lzma: return "lzma";
    case Compression::Xz: return "xz";
    case Compression::Lzo: return "lzo";
    case Compression::Lz4: return "lz4";
    case Compression::Zstd: return "zstd";
    }
    return "unknown";
}

Result<std::vector<std::byte>> decompress(std::span<std::byte const> data, std::uint64_t max_output)
{
    Compression c = detect_compression(data);
    // The kernel build appends the uncompressed size (4 bytes, little-endian);
    // only a hint for the buffer, never trusted as the result's size.
    std::uint64_t expected = 0;
    if (data.size() >= 8) {
        std::uint32_t v;
        std::memcpy(&v, data.data() + data.size() - 4, 4);
        expected = v;
    }
    switch (c) {
    case Compression::Unknown:
        return make_error(ErrorKind::Unsupported, "the kernel payload's compression format is not recognised");
    case Compression::Uncompressed:
        if (data.size() > max_output)
            return make_error(ErrorKind::BadInput, "the uncompressed kernel is larger than the limit");
        return std::vector<std::byte>(data.begin(), data.end());
    case Compression::Gzip: return gunzip(data, max_output, expected);
    case Compression::Bzip2: return bunzip2(data, max_output, expected);
    case Compression::Lzma:
    case Compression::Xz: return unxz(c, data, max_output, expected);
    case Compression::Lzo: return unlzo(data, max_output, expected);
    case Compression::Lz4: return unlz4(data, max_output, expected);
    case Compression::Zstd: return unzstd(data, max_output, expected);
    }
    return make_error(ErrorKind::Internal, "unreachable compression format");
}

} // namespace strata::linux_boot
