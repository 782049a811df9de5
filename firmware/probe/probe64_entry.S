/* The 64-bit Linux entry of probe.vmlinux (and of the ELF inside probe.bzImage):
 * boot.rst "64-bit Boot Protocol" enters here in long mode with %rsi = the zero
 * page. Before touching anything the stub records the CPU state it was handed
 * (control registers, EFER, RFLAGS, segment selectors, GDTR) in probe_entry,
 * which lives in .data so that zeroing .bss keeps it; then it takes its own
 * stack and calls probe64_main(boot_params). A "Linux" ELF note marks the file
 * as a kernel whose e_entry is this 64-bit entry. */

    .section .note.kernel, "a"
    .p2align 2
    .long 6                     /* namesz: "Linux\0" */
    .long 4
    .long 0x101                 /* a private note type: "probe" */
    .asciz "Linux"
    .p2align 2
    .long 0

    .section .text.entry, "ax"
    .code64
    .globl probe64_start
probe64_start:
    mov %rsi, probe_entry+40(%rip)
    mov %cr0, %rax
    mov %rax, probe_entry+0(%rip)
    mov %cr3, %rax
    mov %rax, probe_entry+8(%rip)
    mov %cr4, %rax
    mov %rax, probe_entry+16(%rip)
    mov $0xc0000080, %ecx
    rdmsr
    mov %eax, probe_entry+24(%rip)
    mov %edx, probe_entry+28(%rip)
    mov %cs, %ax
    mov %ax, probe_entry+48(%rip)
    mov %ds, %ax
    mov %ax, probe_entry+50(%rip)
    mov %ss, %ax
    mov %ax, probe_entry+52(%rip)
    mov %es, %ax
    mov %ax, probe_entry+54(%rip)
    sgdt probe_entry+56(%rip)
    /* Our own stack (in .data, as .bss is not yet zeroed); RFLAGS through it. */
    lea probe_stack_top(%rip), %rsp
    pushfq
    popq probe_entry+32(%rip)
    cld
    lea __bss_start(%rip), %rdi
    lea __bss_end(%rip), %rcx
    sub %rdi, %rcx
    xor %eax, %eax
    rep stosb
    mov probe_entry+40(%rip), %rdi
    call probe64_main
1:  cli
    hlt
    jmp 1b

    .section .data
    .p2align 4
probe_stack: .skip 16384
probe_stack_top:

    .section .note.GNU-stack, "", @progbits
