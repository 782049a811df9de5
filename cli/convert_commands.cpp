// `strata img convert [-f raw|qcow2|strata] -O raw|qcow2|strata SRC DST` and
// `strata img compare A B`, with qemu-img's arguments and exit codes (compare:
// 0 identical, 1 different, 2 error). A strata output is one standalone,
// writable layer. Progress shows on stderr when it is a terminal (-p forces it).
#include "base/sysexits.h"
#include "imaging/qcow2/qcow2_writer.h"
#include "store/store.h"
#include "cli/commands.h"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <unistd.h>

namespace strata::cli {

namespace {

ProgressFn progress_bar(bool force)
{
    if (!force && !::isatty(2))
        return {};
    auto last = std::make_shared<int>(-1);
    return [last](std::uint64_t done, std::uint64_t total) {
        int pct = total == 0 ? 100 : static_cast<int>(done * 100 / total);
        if (pct != *last) {
            *last = pct;
            std::fprintf(stderr, "\r    (%d.00/100%%)%s", pct, pct == 100 ? "\n" : "");
        }
    };
}

struct Opened {
    std::unique_ptr<BlockBackend> backend;
    BlockStatusFn status;
};

Result<Opened> open_source(std::string const& path, std::string const& format_name)
{
    ImageFormat format = ImageFormat::Raw;
    if (format_name.empty()) {
        STRATA_TRY(detected, detect_format(path));
        format = detected;
    } else {
        STRATA_TRY(parsed, parse_format(format_name));
        format = parsed;
    }
    OpenImageOptions options;
    options.cache = CacheMode::Writeback;
    options.engine = EngineKind::Sync;
    STRATA_TRY(backend, open_image(path, format, options));
    STRATA_TRY(status, image_block_status(*backend, format, path));
    return Opened { std::move(backend), std::move(status) };
}

Status convert(std::string const& src, std::string const& in_format, std::string const& out_format, std::string const& dst, bool progress)
{
    STRATA_TRY(source, open_source(src, in_format));
    STRATA_TRY(out, parse_format(out_format));
    CopySource copy { source.backend.get(), source.status };
    switch (out) {
    case ImageFormat::Raw: return copy_to_raw(copy, dst, progress_bar(progress));
    case ImageFormat::Qcow2: return export_qcow2(copy, dst, {}, progress_bar(progress));
    case ImageFormat::Strata: {
        // qemu-img replaces an existing output; a layer is created new.
        if (::unlink(dst.c_str()) != 0 && errno != ENOENT)
            return errno_error("replace '" + dst + "'");
        return copy_to_new_layer(copy, dst, LayerId::random(), false, progress_bar(progress));
    }
    case ImageFormat::Archive:
        return make_error(ErrorKind::Usage, "img convert writes raw, qcow2 or strata; archives come from `strata images export`");
    }
    return ok();
}

// 0 identical, 1 different (with the first differing offset printed), or an error.
Result<int> compare(std::string const& a_path, std::string const& b_path, std::string const& fa, std::string const& fb)
{
    STRATA_TRY(a, open_source(a_path, fa));
    STRATA_TRY(b, open_source(b_path, fb));
    std::uint64_t common = std::min(a.backend->size(), b.backend->size());
    std::uint64_t total = std::max(a.backend->size(), b.backend->size());
    std::vector<std::byte> ba(4 << 20), bb(4 << 20);
    for (std::uint64_t pos = 0; pos < total;) {
        std::uint64_t max = std::min<std::uint64_t>(ba.size(), (pos < common ? common : total) - pos);
        // Ranges both sides know to be zero need no reading.
        std::uint64_t n = max;
        bool a_zero = false, b_zero = pos >= b.backend->size(), a_past = pos >= a.backend->size();
        a_zero = a_past;
        if (!a_past) {
            STRATA_TRY(ra, a.status(pos, max));
            a_zero = ra.kind == RangeKind::Zero;
            n = std::min(n, ra.length);
        }
        if (!b_zero) {
            STRATA_TRY(rb, b.status(pos, max));
            b_zero = rb.kind == RangeKind::Zero;
            n = std::min(n, rb.length);
        }
        n = std::max<std::uint64_t>(512, n / 512 * 512);
        auto pa = std::span(ba).first(static_cast<std::size_t>(n));
        auto pb = std::span(bb).first(static_cast<std::size_t>(n));
        if (!(a_zero && b_zero)) {
            if (a_zero)
                std::memset(pa.data(), 0, n);
            else
                STRATA_TRY(read_sync(*a.backend, pos, pa));
            if (b_zero)
                std::memset(pb.data(), 0, n);
            else
                STRATA_TRY(read_sync(*b.backend, pos, pb));
            if (std::memcmp(pa.data(), pb.data(), n) != 0) {
                std::uint64_t i = 0;
                while (pa[i] == pb[i])
                    ++i;
                std::printf("Content mismatch at offset %llu!\n", static_cast<unsigned long long>(pos + i / 512 * 512));
                return 1;
            }
        }
        pos += n;
    }
    if (a.backend->size() != b.backend->size())
        std::printf("Warning: Image size mismatch!\n");
    std::printf("Images are identical.\n");
    return 0;
}

} // namespace

void register_convert(CLI::App& app, int& exit_code)
{
    CLI::App* img = img_group(app);
    struct Args {
        std::string in_format, out_format, src, dst, fa, fb;
        bool progress { false };
    };
    auto a = std::make_shared<Args>();
    auto* conv = img->add_subcommand("convert", "Convert a disk image to raw, qcow2 or a standalone strata layer");
    conv->add_option("-f", a->in_format, "Source format: raw, qcow2, strata (default: from the magic)");
    conv->add_option("-O", a->out_format, "Output format: raw, qcow2, strata")->required();
    conv->add_flag("-p", a->progress, "Show progress");
    conv->add_option("SRC", a->src)->required();
    conv->add_option("DST", a->dst)->required();
    conv->callback([&exit_code, a] {
        auto st = convert(a->src, a->in_format, a->out_format, a->dst, a->progress);
        if (!st) {
            std::cerr << "strata img convert: " << st.error().message << "\n";
            exit_code = exit_code_for(st.error().kind);
            return;
        }
        exit_code = 0;
    });
    auto* cmp = img->add_subcommand("compare", "Compare the contents of two images (0 identical, 1 different, 2 error)");
    cmp->add_option("-f", a->fa, "Format of the first image");
    cmp->add_option("-F", a->fb, "Format of the second image");
    cmp->add_option("A", a->src)->required();
    cmp->add_option("B", a->dst)->required();
    cmp->callback([&exit_code, a] {
        auto r = compare(a->src, a->dst, a->fa, a->fb);
        if (!r) {
            std::cerr << "strata img compare: " << r.error().message << "\n";
            exit_code = 2;
            return;
        }
        exit_code = r.value();
    });
}

} // namespace strata::cli
