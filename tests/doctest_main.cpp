// The doctest main shared by every test binary. Binaries labelled kvm are built
// with STRATA_NEEDS_KVM: they exit with STRATA_SKIP_CODE (which ctest reports as
// skipped) when /dev/kvm is missing, and say so; listing test cases always works.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <cstring>
#include <unistd.h>

int main(int argc, char** argv)
{
#ifdef STRATA_NEEDS_KVM
    bool listing = false;
    for (int i = 1; i < argc; ++i)
        listing = listing || std::strncmp(argv[i], "--list", 6) == 0 || std::strncmp(argv[i], "-ltc", 4) == 0;
    if (!listing && ::access("/dev/kvm", R_OK | W_OK) != 0) {
        std::printf("SKIP: /dev/kvm is missing or not accessible; kvm tests need it\n");
        return STRATA_SKIP_CODE;
    }
#endif
    doctest::Context context(argc, argv);
    return context.run();
}
