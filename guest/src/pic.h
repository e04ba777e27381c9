/*
 * 8259A PIC pair (master 0x20/0x21, slave 0xA0/0xA1, cascade on master IR2), the ELCR
 * (0x4D0/0x4D1), and the IRQ entry path for vectors 0x20-0x2F.
 *
 * IRQ n arrives on vector PIC_VECTOR_BASE + n through a short stub in isr.S that calls
 * irq_entry(n) (no struct regs: the handlers do not need one). An IRQ attached with
 * IRQ_FLOW_ACK goes the way Linux's i8259 code takes it: mask and ack (cached mask to the
 * chip's IMR, then a specific EOI; for a slave IRQ specific EOIs to the slave and then to
 * the master's IR2), the handler, then unmask. IRQ_FLOW_RAW calls the handler alone: it
 * acknowledges the chip itself (the pic scenario looks at ISR before the EOI).
 * Everything here runs at CPL 0 with IF=0 (interrupt gates clear it).
 */
#ifndef GUEST_PIC_H
#define GUEST_PIC_H

#include <stdint.h>

#include "layout.h"

#define PIC_MASTER_CMD  0x20
#define PIC_MASTER_DATA 0x21
#define PIC_SLAVE_CMD   0xA0
#define PIC_SLAVE_DATA  0xA1
#define PIC_ELCR_MASTER 0x4D0
#define PIC_ELCR_SLAVE  0x4D1

#define PIC_VECTOR_BASE 0x20    /* master 0x20-0x27, slave 0x28-0x2F (ICW2, as Linux) */
#define PIC_CASCADE_IRQ 2

#define ICW1_INIT_ICW4  0x11    /* edge triggered, cascade mode, ICW4 follows */
#define ICW4_8086       0x01
#define ICW4_8086_AEOI  0x03

#define OCW2_SPECIFIC_EOI 0x60  /* | level */
#define OCW2_SET_PRIORITY 0xC0  /* | level: that level becomes the lowest priority */
#define OCW3_READ_IRR   0x0A
#define OCW3_READ_ISR   0x0B
#define OCW3_POLL       0x0C

#define PIC_MASTER 0
#define PIC_SLAVE  1

enum irq_flow { IRQ_FLOW_ACK, IRQ_FLOW_RAW };

typedef void (*irq_fn_t)(unsigned irq);

/* Both chips initialized as Linux does, every IRQ masked but the cascade; IDT gates. */
void pic_init(void);
/* Re-run ICW1-ICW4 on one chip with the given ICW4, then restore its cached IMR. */
void pic_init_chip(unsigned chip, uint8_t icw4);

void irq_set_handler(unsigned irq, irq_fn_t fn, enum irq_flow flow);   /* stays masked */
/*
 * IRQ_FLOW_ACK with a handler that only adds 1 to *counter, all in assembly: the same
 * port traffic (IMR, specific EOI(s), IMR) in about 15 instructions instead of about 75
 * through irq_entry(). Measured on QEMU here at 1000 Hz during CPL 3 compute (work lost
 * against hz=0): 35-50 us an interrupt against about 100 with KVM's PIC/PIT, 75-120
 * against about 155 with QEMU's (kernel-irqchip=off).
 * IRQ 7 and 15 go through irq_entry() (spurious check). irq_detach() undoes it.
 */
void irq_attach_counter(unsigned irq, volatile uint64_t *counter);
void irq_attach(unsigned irq, irq_fn_t fn, enum irq_flow flow);        /* and unmasks */
void irq_detach(unsigned irq);                                          /* masks */
void pic_mask(unsigned irq);
void pic_unmask(unsigned irq);
uint16_t pic_cached_mask(void);

uint8_t pic_read_irr(unsigned chip);    /* OCW3 read-register commands; IRR stays selected */
uint8_t pic_read_isr(unsigned chip);
uint8_t pic_poll(unsigned chip);        /* OCW3 poll command, then the read it applies to */
void pic_eoi(unsigned irq);             /* specific EOI; slave IRQs also EOI the master IR2 */

void irq_entry(unsigned irq);           /* from isr.S; callable to test spurious detection */

extern uint64_t pic_spurious[2];        /* IRQ 7 (master), IRQ 15 (slave) without ISR bit */
extern uint64_t pic_unexpected;         /* IRQs with no handler attached (left masked) */

/*
 * Wait with interrupts on: runs a spin loop at CPL 3 with RFLAGS.IF=1 (native speed on
 * this host) until *counter >= target or `cycles` TSC cycles passed; returns *counter.
 */
uint64_t irq_wait(const volatile uint64_t *counter, uint64_t target, uint64_t cycles);
/* Same loop for exactly `cycles`: by how much *counter grew, both reads at CPL 3. */
uint64_t irq_count_for(const volatile uint64_t *counter, uint64_t cycles);

#endif
