#include "imaging/raw_backend.h"

#include <cerrno>
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>

namespace strata {

Status check_request(BlockRequest const& r, std::uint64_t size, bool read_only)
{
    if (r.op == BlockOp::Flush)
        return ok();
    if (r.offset % 512 != 0 || r.length % 512 != 0)
        return make_error(ErrorKind::Usage, "block request offset and length must be multiples of 512");
    if (r.offset > size || r.length > size - r.offset)
        return make_error(ErrorKind::Usage, "block request [" + std::to_string(r.offset) + ", +" + std::to_string(r.length)
                + ") lies beyond the disk size " + std::to_string(size));
    if ((r.op == BlockOp::Read || r.op == BlockOp::Write) && iov_total(r.iov) != r.length)
        return make_error(ErrorKind::Usage, "block request length does not match its buffers");
    if (read_only && r.op != BlockOp::Read)
        return make_error(ErrorKind::Permission, "the disk is read-only");
    return ok();
}

Result<std::unique_ptr<RawBackend>> RawBackend::open(std::string const& path, RawOptions const& options)
{
    STRATA_TRY(file, open_for_io(path, options.writable ? O_RDWR : O_RDONLY, options.cache));
    STRATA_TRY(engine, make_engine(options.engine, options.queue_depth));
    return open_with(std::move(file), std::move(engine), options);
}

Result<std::unique_ptr<RawBackend>> RawBackend::open_with(OpenedFile file, std::unique_ptr<IoEngine> engine,
    RawOptions const& options)
{
    struct stat st {};
    if (::fstat(file.fd.get(), &st) != 0)
        return errno_error("fstat");
    std::unique_ptr<RawBackend> b(new RawBackend());
    b->m_size = static_cast<std::uint64_t>(st.st_size) & ~std::uint64_t { 511 };
    b->m_writable = options.writable;
    b->m_depth = options.queue_depth == 0 ? 1 : options.queue_depth;
    STRATA_TRY(id, engine->add_file(file.fd.get(), file.info));
    b->m_file_id = id;
    b->m_file = std::move(file);
    b->m_engine = std::move(engine);
    b->m_slots.resize(b->m_depth);
    for (unsigned i = b->m_depth; i > 0; --i)
        b->m_free.push_back(i - 1);
    return b;
}

Status RawBackend::submit(BlockRequest const& r)
{
    STRATA_TRY(check_request(r, m_size, !m_writable));
    if (m_free.empty())
        return make_error(ErrorKind::Busy, "raw backend queue is full");
    unsigned index = m_free.back();
    m_free.pop_back();
    m_slots[index] = Slot { r.tag, r.op, r.offset, r.length, true };
    IoRequest io { IoOp::Read, m_file_id, r.offset, r.length, r.iov, 0, index };
    switch (r.op) {
    case BlockOp::Read: break;
    case BlockOp::Write: io.op = IoOp::Write; break;
    case BlockOp::Flush: io.op = IoOp::Fdatasync; break;
    case BlockOp::Discard:
        io.op = IoOp::Fallocate;
        io.fallocate_mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
        break;
    case BlockOp::WriteZeroes:
        io.op = IoOp::Fallocate;
        io.fallocate_mode = FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
        break;
    }
    if (io.op == IoOp::Fallocate && r.length == 0) {
        // fallocate refuses an empty range; an empty discard is already done.
        io.op = IoOp::Read;
        io.iov = {};
    }
    m_engine->submit(io);
    return ok();
}

Status RawBackend::kick() { return m_engine->kick(); }

std::size_t RawBackend::reap(std::function<void(BlockCompletion&&)> const& on_complete, bool wait)
{
    std::size_t n = 0;
    auto handle = [&](IoCompletion const& c) {
        Slot& s = m_slots[c.token];
        if (c.res == -EOPNOTSUPP && s.op == BlockOp::WriteZeroes) {
            // No ZERO_RANGE here (e.g. tmpfs): a punched hole also reads as zeros.
            s.op = BlockOp::Discard;
            m_engine->submit(IoRequest { IoOp::Fallocate, m_file_id, s.offset, s.length, {},
                FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, c.token });
            return;
        }
        Status status = ok();
        if (c.res < 0)
            status = errno_error("raw image I/O at offset " + std::to_string(s.offset), -c.res);
        s.busy = false;
        m_free.push_back(static_cast<unsigned>(c.token));
        ++n;
        on_complete(BlockCompletion { s.tag, std::move(status) });
    };
    m_engine->reap(handle, wait);
    while (wait && n == 0 && m_free.size() < m_slots.size()) {
        (void)m_engine->kick();
        m_engine->reap(handle, true);
    }
    return n;
}

} // namespace strata
