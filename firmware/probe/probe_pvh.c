/* probe-pvh.elf: checks what the PVH boot ABI handed it: 32-bit protected mode
 * with paging off and interrupts off at entry, %ebx = an hvm_start_info (magic,
 * version 1 with a memory map), the command line, the memory map, the initrd as
 * module 0 with the size and CRC32 the command line announces, and the RSDP
 * pointer. Runs on the firmware runtime (entry.S, start.c) after its own entry
 * stub recorded the CPU state. */
#include <stddef.h>

#include "io.h"
#include "probe.h"

const char rt_program_name[] = "probe-pvh";
struct probe_entry_state probe_entry __attribute__((section(".data")));
_Static_assert(offsetof(struct probe_entry_state, boot_info) == 40, "entry stub offsets");
_Static_assert(offsetof(struct probe_entry_state, cs) == 48, "entry stub offsets");

int main(const char* cmdline)
{
    const struct probe_entry_state* e = &probe_entry;
    printf("probe-pvh: PVH entry, start_info at %lx\n", (unsigned long)e->boot_info);
    printf("probe-pvh: at entry cr0=%lx cr4=%lx efer=%lx eflags=%lx cs=%x ds=%x ss=%x es=%x\n",
        (unsigned long)(uint32_t)e->cr0, (unsigned long)(uint32_t)e->cr4, (unsigned long)e->efer,
        (unsigned long)(uint32_t)e->rflags, e->cs, e->ds, e->ss, e->es);
    probe_check(e->cr0 & 1, "CR0.PE must be set at entry (protected mode)");
    probe_check(!(e->cr0 & 0x80000000u), "CR0.PG must be clear at entry (paging off)");
    probe_check(!(e->efer & 0x400), "EFER.LMA must be clear at entry");
    probe_check(!(e->rflags & 0x200), "interrupts must be off at entry");

    const struct hvm_start_info* si = (const struct hvm_start_info*)e->boot_info;
    probe_check(si && si->magic == HVM_START_MAGIC, "hvm_start_info magic is wrong");
    probe_check(rt_start_info_version() >= 1, "hvm_start_info version %u has no memory map", rt_start_info_version());
    printf("probe-pvh: command line: \"%s\"\n", cmdline);
    probe_check(si && si->cmdline_paddr != 0, "no command line");

    struct probe_range map[64];
    size_t n = rt_memmap_count();
    for (size_t i = 0; i < n && i < 64; ++i) {
        map[i].addr = rt_memmap(i)->addr;
        map[i].size = rt_memmap(i)->size;
        map[i].type = rt_memmap(i)->type;
    }
    probe_check_memmap(map, n, (uint64_t)__image_start, (uint64_t)__image_end);

    /* The runtime's identity map covers 4 GiB; the initrd must lie inside it. */
    uint64_t cr3;
    __asm__ volatile("mov %%cr3, %0" : "=r"(cr3));
    uint64_t ird = 0, ird_size = 0;
    if (rt_module_count() > 0) {
        ird = rt_module(0)->paddr;
        ird_size = rt_module(0)->size;
        probe_check_identity(cr3, ird, ird_size, "initrd");
        probe_check(ird >= (uint64_t)__image_end || ird + ird_size <= (uint64_t)__image_start, "the initrd overlaps the image");
    }
    probe_check_initrd(cmdline, ird, ird_size);
    printf("probe-pvh: rsdp_paddr=%lx\n", (unsigned long)rt_rsdp_paddr());
    probe_finish();
}
