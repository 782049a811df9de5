#include "imaging/qcow2/qcow2_reader.h"

#include "imaging/qcow2/qcow2_decompress.h"

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <set>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utility>

namespace strata {

using namespace qcow2;

// The backing of one image: another qcow2, or a raw file read with pread.
struct Qcow2Reader::Backing {
    std::unique_ptr<Qcow2Reader> qcow2;
    Fd raw;
    std::uint64_t size { 0 };
};

// The files already opened in one chain, to refuse loops and bound the depth.
struct Qcow2Reader::Chain {
    std::set<std::pair<dev_t, ino_t>> seen;
    unsigned depth { 0 };
};

static Error bad_qcow2_image(std::string const& what)
{
    return make_error(ErrorKind::BadInput, "qcow2: " + what);
}

static std::string dir_of(std::string const& path)
{
    auto slash = path.rfind('/');
    if (slash == std::string::npos)
        return ".";
    if (slash == 0)
        return "/";
    return path.substr(0, slash);
}

static Result<std::string> canonical(std::string const& path)
{
    char buf[PATH_MAX];
    if (::realpath(path.c_str(), buf) == nullptr)
        return errno_error("resolve '" + path + "'");
    return std::string(buf);
}

// Applies the backing-name rule of qcow2_reader.h: the stored name, resolved
// relative to the naming image's directory, must stay inside that directory.
static Result<std::string> resolve_backing_name(std::string const& image_path, std::string const& name)
{
    STRATA_TRY(dir, canonical(dir_of(image_path)));
    std::string joined = name.front() == '/' ? name : dir + "/" + name;
    auto resolved = canonical(joined);
    if (!resolved)
        return resolved.error().context("qcow2: backing file '" + name + "' of '" + image_path + "'");
    std::string const& path = resolved.value();
    std::string prefix = dir == "/" ? dir : dir + "/";
    if (path.compare(0, prefix.size(), prefix) != 0)
        return make_error(ErrorKind::Permission,
            "qcow2: backing file '" + name + "' of '" + image_path + "' lies outside the image's directory; "
            "strata only follows backing files next to the image (pass the backing explicitly to use it)");
    return path;
}

Qcow2Reader::~Qcow2Reader() = default;

Result<std::unique_ptr<Qcow2Reader>> Qcow2Reader::open(std::string const& path, Qcow2OpenOptions const& options)
{
    Chain chain;
    return open_in_chain(path, options, chain);
}

unsigned Qcow2Reader::chain_depth() const
{
    if (!m_backing)
        return 1;
    return 1 + (m_backing->qcow2 ? m_backing->qcow2->chain_depth() : 1);
}

Result<std::unique_ptr<Qcow2Reader>> Qcow2Reader::open_in_chain(std::string const& path, Qcow2OpenOptions const& options, Chain& chain)
{
    if (++chain.depth > kMaxBackingDepth)
        return bad_qcow2_image("backing chain of '" + path + "' is deeper than " + std::to_string(kMaxBackingDepth));
    std::unique_ptr<Qcow2Reader> r(new Qcow2Reader());
    r->m_path = path;
    r->m_fd = Fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!r->m_fd.valid())
        return errno_error("open '" + path + "'");
    struct stat st {};
    if (::fstat(r->m_fd.get(), &st) != 0)
        return errno_error("stat '" + path + "'");
    if (!chain.seen.insert({ st.st_dev, st.st_ino }).second)
        return bad_qcow2_image("backing chain of '" + path + "' loops back to a file already in the chain");
    r->m_file_size = static_cast<std::uint64_t>(st.st_size);

    std::vector<std::byte> head(static_cast<std::size_t>(std::min<std::uint64_t>(kHeaderProbeBytes, r->m_file_size)));
    STRATA_TRY(pread_all(r->m_fd.get(), head, 0));
    auto header = parse_header(head, r->m_file_size);
    if (!header)
        return header.error().context("'" + path + "'");
    r->m_header = std::move(header.value());
    // BlockBackend sizes are 512-byte multiples; the tail past the qcow2 size reads as zeros.
    r->m_size = (r->m_header.size + 511) & ~std::uint64_t { 511 };

    // The L1 table: its size is capped by parse_header and lies inside the file.
    std::vector<std::byte> l1_bytes(std::size_t { r->m_header.l1_size } * 8);
    STRATA_TRY(pread_all(r->m_fd.get(), l1_bytes, r->m_header.l1_table_offset));
    r->m_l1.resize(r->m_header.l1_size);
    for (std::size_t i = 0; i < r->m_l1.size(); ++i)
        r->m_l1[i] = load_be64(l1_bytes.data() + i * 8);

