/*
 * uart-irq: the 16550's interrupt on IRQ 4, through the 8259, as a serial driver uses it.
 *   uart-irq [n=0] [ms=10000]
 * 1. Transmitter empty: with MCR.OUT2 set (the PC gates the UART's INTRPT pin with it) and
 *    IER.ETBEI enabled while THR is empty, the UART interrupts at once; the handler sees
 *    IIR = 0x02 and turns ETBEI off again.
 * 2. Receive (n > 0): IER.ERBFI on; prints "uart-irq: waiting for N bytes" and takes the
 *    bytes in the IRQ 4 handler (IIR = 0x04 or the 0x0C timeout), reading RBR while LSR.DR.
 * RESULT uart-irq thre_irqs=T rx_irqs=R got=G hex=<bytes>     status 0 when T >= 1, G == n.
 */
#include "cmdline.h"
#include "io.h"
#include "kit.h"
#include "pic.h"
#include "scenario.h"
#include "serial.h"
#include "tsc.h"

#define UART_IRQ     4
#define REG_RBR      0
#define REG_IER      1
#define REG_IIR      2
#define REG_MCR      4
#define REG_LSR      5
#define IER_ERBFI    0x01       /* received data available */
#define IER_ETBEI    0x02       /* transmitter holding register empty */
#define IIR_NONE     0x01
#define IIR_ID_MASK  0x0E
#define IIR_THRE     0x02
#define IIR_RDA      0x04
#define IIR_TIMEOUT  0x0C
#define MCR_OUT2     0x08
#define MCR_DTR_RTS  0x03
#define LSR_DR       0x01
#define MAX_N        64
#define MAX_SOURCES  16          /* bound the IIR loop: a broken UART cannot hang us */

static volatile uint64_t thre_irqs, rx_irqs, rx_got;
static volatile uint8_t rx_buf[MAX_N];
static volatile uint8_t ier;

static void uart_irq(unsigned irq)
{
    (void)irq;
    for (int i = 0; i < MAX_SOURCES; i++) {
        uint8_t iir = inb(COM1_BASE + REG_IIR);
        if (iir & IIR_NONE)
            return;
        switch (iir & IIR_ID_MASK) {
        case IIR_THRE:
            thre_irqs++;
            ier &= (uint8_t)~IER_ETBEI;
            outb(COM1_BASE + REG_IER, ier);
            break;
        case IIR_RDA:
        case IIR_TIMEOUT:
            rx_irqs++;
            while (inb(COM1_BASE + REG_LSR) & LSR_DR) {
                uint8_t c = inb(COM1_BASE + REG_RBR);
                if (rx_got < MAX_N)
                    rx_buf[rx_got++] = c;
            }
            break;
        default:
            (void)inb(COM1_BASE + REG_LSR);     /* line status: reading LSR clears it */
            break;
        }
    }
}

int scn_uart_irq(const struct multiboot_info *mbi)
{
    (void)mbi;
    uint64_t n, ms;
    if (arg_u64("uart-irq", "n", 0, &n) || arg_u64("uart-irq", "ms", 10000, &ms))
        return STATUS_USAGE;
    if (n > MAX_N) {
        kprintf("RESULT error bad-arg scenario=uart-irq key=n value=%lu\n", n);
        return STATUS_USAGE;
    }
    uint64_t budget = ms * tsc_info()->khz;
    pic_init();
    outb(COM1_BASE + REG_MCR, MCR_DTR_RTS | MCR_OUT2);
    irq_attach(UART_IRQ, uart_irq, IRQ_FLOW_ACK);
    ier = IER_ETBEI;
    outb(COM1_BASE + REG_IER, ier);             /* THR is empty: interrupts at once */
    irq_wait(&thre_irqs, 1, budget);
    if (n) {
        ier |= IER_ERBFI;
        outb(COM1_BASE + REG_IER, ier);
        kprintf("uart-irq: waiting for %lu bytes\n", n);
        irq_wait(&rx_got, n, budget);
    }
    ier = 0;
    outb(COM1_BASE + REG_IER, 0);
    irq_detach(UART_IRQ);
    kprintf("RESULT uart-irq thre_irqs=%lu rx_irqs=%lu got=%lu hex=", thre_irqs, rx_irqs,
            rx_got);
    for (uint64_t i = 0; i < rx_got; i++)
        kprintf("%02x", rx_buf[i]);
    kprintf("\n");
    return thre_irqs >= 1 && rx_got == n ? STATUS_OK : STATUS_FAIL;
}
