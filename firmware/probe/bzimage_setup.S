/* The real-mode part of probe.bzImage: a boot sector holding the Linux setup
 * header (boot.rst "The Real-Mode Kernel Header", protocol 2.15) and setup code
 * that a BIOS-style boot loader (QEMU's, through its firmware) enters at +0x200
 * in real mode. Like Linux's own setup it builds a zero page (header copied in,
 * e820 map from INT 15h AX=E820h), switches to 32-bit protected mode with
 * __BOOT_CS/__BOOT_DS and jumps to code32_start with %esi = the zero page (the
 * 32-bit boot protocol). strata never runs this: it decompresses (here: takes)
 * the payload on the host and uses the 64-bit entry of the ELF inside.
 * The pack tool fills setup_sects, syssize, payload_offset/length and init_size. */

#define ZERO_PAGE 0x4000        /* offset in this segment of the zero page we build */
#define SMAP 0x534d4150

    .code16
    .section .text, "ax"
    .globl _start
_start:
    /* The boot sector is not meant to run; a BIOS that loads it just stops. */
    cli
    hlt
    jmp _start

    .org 0x1f1
hdr:
setup_sects:      .byte 0
root_flags:       .word 0
syssize:          .long 0
ram_size:         .word 0
vid_mode:         .word 0xffff
root_dev:         .word 0
boot_flag:        .word 0xaa55
    .org 0x200
jump:             .byte 0xeb, start_of_setup - 0x202
header:           .ascii "HdrS"
version:          .word 0x020f
realmode_swtch:   .long 0
start_sys_seg:    .word 0x1000
kernel_version:   .word version_string - 0x200
type_of_loader:   .byte 0
loadflags:        .byte 0x01          /* LOADED_HIGH */
setup_move_size:  .word 0x8000
code32_start:     .long 0x100000
ramdisk_image:    .long 0
ramdisk_size:     .long 0
bootsect_kludge:  .long 0
heap_end_ptr:     .word 0
ext_loader_ver:   .byte 0
ext_loader_type:  .byte 0
cmd_line_ptr:     .long 0
initrd_addr_max:  .long 0x7fffffff
kernel_alignment: .long 0x200000
relocatable:      .byte 0
min_alignment:    .byte 12
xloadflags:       .word 0
cmdline_size:     .long 4095
hardware_subarch: .long 0
subarch_data:     .quad 0
payload_offset:   .long 0
payload_length:   .long 0
setup_data:       .quad 0
pref_address:     .quad 0x100000
init_size:        .long 0
handover_offset:  .long 0
kernel_info:      .long 0
hdr_end:

start_of_setup:
    /* The loader set DS = ES = SS = our segment and CS = segment + 0x20; make CS
     * match so that offsets are from the image start, as linked. */
    cli
    cld
    pushw %ds
    pushw $1f
    lretw
1:  movw %ds, %ax
    movw %ax, %es
    movw %ax, %ss
    movw $0xfff0, %sp

    /* Zero the zero page, then copy the header (with what the loader wrote into
     * it: command line, initrd, loader id) to its place at 0x1f1. */
    movw $ZERO_PAGE, %di
    movw $2048, %cx
    xorw %ax, %ax
    rep stosw
    movw $hdr, %si
    movw $ZERO_PAGE + 0x1f1, %di
    movw $hdr_end - hdr, %cx
    rep movsb

    /* The e820 map from the BIOS, at zero page 0x2d0, count at 0x1e8. */
    xorl %ebx, %ebx
    movw $ZERO_PAGE + 0x2d0, %di
2:  movl $0xe820, %eax
    movl $20, %ecx
    movl $SMAP, %edx
    int $0x15
    jc 3f
    cmpl $SMAP, %eax
    jne 3f
    movl %es:8(%di), %eax       /* some BIOSes return an empty last entry: skip it */
    orl %es:12(%di), %eax
    jz 4f
    incb ZERO_PAGE + 0x1e8
    addw $20, %di
4:
    testl %ebx, %ebx
    jz 3f
    cmpb $128, ZERO_PAGE + 0x1e8
    jb 2b
3:
    /* Linear addresses: our segment base, the GDT, the zero page. */
    xorl %eax, %eax
    movw %ds, %ax
    shll $4, %eax
    movl %eax, %esi
    addl $ZERO_PAGE, %esi
    leal gdt(%eax), %edx
    movl %edx, gdt_ptr + 2
    movl code32_start, %edx
    movl %edx, far_target

    lgdtl gdt_ptr
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl *far_target

    .p2align 3
gdt:
    .quad 0
    .quad 0
    .quad 0x00cf9b000000ffff    /* __BOOT_CS: 32-bit flat code */
    .quad 0x00cf93000000ffff    /* __BOOT_DS: flat data */
gdt_ptr:
    .word 4 * 8 - 1
    .long 0
far_target:
    .long 0
    .word 0x10

version_string:
    .asciz "strata probe kernel"

    .p2align 9                  /* whole sectors */
    .section .note.GNU-stack, "", @progbits
