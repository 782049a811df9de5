// Test support: whether a kvm test runs inside scripts/with-kvm's emulated machine
// (QEMU's software CPU with nested KVM; with-kvm sets STRATA_IN_KVM_BOX=1 there),
// where everything the test does on the host side (every strata command, every
// export and check) runs tens of times slower than on hardware. Tests whose
// guarantee does not depend on how many times they repeat something use
// emulated_or() to repeat it fewer times there, and say so where they do.
//
// Threading: plain functions of the environment; call them from any thread.
#pragma once

#include <cstdlib>
#include <cstring>

namespace strata::test {

inline bool in_emulated_machine()
{
    char const* v = std::getenv("STRATA_IN_KVM_BOX");
    return v != nullptr && std::strcmp(v, "1") == 0;
}

// `full` on hardware KVM, `emulated` inside the emulated machine.
inline int emulated_or(int emulated, int full) { return in_emulated_machine() ? emulated : full; }

} // namespace strata::test
