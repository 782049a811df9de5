/* cpuid: prints the CPUID feature bits that CPU templates care about (those that
 * instruction emulators commonly lack) as `name=0|1` words. With `expect=minimal`
 * on the command line it exits 0 only if every one that the minimal template
 * must hide is hidden, and 1 otherwise, naming the ones still visible. */
#include "io.h"
#include "runtime.h"

const char rt_program_name[] = "cpuid";

struct feature {
    const char* name;
    uint32_t leaf, subleaf, reg, bit; /* reg: 0 eax, 1 ebx, 2 ecx, 3 edx */
    bool minimal_hides;
};

static const struct feature features[] = {
    { "cx16", 1, 0, 2, 13, true },
    { "xsave", 1, 0, 2, 26, true },
    { "osxsave", 1, 0, 2, 27, false }, /* set by the OS (CR4), reported for context */
    { "avx", 1, 0, 2, 28, true },
    { "sse", 1, 0, 3, 25, false },
    { "sse2", 1, 0, 3, 26, false },
    { "avx2", 7, 0, 1, 5, true },
    { "avx512f", 7, 0, 1, 16, true },
    { "xsaveopt", 0xd, 1, 0, 0, true },
    { "xsavec", 0xd, 1, 0, 1, true },
    { "xsaves", 0xd, 1, 0, 3, true },
};

int main(const char* cmdline)
{
    (void)cmdline;
    uint32_t r[4];
    cpuid(0, 0, r);
    uint32_t max_leaf = r[0];
    bool minimal = cmdline_is("expect", "minimal");
    int visible = 0;
    char bad[128];
    size_t bad_len = 0;
    bad[0] = '\0';
    printf("cpuid:");
    for (size_t i = 0; i < sizeof(features) / sizeof(features[0]); ++i) {
        const struct feature* f = &features[i];
        bool on = false;
        if (f->leaf <= max_leaf) {
            cpuid(f->leaf, f->subleaf, r);
            on = (r[f->reg] >> f->bit) & 1;
        }
        printf(" %s=%d", f->name, on ? 1 : 0);
        if (on && f->minimal_hides) {
            ++visible;
            bad_len += (size_t)snprintf(bad + bad_len, sizeof(bad) - bad_len, " %s", f->name);
            if (bad_len >= sizeof(bad))
                bad_len = sizeof(bad) - 1;
        }
    }
    printf("\n");
    if (minimal && visible)
        rt_fail(1, "expected the minimal template, but visible:%s", bad);
    if (minimal)
        printf("cpuid: minimal template confirmed\n");
    return 0;
}
