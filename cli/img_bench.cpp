// `strata img bench`: qemu-img bench's options and output, run through strata's
// BlockBackend (io_uring, O_DIRECT with -t none) so the two compare command for
// command. --base names frozen layers under a strata FILE (a layer stores no
// paths of other files), bottom first.
#include "cli/img_util.h"

#include "base/sysexits.h"
#include "imaging/open_image.h"

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <optional>

namespace strata::cli {

namespace {

struct BenchOptions {
    std::string file, format, cache = "writeback", aio = "threads", size = "4096", step, offset = "0";
    std::vector<std::string> bases;
    unsigned count = 75000, depth = 64, flush_interval = 0;
    int pattern = 0;
    bool write = false, quiet = false, no_drain = false, native = false;
};

int fail(Error const& e)
{
    std::cerr << "strata img bench: " << e.message << "\n";
    return exit_code_for(e.kind);
}

int run_bench(BenchOptions const& o)
{
    auto size = parse_size(o.size);
    auto step = o.step.empty() ? size : parse_size(o.step);
    auto start_offset = parse_size(o.offset);
    if (!size || !step || !start_offset)
        return fail(make_error(ErrorKind::Usage, "invalid -s, -S or -o"));
    if (size.value() == 0 || size.value() % 512 != 0 || start_offset.value() % 512 != 0 || step.value() % 512 != 0)
        return fail(make_error(ErrorKind::Usage, "-s, -S and -o must be multiples of 512"));
    if (o.cache != "none" && o.cache != "writeback" && o.cache != "directsync" && o.cache != "writethrough")
        return fail(make_error(ErrorKind::Usage, "-t takes none or writeback"));
    if (o.depth == 0)
        return fail(make_error(ErrorKind::Usage, "-d must be at least 1"));
    auto fmt = o.format.empty() ? detect_format(o.file) : parse_format(o.format);
    if (!fmt)
        return fail(fmt.error());
    OpenImageOptions opts;
    opts.writable = o.write;
    opts.cache = o.cache == "none" || o.cache == "directsync" || o.native ? CacheMode::None : CacheMode::Writeback;
    opts.engine = o.aio == "io_uring" || o.aio == "native" || o.native ? EngineKind::Uring : EngineKind::Uring;
    opts.queue_depth = o.depth;
    opts.lower_layers = o.bases;
    auto opened = open_image(o.file, fmt.value(), opts);
    if (!opened)
        return fail(opened.error());
    BlockBackend& b = *opened.value();
    std::uint64_t image_size = b.size();
    if (size.value() > image_size)
        return fail(make_error(ErrorKind::Usage, "request size exceeds the image size"));

    std::vector<AlignedBuffer> bufs;
    std::vector<iovec> iovs(o.depth);
    for (unsigned i = 0; i < o.depth; ++i) {
        bufs.emplace_back(size.value());
        std::memset(bufs.back().data(), o.pattern, size.value());
        iovs[i] = iovec { bufs.back().data(), size.value() };
    }
    std::vector<unsigned> free_slots;
    for (unsigned i = o.depth; i > 0; --i)
        free_slots.push_back(i - 1);
    if (!o.quiet) {
        std::printf("Sending %u %s requests, %llu bytes each, %u in parallel (starting at offset %llu, step size %llu)\n", o.count,
            o.write ? "write" : "read", static_cast<unsigned long long>(size.value()), o.depth,
            static_cast<unsigned long long>(start_offset.value()), static_cast<unsigned long long>(step.value()));
        if (o.flush_interval)
            std::printf("Sending flush every %u requests\n", o.flush_interval);
        std::fflush(stdout);
    }
    constexpr std::uint64_t kFlushTag = ~std::uint64_t { 0 };
    std::uint64_t offset = start_offset.value() % image_size;
    unsigned issued = 0, completed = 0, in_flight = 0, since_flush = 0;
    bool flush_due = false, flush_in_flight = false;
    std::optional<Error> error;
    auto t0 = std::chrono::steady_clock::now();
    while (completed < o.count && !error) {
        if (flush_due && !flush_in_flight && (o.no_drain || in_flight == 0)) {
            if (auto s = b.submit(BlockRequest { BlockOp::Flush, 0, 0, {}, kFlushTag }); !s)
                return fail(s.error());
            flush_due = false;
            flush_in_flight = true;
        }
        while (!flush_due && !flush_in_flight && issued < o.count && !free_slots.empty()) {
            if (offset + size.value() > image_size)
                offset = 0;
            unsigned slot = free_slots.back();
            BlockRequest r { o.write ? BlockOp::Write : BlockOp::Read, offset, size.value(), { &iovs[slot], 1 }, slot };
            auto s = b.submit(r);
            if (!s && s.error().kind == ErrorKind::Busy)
                break;
            if (!s)
                return fail(s.error());
            free_slots.pop_back();
            ++issued;
            ++in_flight;
            offset = (offset + step.value()) % image_size;
            if (o.flush_interval && ++since_flush == o.flush_interval) {
                since_flush = 0;
                flush_due = true;
            }
        }
        if (auto s = b.kick(); !s)
            return fail(s.error());
        b.reap([&](BlockCompletion&& c) {
            if (!c.status && !error)
                error = c.status.error();
            if (c.tag == kFlushTag) {
                flush_in_flight = false;
                return;
            }
            free_slots.push_back(static_cast<unsigned>(c.tag));
            --in_flight;
            ++completed;
        },
            true);
    }
    while (in_flight > 0 || flush_in_flight) {
        b.reap([&](BlockCompletion&& c) {
            if (c.tag == kFlushTag)
                flush_in_flight = false;
            else
                --in_flight;
        },
            true);
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (error)
        return fail(error->context("request failed"));
    std::printf("Run completed in %.3f seconds.\n", secs);
    // Like qemu-img closing the image: make the writes durable (not timed).
    if (o.write) {
        if (auto s = flush_sync(b); !s)
            return fail(s.error());
    }
    return 0;
}

} // namespace

void register_img_bench(CLI::App& img, int& exit_code)
{
    static BenchOptions o;
    auto* bench = img.add_subcommand("bench", "Run a simple image benchmark (qemu-img bench's options)");
    bench->add_option("-f", o.format, "Format (detected when absent)");
    bench->add_option("-c", o.count, "Number of requests (default 75000)");
    bench->add_option("-d", o.depth, "Requests in flight (default 64)");
    bench->add_option("-s", o.size, "Request size (default 4096; k/M/G suffixes)");
    bench->add_option("-S", o.step, "Offset step between requests (default: the request size)");
    bench->add_option("-o", o.offset, "Starting offset (default 0)");
    bench->add_flag("-w", o.write, "Write instead of read");
    bench->add_option("-t", o.cache, "Cache mode: none (O_DIRECT) or writeback (default)");
    bench->add_option("-i", o.aio, "AIO mode: io_uring (strata always uses io_uring)");
    bench->add_flag("-n", o.native, "Native AIO (accepted; io_uring with O_DIRECT)");
    bench->add_option("--pattern", o.pattern, "Byte written by write requests (default 0)");
    bench->add_option("--flush-interval", o.flush_interval, "Flush after this many requests");
    bench->add_flag("--no-drain", o.no_drain, "Do not wait for requests in flight before a flush");
    bench->add_flag("-q", o.quiet, "Quiet");
    bench->add_option("--base", o.bases, "A frozen strata layer under FILE (repeat, bottom first)");
    bench->add_option("FILE", o.file)->required();
    bench->callback([&exit_code] { exit_code = run_bench(o); });
}

} // namespace strata::cli
