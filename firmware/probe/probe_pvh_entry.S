/* The PVH entry of probe-pvh.elf: the loader jumps here in 32-bit protected mode
 * with paging off and %ebx = hvm_start_info. The stub records the CPU state it was
 * handed in probe_entry (in .data, which the runtime does not zero), then
 * continues into the firmware runtime's own PVH entry (pvh_start32), which builds
 * page tables, enters long mode and calls main(). This file's note replaces the
 * runtime's (probe_pvh.ld discards that one). */

    .section .note.probe, "a"
    .p2align 2
    .long 4
    .long 8
    .long 18                    /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .quad probe_pvh_start

    .section .text.probe, "ax"
    .code32
    .globl probe_pvh_start
probe_pvh_start:
    mov %ebx, probe_entry+40
    mov %cr0, %eax
    mov %eax, probe_entry+0
    mov %cr3, %eax
    mov %eax, probe_entry+8
    mov %cr4, %eax
    mov %eax, probe_entry+16
    mov $0xc0000080, %ecx
    rdmsr
    mov %eax, probe_entry+24
    mov %edx, probe_entry+28
    mov %cs, %ax
    mov %ax, probe_entry+48
    mov %ds, %ax
    mov %ax, probe_entry+50
    mov %ss, %ax
    mov %ax, probe_entry+52
    mov %es, %ax
    mov %ax, probe_entry+54
    mov $probe_tmp_stack_top, %esp
    pushfl
    popl probe_entry+32
    jmp pvh_start32

    .section .data
    .p2align 4
probe_tmp_stack: .skip 64
probe_tmp_stack_top:

    .section .note.GNU-stack, "", @progbits
