/*
 * 8259A pair and IRQ entry (see pic.h). Port traffic per IRQ_FLOW_ACK interrupt:
 * master IRQ: IMR write, specific EOI, [handler], IMR write;
 * slave IRQ: slave IMR write, slave specific EOI, master specific EOI (IR2), [handler],
 * slave IMR write. IRQ 7 and 15 first read the ISR (OCW3) to tell a spurious one apart.
 */
#include "pic.h"
#include "cpu.h"
#include "io.h"
#include "kit.h"

#define ICW3_MASTER_HAS_SLAVE_ON_IR2 (1u << PIC_CASCADE_IRQ)
#define ICW3_SLAVE_ID                PIC_CASCADE_IRQ

extern char irq_stubs[];                /* isr.S: 16 bytes per IRQ */
extern char irq_count_stubs[];          /* isr.S: IRQ_COUNT_STUB_SIZE bytes per IRQ */

struct irq_slot {
    irq_fn_t fn;
    enum irq_flow flow;
};

static struct irq_slot slots[16];
uint16_t pic_mask_cache = 0xFFFF;        /* bit n set: IRQ n masked (isr.S reads it too) */
volatile uint64_t *irq_counters[16];    /* isr.S: irq_count_stubs */
uint64_t pic_spurious[2];
uint64_t pic_unexpected;

static uint16_t cmd_port(unsigned chip) { return chip ? PIC_SLAVE_CMD : PIC_MASTER_CMD; }
static uint16_t data_port(unsigned chip) { return chip ? PIC_SLAVE_DATA : PIC_MASTER_DATA; }

static void write_imr(unsigned irq)
{
    if (irq & 8)
        outb(PIC_SLAVE_DATA, (uint8_t)(pic_mask_cache >> 8));
    else
        outb(PIC_MASTER_DATA, (uint8_t)pic_mask_cache);
}

void pic_init_chip(unsigned chip, uint8_t icw4)
{
    outb(cmd_port(chip), ICW1_INIT_ICW4);
    outb(data_port(chip), (uint8_t)(PIC_VECTOR_BASE + 8 * chip));         /* ICW2 */
    outb(data_port(chip), chip ? ICW3_SLAVE_ID : ICW3_MASTER_HAS_SLAVE_ON_IR2);
    outb(data_port(chip), icw4);
    write_imr(chip * 8);                /* ICW1 cleared the IMR */
}

void pic_init(void)
{
    for (unsigned irq = 0; irq < 16; irq++)
        idt_set_entry(PIC_VECTOR_BASE + irq, irq_stubs + 16 * irq);
    pic_mask_cache = 0xFFFF;
    outb(PIC_MASTER_DATA, 0xFF);
    outb(PIC_SLAVE_DATA, 0xFF);
    pic_init_chip(PIC_MASTER, ICW4_8086);
    pic_init_chip(PIC_SLAVE, ICW4_8086);
    /* The cascade input stays open: slave IRQs are masked in the slave's own IMR. */
    pic_unmask(PIC_CASCADE_IRQ);
}

void pic_mask(unsigned irq)
{
    pic_mask_cache |= (uint16_t)(1u << irq);
    write_imr(irq);
}

void pic_unmask(unsigned irq)
{
    pic_mask_cache &= (uint16_t)~(1u << irq);
    write_imr(irq);
}

uint16_t pic_cached_mask(void) { return pic_mask_cache; }

static void count_spurious_capable(unsigned irq)   /* IRQ 7 / 15 counters */
{
    (*irq_counters[irq])++;
}

void irq_set_handler(unsigned irq, irq_fn_t fn, enum irq_flow flow)
{
    slots[irq & 15] = (struct irq_slot){ fn, flow };
}

void irq_attach(unsigned irq, irq_fn_t fn, enum irq_flow flow)
{
    irq_set_handler(irq, fn, flow);
    pic_unmask(irq & 15);
}

