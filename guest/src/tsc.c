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
#define PIT_TRIES       8               /* 10 ms each; 2 on a quiet host */
#define PIT_TIGHT_ERROR_DIV 100         /* brackets under 1% of the interval */
#define PIT_AGREE_DIV   200             /* two tries within 0.5% */

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
 * are taken as the midpoint of the exit that bracketed them; the two brackets' widths
 * are the error. On a loaded host (measured here, 2 cores, 2 CPU hogs) tries go wrong:
 * preempted ones by multiples of the host's 4 ms tick with wide brackets, either way; and
 * a few with tight brackets, always too high (the TSC ran on for milliseconds the PIT did
 * not see). So from_pit() stops at the first two tight tries (brackets under 1%) that
 * agree within 0.5% and takes the lower; else the lowest tight try; else the median.
 */
struct pit_try {
    uint64_t khz;               /* 0: the PIT never fired, or fired at once */
    uint64_t cycles, error;     /* the interval and its bracket widths, in TSC cycles */
};

static struct pit_try pit_try_once(void)
{
    struct pit_try t = { 0, 0, 0 };
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
    if (!done || polls < 2)
        return t;
    uint64_t end = prev + (now - prev) / 2;
    t.cycles = end - start;
    t.error = (after - before) + (now - prev);
    t.khz = t.cycles * PIT_HZ / PIT_COUNT / 1000;
    return t;
}

static const uint64_t *sort_u64(uint64_t *v, unsigned n)
{
    for (unsigned i = 1; i < n; i++)            /* insertion sort: n is tiny */
        for (unsigned j = i; j > 0 && v[j - 1] > v[j]; j--) {
            uint64_t t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return v;
}

static int agree(uint64_t a, uint64_t b)
{
    uint64_t d = a > b ? a - b : b - a;
    return d * PIT_AGREE_DIV < a;
}

static uint64_t from_pit(void)
{
    uint8_t saved = inb(PORT_61);
    if (saved == 0xFF)
        return 0;                           /* nothing decodes port 0x61 */
    outb(PORT_61, (uint8_t)((saved & ~P61_SPEAKER) | P61_GATE2));
    uint64_t tight[PIT_TRIES], all[PIT_TRIES], found = 0;
    unsigned n_tight = 0, n_all = 0;
    while (n_all < PIT_TRIES && !found) {
        struct pit_try t = pit_try_once();
        if (!t.khz)
            break;                          /* it will not work better next time */
        all[n_all++] = t.khz;
        if (t.error * PIT_TIGHT_ERROR_DIV >= t.cycles)
            continue;
        for (unsigned i = 0; i < n_tight && !found; i++)
            if (agree(tight[i], t.khz))
                found = tight[i] < t.khz ? tight[i] : t.khz;
        tight[n_tight++] = t.khz;
    }
    outb(PORT_61, saved);
    if (found)
        return found;
    if (n_tight)
        return sort_u64(tight, n_tight)[0];
    return n_all ? sort_u64(all, n_all)[n_all / 2] : 0;
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
