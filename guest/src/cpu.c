/*
 * GDT TSS slot, 64-bit TSS (RSP0, IST1, full I/O permission bitmap), IDT, exception
 * reporting, and the system-call entry (int 0x80) used from CPL 3.
 */
#include "cpu.h"
#include "io.h"
#include "kit.h"
#include "layout.h"

#define IDT_ENTRIES 256
#define GATE_INTR_DPL0 0x8E     /* present, 64-bit interrupt gate */
#define GATE_INTR_DPL3 0xEE     /* same, callable with int from CPL 3 */
#define TSS_AVAILABLE  0x89     /* present, 64-bit TSS (available) */
#define VEC_DOUBLE_FAULT 8
#define VEC_INVALID_OPCODE 6
#define OPCODE_INT_IMM8 0xCD

/*
 * On this host port I/O from CPL 3 is checked against the I/O bitmap even with IOPL 3,
 * so the TSS carries a full bitmap (8 KiB, all ports allowed) plus the 0xFF terminator.
 */
struct tss {
    uint32_t reserved0;
    uint64_t rsp[3];
    uint64_t reserved1;
    uint64_t ist[7];
    uint64_t reserved2;
    uint16_t reserved3;
    uint16_t iomap_base;
    uint8_t iomap[8192];
    uint8_t iomap_end;
} __attribute__((packed));

struct idt_gate {
    uint16_t off_lo;
    uint16_t sel;
    uint8_t ist;
    uint8_t type;
    uint16_t off_mid;
    uint32_t off_hi;
    uint32_t reserved;
} __attribute__((packed));

struct dtr {
    uint16_t limit;
    uint64_t base;
} __attribute__((packed));

extern uint64_t gdt[];                  /* entry.S */
extern char isr_stubs[];                /* isr.S: 16 bytes per vector */
uint64_t user_call(uint64_t (*fn)(void *), void *arg, void *user_stack_top);
__attribute__((noreturn)) void user_return(uint64_t value);

static struct tss tss __attribute__((aligned(16)));
static struct idt_gate idt[IDT_ENTRIES] __attribute__((aligned(16)));
static isr_handler_t handlers[IDT_ENTRIES];
static uint8_t int_stack[INT_STACK_SIZE] __attribute__((aligned(16)));
static uint8_t ist1_stack[IST_STACK_SIZE] __attribute__((aligned(16)));
static uint8_t user_stack[USER_STACK_SIZE] __attribute__((aligned(16)));

static void set_gate(unsigned vec, uint64_t addr, uint8_t type, uint8_t ist)
{
    struct idt_gate *g = &idt[vec];
    g->off_lo = (uint16_t)addr;
    g->sel = SEL_KCODE64;
    g->ist = ist;
    g->type = type;
    g->off_mid = (uint16_t)(addr >> 16);
    g->off_hi = (uint32_t)(addr >> 32);
    g->reserved = 0;
}

syscall_ext_t syscall_extension;

static void syscall_handler(struct regs *r)
{
    switch (r->rax) {
    case SYS_EXIT:
        user_return(r->rdi);
    case SYS_PUTC:
        kprintf("%c", (int)r->rdi);
        r->rax = 0;
        break;
    default:
        if (!syscall_extension || !syscall_extension(r))
            r->rax = (uint64_t)-1;
        break;
    }
}

uint64_t syscall_ud_count;

/*
 * On this host `int $0x80` at CPL 3 raises #UD with RIP at the int instruction
 * (docs/host.md lists the PVM quirks). Treat it as the system call it was meant to be.
 */
static void invalid_opcode_handler(struct regs *r)
{
    const uint8_t *ip = (const uint8_t *)(uintptr_t)r->rip;
    if ((r->cs & 3) == 3 && r->rip < 0xFFFFFFFEULL && ip[0] == OPCODE_INT_IMM8 &&
        ip[1] == SYSCALL_VECTOR) {
        syscall_ud_count++;
        r->rip += 2;
        syscall_handler(r);
        return;
    }
    panic_regs(r);
}

void cpu_init(void)
{
    /* TSS (BSS is already zero, so is the bitmap). */
    tss.rsp[0] = (uint64_t)(int_stack + sizeof(int_stack));
    tss.ist[0] = (uint64_t)(ist1_stack + sizeof(ist1_stack));
    tss.iomap_base = (uint16_t)offsetof(struct tss, iomap);
    tss.iomap_end = 0xFF;

    uint64_t base = (uint64_t)&tss, limit = sizeof(tss) - 1;
    gdt[SEL_TSS / 8] = (limit & 0xFFFF) | ((base & 0xFFFFFF) << 16) |
                       ((uint64_t)TSS_AVAILABLE << 40) | (((limit >> 16) & 0xF) << 48) |
                       (((base >> 24) & 0xFF) << 56);
    gdt[SEL_TSS / 8 + 1] = base >> 32;
    __asm__ volatile("ltr %w0" :: "r"(SEL_TSS));

    for (unsigned v = 0; v < IDT_ENTRIES; v++)
        set_gate(v, (uint64_t)(isr_stubs + 16 * v),
                 v == SYSCALL_VECTOR ? GATE_INTR_DPL3 : GATE_INTR_DPL0,
                 v == VEC_DOUBLE_FAULT ? 1 : 0);
    struct dtr idtr = { sizeof(idt) - 1, (uint64_t)idt };
    __asm__ volatile("lidt %0" :: "m"(idtr));

    handlers[SYSCALL_VECTOR] = syscall_handler;
    handlers[VEC_INVALID_OPCODE] = invalid_opcode_handler;
}

void isr_set_handler(unsigned vector, isr_handler_t fn)
{
    if (vector < IDT_ENTRIES)
        handlers[vector] = fn;
}

void idt_set_entry(unsigned vector, const void *code)
{
    if (vector < IDT_ENTRIES)
        set_gate(vector, (uint64_t)(uintptr_t)code, GATE_INTR_DPL0, 0);
}

void isr_dispatch(struct regs *r)
{
    isr_handler_t h = handlers[r->vector & 0xFF];
    if (h)
        h(r);
    else
        panic_regs(r);
}

void panic_regs(const struct regs *r)
{
    uint64_t cr2;
    __asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
    kprintf("\nPANIC vector=%lu rip=0x%lx err=0x%lx cs=0x%lx rsp=0x%lx cr2=0x%lx cpl=%u\n",
            r->vector, r->rip, r->err, r->cs, r->rsp, cr2, current_cpl());
    kit_exit(STATUS_PANIC);
}

uint64_t run_user(uint64_t (*fn)(void *), void *arg)
{
    return user_call(fn, arg, user_stack + sizeof(user_stack));
}