    r->m_event = Fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!r->m_event.valid())
        return errno_error("eventfd");
    STRATA_TRY(r->open_backing(path, options, chain));
    return r;
}

Status Qcow2Reader::open_backing(std::string const& image_path, Qcow2OpenOptions const& options, Chain& chain)
{
    std::string path;
    std::optional<std::string> format;
    if (options.backing) {
        path = *options.backing;
        format = options.backing_format;
    } else if (m_header.backing_file) {
        STRATA_TRY(resolved, resolve_backing_name(image_path, *m_header.backing_file));
        path = resolved;
        format = m_header.backing_format;
    } else {
        return ok();
    }
    Fd probe(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!probe.valid())
        return errno_error("open backing file '" + path + "'");
    struct stat st {};
    if (::fstat(probe.get(), &st) != 0)
        return errno_error("stat '" + path + "'");
    if (!format) {
        std::byte magic[4] {};
        bool is_qcow2 = st.st_size >= 4 && pread_all(probe.get(), magic, 0) && has_magic(magic);
        format = is_qcow2 ? "qcow2" : "raw";
    }
    m_backing = std::make_unique<Backing>();
    if (*format == "qcow2") {
        // The explicit backing applies to the top image only; deeper images follow the rule.
        auto reader = open_in_chain(path, {}, chain);
        if (!reader)
            return reader.error().context("backing file of '" + image_path + "'");
        m_backing->size = reader.value()->size();
        m_backing->qcow2 = std::move(reader.value());
    } else if (*format == "raw") {
        if (!chain.seen.insert({ st.st_dev, st.st_ino }).second)
            return bad_qcow2_image("backing chain of '" + image_path + "' loops back to a file already in the chain");
        m_backing->size = static_cast<std::uint64_t>(st.st_size);
        m_backing->raw = std::move(probe);
    } else {
        return make_error(ErrorKind::Unsupported, "qcow2: backing format '" + *format + "' is not supported");
    }
    return ok();
}

Status Qcow2Reader::check_host_range(std::uint64_t host, std::uint64_t length, char const* what) const
{
    if (host < m_header.cluster_size)
        return bad_qcow2_image(std::string(what) + " at offset " + std::to_string(host) + " overlaps the header");
    if (host > m_file_size || length > m_file_size - host)
        return bad_qcow2_image(std::string(what) + " at offset " + std::to_string(host) + " runs past the end of the file");
    return ok();
}

Result<std::vector<std::byte> const*> Qcow2Reader::l2_table(std::uint64_t l2_offset)
{
    auto it = m_l2_cache.find(l2_offset);
    if (it != m_l2_cache.end())
        return &it->second;
    if (l2_offset % m_header.cluster_size != 0)
        return bad_qcow2_image("L2 table offset " + std::to_string(l2_offset) + " is not cluster aligned");
    STRATA_TRY(check_host_range(l2_offset, m_header.cluster_size, "L2 table"));
    std::uint64_t l1_end = m_header.l1_table_offset + std::uint64_t { m_header.l1_size } * 8;
    if (l2_offset < l1_end && l2_offset + m_header.cluster_size > m_header.l1_table_offset)
        return bad_qcow2_image("L2 table at offset " + std::to_string(l2_offset) + " overlaps the L1 table");
    if (m_l2_cache.size() * m_header.cluster_size >= kL2CacheBytes)
        m_l2_cache.clear();
    std::vector<std::byte> table(m_header.cluster_size);
    STRATA_TRY(pread_all(m_fd.get(), table, l2_offset));
    return &m_l2_cache.emplace(l2_offset, std::move(table)).first->second;
}

Status Qcow2Reader::read_backing(std::uint64_t offset, std::span<std::byte> buf)
{
    std::uint64_t have = 0;
    if (m_backing && offset < m_backing->size)
        have = std::min<std::uint64_t>(buf.size(), m_backing->size - offset);
    if (have > 0) {
        auto part = buf.first(static_cast<std::size_t>(have));
        if (m_backing->qcow2) {
            STRATA_TRY(m_backing->qcow2->read(offset, part));
        } else {
            STRATA_TRY(pread_all(m_backing->raw.get(), part, offset));
        }
    }
    std::memset(buf.data() + have, 0, buf.size() - static_cast<std::size_t>(have));
    return ok();
}

