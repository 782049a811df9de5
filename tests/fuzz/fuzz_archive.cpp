// libFuzzer target: the archive trailer and manifest parsers and the reader
// (imaging/archive/archive_format.cpp, archive_reader.cpp) on arbitrary files: the input
// goes into a memfd, is opened, verified and every layer and blob streamed.
#include "imaging/archive/archive_format.h"
#include "imaging/archive/archive_reader.h"

#include <sys/mman.h>
#include <unistd.h>

#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size)
{
    // SAFETY: the fuzzer's bytes, viewed as chars and bytes.
    std::string_view text(reinterpret_cast<char const*>(data), size);
    (void)strata::archive::parse_manifest(text, size);
    std::span<std::byte const> bytes(reinterpret_cast<std::byte const*>(data), size);
    (void)strata::archive::parse_trailer(bytes, size);
    int fd = ::memfd_create("fuzz-archive", 0);
    if (fd < 0 || ::write(fd, data, size) != static_cast<ssize_t>(size)) {
        if (fd >= 0)
            ::close(fd);
        return 0;
    }
    auto reader = strata::ArchiveReader::open("/proc/self/fd/" + std::to_string(fd));
    if (reader) {
        auto& r = *reader.value();
        (void)r.verify();
        auto sink = [](std::uint64_t, std::span<std::byte const>) -> strata::Status { return strata::ok(); };
        auto zero = [](std::uint64_t, std::uint64_t) -> strata::Status { return strata::ok(); };
        for (auto const& e : r.manifest().entries) {
            for (auto const& l : e.layers)
                (void)r.read_layer(l, sink, zero);
            if (e.type == strata::archive::EntryType::Blob)
                (void)r.read_blob(e, sink);
        }
    }
    ::close(fd);
    return 0;
}
