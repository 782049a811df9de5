/* Probe kernels: tiny guests that check, and print, what a Linux boot loader
 * handed them (the e820 map or PVH memmap, the command line, the setup header,
 * the CPU mode at entry, the page tables, the initrd) and exit 0 through port
 * 0xf4 only when every check passes. The test passes `initrd_size=` and
 * `initrd_crc32=` on the command line; the probe compares them with the bytes it
 * finds. Shared pieces live here; probe64.c (boot_params, 64-bit entry) and
 * probe_pvh.c (hvm_start_info) hold the protocol-specific checks.
 * Threading: one CPU. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime.h"

struct probe_range {
    uint64_t addr;
    uint64_t size;
    uint32_t type;
};

/* Every failed check increments the count and prints one line. */
void probe_check(bool ok, const char* what, ...) __attribute__((format(printf, 2, 3)));
int probe_failures(void);
/* Prints the verdict and exits: 0 when nothing failed, else 1. */
__attribute__((noreturn)) void probe_finish(void);

uint32_t probe_crc32(const uint8_t* p, uint64_t n);
/* Checks that the map is sorted, non-overlapping and non-empty, and that
 * [start, end) lies in type-1 RAM; prints it. */
void probe_check_memmap(const struct probe_range* r, size_t n, uint64_t image_start, uint64_t image_end);
/* Checks the initrd against initrd_size=/initrd_crc32= on the command line. */
void probe_check_initrd(const char* cmdline, uint64_t addr, uint64_t size);
/* Walks the 4-level tables at cr3 and checks [addr, addr+len) is identity mapped. */
void probe_check_identity(uint64_t cr3, uint64_t addr, uint64_t len, const char* what);

/* CPU state recorded by the entry stubs before anything else runs. */
struct probe_entry_state {
    uint64_t cr0, cr3, cr4, efer, rflags, boot_info;
    uint16_t cs, ds, ss, es;
    uint16_t gdt_limit;
    uint64_t gdt_base;
};
extern struct probe_entry_state probe_entry;

extern char __image_start[], __image_end[];