Status Qcow2Reader::read_compressed(std::uint64_t entry, std::uint64_t in_cluster, std::span<std::byte> buf)
{
    std::uint64_t cs = m_header.cluster_size;
    if (m_cached_compressed != entry) {
        unsigned x = 62 - (m_header.cluster_bits - 8);
        std::uint64_t host = entry & ((1ULL << x) - 1);
        std::uint64_t sectors = (entry >> x) & ((1ULL << (m_header.cluster_bits - 8)) - 1);
        std::uint64_t length = (sectors + 1) * 512 - (host & 511);
        STRATA_TRY(check_host_range(host, 1, "compressed cluster"));
        // The last sector of compressed data may be cut short by the end of the file.
        length = std::min(length, m_file_size - host);
        m_compressed_in.resize(static_cast<std::size_t>(length));
        m_decompressed.resize(static_cast<std::size_t>(cs));
        m_cached_compressed = ~0ULL;
        STRATA_TRY(pread_all(m_fd.get(), m_compressed_in, host));
        auto status = decompress_cluster(m_header.compression, m_compressed_in, m_decompressed);
        if (!status)
            return status.error().context("'" + m_path + "' cluster at host offset " + std::to_string(host));
        m_cached_compressed = entry;
    }
    std::memcpy(buf.data(), m_decompressed.data() + in_cluster, buf.size());
    return ok();
}

// Reads a range that lies inside one cluster.
Status Qcow2Reader::read_cluster(std::uint64_t offset, std::span<std::byte> buf)
{
    std::uint64_t cs = m_header.cluster_size;
    std::uint64_t cluster = offset >> m_header.cluster_bits;
    std::uint64_t in_cluster = offset & (cs - 1);
    std::uint64_t l1_index = cluster / m_header.l2_entries();
    std::uint64_t l2_index = cluster % m_header.l2_entries();
    std::uint64_t l2_offset = l1_index < m_l1.size() ? (m_l1[l1_index] & kOffsetMask) : 0;
    if (l2_offset == 0)
        return read_backing(offset, buf);
    STRATA_TRY(table, l2_table(l2_offset));
    std::byte const* slot = table->data() + l2_index * m_header.l2_entry_bytes();
    std::uint64_t entry = load_be64(slot);
    if ((entry & kCompressed) != 0)
        return read_compressed(entry & ~(kCopied | kCompressed), in_cluster, buf);
    std::uint64_t host = entry & kOffsetMask;
    if (host != 0 && host % cs != 0)
        return bad_qcow2_image("data cluster offset " + std::to_string(host) + " is not cluster aligned");
    if (!m_header.extended_l2) {
        if (m_header.version >= 3 && (entry & kZeroFlag) != 0) {
            std::memset(buf.data(), 0, buf.size());
            return ok();
        }
        if (host == 0)
            return read_backing(offset, buf);
        STRATA_TRY(check_host_range(host + in_cluster, buf.size(), "data cluster"));
        return pread_all(m_fd.get(), buf, host + in_cluster);
    }
    // Extended L2: each of the 32 subclusters is allocated, zero, or unallocated.
    std::uint64_t bitmap = load_be64(slot + 8);
    std::uint64_t sc = m_header.subcluster_size();
    std::size_t done = 0;
    while (done < buf.size()) {
        std::uint64_t pos = in_cluster + done;
        unsigned index = static_cast<unsigned>(pos / sc);
        std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size() - done, (index + 1) * sc - pos));
        bool alloc = (bitmap >> index) & 1;
        bool zero = (bitmap >> (32 + index)) & 1;
        auto part = buf.subspan(done, n);
        if (alloc && zero)
            return bad_qcow2_image("subcluster is marked both allocated and zero");
        if (alloc) {
            if (host == 0)
                return bad_qcow2_image("allocated subcluster in a cluster with no host offset");
            STRATA_TRY(check_host_range(host + pos, n, "data subcluster"));
            STRATA_TRY(pread_all(m_fd.get(), part, host + pos));
        } else if (zero) {
            std::memset(part.data(), 0, n);
        } else {
            STRATA_TRY(read_backing(offset + done, part));
        }
        done += n;
    }
    return ok();
}

Status Qcow2Reader::read(std::uint64_t offset, std::span<std::byte> buf)
{
    if (offset > m_size || buf.size() > m_size - offset)
        return make_error(ErrorKind::Usage, "qcow2: read past the end of the disk");
    std::uint64_t cs = m_header.cluster_size;
    std::size_t done = 0;
    while (done < buf.size()) {
        std::uint64_t pos = offset + done;
        std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size() - done, cs - (pos & (cs - 1))));
        auto part = buf.subspan(done, n);
        if (pos >= m_header.size) {
            std::memset(part.data(), 0, n); // the rounding tail
        } else {
            STRATA_TRY(read_cluster(pos, part));
        }
        done += n;
    }
    return ok();
}

