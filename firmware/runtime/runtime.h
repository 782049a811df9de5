/* The firmware runtime: what every freestanding guest program gets. It owns the
 * boot (PVH entry to long mode, see entry.S), the serial console (16550 at 0x3f8,
 * polled), the exit port (0xf4, QEMU's isa-debug-exit), the command line, the
 * memory map, PVH modules and the ACPI RSDP pointer from hvm_start_info, a page
 * allocator over guest RAM, and a TSC clock calibrated against the PIT.
 *
 * A program defines `int main(const char *cmdline)`; its return value goes to the
 * exit port. Programs exit 0 on success and with a value below 64 on failure,
 * after printing why.
 *
 * Threading: everything here runs on the bootstrap CPU only, except rt_putc and
 * the printf family, which application processors may call while the BSP is
 * waiting (output may then interleave by character). */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pvh.h"

int main(const char* cmdline);

/* Console (serial port COM1). */
void rt_putc(char c);
void rt_puts(const char* s);
int rt_getc(void); /* a received byte, or -1 when none is waiting */
int printf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
int vprintf(const char* fmt, va_list ap);
int snprintf(char* buf, size_t size, const char* fmt, ...) __attribute__((format(printf, 3, 4)));

/* Ends the VM: writes `value` to port 0xf4. Halts if nothing listens there. */
__attribute__((noreturn)) void rt_exit(uint32_t value);
/* Prints "<program>: FAIL: <message>" and exits with `code` (1..63). */
__attribute__((noreturn, format(printf, 2, 3))) void rt_fail(int code, const char* fmt, ...);
/* Installs an IDT for the CPU exceptions (vectors 0-31): an exception then prints
 * "<program>: FAIL: exception V error E at rip R ..." and exits with RT_TRAP_EXIT,
 * where without it the guest triple-faults and the VMM sees only reset registers. */
#define RT_TRAP_EXIT 62
void rt_install_traps(void);
/* The program's name as given by the build, used as a prefix in messages. */
extern const char rt_program_name[];

/* Command line: space-separated words, `key=value` pairs among them. */
const char* rt_cmdline(void);
/* Finds the first `key=value` at or after *cursor (start with *cursor = 0);
 * returns the value and its length, and moves *cursor past it. */
bool cmdline_next(const char* key, size_t* cursor, const char** value, size_t* len);
bool cmdline_get(const char* key, const char** value, size_t* len);
uint64_t cmdline_u64(const char* key, uint64_t fallback);
bool cmdline_is(const char* key, const char* value);
/* Parses a number (decimal, or hex with 0x) with an optional K/M/G suffix;
 * returns the number of characters used, 0 when there is no number. */
size_t parse_u64(const char* s, size_t len, uint64_t* out);

/* Memory map, modules and ACPI from hvm_start_info. */
struct rt_mem_range {
    uint64_t addr;
    uint64_t size;
    uint32_t type;
};
size_t rt_memmap_count(void);
const struct rt_mem_range* rt_memmap(size_t i);
size_t rt_module_count(void);
const struct hvm_modlist_entry* rt_module(size_t i);
uint64_t rt_rsdp_paddr(void); /* 0 when the loader gave none */
uint32_t rt_start_info_version(void);
/* Page-granular bump allocator over the RAM after the program image, skipping
 * modules. Memory is identity mapped and not zeroed; never freed. Fails the
 * program (rt_fail) when RAM runs out. */
void* rt_alloc(uint64_t size, uint64_t align);

/* Time: the TSC, its rate taken once from kvmclock, else measured against PIT
 * channel 2 (10 ms gate), else CPUID 0x16 (see timer.c). */
uint64_t rt_tsc_khz(void);
const char* rt_tsc_source(void); /* "kvmclock", "pit", "cpuid-0x16" or "assumed" */
uint64_t rt_tsc_to_us(uint64_t ticks);
void rt_udelay(uint64_t us);

/* A timeout that counts only time the guest ran. The TSC keeps counting while
 * the VMM holds the vCPUs paused, and a restored guest was seen to find its TSC
 * ahead by about the time since its snapshot was taken, so a deadline taken from rdtsc()
 * alone expires during a pause and fails a request that was merely waiting for
 * the VM to resume. rt_timeout_expired() is meant to be called on every turn of
 * a polling loop: a gap of more than RT_TIMEOUT_STOP_MS between two calls cannot
 * be the loop's own work, so it is taken for time the vCPU did not run and is not
 * counted. */
#define RT_TIMEOUT_STOP_MS 250
struct rt_timeout {
    uint64_t left; /* TSC ticks of running time before expiry */
    uint64_t last; /* the TSC at the previous call */
};
void rt_timeout_start(struct rt_timeout* t, uint64_t ms);
bool rt_timeout_expired(struct rt_timeout* t);

/* The C library subset the compiler may call even when freestanding. */
void* memset(void* d, int c, size_t n);
void* memcpy(void* d, const void* s, size_t n);
void* memmove(void* d, const void* s, size_t n);
int memcmp(const void* a, const void* b, size_t n);
size_t strlen(const char* s);
int strncmp(const char* a, const char* b, size_t n);
