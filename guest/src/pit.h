/* 8254 PIT channel 0 (its OUT drives IRQ 0). */
#ifndef GUEST_PIT_H
#define GUEST_PIT_H

#include <stdint.h>

#define PIT_INPUT_HZ 1193182u
#define PIT_IRQ      0

/* Divisor for hz: 1193182 / hz rounded, clamped to 2..65536 (65536 is written as 0). */
uint32_t pit_divisor(uint32_t hz);
/* Mode 2 (rate generator), lobyte/hibyte, binary: a pulse on IRQ 0 every divisor clocks. */
void pit_periodic(uint32_t divisor);
/* Mode 0 (interrupt on terminal count): OUT low now, high after count clocks, and it
 * stays high: one rising edge on IRQ 0. Count 1..65535. */
void pit_oneshot(uint16_t count);

/* Ticks since boot, for irq_attach_counter(PIT_IRQ, &pit_ticks). */
extern volatile uint64_t pit_ticks;

#endif
