/* The protected-mode start of probe.bzImage, at code32_start (0x100000): entered
 * by the real-mode setup (or any 32-bit boot protocol loader) with %esi = the
 * zero page. It builds identity page tables for 4 GiB at 0x70000, enters long
 * mode with __BOOT_CS = 64-bit code, and jumps to the e_entry of the ELF payload
 * that sits at 0x101000 (payload_offset 0x1000), keeping %rsi: the 64-bit boot
 * protocol, exactly as a 64-bit loader would enter the payload. */

#define PML4 0x70000
#define PAYLOAD 0x101000

    .code32
    .section .text, "ax"
    .globl stub32_start
stub32_start:
    cli
    cld
    movl $0x18, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    movl %eax, %fs
    movl %eax, %gs

    /* Six zeroed pages: PML4, PDPT, four page directories. */
    movl $PML4, %edi
    movl $6 * 1024, %ecx
    xorl %eax, %eax
    rep stosl
    movl $PML4 + 0x1000 + 3, PML4
    movl $PML4 + 0x1000, %edi
    movl $PML4 + 0x2000 + 3, %eax
    movl $4, %ecx
1:  movl %eax, (%edi)
    addl $0x1000, %eax
    addl $8, %edi
    decl %ecx
    jnz 1b
    movl $PML4 + 0x2000, %edi
    movl $0x83, %eax
    xorl %edx, %edx
    movl $2048, %ecx
2:  movl %eax, (%edi)
    movl %edx, 4(%edi)
    addl $0x200000, %eax
    adcl $0, %edx
    addl $8, %edi
    decl %ecx
    jnz 2b

    movl %cr4, %eax
    orl $0x20, %eax
    movl %eax, %cr4
    movl $PML4, %eax
    movl %eax, %cr3
    movl $0xc0000080, %ecx
    rdmsr
    orl $0x100, %eax
    wrmsr
    lgdt gdt_ptr
    movl %cr0, %eax
    orl $0x80000001, %eax
    movl %eax, %cr0
    ljmp $0x10, $long_mode

    .code64
long_mode:
    movl $0x18, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    movl %esi, %esi             /* zero-extend the zero page address */
    movq PAYLOAD + 0x18, %rax   /* e_entry of the ELF payload */
    jmp *%rax

    .p2align 3
gdt:
    .quad 0
    .quad 0
    .quad 0x00af9b000000ffff    /* __BOOT_CS: 64-bit code */
    .quad 0x00cf93000000ffff    /* __BOOT_DS */
gdt_ptr:
    .word 4 * 8 - 1
    .quad gdt

    .section .note.GNU-stack, "", @progbits
