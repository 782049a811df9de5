/* CPU discovery for the smp program: the ACPI MADT (through hvm_start_info's
 * rsdp_paddr, or the RSDP found by scanning the BIOS areas) or, without ACPI, the
 * Intel MultiProcessor table. Tables are read in place through the identity map
 * and their checksums are verified. Threading: BSP only. */
#pragma once

#include <stdint.h>

#define SMP_MAX_CPUS 64

struct smp_cpus {
    const char* source;               /* "acpi-madt" or "mp-table" */
    const char* rsdp_from;            /* "start-info" or "bios-scan" when ACPI was used */
    uint64_t lapic_base;
    uint32_t count;                   /* enabled CPUs listed */
    uint32_t apic_ids[SMP_MAX_CPUS];
};

/* Fills `out`; returns 0, or a nonzero reason code when no table is found. */
int smp_find_cpus(struct smp_cpus* out);
