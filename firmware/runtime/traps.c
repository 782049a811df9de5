/* Exception reporting: an IDT whose 32 exception vectors print what faulted and
 * end the run with exit code 62, instead of the triple fault a guest without an
 * IDT gets, whose registers KVM has already reset when the VMM sees it. Programs
 * that test the triple fault itself (fault.c) do not install it. */
#include "io.h"
#include "runtime.h"

struct rt_trap_frame {
    uint64_t vector;
    uint64_t error;
    uint64_t rip;
    uint64_t cs;
    uint64_t rflags;
    uint64_t rsp;
    uint64_t ss;
};

struct idt_entry {
    uint16_t offset_low;
    uint16_t selector;
    uint8_t ist;
    uint8_t type;
    uint16_t offset_mid;
    uint32_t offset_high;
    uint32_t zero;
} __attribute__((packed));

extern const uint64_t rt_trap_stubs[32];
static struct idt_entry g_idt[32] __attribute__((aligned(16)));

__attribute__((noreturn)) void rt_trap(const struct rt_trap_frame* f);

__attribute__((noreturn)) void rt_trap(const struct rt_trap_frame* f)
{
    uint64_t cr2;
    __asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
    rt_fail(RT_TRAP_EXIT, "exception %lu error 0x%lx at rip 0x%lx rsp 0x%lx rflags 0x%lx cr2 0x%lx",
            (unsigned long)f->vector, (unsigned long)f->error, (unsigned long)f->rip, (unsigned long)f->rsp,
            (unsigned long)f->rflags, (unsigned long)cr2);
}

void rt_install_traps(void)
{
    for (int v = 0; v < 32; ++v) {
        uint64_t a = rt_trap_stubs[v];
        g_idt[v].offset_low = (uint16_t)a;
        g_idt[v].selector = 0x08; /* the 64-bit code segment (entry.S's GDT) */
        g_idt[v].ist = 0;
        g_idt[v].type = 0x8e; /* present, ring 0, 64-bit interrupt gate */
        g_idt[v].offset_mid = (uint16_t)(a >> 16);
        g_idt[v].offset_high = (uint32_t)(a >> 32);
        g_idt[v].zero = 0;
    }
    struct __attribute__((packed)) {
        uint16_t limit;
        uint64_t base;
    } ptr = { sizeof(g_idt) - 1, (uint64_t)g_idt };
    __asm__ volatile("lidt %0" ::"m"(ptr));
}
