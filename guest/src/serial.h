/* Polled 16550 UART on COM1. */
#ifndef GUEST_SERIAL_H
#define GUEST_SERIAL_H

#define COM1_BASE 0x3F8

void serial_init(void);
void serial_putc(char c);
int serial_getc(void);          /* -1 when nothing arrives within a bounded wait */
/* One LSR read: the received byte, SERIAL_NONE if none is waiting, SERIAL_ABSENT if
 * nothing decodes the port (LSR reads 0xFF). */
#define SERIAL_NONE   (-1)
#define SERIAL_ABSENT (-2)
int serial_poll(void);

#endif
