/* hello: the smallest guest. Prints a greeting and the command line it was
 * given, then exits 0. Used by the walking-skeleton tests and bench/startup.
 * With `verbose=1` it also prints what hvm_start_info carried: the memory map,
 * the modules and the RSDP address. With `exit=N` it writes N (any 32-bit value)
 * to the exit port instead of 0, for the tests of what strata makes of values
 * outside 0-63. */
#include "runtime.h"

const char rt_program_name[] = "hello";

int main(const char* cmdline)
{
    printf("hello from strata firmware\n");
    printf("cmdline: %s\n", cmdline);
    if (cmdline_is("verbose", "1")) {
        printf("start_info: version %u, rsdp %p\n", rt_start_info_version(), (void*)rt_rsdp_paddr());
        for (size_t i = 0; i < rt_memmap_count(); ++i) {
            const struct rt_mem_range* r = rt_memmap(i);
            printf("memmap: %p-%p type %u\n", (void*)r->addr, (void*)(r->addr + r->size - 1), r->type);
        }
        for (size_t i = 0; i < rt_module_count(); ++i) {
            const struct hvm_modlist_entry* m = rt_module(i);
            printf("module: %p size %lu\n", (void*)m->paddr, (unsigned long)m->size);
        }
    }
    return (int)cmdline_u64("exit", 0);
}
