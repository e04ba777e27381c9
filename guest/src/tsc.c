#include "tsc.h"
#include "cmdline.h"
#include "io.h"
#include "kit.h"

#define DEFAULT_KHZ     1000000ULL
#define MIN_SANE_KHZ    50000ULL        /* 50 MHz */
#define MAX_SANE_KHZ    20000000ULL     /* 20 GHz */

#define CPUID1_ECX_HYPERVISOR (1u << 31)
#define HV_LEAF_BASE    0x40000000u
#define HV_LEAF_TIMING  0x40000010u     /* EAX: TSC kHz, EBX: APIC bus kHz */

/* PIT channel 2, gated through port 0x61 (8254 datasheet; PC/AT speaker control). */
#define PIT_HZ          1193182ULL
#define PIT_CH2         0x42
#define PIT_CMD         0x43
#define PIT_CMD_CH2_LOHI_MODE0 0xB0
#define PORT_61         0x61
#define P61_GATE2       0x01
#define P61_SPEAKER     0x02
#define P61_OUT2        0x20
#define PIT_COUNT       11932           /* 10 ms */
#define PIT_MAX_POLLS   200000
#define PIT_MAX_CYCLES  2000000000ULL   /* 10 ms is 2e8 cycles even at 20 GHz */

static struct tsc_info info;

static uint64_t from_hv_leaf(void)
{
    if (!(cpuid(1, 0).ecx & CPUID1_ECX_HYPERVISOR))
        return 0;
    if (cpuid(HV_LEAF_BASE, 0).eax < HV_LEAF_TIMING)
        return 0;
    return cpuid(HV_LEAF_TIMING, 0).eax;
}

static uint64_t from_leaf15(void)
{
    if (cpuid(0, 0).eax < 0x15)
        return 0;
    struct cpuid_regs r = cpuid(0x15, 0);   /* EAX denominator, EBX numerator, ECX Hz */
    if (!r.eax || !r.ebx || !r.ecx)
        return 0;
    return (uint64_t)r.ecx * r.ebx / r.eax / 1000;
}

static uint64_t from_leaf16(void)
{
    if (cpuid(0, 0).eax < 0x16)
        return 0;
    return (uint64_t)(cpuid(0x16, 0).eax & 0xFFFF) * 1000;     /* base MHz */
}

/*
 * Count TSC cycles while PIT channel 2 counts PIT_COUNT ticks in mode 0. Never hangs.
 * Each port access is a VM exit of several microseconds, so both ends of the interval
 * are taken as the midpoint of the exit that bracketed them.
 */
static uint64_t from_pit(void)
{
    uint8_t saved = inb(PORT_61);
    if (saved == 0xFF)
        return 0;                           /* nothing decodes port 0x61 */
    outb(PORT_61, (uint8_t)((saved & ~P61_SPEAKER) | P61_GATE2));
    outb(PIT_CMD, PIT_CMD_CH2_LOHI_MODE0);
    outb(PIT_CH2, PIT_COUNT & 0xFF);
    uint64_t before = rdtsc();
    outb(PIT_CH2, PIT_COUNT >> 8);          /* counting starts here */
    uint64_t after = rdtsc();
    uint64_t start = before + (after - before) / 2;
    uint64_t prev = after, now = after;
    unsigned polls = 0;
    int done = 0;
    while (polls < PIT_MAX_POLLS && now - start < PIT_MAX_CYCLES) {
        polls++;
        prev = now;
        done = inb(PORT_61) & P61_OUT2;
        now = rdtsc();
        if (done)
            break;
    }
    outb(PORT_61, saved);
    if (!done || polls < 2)
        return 0;                           /* never fired, or fired at once */
    uint64_t end = prev + (now - prev) / 2;
    return (end - start) * PIT_HZ / PIT_COUNT / 1000;
}

static int sane(uint64_t khz) { return khz >= MIN_SANE_KHZ && khz <= MAX_SANE_KHZ; }

const struct tsc_info *tsc_info(void)
{
    if (info.source)
        return &info;
    uint64_t khz;
    const char *s = cmdline_get("tsc_khz");
    if (s && parse_u64(s, &khz) == 0 && khz) {
        info = (struct tsc_info){ khz, "cmdline" };
    } else if ((khz = from_hv_leaf()) != 0) {
        info = (struct tsc_info){ khz, "cpuid-40000010" };
    } else if ((khz = from_leaf15()) != 0) {
        info = (struct tsc_info){ khz, "cpuid-15" };
    } else if ((khz = from_leaf16()) != 0) {
        info = (struct tsc_info){ khz, "cpuid-16" };
    } else if (sane(khz = from_pit())) {
        info = (struct tsc_info){ khz, "pit" };
    } else {
        info = (struct tsc_info){ DEFAULT_KHZ, "default" };
    }
    return &info;
}

uint64_t tsc_us(uint64_t us) { return us * tsc_info()->khz / 1000; }

void tsc_spin_us(uint64_t us)
{
    uint64_t end = rdtsc() + tsc_us(us);
    while (rdtsc() < end)
        __asm__ volatile("pause");
}
