/* Constants shared by assembly and C. */
#ifndef GUEST_LAYOUT_H
#define GUEST_LAYOUT_H

/* GDT selectors (see gdt in entry.S). User data precedes user code, as sysret wants. */
#define SEL_CODE32      0x08
#define SEL_DATA        0x10
#define SEL_KCODE64     0x18
#define SEL_UDATA       0x20
#define SEL_UCODE64     0x28
#define SEL_TSS         0x30

#define BOOT_STACK_SIZE 16384   /* kernel stack (CPL 0) */
#define INT_STACK_SIZE  16384   /* TSS.RSP0: entries from CPL 3 */
#define IST_STACK_SIZE  4096    /* TSS.IST1: double fault */
#define USER_STACK_SIZE 16384   /* CPL 3 stack */

#define EXIT_PORT       0xF4    /* isa-debug-exit: VMM exit status = (value << 1) | 1 */

#define SYSCALL_VECTOR  0x80
#define SYS_EXIT        0       /* leave CPL 3, rdi = return value of user_call() */
#define SYS_PUTC        1       /* rdi = character for COM1 */

#endif
