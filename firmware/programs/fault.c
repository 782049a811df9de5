/* fault: forces a triple fault. It loads an empty IDT (limit 0), so the first
 * exception cannot be delivered, which raises #GP, then #DF, then shuts the CPU
 * down. The exception is `ud2` by default, or a divide error with `how=de`;
 * never int3, which the emulator on the development machines lacks. With
 * `traps=1` it installs the runtime's exception handlers (rt_install_traps)
 * instead of the empty IDT, and the same exception is reported and exits 62. */
#include "runtime.h"

const char rt_program_name[] = "fault";

int main(const char* cmdline)
{
    (void)cmdline;
    struct __attribute__((packed)) {
        uint16_t limit;
        uint64_t base;
    } idt = { 0, 0 };
    bool divide = cmdline_is("how", "de");
    if (cmdline_is("traps", "1")) {
        printf("fault: %s with the runtime's exception handlers\n", divide ? "#DE" : "ud2");
        rt_install_traps();
    } else {
        printf("fault: triple fault by %s with an empty IDT\n", divide ? "#DE" : "ud2");
        __asm__ volatile("lidt %0" ::"m"(idt));
    }
    if (divide) {
        __asm__ volatile("xor %%ecx, %%ecx; div %%ecx" ::: "eax", "ecx", "edx");
    } else {
        __asm__ volatile("ud2");
    }
    rt_fail(1, "still running after the fault");
}
