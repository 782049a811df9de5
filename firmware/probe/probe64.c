/* probe.vmlinux / probe.bzImage: checks what the 64-bit boot protocol handed it
 * (boot.rst): long mode with paging, __BOOT_CS/__BOOT_DS, interrupts off, a zero
 * page with a valid setup header, a loader id, the command line, the e820 map,
 * an identity map over the image, zero page, command line and initrd, and the
 * initrd's size and CRC32 as the command line announces them. */
#include <stddef.h>

#include "probe.h"

const char rt_program_name[] = "probe64";
struct probe_entry_state probe_entry __attribute__((section(".data")));
_Static_assert(offsetof(struct probe_entry_state, boot_info) == 40, "entry stub offsets");
_Static_assert(offsetof(struct probe_entry_state, cs) == 48, "entry stub offsets");
_Static_assert(offsetof(struct probe_entry_state, gdt_limit) == 56, "entry stub offsets");

static char g_cmdline[4096];
const char* rt_cmdline(void) { return g_cmdline; }

#define U8(o) (*(const volatile uint8_t*)(bp + (o)))
#define U16(o) (*(const volatile uint16_t*)(bp + (o)))
#define U32(o) (*(const volatile uint32_t*)(bp + (o)))
#define U64(o) (*(const volatile uint64_t*)(bp + (o)))

static void check_cpu(void)
{
    const struct probe_entry_state* e = &probe_entry;
    uint64_t gdt_base = 0;
    memcpy(&gdt_base, (const uint8_t*)&e->gdt_limit + 2, 8);
    printf("probe64: cr0=%lx cr3=%lx cr4=%lx efer=%lx rflags=%lx cs=%x ds=%x ss=%x es=%x gdt=%lx+%x\n",
        (unsigned long)e->cr0, (unsigned long)e->cr3, (unsigned long)e->cr4, (unsigned long)e->efer,
        (unsigned long)e->rflags, e->cs, e->ds, e->ss, e->es, (unsigned long)gdt_base, e->gdt_limit);
    probe_check((e->cr0 & 0x80000001) == 0x80000001, "CR0.PE and CR0.PG must be set");
    probe_check(e->cr4 & 0x20, "CR4.PAE must be set");
    probe_check(e->efer & 0x400, "EFER.LMA must be set (long mode)");
    probe_check(!(e->rflags & 0x200), "interrupts must be off at entry");
    probe_check(e->cs == 0x10, "CS must be __BOOT_CS (0x10), is %x", e->cs);
    probe_check(e->ds == 0x18 && e->es == 0x18 && e->ss == 0x18, "DS/ES/SS must be __BOOT_DS (0x18)");
    if (e->gdt_limit >= 0x1f && gdt_base) {
        uint64_t cs = ((const uint64_t*)gdt_base)[2], ds = ((const uint64_t*)gdt_base)[3];
        probe_check((cs >> 47 & 1) && (cs >> 53 & 1) && (cs >> 43 & 1), "GDT[0x10] is not a present 64-bit code segment: %lx", (unsigned long)cs);
        probe_check((ds >> 47 & 1) && !(ds >> 43 & 1) && (ds >> 41 & 1), "GDT[0x18] is not a present writable data segment: %lx", (unsigned long)ds);
    } else {
        probe_check(false, "the GDT does not reach __BOOT_DS");
    }
}

void probe64_main(const uint8_t* bp)
{
    printf("probe64: 64-bit entry, boot_params at %p\n", (const void*)bp);
    check_cpu();
    if (!bp) {
        probe_check(false, "RSI (boot_params) is null");
        probe_finish();
    }
    probe_check_identity(probe_entry.cr3, (uint64_t)bp, 4096, "zero page");

    uint16_t version = U16(0x206);
    printf("probe64: setup header: boot_flag=%x header=%x version=%x loader=%x loadflags=%x cmdline_size=%u "
           "kernel_alignment=%x init_size=%x subarch=%u\n",
        U16(0x1fe), U32(0x202), version, U8(0x210), U8(0x211), U32(0x238), U32(0x230), U32(0x260), U32(0x23c));
    probe_check(U16(0x1fe) == 0xaa55, "boot_flag is not 0xAA55");
    probe_check(U32(0x202) == 0x53726448, "header is not \"HdrS\"");
    probe_check(version >= 0x0206, "protocol version %x is below 2.06", version);
    probe_check(U8(0x210) != 0, "type_of_loader is 0: the loader did not identify itself");
    probe_check(U8(0x211) & 0x01, "loadflags lacks LOADED_HIGH");
    probe_check(U32(0x23c) == 0, "hardware_subarch is not 0 (PC)");
    probe_check(U8(0x1ef) == 0, "the sentinel byte is set");

    uint64_t cmd = U32(0x228) | (uint64_t)U32(0xc8) << 32;
    probe_check(cmd != 0, "cmd_line_ptr is 0");
    if (cmd) {
        probe_check_identity(probe_entry.cr3, cmd, 1, "command line");
        size_t i = 0;
        for (const char* s = (const char*)cmd; i + 1 < sizeof g_cmdline && s[i]; ++i)
            g_cmdline[i] = s[i];
        g_cmdline[i] = 0;
        printf("probe64: command line: \"%s\"\n", g_cmdline);
        probe_check(i <= U32(0x238) || version < 0x0206, "the command line is longer than cmdline_size");
        probe_check_identity(probe_entry.cr3, cmd, i + 1, "command line");
    }

    uint8_t n = U8(0x1e8);
    struct probe_range map[128];
    probe_check(n >= 1 && n <= 128, "e820_entries is %u", n);
    for (uint8_t k = 0; k < n && k < 128; ++k) {
        map[k].addr = U64(0x2d0 + 20u * k);
        map[k].size = U64(0x2d0 + 20u * k + 8);
        map[k].type = U32(0x2d0 + 20u * k + 16);
    }
    probe_check_memmap(map, n, (uint64_t)__image_start, (uint64_t)__image_end);
    probe_check_identity(probe_entry.cr3, (uint64_t)__image_start, (uint64_t)(__image_end - __image_start), "image");

    uint64_t ird = U32(0x218) | (uint64_t)U32(0xc0) << 32;
    uint64_t ird_size = U32(0x21c) | (uint64_t)U32(0xc4) << 32;
    if (ird_size) {
        probe_check_identity(probe_entry.cr3, ird, ird_size, "initrd");
        probe_check(ird + ird_size - 1 <= U32(0x22c), "the initrd ends above initrd_addr_max");
        probe_check(ird >= (uint64_t)__image_end || ird + ird_size <= (uint64_t)__image_start, "the initrd overlaps the image");
    }
    probe_check_initrd(g_cmdline, ird, ird_size);
    printf("probe64: acpi_rsdp_addr=%lx\n", (unsigned long)U64(0x70));
    probe_finish();
}
