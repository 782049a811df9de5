/* Exception entry stubs for rt_install_traps() (traps.c): one per vector 0-31,
 * each pushing a zero where the CPU pushes no error code, then its vector, so
 * that rt_trap() sees one frame layout. They run on the interrupted stack: a
 * fault that broke the stack still ends in a triple fault, as without them. */

    .code64
    .text

.macro TRAP_NOERR vector
    .p2align 4
trap_\vector:
    pushq $0
    pushq $\vector
    jmp trap_common
.endm

.macro TRAP_ERR vector
    .p2align 4
trap_\vector:
    pushq $\vector
    jmp trap_common
.endm

TRAP_NOERR 0
TRAP_NOERR 1
TRAP_NOERR 2
TRAP_NOERR 3
TRAP_NOERR 4
TRAP_NOERR 5
TRAP_NOERR 6
TRAP_NOERR 7
TRAP_ERR 8
TRAP_NOERR 9
TRAP_ERR 10
TRAP_ERR 11
TRAP_ERR 12
TRAP_ERR 13
TRAP_ERR 14
TRAP_NOERR 15
TRAP_NOERR 16
TRAP_ERR 17
TRAP_NOERR 18
TRAP_NOERR 19
TRAP_NOERR 20
TRAP_ERR 21
TRAP_NOERR 22
TRAP_NOERR 23
TRAP_NOERR 24
TRAP_NOERR 25
TRAP_NOERR 26
TRAP_NOERR 27
TRAP_NOERR 28
TRAP_ERR 29
TRAP_ERR 30
TRAP_NOERR 31

trap_common:
    /* rsp -> vector, error code, rip, cs, rflags, rsp, ss: struct rt_trap_frame. */
    mov %rsp, %rdi
    and $-16, %rsp
    call rt_trap            /* does not return */
1:  cli
    hlt
    jmp 1b

    .section .rodata
    .p2align 3
    .globl rt_trap_stubs
rt_trap_stubs:
    .irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad trap_\v
    .endr
