/* A small printf to COM1. Enough for RESULT lines: no floating point. */
#include "kit.h"
#include "serial.h"

static void put_uint(uint64_t v, unsigned base, int width, char pad, int left)
{
    char buf[24];
    int n = 0;
    do {
        unsigned d = (unsigned)(v % base);
        buf[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
        v /= base;
    } while (v);
    if (!left)
        for (int i = n; i < width; i++)
            serial_putc(pad);
    while (n)
        serial_putc(buf[--n]);
    if (left)
        for (int i = n; i < width; i++)
            serial_putc(' ');
}

void kvprintf(const char *fmt, va_list ap)
{
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            serial_putc(*fmt);
            continue;
        }
        fmt++;
        char pad = ' ';
        int left = 0, width = 0, lng = 0;
        for (;; fmt++) {
            if (*fmt == '0')
                pad = '0';
            else if (*fmt == '-')
                left = 1;
            else
                break;
        }
        while (*fmt >= '0' && *fmt <= '9')
            width = width * 10 + (*fmt++ - '0');
        while (*fmt == 'l' || *fmt == 'z') {
            lng = 1;
            fmt++;
        }
        switch (*fmt) {
        case 'd':
        case 'i': {
            int64_t v = lng ? va_arg(ap, int64_t) : va_arg(ap, int);
            if (v < 0) {
                serial_putc('-');
                put_uint((uint64_t)0 - (uint64_t)v, 10, width ? width - 1 : 0, pad, left);
            } else {
                put_uint((uint64_t)v, 10, width, pad, left);
            }
            break;
        }
        case 'u':
            put_uint(lng ? va_arg(ap, uint64_t) : va_arg(ap, unsigned), 10, width, pad, left);
            break;
        case 'x':
            put_uint(lng ? va_arg(ap, uint64_t) : va_arg(ap, unsigned), 16, width, pad, left);
            break;
        case 'p':
            serial_putc('0');
            serial_putc('x');
            put_uint((uintptr_t)va_arg(ap, void *), 16, width, pad, left);
            break;
        case 'c':
            serial_putc((char)va_arg(ap, int));
            break;
        case 's': {
            const char *s = va_arg(ap, const char *);
            if (!s)
                s = "(null)";
            int n = (int)strlen(s);
            if (!left)
                for (int i = n; i < width; i++)
                    serial_putc(' ');
            while (*s)
                serial_putc(*s++);
            if (left)
                for (int i = n; i < width; i++)
                    serial_putc(' ');
            break;
        }
        case '%':
            serial_putc('%');
            break;
        case '\0':
            return;
        default:
            serial_putc('%');
            serial_putc(*fmt);
            break;
        }
    }
}

void kprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kvprintf(fmt, ap);
    va_end(ap);
}
