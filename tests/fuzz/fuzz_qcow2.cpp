// libFuzzer target: the qcow2 header parser and the reader's table walks
// (imaging/qcow2/qcow2_format.cpp, qcow2_reader.cpp) on arbitrary files. The input is
// written to a memfd and opened through /proc/self/fd, then every cluster of a
// small disk is read and block status queried: errors are fine, crashes,
// sanitizer reports and unbounded allocations are not.
#include "imaging/qcow2/qcow2_format.h"
#include "imaging/qcow2/qcow2_reader.h"

#include <sys/mman.h>
#include <unistd.h>

#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size)
{
    // SAFETY: the fuzzer's bytes, viewed as std::byte.
    std::span<std::byte const> bytes(reinterpret_cast<std::byte const*>(data), size);
    (void)strata::qcow2::parse_header(bytes, size);
    int fd = ::memfd_create("fuzz-qcow2", 0);
    if (fd < 0 || ::write(fd, data, size) != static_cast<ssize_t>(size)) {
        if (fd >= 0)
            ::close(fd);
        return 0;
    }
    auto reader = strata::Qcow2Reader::open("/proc/self/fd/" + std::to_string(fd));
    if (reader && reader.value()->size() <= (16u << 20)) {
        auto& r = *reader.value();
        std::vector<std::byte> buf(4096);
        for (std::uint64_t pos = 0; pos + buf.size() <= r.size(); pos += 4096) {
            (void)r.read(pos, buf);
            (void)r.block_status(pos, 1 << 20);
        }
    }
    ::close(fd);
    return 0;
}
