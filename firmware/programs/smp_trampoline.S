/* Application-processor start-up code. smp_trampoline_start..end is copied to
 * SMP_TRAMPOLINE_BASE (below 1 MiB, page aligned); a SIPI with vector
 * BASE >> 12 starts an AP there in real mode with CS = BASE >> 4, IP = 0. It
 * loads the runtime's GDT, enters protected mode and jumps to ap_entry32 in the
 * program image, which switches on the BSP's page tables and long mode, takes a
 * stack from smp_stack_cursor and calls smp_ap_main(). */

#define SMP_TRAMPOLINE_BASE 0x8000
#define AP_STACK_SIZE 8192

    .section .text
    .code16
    .globl smp_trampoline_start, smp_trampoline_end
smp_trampoline_start:
    cli
    cld
    mov %cs, %ax
    mov %ax, %ds
    lgdtl tramp_gdt_ptr - smp_trampoline_start
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    ljmpl $0x18, $ap_entry32
    .p2align 2
tramp_gdt_ptr:
    .word 31            /* the runtime's GDT has four 8-byte descriptors */
    .long rt_gdt
smp_trampoline_end:

    .code32
ap_entry32:
    mov $0x10, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    mov %cr4, %eax
    or $0x20, %eax
    mov %eax, %cr4
    mov $rt_pml4, %eax
    mov %eax, %cr3
    mov $0xc0000080, %ecx
    rdmsr
    or $0x100, %eax
    wrmsr
    mov %cr0, %eax
    or $0x80000001, %eax
    mov %eax, %cr0
    ljmp $0x08, $ap_entry64

    .code64
ap_entry64:
    mov $AP_STACK_SIZE, %rax
    lock xadd %rax, smp_stack_cursor(%rip)
    lea AP_STACK_SIZE(%rax), %rsp
    call smp_ap_main
1:  cli
    hlt
    jmp 1b

    .section .note.GNU-stack, "", @progbits
