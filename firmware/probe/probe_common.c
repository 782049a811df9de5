/* The checks shared by the probe kernels; see probe.h. */
#include "probe.h"

#include <stdarg.h>

static int g_failures;

void probe_check(bool ok, const char* what, ...)
{
    if (ok)
        return;
    ++g_failures;
    va_list ap;
    va_start(ap, what);
    printf("%s: CHECK FAILED: ", rt_program_name);
    vprintf(what, ap);
    printf("\n");
    va_end(ap);
}

int probe_failures(void) { return g_failures; }

void probe_finish(void)
{
    if (g_failures == 0) {
        printf("%s: all checks passed\n", rt_program_name);
        rt_exit(0);
    }
    printf("%s: %d check(s) failed\n", rt_program_name, g_failures);
    rt_exit(1);
}

uint32_t probe_crc32(const uint8_t* p, uint64_t n)
{
    /* CRC-32 (IEEE 802.3, reflected, as zlib's crc32) with a table built on first
     * use: guest code may be emulated at ~1M instructions/s, so a bytewise table
     * lookup (a handful of instructions per byte) beats the bitwise loop by 8x. */
    static uint32_t table[256];
    static bool ready;
    if (!ready) {
        for (uint32_t i = 0; i < 256; ++i) {
            uint32_t c = i;
            for (int k = 0; k < 8; ++k)
                c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
            table[i] = c;
        }
        ready = true;
    }
    uint32_t crc = 0xffffffffu;
    for (uint64_t i = 0; i < n; ++i)
        crc = (crc >> 8) ^ table[(crc ^ p[i]) & 0xff];
    return ~crc;
}

void probe_check_memmap(const struct probe_range* in, size_t n, uint64_t start, uint64_t end)
{
    printf("%s: memory map, %u entries\n", rt_program_name, (unsigned)n);
    probe_check(n > 0 && n <= 128, "the memory map has %u entries", (unsigned)n);
    if (n > 128)
        n = 128;
    /* The boot protocols do not promise sorted maps (QEMU's is not); Linux sorts
     * them, so sort a copy and check that no two entries overlap. */
    struct probe_range r[128];
    for (size_t i = 0; i < n; ++i) {
        printf("  [%016lx-%016lx) type %u\n", (unsigned long)in[i].addr, (unsigned long)(in[i].addr + in[i].size),
            (unsigned)in[i].type);
        size_t j = i;
        for (; j > 0 && r[j - 1].addr > in[i].addr; --j)
            r[j] = r[j - 1];
        r[j] = in[i];
    }
    bool covered = false;
    for (size_t i = 0; i < n; ++i) {
        probe_check(r[i].size > 0, "entry %u is empty", (unsigned)i);
        if (i > 0)
            probe_check(r[i].addr >= r[i - 1].addr + r[i - 1].size, "entries at %lx and %lx overlap", (unsigned long)r[i - 1].addr, (unsigned long)r[i].addr);
        if (r[i].type == 1 && r[i].addr <= start && end <= r[i].addr + r[i].size)
            covered = true;
        /* The legacy VGA/BIOS hole must never be reported as RAM. */
        if (r[i].type == 1)
            probe_check(r[i].addr + r[i].size <= 0xa0000 || r[i].addr >= 0x100000,
                "RAM entry %u covers the 0xa0000-0xfffff hole", (unsigned)i);
    }
    probe_check(covered, "the image [%lx, %lx) is not inside one RAM entry", (unsigned long)start, (unsigned long)end);
}

void probe_check_initrd(const char* cmdline, uint64_t addr, uint64_t size)
{
    (void)cmdline;
    const char* v;
    size_t len;
    if (!cmdline_get("initrd_size", &v, &len)) {
        printf("%s: no initrd_size= on the command line; initrd %lx+%lx not checked\n", rt_program_name,
            (unsigned long)addr, (unsigned long)size);
        return;
    }
    uint64_t want_size = cmdline_u64("initrd_size", ~0ull);
    printf("%s: initrd at %lx, %lu bytes (expected %lu)\n", rt_program_name, (unsigned long)addr,
        (unsigned long)size, (unsigned long)want_size);
    probe_check(size == want_size, "initrd size %lu, expected %lu", (unsigned long)size, (unsigned long)want_size);
    if (size == 0 || size != want_size)
        return;
    probe_check((addr & 0xfff) == 0, "initrd at %lx is not page aligned", (unsigned long)addr);
    if (cmdline_get("initrd_crc32", &v, &len)) {
        uint64_t want = cmdline_u64("initrd_crc32", ~0ull);
        uint32_t got = probe_crc32((const uint8_t*)addr, size);
        printf("%s: initrd crc32 %08x (expected %08x)\n", rt_program_name, got, (uint32_t)want);
        probe_check(got == want, "initrd crc32 %08x, expected %08x", got, (uint32_t)want);
    }
}

void probe_check_identity(uint64_t cr3, uint64_t addr, uint64_t len, const char* what)
{
    if (len == 0)
        return;
    const uint64_t mask = 0x000ffffffffff000ull;
    /* Check the first and last byte and every 2 MiB in between. */
    for (uint64_t off = 0;; off += 0x200000) {
        if (off >= len)
            off = len - 1;
        uint64_t va = addr + off, pa = ~0ull;
        uint64_t table = cr3 & mask;
        for (int level = 3; level >= 0; --level) {
            uint64_t e = ((const uint64_t*)table)[(va >> (12 + 9 * level)) & 0x1ff];
            if (!(e & 1))
                break;
            if (level == 0 || (level < 3 && (e & 0x80))) {
                uint64_t page = 1ull << (12 + 9 * level);
                pa = (e & mask & ~(page - 1)) + (va & (page - 1));
                break;
            }
            table = e & mask;
        }
        probe_check(pa == va, "%s: %lx maps to %lx, not identity", what, (unsigned long)va, (unsigned long)pa);
        if (off == len - 1 || pa != va)
            break;
    }
}
