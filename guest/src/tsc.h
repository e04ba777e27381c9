/* TSC frequency, from the best source available. */
#ifndef GUEST_TSC_H
#define GUEST_TSC_H

#include <stdint.h>

struct tsc_info {
    uint64_t khz;
    /* "cmdline", "cpuid-40000010", "cpuid-15", "cpuid-16", "pit" or "default" */
    const char *source;
};

/* Order: tsc_khz= on the command line, CPUID 0x40000010 (hypervisor timing leaf),
 * CPUID 0x15 / 0x16, PIT channel 2 calibration, else 1 GHz. Computed once. */
const struct tsc_info *tsc_info(void);

/* TSC cycles in `us` microseconds (by tsc_info()). */
uint64_t tsc_us(uint64_t us);
/* Busy-wait that long, whatever RFLAGS.IF is (at CPL 0 this loop is emulated here). */
void tsc_spin_us(uint64_t us);

#endif
