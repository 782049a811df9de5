// Packs probe.bzImage: the real-mode setup (boot sector with the setup header,
// padded to whole sectors), then the protected-mode part loaded at 0x100000: the
// 32-bit stub padded to 4 KiB, followed by probe.vmlinux uncompressed as the
// payload. Fills setup_sects, syssize, payload_offset/length and init_size, and
// checks that every loadable segment of the ELF sits at 0x101000 + its file
// offset, so the payload runs in place when a BIOS-style loader enters the stub.
// Usage: pack_bzimage SETUP.bin STUB.bin PAYLOAD.elf OUT
#include <elf.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <vector>

namespace {

std::vector<char> slurp(char const* path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        std::fprintf(stderr, "pack_bzimage: cannot read %s\n", path);
        std::exit(1);
    }
    return std::vector<char>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

template<typename T>
void put(std::vector<char>& b, std::size_t off, T v)
{
    std::memcpy(b.data() + off, &v, sizeof v);
}

[[noreturn]] void die(char const* why)
{
    std::fprintf(stderr, "pack_bzimage: %s\n", why);
    std::exit(1);
}

} // namespace

int main(int argc, char** argv)
{
    if (argc != 5)
        die("usage: pack_bzimage SETUP.bin STUB.bin PAYLOAD.elf OUT");
    auto setup = slurp(argv[1]);
    auto stub = slurp(argv[2]);
    auto elf = slurp(argv[3]);
    constexpr std::size_t payload_offset = 0x1000;
    constexpr std::uint64_t pm_base = 0x100000;

    setup.resize((setup.size() + 511) / 512 * 512, 0);
    if (setup.size() < 1024 || setup.size() / 512 - 1 > 255)
        die("setup is not between 2 and 256 sectors");
    if (stub.size() > payload_offset)
        die("the 32-bit stub is larger than 4 KiB");
    stub.resize(payload_offset, 0);

    if (elf.size() < sizeof(Elf64_Ehdr))
        die("payload is not an ELF64");
    Elf64_Ehdr eh;
    std::memcpy(&eh, elf.data(), sizeof eh);
    if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64)
        die("payload is not an ELF64");
    std::uint64_t mem_end = 0;
    for (unsigned i = 0; i < eh.e_phnum; ++i) {
        Elf64_Phdr ph;
        std::memcpy(&ph, elf.data() + eh.e_phoff + i * sizeof ph, sizeof ph);
        if (ph.p_type != PT_LOAD)
            continue;
        if (ph.p_paddr != pm_base + payload_offset + ph.p_offset)
            die("a loadable segment is not at 0x101000 + its file offset; fix probe64.ld");
        mem_end = std::max<std::uint64_t>(mem_end, ph.p_paddr + ph.p_memsz);
    }

    std::vector<char> pm = stub;
    pm.insert(pm.end(), elf.begin(), elf.end());
    pm.resize((pm.size() + 15) / 16 * 16, 0);
    std::uint64_t init_size = std::max<std::uint64_t>(pm.size(), mem_end - pm_base);
    init_size = (init_size + 0xfff) & ~std::uint64_t(0xfff);

    setup[0x1f1] = static_cast<char>(setup.size() / 512 - 1);
    put<std::uint32_t>(setup, 0x1f4, static_cast<std::uint32_t>(pm.size() / 16));
    put<std::uint32_t>(setup, 0x248, payload_offset);
    put<std::uint32_t>(setup, 0x24c, static_cast<std::uint32_t>(elf.size()));
    put<std::uint32_t>(setup, 0x260, static_cast<std::uint32_t>(init_size));

    std::ofstream out(argv[4], std::ios::binary | std::ios::trunc);
    out.write(setup.data(), static_cast<std::streamsize>(setup.size()));
    out.write(pm.data(), static_cast<std::streamsize>(pm.size()));
    if (!out)
        die("cannot write the output");
    return 0;
}
