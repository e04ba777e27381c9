/* Constants shared by assembly and C. */
#ifndef GUEST_LAYOUT_H
#define GUEST_LAYOUT_H

/*
 * GDT selectors (see gdt in entry.S), in the order syscall/sysret need:
 * STAR[47:32] = SEL_KCODE64 (SS = +8), STAR[63:48] = SEL_UCODE32 (SS = +8, CS64 = +16).
 */
#define SEL_CODE32      0x08
#define SEL_KCODE64     0x10
#define SEL_DATA        0x18
#define SEL_UCODE32     0x20    /* placeholder for the sysret layout; unused */
#define SEL_UDATA       0x28
#define SEL_UCODE64     0x30
#define SEL_TSS         0x38

#define BOOT_STACK_SIZE 16384   /* kernel stack (CPL 0) */
#define INT_STACK_SIZE  16384   /* TSS.RSP0: entries from CPL 3 */
#define IST_STACK_SIZE  4096    /* TSS.IST1: double fault */
#define USER_STACK_SIZE 16384   /* CPL 3 stack */

#define IRQ_COUNT_STUB_SIZE 128 /* isr.S irq_count_stubs: one per IRQ (pic.c) */

#define EXIT_PORT       0xF4    /* isa-debug-exit: VMM exit status = (value << 1) | 1 */

/*
 * System calls from CPL 3: `int $0x80` (rax = number, rdi = argument), through a DPL 3
 * gate. On this host `int n` at CPL 3 (any n) raises #UD instead, and `syscall` jumps to
 * LSTAR without leaving CPL 3; so the #UD handler recognizes `int $0x80` at CPL 3 and
 * runs the system call itself (see cpu.c).
 */
#define SYSCALL_VECTOR  0x80
#define SYS_EXIT        0       /* leave CPL 3, rdi = return value of user_call() */
#define SYS_PUTC        1       /* rdi = character for COM1 */

#endif
