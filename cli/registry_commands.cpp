// `strata images push|pull` and `strata machine-images push|pull`: a thin CLI over registry/transfer.h. Credentials come
// from --creds, $STRATA_REGISTRY_CREDS or a Docker-style config.json
// (registry/client.h); --insecure speaks plain HTTP to the registry named in the
// reference, and only to it. Errors exit with the sysexits code of their kind
// (README "Registries").
#include "base/sysexits.h"
#include "cli/commands.h"
#include "cli/run_support.h"
#include "registry/lazy.h"
#include "registry/transfer.h"
#include "store/machine_image_store.h"
#include "store/record_files.h"
#include "store/store.h"

#include <CLI/CLI.hpp>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>

namespace strata::cli {

namespace {

struct RegistryArgs {
    std::string name, ref, creds, ca_cert;
    bool insecure { false };
    bool tls_verify { true };
    bool lazy { false };
    int level { 1 };
    std::uint64_t part_mib { 4096 };
};

void add_registry_flags(CLI::App* cmd, RegistryArgs& a)
{
    cmd->add_option("--creds", a.creds, "USER:PASSWORD for the registry (else $STRATA_REGISTRY_CREDS, else config.json)");
    cmd->add_flag("--insecure", a.insecure, "Plain HTTP to this registry (for a registry on a trusted network or this host)");
    cmd->add_option("--ca-cert", a.ca_cert, "PEM file of the CA certificates to trust for this registry's HTTPS (instead of the system's)")
        ->check(CLI::ExistingFile);
    cmd->add_option("--tls-verify", a.tls_verify, "false: do not verify the registry's HTTPS certificate (as skopeo's --tls-verify=false)");
}

Result<registry::TransferOptions> transfer_options(RegistryArgs const& a, registry::Reference const& ref)
{
    registry::TransferOptions o;
    STRATA_TRY(creds, registry::find_credentials(ref.registry, a.creds));
    o.client.credentials = creds;
    o.client.plain_http = a.insecure;
    if (!a.ca_cert.empty()) {
        char* real = ::realpath(a.ca_cert.c_str(), nullptr);
        o.client.ca_cert = real != nullptr ? real : a.ca_cert;
        ::free(real);
    }
    o.client.tls_verify = a.tls_verify;
    o.level = a.level;
    o.lazy = a.lazy;
    o.part_size = a.part_mib << 20;
    return o;
}

void print_stats(registry::TransferStats const& s)
{
    std::cerr << "strata: blobs uploaded " << s.blobs_uploaded << " (" << s.bytes_uploaded << " bytes), already there "
              << s.blobs_skipped << " (mounted " << s.blobs_mounted << "), downloaded " << s.blobs_downloaded << " ("
              << s.bytes_downloaded << " bytes), layers reused " << s.layers_reused << "\n";
}

template<typename F>
int with_store(F&& fn)
{
    auto store = Store::open(Store::default_root());
    if (!store)
        return report(store.error());
    return fn(*store.value());
}

// Adds push and pull to one group; push_fn and pull_fn do the transfer and
// return the summary's stats and what to print on stdout.
template<typename Push, typename Pull>
void add_push_pull(CLI::App* group, char const* what, int& exit_code, Push push_fn, Pull pull_fn)
{
    auto a = std::make_shared<RegistryArgs>();
    auto* push = group->add_subcommand("push", std::string("Push ") + what + " to an OCI registry (REF: HOST[:PORT]/REPO[:TAG])");
    push->add_option("NAME", a->name)->required();
    push->add_option("REF", a->ref)->required();
    push->add_option("--level", a->level, "zstd level of new layer blobs (1-19)")->check(CLI::Range(1, 19));
    push->add_option("--part-mib", a->part_mib, "Split layers larger than this many MiB into parts of it, one blob each (0: never)")
        ->check(CLI::Range(std::uint64_t { 0 }, std::uint64_t { 1 } << 30));
    add_registry_flags(push, *a);
    push->callback([&exit_code, a, push_fn] {
        exit_code = with_store([&](Store& s) {
            auto ref = registry::parse_reference(a->ref);
            if (!ref)
                return report(ref.error());
            auto o = transfer_options(*a, ref.value());
            if (!o)
                return report(o.error());
            auto r = push_fn(s, a->name, ref.value(), o.value());
            if (!r)
                return report(r.error());
            print_stats(r.value().stats);
            for (auto const& note : r.value().notes)
                std::cerr << "strata: note: " << note << "\n";
            std::cout << ref.value().registry << "/" << ref.value().repository << "@" << r.value().digest << "\n";
            return 0;
        });
    });

    auto* pull = group->add_subcommand("pull", std::string("Pull ") + what + " from an OCI registry into the store");
    pull->add_option("REF", a->ref)->required();
    pull->add_option("NAME", a->name, "The name in the store (default: the repository's last component)");
    pull->add_flag("--lazy", a->lazy, "Record it at once; VMs fetch the chunks they read, and a background fill the rest");
    add_registry_flags(pull, *a);
    pull->callback([&exit_code, a, pull_fn] {
        exit_code = with_store([&](Store& s) {
            auto ref = registry::parse_reference(a->ref);
            if (!ref)
                return report(ref.error());
            auto o = transfer_options(*a, ref.value());
            if (!o)
                return report(o.error());
            auto r = pull_fn(s, ref.value(), a->name, o.value());
            if (!r)
                return report(r.error());
            print_stats(r.value().stats);
            std::cout << r.value().image.name << " " << ref.value().registry << "/" << ref.value().repository << "@" << r.value().digest << "\n";
            return 0;
        });
    });
}

} // namespace

void register_registry(CLI::App& app, int& exit_code)
{
    // `images fill NAME` and `machine-images fill NAME`: every missing chunk of
    // a lazily pulled object's layers, in the foreground.
    auto add_fill = [&exit_code](CLI::App* group, bool machine) {
        auto fill_name = std::make_shared<std::string>();
        auto* fill = group->add_subcommand("fill", "Fetch every chunk still missing from a lazily pulled object's layers");
        fill->add_option("NAME", *fill_name)->required();
        fill->callback([&exit_code, fill_name, machine] {
            exit_code = with_store([&](Store& s) {
                std::vector<LayerId> layers;
                if (machine) {
                    auto dirs = ensure_record_dirs(s.root());
                    if (!dirs)
                        return report(dirs.error());
                    auto held = RecordLock::take(s.root(), false);
                    if (!held)
                        return report(held.error());
                    auto m = load_machine_image(held.value(), *fill_name);
                    if (!m)
                        return report(m.error());
                    for (auto const& d : m.value().disks)
                        layers.insert(layers.end(), d.layers.begin(), d.layers.end());
                } else {
                    auto m = s.get(ObjectKind::Image, *fill_name);
                    if (!m)
                        return report(m.error());
                    layers = m.value().layers;
                }
                std::uint64_t total = 0;
                for (auto const& id : layers) {
                    auto got = registry::fill_layer(s.root(), id);
                    if (!got)
                        return report(got.error().context("fill layer " + id.to_string()));
                    total += got.value();
                }
                registry::prune_records(s.root());
                std::cerr << "strata: fetched " << total << " bytes\n";
                return 0;
            });
        });
    };
    add_fill(app.get_subcommand("images"), false);
    add_fill(app.get_subcommand("machine-images"), true);
    add_push_pull(app.get_subcommand("images"), "an image", exit_code, registry::push_image, registry::pull_image);
    add_push_pull(app.get_subcommand("machine-images"), "a machine image", exit_code, registry::push_machine_image,
        registry::pull_machine_image);
}

} // namespace strata::cli
