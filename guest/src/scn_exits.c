/*
 * exits: cost of a VM exit as the guest sees it. N port writes (outb, CPL 0) to a port,
 * or N 32-bit MMIO writes (movl) to a physical address, in a tight loop timed with rdtsc.
 *   exits [n=100000] [port=0x404]      outb of the counter's low byte
 *   exits [n=100000] mmio=ADDR         movl of the counter; ADDR < 4 GiB, 4-byte aligned
 */
#include "cmdline.h"
#include "io.h"
#include "kit.h"
#include "scenario.h"
#include "tsc.h"

#define DEFAULT_N    100000
#define DEFAULT_PORT 0x404      /* nothing decodes it on a PC or in pyhvm */
#define MMIO_LIMIT   0x100000000ULL
#define COM1_FIRST   0x3F8
#define COM1_LAST    0x3FF

static void pio_loop(uint64_t n, uint16_t port)
{
    if (!n)
        return;
    __asm__ volatile("1: movl %%ecx, %%eax\n\t"
                     "outb %%al, %%dx\n\t"
                     "decq %%rcx\n\t"
                     "jnz 1b"
                     : "+c"(n) : "d"(port) : "rax", "memory");
}

static void mmio_loop(uint64_t n, uint64_t addr)
{
    if (!n)
        return;
    __asm__ volatile("1: movl %%ecx, (%1)\n\t"
                     "decq %%rcx\n\t"
                     "jnz 1b"
                     : "+c"(n) : "r"(addr) : "memory");
}

int scn_exits(const struct multiboot_info *mbi)
{
    (void)mbi;
    uint64_t n, port, addr;
    if (arg_u64("exits", "n", DEFAULT_N, &n) || arg_u64("exits", "port", DEFAULT_PORT, &port) ||
        arg_u64("exits", "mmio", 0, &addr))
        return STATUS_USAGE;
    int mmio = cmdline_get("mmio") != NULL;
    if (mmio && cmdline_get("port")) {
        kprintf("RESULT error bad-arg scenario=exits reason=port-and-mmio\n");
        return STATUS_USAGE;
    }
    if (!mmio && port > 0xFFFF) {
        kprintf("RESULT error bad-arg scenario=exits key=port value=0x%lx\n", port);
        return STATUS_USAGE;
    }
    if (mmio && (addr >= MMIO_LIMIT - 3 || (addr & 3) ||
                 (addr + 4 > (uintptr_t)_kernel_start && addr < (uintptr_t)_kernel_end))) {
        kprintf("RESULT error bad-arg scenario=exits key=mmio value=0x%lx\n", addr);
        return STATUS_USAGE;
    }

    const struct tsc_info *tsc = tsc_info();   /* before timing: may calibrate on the PIT */
    uint64_t t0 = rdtsc();
    if (mmio)
        mmio_loop(n, addr);
    else
        pio_loop(n, (uint16_t)port);
    uint64_t cycles = rdtsc() - t0;

    if (!mmio && port >= COM1_FIRST && port <= COM1_LAST)
        kprintf("\n");                      /* the loop wrote raw bytes to the console */
    uint64_t per = n ? cycles / n : 0;
    uint64_t ns = n ? cycles * 1000000 / tsc->khz / n : 0;
    if (mmio)
        kprintf("RESULT exits n=%lu kind=mmio addr=0x%lx", n, addr);
    else
        kprintf("RESULT exits n=%lu kind=pio port=0x%lx", n, port);
    kprintf(" cycles=%lu cycles_per_exit=%lu ns_per_exit=%lu tsc_khz=%lu tsc_source=%s\n",
            cycles, per, ns, tsc->khz, tsc->source);
    return STATUS_OK;
}
