/*
 * Interrupt entry stubs (one per vector, 16 bytes apart), the common save/restore path,
 * and the switches to and from CPL 3. Everything here runs in long mode; iretq is the
 * only interrupt return used (32-bit iret is not emulated on the target host).
 */
#include "layout.h"

        .text
        .code64

/* Vectors for which the CPU pushes an error code. */
#define HAS_ERR(v) ((v) == 8 || (v) == 10 || (v) == 11 || (v) == 12 || (v) == 13 || \
                    (v) == 14 || (v) == 17 || (v) == 21 || (v) == 29 || (v) == 30)

        .balign 16
        .globl isr_stubs
isr_stubs:
        .set    vec, 0
        .rept   256
        .balign 16
        .if     HAS_ERR(vec)
        .else
        pushq   $0                      /* dummy error code keeps one frame layout */
        .endif
        pushq   $vec
        jmp     isr_common
        .set    vec, vec + 1
        .endr

/* Frame on entry: vector, error code, RIP, CS, RFLAGS, RSP, SS (struct regs in cpu.h). */
isr_common:
        pushq   %rax
        pushq   %rbx
        pushq   %rcx
        pushq   %rdx
        pushq   %rsi
        pushq   %rdi
        pushq   %rbp
        pushq   %r8
        pushq   %r9
        pushq   %r10
        pushq   %r11
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        cld
        movq    %rsp, %rdi
        call    isr_dispatch
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %r11
        popq    %r10
        popq    %r9
        popq    %r8
        popq    %rbp
        popq    %rdi
        popq    %rsi
        popq    %rdx
        popq    %rcx
        popq    %rbx
        popq    %rax
        addq    $16, %rsp               /* vector and error code */
        iretq

/*
 * IRQ stubs for vectors 0x20-0x2F (pic.c points their gates here), 16 bytes apart.
 * CPL 0 code is emulated on the target host (about 0.5 us an instruction), so this path
 * saves only what the C ABI lets irq_entry() clobber and builds no struct regs.
 * The CPU aligned RSP to 16 and pushed 5 words; 9 pushes more leave it 16-aligned for
 * the call.
 */
        .balign 16
        .globl irq_stubs
irq_stubs:
        .set    irq, 0
        .rept   16
        .balign 16
        pushq   %rax
        movl    $irq, %eax
        jmp     irq_common
        .set    irq, irq + 1
        .endr

irq_common:
        pushq   %rcx
        pushq   %rdx
        pushq   %rsi
        pushq   %rdi
        pushq   %r8
        pushq   %r9
        pushq   %r10
        pushq   %r11
        cld
        movl    %eax, %edi
        call    irq_entry
        popq    %r11
        popq    %r10
        popq    %r9
        popq    %r8
        popq    %rdi
        popq    %rsi
        popq    %rdx
        popq    %rcx
        popq    %rax
        iretq

/*
 * Counting IRQ entries (irq_attach_counter in pic.c), IRQ_COUNT_STUB_SIZE bytes apart:
 * IRQ_FLOW_ACK with a handler that adds 1 to *irq_counters[irq], without the C call.
 * The 8259 sees what irq_entry() makes it see: the cached mask with the bit set to the
 * chip's IMR, specific EOI (slave: to the slave, then 0x62 to the master), the count,
 * the cached mask with the bit clear to the IMR. IRQ 7 and 15 never come here.
 */
        .balign 64
        .globl irq_count_stubs
irq_count_stubs:
        .set    irq, 0
        .rept   16
        /* .org: exactly IRQ_COUNT_STUB_SIZE bytes each (an error if one outgrows it) */
        .org    irq_count_stubs + irq * IRQ_COUNT_STUB_SIZE, 0xCC
        pushq   %rax
        movzwl  pic_mask_cache(%rip), %eax
        orl     $(1 << irq), %eax
        movw    %ax, pic_mask_cache(%rip)
        .if     irq < 8
        outb    %al, $0x21              /* master IMR */
        movb    $(0x60 | irq), %al
        outb    %al, $0x20              /* specific EOI */
        .else
        movb    %ah, %al
        outb    %al, $0xA1              /* slave IMR */
        movb    $(0x60 | (irq - 8)), %al
        outb    %al, $0xA0              /* specific EOI to the slave */
        movb    $0x62, %al
        outb    %al, $0x20              /* and to the master's cascade input */
        .endif
        movq    irq_counters + 8 * irq(%rip), %rax
        incq    (%rax)
        movzwl  pic_mask_cache(%rip), %eax
        andl    $~(1 << irq), %eax
        movw    %ax, pic_mask_cache(%rip)
        .if     irq < 8
        outb    %al, $0x21
        .else
        movb    %ah, %al
        outb    %al, $0xA1
        .endif
        popq    %rax
        iretq
        .set    irq, irq + 1
        .endr

/*
 * uint64_t user_call(uint64_t (*fn)(void *), void *arg, void *user_stack_top)
 * Runs fn(arg) at CPL 3 and returns its result once the user side does SYS_EXIT.
 * Not reentrant.
 */
        .globl user_call
user_call:
        pushq   %rbx
        pushq   %rbp
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        movq    %rsp, user_saved_rsp(%rip)
        movq    %rdi, %rax              /* fn: called by the trampoline */
        movq    %rsi, %rdi              /* arg */
        pushq   $(SEL_UDATA | 3)        /* SS */
        pushq   %rdx                    /* RSP */
        pushq   user_rflags(%rip)       /* RFLAGS */
        pushq   $(SEL_UCODE64 | 3)      /* CS */
        leaq    user_trampoline(%rip), %rcx
        pushq   %rcx                    /* RIP */
        xorl    %ecx, %ecx
        xorl    %edx, %edx
        xorl    %esi, %esi
        iretq

        .globl user_trampoline
user_trampoline:                        /* CPL 3 */
        call    *%rax
        movq    %rax, %rdi
        movl    $SYS_EXIT, %eax
        int     $SYSCALL_VECTOR
        ud2

/* void user_return(uint64_t value): from the SYS_EXIT handler (CPL 0), never returns. */
        .globl user_return
user_return:
        movq    %rdi, %rax
        movl    $SEL_DATA, %ecx
        movl    %ecx, %ss               /* an entry from CPL 3 leaves SS null */
        movl    %ecx, %ds
        movl    %ecx, %es
        movq    user_saved_rsp(%rip), %rsp
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %rbp
        popq    %rbx
        ret

        .data
        .balign 8
user_saved_rsp: .quad 0
        .globl user_rflags
user_rflags:    .quad 0x2               /* IF clear unless a scenario takes IRQs */

        .section .note.GNU-stack, "", @progbits
