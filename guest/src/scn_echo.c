/*
 * echo: console input. Reads n bytes from COM1 by polling LSR.DR at CPL 0.
 *   echo [n=1] [ms=10000]
 * Prints "echo: waiting for N bytes" first (a harness sends its input after that line:
 * the UART init at boot clears the receive FIFO, as any OS's does), then gives up after
 * ms of TSC time and reports what arrived:
 * RESULT echo n=N got=G hex=<2 hex digits per byte>     status 0 when G == N, else 1.
 */
#include "cmdline.h"
#include "io.h"
#include "kit.h"
#include "scenario.h"
#include "serial.h"
#include "tsc.h"

#define MAX_N      256
#define DEFAULT_MS 10000

int scn_echo(const struct multiboot_info *mbi)
{
    (void)mbi;
    uint64_t n, ms;
    if (arg_u64("echo", "n", 1, &n) || arg_u64("echo", "ms", DEFAULT_MS, &ms))
        return STATUS_USAGE;
    if (n > MAX_N) {
        kprintf("RESULT error bad-arg scenario=echo key=n value=%lu\n", n);
        return STATUS_USAGE;
    }
    static uint8_t buf[MAX_N];
    uint64_t got = 0, deadline = rdtsc() + ms * tsc_info()->khz;
    kprintf("echo: waiting for %lu bytes\n", n);
    while (got < n && rdtsc() < deadline) {
        int c = serial_poll();
        if (c == SERIAL_ABSENT)
            break;
        if (c >= 0)
            buf[got++] = (uint8_t)c;
    }
    kprintf("RESULT echo n=%lu got=%lu hex=", n, got);
    for (uint64_t i = 0; i < got; i++)
        kprintf("%02x", buf[i]);
    kprintf("\n");
    return got == n ? STATUS_OK : STATUS_FAIL;
}