void irq_attach_counter(unsigned irq, volatile uint64_t *counter)
{
    irq &= 15;
    if ((irq & 7) == 7) {                       /* needs the spurious check: C path */
        irq_attach(irq, count_spurious_capable, IRQ_FLOW_ACK);
        irq_counters[irq] = counter;
        return;
    }
    irq_counters[irq] = counter;
    idt_set_entry(PIC_VECTOR_BASE + irq, irq_count_stubs + IRQ_COUNT_STUB_SIZE * irq);
    pic_unmask(irq);
}

void irq_detach(unsigned irq)
{
    irq &= 15;
    pic_mask(irq);
    slots[irq].fn = 0;
    irq_counters[irq] = 0;
    idt_set_entry(PIC_VECTOR_BASE + irq, irq_stubs + 16 * irq);
}

uint8_t pic_read_irr(unsigned chip)
{
    outb(cmd_port(chip), OCW3_READ_IRR);
    return inb(cmd_port(chip));
}

uint8_t pic_read_isr(unsigned chip)
{
    outb(cmd_port(chip), OCW3_READ_ISR);
    uint8_t isr = inb(cmd_port(chip));
    outb(cmd_port(chip), OCW3_READ_IRR);
    return isr;
}

uint8_t pic_poll(unsigned chip)
{
    outb(cmd_port(chip), OCW3_POLL);
    return inb(cmd_port(chip));
}

void pic_eoi(unsigned irq)
{
    if (irq & 8) {
        outb(PIC_SLAVE_CMD, (uint8_t)(OCW2_SPECIFIC_EOI | (irq & 7)));
        outb(PIC_MASTER_CMD, OCW2_SPECIFIC_EOI | PIC_CASCADE_IRQ);
    } else {
        outb(PIC_MASTER_CMD, (uint8_t)(OCW2_SPECIFIC_EOI | irq));
    }
}

void irq_entry(unsigned irq)
{
    /* IR7 of either chip is what an 8259A reports when the request went away before
     * the acknowledge: then its ISR bit is clear and there is nothing to EOI on that chip
     * (the master did set ISR bit 2 for a spurious slave request). */
    if ((irq & 7) == 7 && !(pic_read_isr(irq >> 3) & 0x80)) {
        pic_spurious[irq >> 3]++;
        if (irq & 8)
            outb(PIC_MASTER_CMD, OCW2_SPECIFIC_EOI | PIC_CASCADE_IRQ);
        return;
    }
    const struct irq_slot *s = &slots[irq];
    if (s->fn && s->flow == IRQ_FLOW_RAW) {
        s->fn(irq);
        return;
    }
    pic_mask_cache |= (uint16_t)(1u << irq);       /* mask and ack */
    write_imr(irq);
    pic_eoi(irq);
    if (!s->fn) {
        pic_unexpected++;                       /* nobody wants it: leave it masked */
        return;
    }
    s->fn(irq);
    if (s->fn) {                                /* still attached: unmask */
        pic_mask_cache &= (uint16_t)~(1u << irq);
        write_imr(irq);
    }
}

/* --- waiting at CPL 3 with interrupts enabled ---------------------------------------- */

struct wait_job {
    const volatile uint64_t *counter;
    uint64_t target, cycles;
    uint64_t start;             /* *counter when the loop began */
};

static uint64_t wait_user(void *arg)            /* CPL 3, IF=1 */
{
    struct wait_job *job = arg;
    uint64_t deadline = rdtsc() + job->cycles;
    job->start = *job->counter;
    while (*job->counter < job->target && rdtsc() < deadline)
        __asm__ volatile("pause");
    return *job->counter;
}

static uint64_t run_wait(struct wait_job *job)
{
    uint64_t saved = user_rflags;
    user_rflags = RFLAGS_RESERVED | RFLAGS_IF;
    uint64_t v = run_user(wait_user, job);
    user_rflags = saved;
    return v;
}

uint64_t irq_wait(const volatile uint64_t *counter, uint64_t target, uint64_t cycles)
{
    struct wait_job job = { counter, target, cycles, 0 };
    return run_wait(&job);
}

uint64_t irq_count_for(const volatile uint64_t *counter, uint64_t cycles)
{
    struct wait_job job = { counter, UINT64_MAX, cycles, 0 };
    return run_wait(&job) - job.start;
}
