#include "imaging/archive/archive_reader.h"

#include "base/sha256.h"

#include <zstd.h>

#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>

namespace strata {

using namespace archive;

bool ArchiveReader::has_magic(std::span<std::byte const> bytes)
{
    return bytes.size() >= 8 && std::memcmp(bytes.data(), archive::kHeaderMagic.data(), 8) == 0;
}

Result<std::unique_ptr<ArchiveReader>> ArchiveReader::open(std::string const& path)
{
    std::unique_ptr<ArchiveReader> r(new ArchiveReader());
    r->m_path = path;
    r->m_fd = Fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!r->m_fd.valid())
        return errno_error("open archive '" + path + "'");
    struct stat st {};
    if (::fstat(r->m_fd.get(), &st) != 0)
        return errno_error("stat '" + path + "'");
    r->m_file_size = static_cast<std::uint64_t>(st.st_size);
    auto fail = [&](Error const& e) { return e.context("'" + path + "'"); };
    if (r->m_file_size < kHeaderSize + kTrailerSize)
        return fail(make_error(ErrorKind::BadInput, "archive: the file is too short to be an archive"));
    std::array<std::byte, kHeaderSize> header {};
    STRATA_TRY(pread_all(r->m_fd.get(), header, 0));
    if (auto s = check_header(header); !s)
        return fail(s.error());
    std::array<std::byte, kTrailerSize> trailer {};
    STRATA_TRY(pread_all(r->m_fd.get(), trailer, r->m_file_size - kTrailerSize));
    auto t = parse_trailer(trailer, r->m_file_size);
    if (!t)
        return fail(t.error());
    r->m_trailer = t.value();
    std::string text(r->m_trailer.manifest_length, '\0');
    // SAFETY: the string's storage is viewed as bytes to read into.
    STRATA_TRY(pread_all(r->m_fd.get(), std::span(reinterpret_cast<std::byte*>(text.data()), text.size()), r->m_trailer.manifest_offset));
    auto m = parse_manifest(text, r->m_trailer.manifest_offset);
    if (!m)
        return fail(m.error());
    r->m_manifest = std::move(m.value());
    return r;
}

Entry const* ArchiveReader::find(std::string const& name) const
{
    for (auto const& e : m_manifest.entries)
        if (e.name == name)
            return &e;
    return nullptr;
}

Status ArchiveReader::verify(ProgressFn const& progress)
{
    Sha256Hasher hash;
    std::uint64_t covered = m_file_size - kTrailerSize + kTrailerDigestOffset;
    std::vector<std::byte> buf(4 << 20);
    for (std::uint64_t pos = 0; pos < covered;) {
        std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), covered - pos));
        STRATA_TRY(pread_all(m_fd.get(), std::span(buf).first(n), pos));
        hash.update(std::span(buf).first(n));
        pos += n;
        if (progress)
            progress(pos, covered);
    }
    Sha256 const digest { hash.finish() };
    if (digest != m_trailer.digest)
        return make_error(ErrorKind::BadInput, "archive '" + m_path + "': SHA-256 mismatch: the file is corrupted (expected "
                + to_hex(m_trailer.digest) + ", found " + to_hex(digest) + ")");
    return ok();
}

Status ArchiveReader::read_chunk(Chunk const& c, std::vector<std::byte>& out)
{
    m_packed.resize(static_cast<std::size_t>(c.stored));
    out.resize(static_cast<std::size_t>(c.length));
    STRATA_TRY(pread_all(m_fd.get(), m_packed, c.at));
    std::size_t n = ZSTD_decompress(out.data(), out.size(), m_packed.data(), m_packed.size());
    auto where = " (chunk at offset " + std::to_string(c.offset) + ", stored at " + std::to_string(c.at) + ")";
    if (ZSTD_isError(n))
        return make_error(ErrorKind::BadInput, "archive '" + m_path + "': bad zstd data: " + ZSTD_getErrorName(n) + where);
    if (n != out.size())
        return make_error(ErrorKind::BadInput, "archive '" + m_path + "': chunk decompressed to the wrong length" + where);
    if (sha256(out) != c.digest)
        return make_error(ErrorKind::BadInput, "archive '" + m_path + "': chunk SHA-256 mismatch" + where);
    return ok();
}

Status ArchiveReader::read_layer(LayerRecord const& layer, DataSink const& data, ZeroSink const& zero)
{
    for (auto const& z : layer.zeros)
        STRATA_TRY(zero(z.offset, z.length));
    for (auto const& c : layer.chunks) {
        STRATA_TRY(read_chunk(c, m_raw));
        STRATA_TRY(data(c.offset, m_raw));
    }
    return ok();
}

Status ArchiveReader::read_blob(Entry const& blob, DataSink const& data)
{
    Sha256Hasher hash;
    for (auto const& c : blob.chunks) {
        STRATA_TRY(read_chunk(c, m_raw));
        hash.update(m_raw);
        STRATA_TRY(data(c.offset, m_raw));
    }
    Sha256 const digest { hash.finish() };
    if (digest != blob.digest)
        return make_error(ErrorKind::BadInput, "archive '" + m_path + "': blob '" + blob.name + "' SHA-256 mismatch");
    return ok();
}

} // namespace strata
