#include "store/memory_chain.h"

#include "base/fd.h"
#include "base/file.h"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <fcntl.h>
#include <sys/random.h>
#include <unistd.h>

namespace strata {

namespace {

using json = nlohmann::json;

Error bad_chain(std::string const& why)
{
    return make_error(ErrorKind::BadInput, "memory chain: " + why);
}

bool layer_file_name(std::string const& name, std::string const& id)
{
    return name == "memory" || name == "memory-" + id;
}

bool layer_id(std::string const& id)
{
    if (id.size() != 16)
        return false;
    for (char c : id)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    return true;
}

} // namespace

Result<std::string> new_memory_layer_id()
{
    std::uint64_t bits = 0;
    std::size_t got = 0;
    while (got < sizeof bits) {
        ssize_t n = ::getrandom(reinterpret_cast<char*>(&bits) + got, sizeof bits - got, 0); // SAFETY: the integer's bytes
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno_error("getrandom for a memory layer ID");
        }
        got += static_cast<std::size_t>(n);
    }
    static char const digits[] = "0123456789abcdef";
    std::string id;
    for (int shift = 60; shift >= 0; shift -= 4)
        id += digits[(bits >> shift) & 15];
    return id;
}

std::string encode_memory_chain(std::span<MemoryChainLayer const> chain)
{
    json layers = json::array();
    for (auto const& l : chain) {
        json runs = json::array();
        for (auto const& r : l.runs)
            runs.push_back({ r.first, r.count });
        layers.push_back({ { "id", l.id }, { "file", l.file }, { "crc", l.crc }, { "diff", l.diff }, { "runs", runs } });
    }
    return json { { "format", 1 }, { "layers", layers } }.dump() + "\n";
}

Result<std::vector<MemoryChainLayer>> parse_memory_chain(std::string_view text)
{
    auto doc = json::parse(text.begin(), text.end(), nullptr, false);
    if (doc.is_discarded() || !doc.is_object())
        return bad_chain("not a JSON object");
    std::vector<MemoryChainLayer> chain;
    try {
        if (doc.at("format").get<int>() != 1)
            return make_error(ErrorKind::Unsupported, "memory chain: format " + doc.at("format").dump() + " is not one this strata reads");
        for (auto const& l : doc.at("layers")) {
            MemoryChainLayer layer;
            layer.id = l.at("id").get<std::string>();
            layer.file = l.at("file").get<std::string>();
            layer.crc = l.at("crc").get<std::uint32_t>();
            layer.diff = l.at("diff").get<bool>();
            for (auto const& r : l.at("runs"))
                layer.runs.push_back({ r.at(0).get<std::uint64_t>(), r.at(1).get<std::uint64_t>() });
            chain.push_back(std::move(layer));
        }
    } catch (json::exception const& e) {
        return bad_chain(std::string("incomplete: ") + e.what());
    }
    if (chain.empty())
        return bad_chain("no layers");
    for (std::size_t i = 0; i < chain.size(); ++i) {
        auto const& l = chain[i];
        if (!layer_id(l.id))
            return bad_chain("layer ID '" + l.id + "' is not 16 hex digits");
        if (!layer_file_name(l.file, l.id))
            return bad_chain("layer " + l.id + "'s file '" + l.file + "' is neither \"memory\" nor \"memory-<id>\"");
        if (l.diff != (i > 0))
            return bad_chain(i == 0 ? "the bottom layer must be a whole one" : "only the bottom layer can be a whole one");
        if (!l.diff && !l.runs.empty())
            return bad_chain("a whole layer lists pages");
        std::uint64_t next = 0;
        for (auto const& r : l.runs) {
            if (r.count == 0 || r.first < next || r.first + r.count < r.first)
                return bad_chain("layer " + l.id + "'s pages are not ascending runs");
            next = r.first + r.count;
        }
        for (std::size_t j = 0; j < i; ++j)
            if (chain[j].id == l.id || chain[j].file == l.file)
                return bad_chain("layer " + l.id + " is named twice");
    }
    return chain;
}

Result<std::optional<std::vector<MemoryChainLayer>>> read_memory_chain(std::filesystem::path const& dir)
{
    auto const path = dir / memory_chain_file;
    if (::access(path.c_str(), F_OK) != 0) {
        if (errno == ENOENT)
            return std::optional<std::vector<MemoryChainLayer>> {};
        return errno_error("read '" + path.string() + "'");
    }
    STRATA_TRY(bytes, read_file(path.string(), "memory chain", 64ull << 20));
    // SAFETY: the file's bytes, viewed as characters.
    auto chain = parse_memory_chain(std::string_view(reinterpret_cast<char const*>(bytes.data()), bytes.size()));
    if (!chain)
        return chain.error().context("'" + path.string() + "'");
    return std::optional<std::vector<MemoryChainLayer>> { std::move(chain.value()) };
}

Status write_memory_chain(std::filesystem::path const& dir, std::span<MemoryChainLayer const> chain)
{
    auto const path = dir / memory_chain_file;
    auto const text = encode_memory_chain(chain);
    return write_new_file(path.string(), std::as_bytes(std::span(text.data(), text.size())));
}

Result<std::vector<std::string>> state_folder_files(std::filesystem::path const& dir)
{
    STRATA_TRY(chain, read_memory_chain(dir));
    std::vector<std::string> files { "state" };
    if (!chain) {
        files.push_back("memory");
        return files;
    }
    files.push_back(memory_chain_file);
    for (auto const& l : *chain)
        files.push_back(l.file);
    return files;
}

Status link_state_folder(std::filesystem::path const& from, std::filesystem::path const& to)
{
    std::error_code ec;
    if (!std::filesystem::create_directory(to, ec) || ec)
        return make_error(ErrorKind::Io, "create '" + to.string() + "': " + (ec ? ec.message() : "it exists"));
    auto linked = [&]() -> Status {
        STRATA_TRY(files, state_folder_files(from));
        for (auto const& file : files) {
            if (!std::filesystem::exists(from / file, ec))
                return make_error(ErrorKind::NotFound, "the saved running state is incomplete: '" + (from / file).string() + "' is missing");
            std::filesystem::create_hard_link(from / file, to / file, ec);
            if (ec) {
                ec.clear();
                std::filesystem::copy_file(from / file, to / file, ec);
                if (ec)
                    return make_error(ErrorKind::Io, "copy '" + (from / file).string() + "': " + ec.message());
            }
        }
        return ok();
    }();
    if (!linked)
        std::filesystem::remove_all(to, ec);
    return linked;
}

} // namespace strata
