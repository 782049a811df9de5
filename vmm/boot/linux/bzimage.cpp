#include "vmm/boot/linux/bzimage.h"

#include <cstring>
#include <sstream>

namespace strata::linux_boot {

namespace {

template<typename T>
T load(std::span<std::byte const> file, std::size_t off)
{
    T v;
    std::memcpy(&v, file.data() + off, sizeof(T));
    return v;
}

Error bad_bzimage(std::string const& what)
{
    return make_error(ErrorKind::BadInput, "not a usable bzImage: " + what);
}

} // namespace

bool looks_like_bzimage(std::span<std::byte const> file)
{
    return file.size() >= 0x206 && load<std::uint16_t>(file, 0x1fe) == kBootFlag
        && load<std::uint32_t>(file, 0x202) == kHdrS;
}

Result<BzImage> parse_bzimage(std::span<std::byte const> file)
{
    if (file.size() < 0x206)
        return bad_bzimage("the file is shorter than the setup header");
    if (load<std::uint16_t>(file, 0x1fe) != kBootFlag)
        return bad_bzimage("no boot flag 0xAA55 at offset 0x1fe");
    if (load<std::uint32_t>(file, 0x202) != kHdrS)
        return bad_bzimage("no \"HdrS\" magic at offset 0x202 (boot protocol older than 2.00)");

    BzImage img;
    // The header ends at 0x202 plus the jump's 8-bit displacement (boot.rst).
    std::size_t header_end = 0x202 + std::to_integer<std::size_t>(file[0x201]);
    img.header_len = std::min(header_end, kSetupHeaderOffset + sizeof(SetupHeader)) - kSetupHeaderOffset;
    if (file.size() < kSetupHeaderOffset + img.header_len)
        return bad_bzimage("the file ends inside the setup header");
    std::memcpy(&img.hdr, file.data() + kSetupHeaderOffset, img.header_len);
    auto const& h = img.hdr;

    if (h.version < kMinProtocol) {
        std::ostringstream msg;
        msg << "boot protocol " << (h.version >> 8) << "." << (h.version & 0xff)
            << " is older than 2.06, which strata needs";
        return bad_bzimage(msg.str());
    }
    if (img.header_len < offsetof(SetupHeader, cmdline_size) + 4)
        return bad_bzimage("the setup header is shorter than protocol 2.06 defines");
    if (!(h.loadflags & kLoadedHigh))
        return bad_bzimage("a zImage (protected-mode code at 0x10000) is not supported");

    std::size_t setup_sects = h.setup_sects == 0 ? 4 : h.setup_sects;
    std::size_t setup_size = (setup_sects + 1) * 512;
    if (setup_size >= file.size())
        return bad_bzimage("the file ends inside the real-mode setup code");
    img.setup = file.first(setup_size);
    img.protected_mode = file.subspan(setup_size);
    // syssize counts 16-byte paragraphs (protocol 2.04+); the file may carry padding
    // after it, but never less.
    if (std::uint64_t(h.syssize) * 16 > img.protected_mode.size())
        return bad_bzimage("the protected-mode code is truncated (syssize says more than the file holds)");

    if (h.version >= 0x0208 && img.header_len >= offsetof(SetupHeader, payload_length) + 4) {
        std::uint64_t off = h.payload_offset;
        std::uint64_t len = h.payload_length;
        if (len == 0 || off > img.protected_mode.size() || len > img.protected_mode.size() - off)
            return bad_bzimage("payload_offset/payload_length point outside the protected-mode code");
        img.payload = img.protected_mode.subspan(off, len);
    }
    if (h.kernel_alignment != 0 && (h.kernel_alignment & (h.kernel_alignment - 1)) != 0)
        return bad_bzimage("kernel_alignment is not a power of two");
    return img;
}

} // namespace strata::linux_boot