// The kind of the cluster at offset as this image alone sees it; from_backing
// tells the caller to ask the backing instead.
Result<RangeStatus> Qcow2Reader::local_status(std::uint64_t offset, std::uint64_t max_length, bool& from_backing)
{
    std::uint64_t cs = m_header.cluster_size;
    std::uint64_t length = std::min(max_length, cs - (offset & (cs - 1)));
    from_backing = false;
    std::uint64_t cluster = offset >> m_header.cluster_bits;
    std::uint64_t l1_index = cluster / m_header.l2_entries();
    std::uint64_t l2_offset = l1_index < m_l1.size() ? (m_l1[l1_index] & kOffsetMask) : 0;
    if (offset >= m_header.size)
        return RangeStatus { RangeKind::Zero, length };
    if (l2_offset == 0) {
        from_backing = true;
        return RangeStatus { RangeKind::Zero, length };
    }
    STRATA_TRY(table, l2_table(l2_offset));
    std::byte const* slot = table->data() + (cluster % m_header.l2_entries()) * m_header.l2_entry_bytes();
    std::uint64_t entry = load_be64(slot);
    if ((entry & kCompressed) != 0)
        return RangeStatus { RangeKind::Data, length };
    if (m_header.extended_l2) {
        std::uint64_t bitmap = load_be64(slot + 8);
        if ((bitmap & 0xffffffffULL) != 0)
            return RangeStatus { RangeKind::Data, length };
        from_backing = (bitmap >> 32) != 0xffffffffULL;
        return RangeStatus { RangeKind::Zero, length };
    }
    if (m_header.version >= 3 && (entry & kZeroFlag) != 0)
        return RangeStatus { RangeKind::Zero, length };
    if ((entry & kOffsetMask) != 0)
        return RangeStatus { RangeKind::Data, length };
    from_backing = true;
    return RangeStatus { RangeKind::Zero, length };
}

// One cluster's kind through the whole chain.
Result<RangeStatus> Qcow2Reader::single_status(std::uint64_t offset, std::uint64_t max_length)
{
    bool from_backing = false;
    STRATA_TRY(local, local_status(offset, max_length, from_backing));
    if (!from_backing || !m_backing || offset >= m_backing->size)
        return local;
    // A raw backing counts as data (no hole probing); a qcow2 one is asked.
    if (!m_backing->qcow2)
        return RangeStatus { RangeKind::Data, local.length };
    return m_backing->qcow2->single_status(offset, local.length);
}

Result<RangeStatus> Qcow2Reader::block_status(std::uint64_t offset, std::uint64_t max_length)
{
    if (offset >= m_size || max_length == 0)
        return make_error(ErrorKind::Usage, "qcow2: block status past the end of the disk");
    max_length = std::min(max_length, m_size - offset);
    STRATA_TRY(first, single_status(offset, max_length));
    RangeStatus run = first;
    // Merge following clusters of the same kind so callers see long runs.
    while (run.length < max_length) {
        STRATA_TRY(next, single_status(offset + run.length, max_length - run.length));
        if (next.kind != run.kind)
            break;
        run.length += next.length;
    }
    return run;
}

Status Qcow2Reader::submit(BlockRequest const& request)
{
    if (request.offset % 512 != 0 || request.length % 512 != 0 || request.offset > m_size || request.length > m_size - request.offset)
        return make_error(ErrorKind::Usage, "qcow2: request outside the disk or not 512-byte aligned");
    if (m_done.size() >= queue_depth())
        return make_error(ErrorKind::Busy, "qcow2: queue full");
    Status status = ok();
    switch (request.op) {
    case BlockOp::Read: {
        std::uint64_t pos = request.offset;
        for (iovec const& v : request.iov) {
            // SAFETY: the caller's iovec describes a writable host buffer of iov_len bytes.
            std::span<std::byte> part(static_cast<std::byte*>(v.iov_base), v.iov_len);
            status = read(pos, part);
            if (!status)
                break;
            pos += v.iov_len;
        }
        break;
    }
    case BlockOp::Flush:
        break;
    default:
        status = make_error(ErrorKind::Permission, "qcow2: the qcow2 reader is read-only");
        break;
    }
    m_done.push_back(BlockCompletion { request.tag, std::move(status) });
    eventfd_signal(m_event.get());
    return ok();
}

std::size_t Qcow2Reader::reap(std::function<void(BlockCompletion&&)> const& on_complete, bool)
{
    std::uint64_t drained = 0;
    [[maybe_unused]] auto n = ::read(m_event.get(), &drained, sizeof drained);
    std::size_t count = 0;
    while (!m_done.empty()) {
        BlockCompletion c = std::move(m_done.front());
        m_done.pop_front();
        on_complete(std::move(c));
        ++count;
    }
    return count;
}

} // namespace strata
