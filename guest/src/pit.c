/* 8254 channel 0: rate generator for ticks, one-shot for tests. */
#include "pit.h"
#include "io.h"

#define PIT_CH0 0x40
#define PIT_CMD 0x43
#define PIT_CMD_CH0_LOHI_MODE2 0x34     /* SC=00 RW=11 M=010 BCD=0 */
#define PIT_CMD_CH0_LOHI_MODE0 0x30     /* SC=00 RW=11 M=000 BCD=0 */
#define PIT_MAX_DIVISOR 65536u

volatile uint64_t pit_ticks;

uint32_t pit_divisor(uint32_t hz)
{
    if (!hz)
        return PIT_MAX_DIVISOR;
    uint32_t d = (PIT_INPUT_HZ + hz / 2) / hz;
    if (d < 2)
        d = 2;                          /* mode 2 does not allow a count of 1 */
    if (d > PIT_MAX_DIVISOR)
        d = PIT_MAX_DIVISOR;
    return d;
}

static void load(uint8_t cmd, uint32_t count)
{
    outb(PIT_CMD, cmd);
    outb(PIT_CH0, (uint8_t)count);
    outb(PIT_CH0, (uint8_t)(count >> 8));   /* 65536 -> 0x00 0x00 */
}

void pit_periodic(uint32_t divisor) { load(PIT_CMD_CH0_LOHI_MODE2, divisor); }

void pit_oneshot(uint16_t count) { load(PIT_CMD_CH0_LOHI_MODE0, count); }
