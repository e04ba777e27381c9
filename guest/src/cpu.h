/* Descriptor tables, exceptions, and the CPL 3 switch. */
#ifndef GUEST_CPU_H
#define GUEST_CPU_H

#include <stdint.h>

/* Saved state on interrupt entry, lowest address first (pushed by isr.S). */
struct regs {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
    uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
    uint64_t vector, err;
    uint64_t rip, cs, rflags, rsp, ss;          /* pushed by the CPU */
};

typedef void (*isr_handler_t)(struct regs *r);

#define RFLAGS_RESERVED 0x002     /* bit 1 always reads as 1 */
#define RFLAGS_IF       0x200

void cpu_init(void);
void isr_set_handler(unsigned vector, isr_handler_t fn);
/* Point a vector's (DPL 0 interrupt) gate at other code, such as the IRQ stubs. */
void idt_set_entry(unsigned vector, const void *code);
__attribute__((noreturn)) void panic_regs(const struct regs *r);

/*
 * Run fn(arg) at CPL 3 on the kit's user stack (all memory is mapped U/S=1) and return
 * its result. The user side may call sys_putc(). RFLAGS for CPL 3 come from user_rflags
 * (default RFLAGS_RESERVED: interrupts off; add RFLAGS_IF to take IRQs at CPL 3).
 */
uint64_t run_user(uint64_t (*fn)(void *), void *arg);
extern uint64_t user_rflags;

/*
 * More system calls for a scenario (numbers from 16 up): returns 1 if it handled r->rax
 * (result in r->rax), 0 to fail the call with -1. Runs at CPL 0.
 */
typedef int (*syscall_ext_t)(struct regs *r);
extern syscall_ext_t syscall_extension;

/* How many system calls came in through the #UD fixup rather than the gate. */
extern uint64_t syscall_ud_count;

/* From CPL 3 only. */
static inline void sys_putc(char c)
{
    uint64_t nr = 1;    /* SYS_PUTC */
    __asm__ volatile("int $0x80" : "+a"(nr) : "D"((uint64_t)(unsigned char)c) : "memory");
}

static inline unsigned current_cpl(void)
{
    uint16_t cs;
    __asm__ volatile("mov %%cs, %0" : "=r"(cs));
    return cs & 3;
}

#endif
