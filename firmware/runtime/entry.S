/* PVH entry (Xen's HVM direct boot ABI, as QEMU and strata implement it): the
 * loader jumps to pvh_start32 in 32-bit protected mode with paging off, flat
 * segments, interrupts off, no usable stack, and %ebx holding the physical
 * address of a struct hvm_start_info. This stub zeroes .bss, builds identity page
 * tables for the first 4 GiB with 2 MiB pages (the top GiB, which holds the MMIO
 * window, the IOAPIC and the LAPIC, is mapped uncached), loads its own GDT,
 * enters long mode and calls rt_start(start_info). It keeps its instruction count
 * small because guests here may be emulated instruction by instruction. */

#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define PTE_PRESENT_RW 0x3
#define PDE_LARGE 0x83          /* present, writable, 2 MiB page */
#define PDE_UNCACHED 0x18       /* PWT | PCD */
#define MSR_EFER 0xc0000080
#define EFER_LME 0x100

    .section .note.pvh, "a"
    .p2align 2
    .long 4                     /* namesz: "Xen\0" */
    .long 8                     /* descsz: a 64-bit entry address (QEMU reads 8 bytes) */
    .long XEN_ELFNOTE_PHYS32_ENTRY
    .asciz "Xen"
    .quad pvh_start32

    .section .text.entry, "ax"
    .code32
    .globl pvh_start32
pvh_start32:
    cli
    cld
    mov %ebx, %esi              /* keep the start-info pointer across the setup */

    /* Zero .bss (page tables and the boot stack live there). */
    mov $__bss_start, %edi
    mov $__bss_end, %ecx
    sub %edi, %ecx
    shr $2, %ecx
    xor %eax, %eax
    rep stosl

    /* The identity map (PML4 -> PDPT -> four page directories of 2 MiB pages)
     * is built by the assembler in .data, not by a loop here: guest code may be
     * emulated instruction by instruction, and a 2048-entry loop costs
     * milliseconds of every boot. */

    .globl rt_enter_long_mode32
rt_enter_long_mode32:
    /* CR4.PAE, CR3, EFER.LME, then CR0.PG|PE switches to long mode. */
    mov %cr4, %eax
    or $0x20, %eax
    mov %eax, %cr4
    mov $rt_pml4, %eax
    mov %eax, %cr3
    mov $MSR_EFER, %ecx
    rdmsr
    or $EFER_LME, %eax
    wrmsr
    mov %cr0, %eax
    or $0x80000001, %eax
    mov %eax, %cr0
    lgdt rt_gdt_ptr
    ljmp $0x08, $start64

    .code64
start64:
    mov $0x10, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    xor %eax, %eax
    mov %eax, %fs
    mov %eax, %gs
    lea rt_boot_stack_top(%rip), %rsp
    mov %esi, %edi              /* rt_start(struct hvm_start_info *) */
    call rt_start
4:  cli
    hlt
    jmp 4b

    .section .rodata
    .p2align 3
    .globl rt_gdt
rt_gdt:
    .quad 0                     /* null */
    .quad 0x00af9a000000ffff    /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff    /* 0x10: data */
    .quad 0x00cf9a000000ffff    /* 0x18: 32-bit code (the SMP trampoline uses it) */
rt_gdt_end:
    .globl rt_gdt_ptr
rt_gdt_ptr:
    .word rt_gdt_end - rt_gdt - 1
    .quad rt_gdt

    .section .data
    .p2align 12
    .globl rt_pml4
rt_pml4:
    .quad rt_pdpt + PTE_PRESENT_RW
    .skip 4096 - 8
rt_pdpt:
    .quad rt_pd + 0 * 4096 + PTE_PRESENT_RW
    .quad rt_pd + 1 * 4096 + PTE_PRESENT_RW
    .quad rt_pd + 2 * 4096 + PTE_PRESENT_RW
    .quad rt_pd + 3 * 4096 + PTE_PRESENT_RW
    .skip 4096 - 32
    /* 2048 2 MiB entries cover 4 GiB; the last 512 (3-4 GiB, the MMIO hole) are uncached. */
rt_pd:
    .set page, 0
    .rept 1536
    .quad page + PDE_LARGE
    .set page, page + 0x200000
    .endr
    .rept 512
    .quad page + PDE_LARGE + PDE_UNCACHED
    .set page, page + 0x200000
    .endr

    /* The boot stack is not part of .bss, so the boot does not spend emulated
     * instructions zeroing it. */
    .section .stack, "aw", @nobits
    .p2align 4
rt_boot_stack: .skip 32768
rt_boot_stack_top:

    .section .note.GNU-stack, "", @progbits
