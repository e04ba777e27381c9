/*
 * kbd: the 8042 keyboard controller and its PS/2 keyboard, as a keyboard driver uses them.
 *   kbd [n=0] [ms=10000] [xlate=1]
 * 1. Controller, polled with IRQ 1 masked: keyboard and aux disabled (0xAD, 0xA7), output
 *    buffer flushed, self-test (0xAA -> 0x55), keyboard interface test (0xAB -> 0x00),
 *    command byte written: SYS, translation when xlate=1, interrupts off; keyboard on (0xAE).
 * 2. Keyboard, polled: reset (0xFF -> FA AA), identify (0xF2 -> FA AB 83, or FA AB 41
 *    through translation), scan code set query (0xF0 0x00 -> FA 02, or FA 41), LEDs
 *    (0xED 0x02 -> FA FA), echo (0xEE -> EE), enable scanning (0xF4 -> FA).
 * 3. n > 0: command byte bit 0 (IRQ 1) on, IRQ 1 attached; prints "kbd: waiting for N
 *    bytes" and the handler takes bytes from port 0x60 while the status says one waits.
 * RESULT kbd selftest=55 iftest=00 reset=faaa ident=faab41 set=fafa41 leds=fafa echo=ee
 *   enable=fa irqs=I got=G hex=<bytes>
 * Status 0 when every reply is as above (for the xlate setting) and G == n.
 */
#include "cmdline.h"
#include "io.h"
#include "kit.h"
#include "pic.h"
#include "scenario.h"
#include "tsc.h"

#define KBD_IRQ        1
#define KBC_DATA       0x60
#define KBC_STATUS     0x64     /* read */
#define KBC_COMMAND    0x64     /* write */
#define STATUS_OBF     0x01
#define STATUS_IBF     0x02
#define CCB_KBD_INT    0x01
#define CCB_SYS        0x04
#define CCB_XLATE      0x40
#define MAX_N          64
#define MAX_REPLY      4
#define REPLY_US       100000   /* a reply comes within 100 ms (real keyboards: ~ 1 ms) */
#define MAX_FLUSH      32

static volatile uint64_t irqs, got;
static volatile uint8_t buf[MAX_N];

static int wait_status(uint8_t mask, uint8_t want)
{
    uint64_t deadline = rdtsc() + tsc_us(REPLY_US);
    while ((inb(KBC_STATUS) & mask) != want)
        if (rdtsc() > deadline)
            return -1;
    return 0;
}

static void kbc_command(uint8_t cmd)
{
    wait_status(STATUS_IBF, 0);
    outb(KBC_COMMAND, cmd);
}

static void kbc_data(uint8_t value)
{
    wait_status(STATUS_IBF, 0);
    outb(KBC_DATA, value);
}

static void flush(void)
{
    for (int i = 0; i < MAX_FLUSH && (inb(KBC_STATUS) & STATUS_OBF); i++)
        (void)inb(KBC_DATA);
}

/* Up to `want` reply bytes, packed into an integer in arrival order (0xFA, 0xAA -> 0xfaaa). */
static uint32_t replies(unsigned want)
{
    uint32_t value = 0;
    for (unsigned i = 0; i < want && i < MAX_REPLY; i++) {
        if (wait_status(STATUS_OBF, STATUS_OBF))
            break;
        value = value << 8 | inb(KBC_DATA);
    }
    return value;
}

static uint32_t keyboard(uint8_t byte, unsigned want)
{
    kbc_data(byte);
    return replies(want);
}

static void kbd_irq(unsigned irq)
{
    (void)irq;
    irqs++;
    for (int i = 0; i < MAX_FLUSH && (inb(KBC_STATUS) & STATUS_OBF); i++) {
        uint8_t byte = inb(KBC_DATA);
        if (got < MAX_N)
            buf[got++] = byte;
    }
}

int scn_kbd(const struct multiboot_info *mbi)
{
    (void)mbi;
    uint64_t n, ms, xlate;
    if (arg_u64("kbd", "n", 0, &n) || arg_u64("kbd", "ms", 10000, &ms)
        || arg_u64("kbd", "xlate", 1, &xlate))
        return STATUS_USAGE;
    if (n > MAX_N) {
        kprintf("RESULT error bad-arg scenario=kbd key=n value=%lu\n", n);
        return STATUS_USAGE;
    }
    pic_init();                                 /* every IRQ masked: we poll first */

    kbc_command(0xAD);
    kbc_command(0xA7);
    flush();
    kbc_command(0xAA);
    uint32_t selftest = replies(1);
    kbc_command(0xAB);
    uint32_t iftest = replies(1);
    uint8_t ccb = CCB_SYS | (xlate ? CCB_XLATE : 0);
    kbc_command(0x60);
    kbc_data(ccb);
    kbc_command(0xAE);
    flush();

    uint32_t reset = keyboard(0xFF, 2);
    uint32_t ident = keyboard(0xF2, 3);
    uint32_t set = keyboard(0xF0, 1) << 16;
    set |= keyboard(0x00, 2);                   /* ACK, then the set in use */
    uint32_t leds = keyboard(0xED, 1) << 8;
    leds |= keyboard(0x02, 1);
    uint32_t echo = keyboard(0xEE, 1);
    uint32_t enable = keyboard(0xF4, 1);
    flush();

    uint32_t id2 = xlate ? 0x41 : 0x83, set2 = xlate ? 0x41 : 0x02;
    int ok = selftest == 0x55 && iftest == 0x00 && reset == 0xFAAA
             && ident == (0xFAAB00 | id2) && set == (0xFAFA00 | set2) && leds == 0xFAFA
             && echo == 0xEE && enable == 0xFA;

    if (n) {
        irq_attach(KBD_IRQ, kbd_irq, IRQ_FLOW_ACK);
        kbc_command(0x60);
        kbc_data(ccb | CCB_KBD_INT);
        kprintf("kbd: waiting for %lu bytes\n", n);
        irq_wait(&got, n, ms * tsc_info()->khz);
        kbc_command(0x60);
        kbc_data(ccb);
        irq_detach(KBD_IRQ);
    }
    kprintf("RESULT kbd selftest=%02x iftest=%02x reset=%x ident=%x set=%x leds=%x echo=%x "
            "enable=%x irqs=%lu got=%lu hex=", selftest, iftest, reset, ident, set, leds,
            echo, enable, irqs, got);
    for (uint64_t i = 0; i < got; i++)
        kprintf("%02x", buf[i]);
    kprintf("\n");
    return ok && got == n ? STATUS_OK : STATUS_FAIL;
}
