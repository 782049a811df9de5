// CPU templates: edits of the CPUID vector KVM reports as supported, applied
// before KVM_SET_CPUID2 (`strata run --cpu-template host|minimal`).
//
// `host` passes KVM's supported set through. `minimal` hides what instruction
// emulators commonly lack (KVM-HERE.md: a nested, emulating KVM fails on
// cmpxchg16b and xrstor): CX16, the XSAVE family (XSAVE, OSXSAVE, XSAVEOPT,
// XSAVEC, XSAVES and leaf 0xD entirely), AVX, AVX2, FMA, F16C, every AVX-512
// and AMX feature, and what depends on XSAVE-managed state (MPX, PKU, CET,
// Intel PT, AVX-VNNI, XOP/FMA4, VAES/VPCLMULQDQ). A guest then uses the legacy
// FXSAVE/SSE paths.
// Threading: pure functions.
#pragma once

#include "base/result.h"
#include "vmm/machine_config.h" // enum class CpuTemplate { Host, Minimal }

#include <linux/kvm.h>

#include <string>
#include <vector>

namespace strata {

[[nodiscard]] Result<CpuTemplate> parse_cpu_template(std::string const& name);
char const* cpu_template_name(CpuTemplate t);

// Edits `entries` in place. Leaves and subleaves that are absent stay absent.
void apply_cpu_template(CpuTemplate t, std::vector<kvm_cpuid_entry2>& entries);

} // namespace strata
