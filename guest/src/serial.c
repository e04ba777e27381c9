/*
 * Polled 16550A driver for COM1. No interrupts. Every register access is a VM exit, so
 * the driver touches as few registers as it can: one LSR read and one THR write a byte.
 */
#include "serial.h"
#include "io.h"

#define UART_THR 0      /* transmit holding (DLAB=0, write) */
#define UART_RBR 0      /* receive buffer (DLAB=0, read) */
#define UART_DLL 0      /* divisor latch low (DLAB=1) */
#define UART_IER 1      /* interrupt enable (DLAB=0) */
#define UART_DLM 1      /* divisor latch high (DLAB=1) */
#define UART_FCR 2      /* FIFO control (write) */
#define UART_LCR 3      /* line control */
#define UART_MCR 4      /* modem control */
#define UART_LSR 5      /* line status */

#define LCR_DLAB 0x80
#define LCR_8N1  0x03
#define FCR_ENABLE_CLEAR 0x07   /* enable FIFOs, clear RX and TX FIFOs, trigger level 1 */
#define MCR_DTR_RTS 0x03
#define LSR_DR   0x01           /* data ready */
#define LSR_THRE 0x20           /* transmit holding register empty */

/* Bounds on polling so that a missing or stuck UART never hangs the guest. */
#define TX_SPIN_MAX 10000
#define RX_SPIN_MAX 100000

void serial_init(void)
{
    outb(COM1_BASE + UART_IER, 0x00);
    outb(COM1_BASE + UART_LCR, LCR_DLAB);
    outb(COM1_BASE + UART_DLL, 1);          /* 115200 baud */
    outb(COM1_BASE + UART_DLM, 0);
    outb(COM1_BASE + UART_LCR, LCR_8N1);
    outb(COM1_BASE + UART_FCR, FCR_ENABLE_CLEAR);
    outb(COM1_BASE + UART_MCR, MCR_DTR_RTS);
}

void serial_putc(char c)
{
    for (int i = 0; i < TX_SPIN_MAX; i++)
        if (inb(COM1_BASE + UART_LSR) & LSR_THRE)
            break;
    outb(COM1_BASE + UART_THR, (uint8_t)c);
}

int serial_getc(void)
{
    for (int i = 0; i < RX_SPIN_MAX; i++) {
        uint8_t lsr = inb(COM1_BASE + UART_LSR);
        if (lsr == 0xFF)
            return -1;                      /* nothing decodes the port */
        if (lsr & LSR_DR)
            return inb(COM1_BASE + UART_RBR);
    }
    return -1;
}

int serial_poll(void)
{
    uint8_t lsr = inb(COM1_BASE + UART_LSR);
    if (lsr == 0xFF)
        return SERIAL_ABSENT;
    return lsr & LSR_DR ? inb(COM1_BASE + UART_RBR) : SERIAL_NONE;
}
