// `strata img create|info|check|map|resize`: file tools with qemu-img's
// arguments and outputs where the two overlap (check's exit codes: 0 clean,
// 1 could not check, 2 corrupt, 3 leaks, 63 unsupported format). `img bench` is
// in img_bench.cpp; `img convert|compare` are registered by the store's engineer
// on the same `img` group (see img_group()).
#include "cli/commands.h"
#include "cli/img_util.h"

#include "base/sysexits.h"
#include "imaging/layer/layer.h"
#include "imaging/open_image.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <fcntl.h>
#include <iostream>
#include <sys/stat.h>
#include <unistd.h>

namespace strata::cli {

namespace {

int report_img(Error const& error)
{
    std::cerr << "strata img: " << error.message << "\n";
    return exit_code_for(error.kind);
}

std::uint64_t disk_usage(std::string const& path)
{
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 ? static_cast<std::uint64_t>(st.st_blocks) * 512 : 0;
}

Result<ImageFormat> pick_format(std::string const& path, std::string const& given)
{
    if (!given.empty())
        return parse_format(given);
    return detect_format(path);
}

int cmd_create(std::string const& format, std::string const& file, std::string const& size_text)
{
    auto size = parse_size(size_text);
    if (!size)
        return report_img(size.error());
    auto fmt = parse_format(format);
    if (!fmt)
        return report_img(fmt.error());
    std::uint64_t bytes = (size.value() + 511) / 512 * 512;
    if (fmt.value() == ImageFormat::Raw) {
        Fd fd(::open(file.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
        if (!fd.valid())
            return report_img(errno_error("create '" + file + "'"));
        if (::ftruncate(fd.get(), static_cast<off_t>(bytes)) != 0)
            return report_img(errno_error("size '" + file + "'"));
    } else if (fmt.value() == ImageFormat::Strata) {
        auto engine = make_engine(EngineKind::Sync);
        if (!engine)
            return report_img(engine.error());
        auto layer = Layer::create(file, bytes, LayerId::random(), *engine.value());
        if (!layer)
            return report_img(layer.error());
    } else {
        return report_img(make_error(ErrorKind::Unsupported, "img create makes raw or strata images"));
    }
    std::printf("Formatting '%s', fmt=%s size=%llu\n", file.c_str(), std::string(format_name(fmt.value())).c_str(),
        static_cast<unsigned long long>(bytes));
    return 0;
}

int cmd_info(std::string const& file, std::string const& format, std::string const& output)
{
    auto fmt = pick_format(file, format);
    if (!fmt)
        return report_img(fmt.error());
    nlohmann::ordered_json j;
    j["filename"] = file;
    j["format"] = std::string(format_name(fmt.value()));
    if (fmt.value() == ImageFormat::Strata) {
        auto engine = make_engine(EngineKind::Sync);
        auto layer = Layer::open(file, LayerOpen::ReadOnly, *engine.value(), LayerOptions { .cache = CacheMode::Writeback });
        if (!layer)
            return report_img(layer.error());
        Layer& l = *layer.value();
        j["virtual-size"] = l.size();
        j["actual-size"] = disk_usage(file);
        j["cluster-size"] = kBlockSize;
        j["layer-id"] = l.id().to_string();
        j["state"] = l.frozen() ? "frozen" : "writable";
        if (l.digest())
            j["digest"] = l.digest()->to_string();
        j["allocated-size"] = [&] {
            std::uint64_t n = 0;
            l.map().for_each([&](Extent const& e) { n += mapval::kind(e.value) == MapKind::Data ? e.count : 0; });
            return n * kBlockSize;
        }();
        j["dirty-flag"] = false;
    } else {
        auto backend = open_image(file, fmt.value(), OpenImageOptions { .cache = CacheMode::Writeback, .engine = EngineKind::Sync });
        if (!backend)
            return report_img(backend.error());
        j["virtual-size"] = backend.value()->size();
        j["actual-size"] = disk_usage(file);
        j["dirty-flag"] = false;
    }
    if (output == "json") {
        std::cout << j.dump(4) << "\n";
        return 0;
    }
    std::cout << "image: " << file << "\nfile format: " << j["format"].get<std::string>() << "\nvirtual size: "
              << human_size(j["virtual-size"].get<std::uint64_t>()) << " (" << j["virtual-size"].get<std::uint64_t>() << " bytes)\n"
              << "disk size: " << human_size(j["actual-size"].get<std::uint64_t>()) << "\n";
    if (j.contains("layer-id"))
        std::cout << "cluster_size: 4096\nlayer id: " << j["layer-id"].get<std::string>() << "\nstate: " << j["state"].get<std::string>()
                  << "\n";
    if (j.contains("digest"))
        std::cout << "digest: " << j["digest"].get<std::string>() << "\n";
    return 0;
}

int cmd_check(std::string const& file, std::string const& format, std::string const& repair, std::string const& output)
{
    auto fmt = pick_format(file, format);
    if (!fmt) {
        report_img(fmt.error());
        return 1;
    }
    if (fmt.value() != ImageFormat::Strata) {
        std::cerr << "strata img: This image format (" << format_name(fmt.value()) << ") does not support checks\n";
        return 63;
    }
    RepairMode mode = RepairMode::None;
    if (repair == "leaks")
        mode = RepairMode::Leaks;
    else if (repair == "all")
        mode = RepairMode::All;
    else if (!repair.empty())
        return report_img(make_error(ErrorKind::Usage, "-r takes leaks or all"));
    auto engine = make_engine(EngineKind::Sync);
    auto layer = Layer::open(file, mode == RepairMode::None ? LayerOpen::ReadOnly : LayerOpen::Rewrite, *engine.value(),
        LayerOptions { .cache = CacheMode::Writeback, .tolerant = true });
    if (!layer) {
        std::cerr << "strata img: could not check '" << file << "': " << layer.error().message << "\n";
        return 1;
    }
    auto r = layer.value()->check(mode);
    if (!r) {
        std::cerr << "strata img: check failed: " << r.error().message << "\n";
        return 1;
    }
    CheckReport const& c = r.value();
    std::uint64_t corrupt_left = c.corruptions - c.corruptions_fixed;
    std::uint64_t leaks_left = c.leaks - c.leaks_fixed;
    if (output == "json") {
        nlohmann::ordered_json j;
        j["image-end-offset"] = c.image_end_offset;
        j["total-clusters"] = c.total_blocks;
        j["check-errors"] = 0;
        j["allocated-clusters"] = c.allocated_blocks;
        j["leaks"] = leaks_left;
        j["corruptions"] = corrupt_left;
        j["leaks-fixed"] = c.leaks_fixed;
        j["corruptions-fixed"] = c.corruptions_fixed;
        j["filename"] = file;
        j["format"] = "strata";
        j["messages"] = c.messages;
        std::cout << j.dump(4) << "\n";
    } else {
        for (auto const& m : c.messages)
            std::cout << (m.find("leaked") != std::string::npos ? "Leaked: " : "ERROR: ") << m << "\n";
        if (c.leaks_fixed || c.corruptions_fixed)
            std::cout << "The following inconsistencies were found and repaired:\n\n    " << c.leaks_fixed << " leaked clusters\n    "
                      << c.corruptions_fixed << " corruptions\n\n";
        if (corrupt_left)
            std::cout << "\n" << corrupt_left << " errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt it.\n";
        if (leaks_left)
            std::cout << "\n" << leaks_left << " leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.\n";
        if (!corrupt_left && !leaks_left)
            std::cout << "No errors were found on the image.\n";
        if (c.total_blocks)
            std::printf("%llu/%llu = %.2f%% allocated, 0.00%% fragmented, 0.00%% compressed clusters\n",
                static_cast<unsigned long long>(c.allocated_blocks), static_cast<unsigned long long>(c.total_blocks),
                100.0 * static_cast<double>(c.allocated_blocks) / static_cast<double>(c.total_blocks));
        std::printf("Image end offset: %llu\n", static_cast<unsigned long long>(c.image_end_offset));
    }
    if (corrupt_left)
        return 2;
    if (leaks_left)
        return 3;
    return 0;
}

int cmd_map(std::string const& file, std::string const& format, std::string const& output)
{
    auto fmt = pick_format(file, format);
    if (!fmt)
        return report_img(fmt.error());
    struct Run {
        std::uint64_t start, length;
        bool data, zero;
        std::uint64_t offset;
    };
    std::vector<Run> runs;
    std::uint64_t size = 0;
    if (fmt.value() == ImageFormat::Strata) {
        auto engine = make_engine(EngineKind::Sync);
        auto layer = Layer::open(file, LayerOpen::ReadOnly, *engine.value(), LayerOptions { .cache = CacheMode::Writeback });
        if (!layer)
            return report_img(layer.error());
        size = layer.value()->size();
        std::uint64_t pos = 0;
        layer.value()->map().for_each([&](Extent const& e) {
            std::uint64_t s = e.first * kBlockSize;
            if (s > pos)
                runs.push_back(Run { pos, s - pos, false, true, 0 });
            bool data = mapval::kind(e.value) == MapKind::Data;
            std::uint64_t len = std::min(e.count * kBlockSize, size - s);
            runs.push_back(Run { s, len, data, !data, data ? mapval::offset(e.value) : 0 });
            pos = s + len;
        });
        if (pos < size)
            runs.push_back(Run { pos, size - pos, false, true, 0 });
    } else if (fmt.value() == ImageFormat::Raw) {
        auto extents = file_data_extents(file);
        if (!extents)
            return report_img(extents.error());
        size = extents.value().first;
        for (auto const& [s, len, data] : extents.value().second)
            runs.push_back(Run { s, len, data, !data, s });
    } else {
        return report_img(make_error(ErrorKind::Unsupported, "img map reads raw and strata images"));
    }
    if (output == "json") {
        nlohmann::ordered_json arr = nlohmann::ordered_json::array();
        for (auto const& r : runs) {
            nlohmann::ordered_json o;
            o["start"] = r.start;
            o["length"] = r.length;
            o["depth"] = 0;
            o["present"] = r.data || fmt.value() == ImageFormat::Raw || r.zero;
            o["zero"] = r.zero;
            o["data"] = r.data;
            if (r.data)
                o["offset"] = r.offset;
            arr.push_back(o);
        }
        std::cout << arr.dump() << "\n";
        return 0;
    }
    std::printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File");
    for (auto const& r : runs)
        if (r.data)
            std::printf("%#-16llx%#-16llx%#-16llx%s\n", static_cast<unsigned long long>(r.start),
                static_cast<unsigned long long>(r.length), static_cast<unsigned long long>(r.offset), file.c_str());
    return 0;
}

int cmd_resize(std::string const& file, std::string const& format, std::string const& size_text)
{
    auto fmt = pick_format(file, format);
    if (!fmt)
        return report_img(fmt.error());
    bool relative = !size_text.empty() && (size_text[0] == '+' || size_text[0] == '-');
    if (!size_text.empty() && size_text[0] == '-')
        return report_img(make_error(ErrorKind::Unsupported, "shrinking is not supported"));
    auto delta = parse_size(relative ? size_text.substr(1) : size_text);
    if (!delta)
        return report_img(delta.error());
    if (fmt.value() == ImageFormat::Strata) {
        auto engine = make_engine(EngineKind::Sync);
        auto layer = Layer::open(file, LayerOpen::Writable, *engine.value(), LayerOptions { .cache = CacheMode::Writeback });
        if (!layer)
            return report_img(layer.error());
        std::uint64_t target = (relative ? layer.value()->size() + delta.value() : delta.value() + 511) / 512 * 512;
        if (auto s = layer.value()->resize(target); !s)
            return report_img(s.error());
    } else if (fmt.value() == ImageFormat::Raw) {
        struct stat st {};
        if (::stat(file.c_str(), &st) != 0)
            return report_img(errno_error("stat '" + file + "'"));
        std::uint64_t cur = static_cast<std::uint64_t>(st.st_size);
        std::uint64_t target = relative ? cur + delta.value() : delta.value();
        if (target < cur)
            return report_img(make_error(ErrorKind::Unsupported, "shrinking is not supported"));
        if (::truncate(file.c_str(), static_cast<off_t>(target)) != 0)
            return report_img(errno_error("resize '" + file + "'"));
    } else {
        return report_img(make_error(ErrorKind::Unsupported, "img resize changes raw and strata images"));
    }
    std::printf("Image resized.\n");
    return 0;
}

int cmd_freeze(std::string const& file, bool no_digest)
{
    auto engine = make_engine(EngineKind::Sync);
    auto layer = Layer::open(file, LayerOpen::Writable, *engine.value(), LayerOptions { .cache = CacheMode::Writeback });
    if (!layer)
        return report_img(layer.error());
    if (auto s = layer.value()->freeze(!no_digest); !s)
        return report_img(s.error());
    if (auto d = layer.value()->digest())
        std::printf("%s\n", d->to_string().c_str());
    return 0;
}

} // namespace

CLI::App* img_group(CLI::App& app)
{
    for (auto* sub : app.get_subcommands([](CLI::App* s) { return s->get_name() == "img"; }))
        return sub;
    auto* img = app.add_subcommand("img", "Image file tools (qemu-img's arguments)");
    img->require_subcommand(1);
    return img;
}

void register_img(CLI::App& app, int& exit_code)
{
    CLI::App* img = img_group(app);

    auto* create = img->add_subcommand("create", "Create a raw or strata image");
    static std::string c_fmt = "strata", c_file, c_size;
    create->add_option("-f", c_fmt, "Format: strata (default) or raw");
    create->add_option("FILE", c_file)->required();
    create->add_option("SIZE", c_size)->required();
    create->callback([&exit_code] { exit_code = cmd_create(c_fmt, c_file, c_size); });

    static std::string i_file, i_fmt, i_output = "human";
    auto* info = img->add_subcommand("info", "Show an image's format, size and layer identity");
    info->add_option("-f", i_fmt, "Format (detected from the magic when absent)");
    info->add_option("--output", i_output, "human or json");
    info->add_option("FILE", i_file)->required();
    info->callback([&exit_code] { exit_code = cmd_info(i_file, i_fmt, i_output); });

    static std::string k_file, k_fmt, k_repair, k_output = "human";
    auto* check = img->add_subcommand("check", "Check a strata layer (exit 0 clean, 1 could not check, 2 corrupt, 3 leaks, 63 unsupported)");
    check->add_option("-f", k_fmt, "Format");
    check->add_option("-r", k_repair, "Repair: leaks or all");
    check->add_option("--output", k_output, "human or json");
    check->add_option("FILE", k_file)->required();
    check->callback([&exit_code] { exit_code = cmd_check(k_file, k_fmt, k_repair, k_output); });

    static std::string m_file, m_fmt, m_output = "human";
    auto* map = img->add_subcommand("map", "Show where an image's data lies");
    map->add_option("-f", m_fmt, "Format");
    map->add_option("--output", m_output, "human or json");
    map->add_option("FILE", m_file)->required();
    map->callback([&exit_code] { exit_code = cmd_map(m_file, m_fmt, m_output); });

    static std::string r_file, r_fmt, r_size;
    auto* resize = img->add_subcommand("resize", "Grow an image to SIZE (or by +SIZE)");
    resize->add_option("-f", r_fmt, "Format");
    resize->add_option("FILE", r_file)->required();
    resize->add_option("SIZE", r_size)->required()->allow_extra_args(false);
    resize->callback([&exit_code] { exit_code = cmd_resize(r_file, r_fmt, r_size); });

    static std::string f_file;
    static bool f_no_digest = false;
    auto* freeze = img->add_subcommand("freeze", "Freeze a strata layer (read-only forever) and print its SHA-256 digest");
    freeze->add_flag("--no-digest", f_no_digest, "Skip computing the content digest");
    freeze->add_option("FILE", f_file)->required();
    freeze->callback([&exit_code] { exit_code = cmd_freeze(f_file, f_no_digest); });

    register_img_bench(*img, exit_code);
}

} // namespace strata::cli
