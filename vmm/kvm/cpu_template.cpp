#include "vmm/kvm/cpu_template.h"

#include <cstdint>

namespace strata {

namespace {

constexpr std::uint32_t bit(unsigned n) { return 1u << n; }

// Bit numbers from the Intel SDM vol. 2A, CPUID, and AMD's APM vol. 3 appendix E.
namespace leaf1_ecx {
constexpr std::uint32_t fma = bit(12), cx16 = bit(13), xsave = bit(26), osxsave = bit(27), avx = bit(28), f16c = bit(29);
}
namespace leaf7_ebx {
constexpr std::uint32_t avx2 = bit(5), mpx = bit(14), avx512f = bit(16), avx512dq = bit(17), avx512ifma = bit(21),
                        intel_pt = bit(25), avx512pf = bit(26), avx512er = bit(27), avx512cd = bit(28),
                        avx512bw = bit(30), avx512vl = bit(31);
}
namespace leaf7_ecx {
constexpr std::uint32_t avx512vbmi = bit(1), pku = bit(3), ospke = bit(4), avx512vbmi2 = bit(6), cet_ss = bit(7),
                        vaes = bit(9), vpclmulqdq = bit(10), avx512vnni = bit(11), avx512bitalg = bit(12),
                        avx512vpopcntdq = bit(14);
}
namespace leaf7_edx {
constexpr std::uint32_t avx512_4vnniw = bit(2), avx512_4fmaps = bit(3), avx512_vp2intersect = bit(8),
                        cet_ibt = bit(20), amx_bf16 = bit(22), avx512_fp16 = bit(23), amx_tile = bit(24),
                        amx_int8 = bit(25);
}
namespace leaf7_1_eax {
constexpr std::uint32_t avx_vnni = bit(4), avx512_bf16 = bit(5), amx_fp16 = bit(21), avx_ifma = bit(23);
}
namespace leaf7_1_edx {
constexpr std::uint32_t avx_vnni_int8 = bit(4), avx_ne_convert = bit(5), amx_complex = bit(8);
}
namespace ext1_ecx {
constexpr std::uint32_t xop = bit(11), fma4 = bit(16);
}

void hide_minimal(kvm_cpuid_entry2& e)
{
    switch (e.function) {
    case 0x1:
        e.ecx &= ~(leaf1_ecx::fma | leaf1_ecx::cx16 | leaf1_ecx::xsave | leaf1_ecx::osxsave | leaf1_ecx::avx
            | leaf1_ecx::f16c);
        break;
    case 0x7:
        if (e.index == 0) {
            e.ebx &= ~(leaf7_ebx::avx2 | leaf7_ebx::mpx | leaf7_ebx::avx512f | leaf7_ebx::avx512dq
                | leaf7_ebx::avx512ifma | leaf7_ebx::intel_pt | leaf7_ebx::avx512pf | leaf7_ebx::avx512er
                | leaf7_ebx::avx512cd | leaf7_ebx::avx512bw | leaf7_ebx::avx512vl);
            e.ecx &= ~(leaf7_ecx::avx512vbmi | leaf7_ecx::pku | leaf7_ecx::ospke | leaf7_ecx::avx512vbmi2
                | leaf7_ecx::cet_ss | leaf7_ecx::vaes | leaf7_ecx::vpclmulqdq | leaf7_ecx::avx512vnni
                | leaf7_ecx::avx512bitalg | leaf7_ecx::avx512vpopcntdq);
            e.edx &= ~(leaf7_edx::avx512_4vnniw | leaf7_edx::avx512_4fmaps | leaf7_edx::avx512_vp2intersect
                | leaf7_edx::cet_ibt | leaf7_edx::amx_bf16 | leaf7_edx::avx512_fp16 | leaf7_edx::amx_tile
                | leaf7_edx::amx_int8);
        } else if (e.index == 1) {
            e.eax &= ~(leaf7_1_eax::avx_vnni | leaf7_1_eax::avx512_bf16 | leaf7_1_eax::amx_fp16 | leaf7_1_eax::avx_ifma);
            e.edx &= ~(leaf7_1_edx::avx_vnni_int8 | leaf7_1_edx::avx_ne_convert | leaf7_1_edx::amx_complex);
        }
        break;
    case 0xd:  // XSAVE state enumeration, including XSAVEOPT/XSAVEC/XSAVES in subleaf 1
    case 0x1d: // AMX tile information
    case 0x1e: // AMX TMUL information
        e.eax = e.ebx = e.ecx = e.edx = 0;
        break;
    case 0x80000001:
        e.ecx &= ~(ext1_ecx::xop | ext1_ecx::fma4);
        break;
    default:
        break;
    }
}

} // namespace

Result<CpuTemplate> parse_cpu_template(std::string const& name)
{
    if (name == "host")
        return CpuTemplate::Host;
    if (name == "minimal")
        return CpuTemplate::Minimal;
    return make_error(ErrorKind::Usage, "unknown CPU template '" + name + "' (host or minimal)");
}

char const* cpu_template_name(CpuTemplate t)
{
    return t == CpuTemplate::Minimal ? "minimal" : "host";
}

void apply_cpu_template(CpuTemplate t, std::vector<kvm_cpuid_entry2>& entries)
{
    if (t == CpuTemplate::Host)
        return;
    for (auto& e : entries)
        hide_minimal(e);
}

} // namespace strata
