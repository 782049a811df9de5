// CPU templates: `minimal` clears exactly the features emulators lack and keeps
// the rest; `host` changes nothing. Checked on a synthetic all-ones vector and,
// when /dev/kvm is there, on KVM's real supported set.
#include "vmm/kvm/cpu_template.h"
#include "vmm/kvm/kvm.h"

#include <doctest/doctest.h>

#include <unistd.h>

using namespace strata;

namespace {

std::vector<kvm_cpuid_entry2> all_ones()
{
    std::vector<kvm_cpuid_entry2> v;
    for (std::uint32_t f : { 0x1u, 0x7u, 0xdu, 0x1du, 0x80000001u }) {
        for (std::uint32_t idx = 0; idx < 2; ++idx) {
            kvm_cpuid_entry2 e {};
            e.function = f;
            e.index = idx;
            e.eax = e.ebx = e.ecx = e.edx = 0xffffffff;
            v.push_back(e);
        }
    }
    return v;
}

kvm_cpuid_entry2 const& find(std::vector<kvm_cpuid_entry2> const& v, std::uint32_t f, std::uint32_t idx)
{
    for (auto const& e : v)
        if (e.function == f && e.index == idx)
            return e;
    FAIL("leaf missing");
    return v.front();
}

} // namespace

TEST_CASE("minimal hides CX16, the XSAVE family, AVX/AVX2/AVX-512/AMX and their dependants")
{
    auto v = all_ones();
    apply_cpu_template(CpuTemplate::Minimal, v);
    auto const& l1 = find(v, 1, 0);
    CHECK(!(l1.ecx & (1u << 13))); // CX16
    CHECK(!(l1.ecx & (1u << 26))); // XSAVE
    CHECK(!(l1.ecx & (1u << 27))); // OSXSAVE
    CHECK(!(l1.ecx & (1u << 28))); // AVX
    CHECK(!(l1.ecx & (1u << 12))); // FMA
    CHECK(!(l1.ecx & (1u << 29))); // F16C
    CHECK((l1.ecx & (1u << 0)));   // SSE3 stays
    CHECK((l1.ecx & (1u << 19)));  // SSE4.1 stays
    CHECK(l1.edx == 0xffffffff);   // FXSR, SSE, SSE2... stay
    auto const& l7 = find(v, 7, 0);
    CHECK(!(l7.ebx & (1u << 5)));  // AVX2
    CHECK(!(l7.ebx & (1u << 16))); // AVX512F
    CHECK(!(l7.ebx & (1u << 31))); // AVX512VL
    CHECK((l7.ebx & (1u << 3)));   // BMI1 stays
    CHECK((l7.ebx & (1u << 9)));   // ERMS stays
    CHECK(!(l7.edx & (1u << 24))); // AMX-TILE
    CHECK(!(l7.ecx & (1u << 3)));  // PKU (XSAVE-managed PKRU)
    auto const& l71 = find(v, 7, 1);
    CHECK(!(l71.eax & (1u << 4))); // AVX-VNNI
    for (std::uint32_t idx = 0; idx < 2; ++idx) {
        auto const& d = find(v, 0xd, idx);
        CHECK((d.eax | d.ebx | d.ecx | d.edx) == 0); // XSAVEOPT/XSAVEC/XSAVES live in 0xD.1
    }
    CHECK(find(v, 0x1d, 0).eax == 0);
    auto const& ext = find(v, 0x80000001, 0);
    CHECK(!(ext.ecx & (1u << 16))); // FMA4
    CHECK(!(ext.ecx & (1u << 11))); // XOP
    CHECK((ext.edx & (1u << 29)));  // LM stays
}

TEST_CASE("host changes nothing, and names parse")
{
    auto v = all_ones();
    apply_cpu_template(CpuTemplate::Host, v);
    for (auto const& e : v)
        CHECK((e.eax & e.ebx & e.ecx & e.edx) == 0xffffffff);
    CHECK(parse_cpu_template("host").value() == CpuTemplate::Host);
    CHECK(parse_cpu_template("minimal").value() == CpuTemplate::Minimal);
    CHECK(!parse_cpu_template("t2").has_value());
    CHECK(std::string(cpu_template_name(CpuTemplate::Minimal)) == "minimal");
}

TEST_CASE("minimal on KVM's real supported CPUID leaves no hidden feature set")
{
    if (::access("/dev/kvm", R_OK | W_OK) != 0) {
        MESSAGE("no /dev/kvm; checked on the synthetic vector only");
        return;
    }
    auto kvm = Kvm::open();
    REQUIRE(kvm.has_value());
    auto v = kvm.value()->supported_cpuid().value();
    apply_cpu_template(CpuTemplate::Minimal, v);
    for (auto const& e : v) {
        if (e.function == 1)
            CHECK((e.ecx & ((1u << 13) | (1u << 26) | (1u << 28))) == 0);
        if (e.function == 7 && e.index == 0)
            CHECK((e.ebx & ((1u << 5) | (1u << 16))) == 0);
        if (e.function == 0xd)
            CHECK((e.eax | e.ebx | e.ecx | e.edx) == 0);
    }
}
