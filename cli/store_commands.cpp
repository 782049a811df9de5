// `strata disks|snapshots|images ...`: a thin CLI over store/store.h. Every
// command opens the store at $STRATA_HOME (default ~/.local/share/strata), maps
// errors to sysexits codes (base/sysexits.h) with the store's message, and offers
// --json on list/describe. Long operations (import, export, flatten) show
// progress on stderr when it is a terminal.
#include "base/sysexits.h"
#include "store/rootfs_image.h"
#include "store/store.h"
#include "cli/commands.h"
#include "cli/run_support.h"
#include "cli/img_util.h"
#include "registry/lazy.h"

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <unistd.h>

namespace strata::cli {

namespace {

// Progress on a terminal: "\r  42%" on stderr, cleared at the end.
ProgressFn terminal_progress(std::string const& what)
{
    if (!::isatty(2))
        return {};
    auto last = std::make_shared<int>(-1);
    return [what, last](std::uint64_t done, std::uint64_t total) {
        int pct = total == 0 ? 100 : static_cast<int>(done * 100 / total);
        if (pct == *last)
            return;
        *last = pct;
        std::fprintf(stderr, "\r%s %3d%%%s", what.c_str(), pct, pct == 100 ? "\n" : "");
    };
}

// Runs fn with the store; its int is the exit code. With STRATA_TIMING set in
// the environment, prints how long the operation took inside the process
// (bench/imaging uses it to time snapshots and clones without process startup).
template<typename F>
void with_store(int& exit_code, F&& fn)
{
    auto start = std::chrono::steady_clock::now();
    auto store = Store::open(Store::default_root());
    if (!store) {
        exit_code = report(store.error());
        return;
    }
    exit_code = fn(*store.value());
    if (::getenv("STRATA_TIMING") != nullptr) {
        auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start).count();
        std::fprintf(stderr, "strata-timing-us %lld\n", static_cast<long long>(us));
    }
}

void print_list(std::vector<ObjectManifest> const& all, bool json)
{
    if (json) {
        nlohmann::json out = nlohmann::json::array();
        for (auto const& m : all)
            out.push_back(object_json(m));
        std::cout << out.dump(2) << "\n";
        return;
    }
    std::printf("%-24s %12s %6s  %-20s  %s\n", "NAME", "SIZE", "LAYERS", "CREATED", "SOURCE");
    for (auto const& m : all)
        std::printf("%-24s %12s %6zu  %-20s  %s\n", m.name.c_str(), human_size(m.size).c_str(), m.layers.size(), m.created.c_str(),
            m.source.c_str());
}

void print_details(ObjectDetails const& d, bool json)
{
    nlohmann::json j = object_json(d.manifest);
    nlohmann::json layers = nlohmann::json::array();
    // Layers still being pulled lazily (registry/lazy.h): how much is here.
    std::vector<std::optional<registry::LazyProgress>> lazy;
    for (auto const& l : d.layers) {
        auto p = registry::lazy_progress(Store::default_root(), l.id);
        lazy.push_back(p ? p.value() : std::nullopt);
    }
    for (std::size_t i = 0; i < d.layers.size(); ++i) {
        auto const& l = d.layers[i];
        layers.push_back({ { "id", l.id.to_string() }, { "allocated_bytes", l.file_bytes }, { "frozen", l.frozen } });
        if (auto const& p = lazy[i])
            layers.back()["lazy"] = { { "chunks_present", p->chunks_present }, { "chunks_total", p->chunks_total },
                { "bytes_present", p->bytes_present }, { "bytes_total", p->bytes_total },
                { "blob_bytes_present", p->blob_bytes_present }, { "blob_bytes_total", p->blob_bytes_total } };
    }
    j["layer_details"] = layers;
    j["shares_layers_with"] = d.used_by;
    if (json) {
        std::cout << j.dump(2) << "\n";
        return;
    }
    auto const& m = d.manifest;
    std::printf("name: %s\nkind: %s\nsize: %s (%llu bytes)\ncreated: %s\nsource: %s\n", m.name.c_str(),
        std::string(kind_name(m.kind)).c_str(), human_size(m.size).c_str(), static_cast<unsigned long long>(m.size),
        m.created.c_str(), m.source.c_str());
    if (!m.description.empty())
        std::printf("description: %s\n", m.description.c_str());
    std::printf("layers (bottom first):\n");
    for (std::size_t i = 0; i < d.layers.size(); ++i) {
        auto const& l = d.layers[i];
        std::printf("  %s  %s  %s\n", l.id.to_string().c_str(), l.frozen ? "frozen  " : "writable", human_size(l.file_bytes).c_str());
        if (auto const& p = lazy[i])
            std::printf("    pulled lazily: %llu of %llu chunks here (%s of %s)\n", static_cast<unsigned long long>(p->chunks_present),
                static_cast<unsigned long long>(p->chunks_total), human_size(p->bytes_present).c_str(), human_size(p->bytes_total).c_str());
    }
    for (auto const& u : d.used_by)
        std::printf("shares layers with: %s\n", u.c_str());
}

Result<std::uint64_t> size_arg(std::string const& text)
{
    return parse_size(text);
}

// list, describe and delete, the same for every kind.
void add_common(CLI::App* group, ObjectKind kind, int& exit_code)
{
    auto json = std::make_shared<bool>(false);
    auto name = std::make_shared<std::string>();
    auto* list = group->add_subcommand("list", "List them");
    list->add_flag("--json", *json, "JSON output");
    list->callback([&exit_code, kind, json] {
        with_store(exit_code, [&](Store& s) {
            auto all = s.list(kind);
            if (!all)
                return report(all.error());
            print_list(all.value(), *json);
            return 0;
        });
    });
    auto* describe = group->add_subcommand("describe", "Show one");
    describe->add_option("NAME", *name)->required();
    describe->add_flag("--json", *json, "JSON output");
    describe->callback([&exit_code, kind, json, name] {
        with_store(exit_code, [&](Store& s) {
            auto d = s.describe(kind, *name);
            if (!d)
                return report(d.error());
            print_details(d.value(), *json);
            return 0;
        });
    });
    auto* del = group->add_subcommand("delete", "Delete one (layers nothing else uses are removed)");
    del->add_option("NAME", *name)->required();
    del->callback([&exit_code, kind, name] {
        with_store(exit_code, [&](Store& s) {
            auto st = s.remove(kind, *name);
            return st ? 0 : report(st.error());
        });
    });
}

void register_disks(CLI::App& app, int& exit_code)
{
    auto* disks = app.add_subcommand("disks", "Disks in the store (chains of layers)");
    disks->require_subcommand(1);
    add_common(disks, ObjectKind::Disk, exit_code);
    struct Args {
        std::string name, size, image, snapshot, snapshot_name;
    };
    auto a = std::make_shared<Args>();

    auto* create = disks->add_subcommand("create", "Create a disk: empty, or an O(1) clone of an image or snapshot");
    create->add_option("NAME", a->name)->required();
    auto* o_size = create->add_option("--size", a->size, "Size, with qemu-img suffixes (k, M, G, T)");
    auto* o_image = create->add_option("--image", a->image, "Clone this image");
    auto* o_snap = create->add_option("--source-snapshot", a->snapshot, "Clone this snapshot");
    o_size->excludes(o_image)->excludes(o_snap);
    o_image->excludes(o_snap);
    create->callback([&exit_code, a] {
        with_store(exit_code, [&](Store& s) {
            if (!a->size.empty()) {
                auto size = size_arg(a->size);
                if (!size)
                    return report(size.error());
                auto m = s.create_disk(a->name, size.value());
                return m ? 0 : report(m.error());
            }
            if (a->image.empty() && a->snapshot.empty())
                return report(make_error(ErrorKind::Usage, "disks create needs --size, --image or --source-snapshot"));
            auto m = a->image.empty() ? s.create_disk_from(a->name, ObjectKind::Snapshot, a->snapshot)
                                      : s.create_disk_from(a->name, ObjectKind::Image, a->image);
            return m ? 0 : report(m.error());
        });
    });

    auto* snap = disks->add_subcommand("snapshot", "Freeze the disk's top layer as a snapshot (O(1))");
    snap->add_option("NAME", a->name)->required();
    snap->add_option("--snapshot-name", a->snapshot_name)->required();
    snap->callback([&exit_code, a] {
        with_store(exit_code, [&](Store& s) {
            auto m = s.snapshot_disk(a->name, a->snapshot_name);
            return m ? 0 : report(m.error());
        });
    });

    auto* revert = disks->add_subcommand("revert", "Return the disk to a snapshot");
    revert->add_option("NAME", a->name)->required();
    revert->add_option("--snapshot", a->snapshot)->required();
    revert->callback([&exit_code, a] {
        with_store(exit_code, [&](Store& s) {
            auto st = s.revert_disk(a->name, a->snapshot);
            return st ? 0 : report(st.error());
        });
    });

    auto* commit = disks->add_subcommand("commit", "Merge the top frozen layer into its parent");
    commit->add_option("NAME", a->name)->required();
    commit->callback([&exit_code, a] {
        with_store(exit_code, [&](Store& s) {
            auto st = s.commit_disk(a->name);
            return st ? 0 : report(st.error());
        });
    });

    auto* flatten = disks->add_subcommand("flatten", "Rewrite the disk as one standalone layer");
    flatten->add_option("NAME", a->name)->required();
    flatten->callback([&exit_code, a] {
        with_store(exit_code, [&](Store& s) {
            auto st = s.flatten_disk(a->name);
            return st ? 0 : report(st.error());
        });
    });

    auto* resize = disks->add_subcommand("resize", "Grow the disk");
    resize->add_option("NAME", a->name)->required();
    resize->add_option("--size", a->size)->required();
    resize->callback([&exit_code, a] {
        with_store(exit_code, [&](Store& s) {
            auto size = size_arg(a->size);
            if (!size)
                return report(size.error());
            auto st = s.resize_disk(a->name, size.value());
            return st ? 0 : report(st.error());
        });
    });
}

void register_images(CLI::App& app, int& exit_code)
{
    auto* images = app.add_subcommand("images", "Images in the store");
    images->require_subcommand(1);
    add_common(images, ObjectKind::Image, exit_code);
    struct Args {
        std::string name, file, format, out_format { "archive" }, disk, snapshot, description, from_dir, size;
    };
    auto a = std::make_shared<Args>();

    auto* import = images->add_subcommand("import", "Import a raw, qcow2, strata or archive file as an image");
    import->add_option("NAME", a->name)->required();
    import->add_option("FILE", a->file)->required();
    import->add_option("-f", a->format, "Format: raw, qcow2, strata, archive (default: from the file's magic)");
    import->add_option("--description", a->description);
    import->callback([&exit_code, a] {
        with_store(exit_code, [&](Store& s) {
            ImportOptions options;
            if (!a->format.empty()) {
                auto f = parse_format(a->format);
                if (!f)
                    return report(f.error());
                options.format = f.value();
            }
            options.description = a->description;
            options.progress = terminal_progress("importing");
            auto m = s.import_image(a->name, a->file, options);
            return m ? 0 : report(m.error());
        });
    });

    auto* exp = images->add_subcommand("export", "Export an image (default: a portable archive)");
    exp->add_option("NAME", a->name)->required();
    exp->add_option("FILE", a->file)->required();
    exp->add_option("-O", a->out_format, "Format: archive, raw, qcow2, strata");
    exp->callback([&exit_code, a] {
        with_store(exit_code, [&](Store& s) {
            ExportOptions options;
            auto f = parse_format(a->out_format);
            if (!f)
                return report(f.error());
            switch (f.value()) {
            case ImageFormat::Archive: options.format = ExportFormat::Archive; break;
            case ImageFormat::Raw: options.format = ExportFormat::Raw; break;
            case ImageFormat::Qcow2: options.format = ExportFormat::Qcow2; break;
            case ImageFormat::Strata: options.format = ExportFormat::Strata; break;
            }
            options.progress = terminal_progress("exporting");
            auto st = s.export_image(a->name, a->file, options);
            return st ? 0 : report(st.error());
        });
    });

    auto* create = images->add_subcommand("create", "Create an image from a disk or a snapshot (O(1))");
    create->add_option("NAME", a->name)->required();
    auto* o_disk = create->add_option("--source-disk", a->disk);
    auto* o_snap = create->add_option("--source-snapshot", a->snapshot);
    o_disk->excludes(o_snap);
    create->callback([&exit_code, a] {
        with_store(exit_code, [&](Store& s) {
            if (a->disk.empty() == a->snapshot.empty())
                return report(make_error(ErrorKind::Usage, "images create needs --source-disk or --source-snapshot"));
            auto m = a->disk.empty() ? s.create_image(a->name, ObjectKind::Snapshot, a->snapshot)
                                     : s.create_image(a->name, ObjectKind::Disk, a->disk);
            return m ? 0 : report(m.error());
        });
    });

    auto* rootfs = images->add_subcommand("create-rootfs",
        "Create an ext4 image from a directory with mke2fs -d (no mounts; every file owned by root, modes and setuid bits kept)");
    rootfs->add_option("NAME", a->name)->required();
    rootfs->add_option("--from-dir", a->from_dir, "The directory that becomes the file system's root")->required();
    rootfs->add_option("--size", a->size, "Size, with qemu-img suffixes (default: the tree's du x 1.3 + inode tables + 64 MiB)");
    rootfs->add_option("--description", a->description);
    rootfs->callback([&exit_code, a] {
        // The size's syntax is checked before the store or the directory is touched.
        RootfsOptions options;
        if (!a->size.empty()) {
            auto size = size_arg(a->size);
            if (!size) {
                exit_code = report(size.error());
                return;
            }
            options.size = size.value();
        }
        options.description = a->description;
        options.progress = terminal_progress("importing");
        with_store(exit_code, [&](Store& s) {
            auto r = create_rootfs_image(s, a->name, a->from_dir, options);
            if (!r)
                return report(r.error());
            auto const& rep = r.value();
            std::printf("image %s: ext4, %s (%llu bytes, %s), %llu inodes; the directory holds %s in %llu entries\n",
                rep.manifest.name.c_str(), human_size(rep.size).c_str(), static_cast<unsigned long long>(rep.size),
                rep.size_chosen ? "chosen: du x 1.3 + inode tables + 64 MiB" : "from --size",
                static_cast<unsigned long long>(rep.inodes), human_size(rep.usage.bytes).c_str(),
                static_cast<unsigned long long>(rep.usage.entries));
            return 0;
        });
    });
}

} // namespace

void register_store(CLI::App& app, int& exit_code)
{
    register_disks(app, exit_code);
    auto* snapshots = app.add_subcommand("snapshots", "Snapshots of disks");
    snapshots->require_subcommand(1);
    add_common(snapshots, ObjectKind::Snapshot, exit_code);
    register_images(app, exit_code);
}

} // namespace strata::cli
