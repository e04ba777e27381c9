/* Common declarations for the guest kit. */
#ifndef GUEST_KIT_H
#define GUEST_KIT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define KIT_VERSION "0.1"

/* Exit statuses written to the debug-exit port (VMM exit code = status * 2 + 1). */
#define STATUS_OK        0
#define STATUS_FAIL      1      /* the scenario ran and found something wrong */
#define STATUS_USAGE     2      /* unknown scenario, bad argument, bad boot state */
#define STATUS_PANIC     3      /* unexpected exception */
#define STATUS_NO_LM     4      /* no long mode (written by entry.S) */

/* printf.c: %s %c %d %i %u %x %p %%, flags '0' and '-', width, length l / ll / z. */
void kprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void kvprintf(const char *fmt, va_list ap);

/* main.c */
__attribute__((noreturn)) void kit_exit(uint32_t status);

/* lib.c */
void *memset(void *dst, int c, size_t n);
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

extern char _kernel_start[], _kernel_end[];

#endif
