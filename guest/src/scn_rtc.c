/*
 * rtc: the CMOS RTC's clock and its periodic interrupt.
 *   rtc [rs=6] [ms=500]
 * Reads the date and time (UIP clear, two equal reads, BCD or binary and 12/24 h as
 * register B says), then runs the periodic interrupt at 65536 >> rs Hz (rs=6: 1024 Hz)
 * on IRQ 8 (slave 8259, IRQ_FLOW_ACK; the handler reads register C) for ms of TSC time
 * at CPL 3 with IF=1: periodic_hz = irqs * 1000 / ms. Then, with IRQ 8 masked and PIE
 * still on: register C has IRQF and PF set after a period, and PF is clear on the read
 * right after; register D has VRT set. Registers A and B are restored.
 * RESULT rtc ok= year= month= day= hour= minute= second= bcd= h24= rs= nominal_hz=
 *   periodic_hz= irqs= irqs_without_flags= pf= irqf= pf_cleared= vrt= tsc_khz= tsc_source=
 * ok=1 when the date is valid, at least one interrupt came, every handler read of C had
 * IRQF and PF, and the flag checks hold (the rate itself is not judged: hosts are noisy).
 */
#include "cmdline.h"
#include "io.h"
#include "kit.h"
#include "pic.h"
#include "rtc.h"
#include "scenario.h"
#include "tsc.h"

#define DEFAULT_RS  6
#define DEFAULT_MS  500
#define MAX_MS      60000
#define PF_TRIES    3           /* the second read of C may race with the next period */
#define PF_MAX_WAIT_US 200000

static int date_valid(const struct rtc_time *t)
{
    return t->month >= 1 && t->month <= 12 && t->day >= 1 && t->day <= 31 &&
           t->hour < 24 && t->minute < 60 && t->second < 60;
}

int scn_rtc(const struct multiboot_info *mbi)
{
    (void)mbi;
    uint64_t rs, ms;
    if (arg_u64("rtc", "rs", DEFAULT_RS, &rs) || arg_u64("rtc", "ms", DEFAULT_MS, &ms))
        return STATUS_USAGE;
    if (rs < 3 || rs > 15 || ms == 0 || ms > MAX_MS) {
        int bad_rs = rs < 3 || rs > 15;
        kprintf("RESULT error bad-arg scenario=rtc key=%s value=%lu\n", bad_rs ? "rs" : "ms",
                bad_rs ? rs : ms);
        return STATUS_USAGE;
    }
    const struct tsc_info *tsc = tsc_info();

    struct rtc_time t = { 0 };
    int time_ok = rtc_read_time(&t) == 0 && date_valid(&t);

    uint8_t saved_a = cmos_read(RTC_REG_A), saved_b = cmos_read(RTC_REG_B);
    cmos_write(RTC_REG_B, saved_b & (uint8_t)~(RTC_B_PIE | RTC_B_AIE | RTC_B_UIE));
    (void)cmos_read(RTC_REG_C);

    pic_init();
    irq_attach(RTC_IRQ, rtc_irq, IRQ_FLOW_ACK);
    rtc_periodic_start((unsigned)rs);
    uint64_t irqs = irq_count_for(&rtc_irqs, ms * tsc->khz);
    irq_detach(RTC_IRQ);

    /* IRQ 8 is masked at the slave now; the RTC keeps setting its flags. Poll C until a
     * period sets PF (bounded: a VMM's RTC timer can run late on a loaded host), then
     * read it again at once: PF must be clear, unless the next period came in between. */
    uint64_t period_us = 1000000 / (65536UL >> rs);
    uint8_t c1 = 0, c2 = 0;
    for (int i = 0; i < PF_TRIES; i++) {
        uint64_t deadline = rdtsc() + tsc_us(PF_MAX_WAIT_US + 2 * period_us);
        while (!((c1 = cmos_read(RTC_REG_C)) & RTC_C_PF) && rdtsc() < deadline)
            tsc_spin_us(period_us / 4 + 1);
        c2 = cmos_read(RTC_REG_C);
        if (!(c2 & RTC_C_PF))
            break;
    }
    int pf = !!(c1 & RTC_C_PF), irqf = !!(c1 & RTC_C_IRQF), pf_cleared = !(c2 & RTC_C_PF);
    int vrt = !!(cmos_read(RTC_REG_D) & RTC_D_VRT);

    cmos_write(RTC_REG_B, saved_b & (uint8_t)~(RTC_B_PIE | RTC_B_AIE | RTC_B_UIE));
    cmos_write(RTC_REG_A, saved_a & (uint8_t)~RTC_A_UIP);  /* UIP is read-only */
    cmos_write(RTC_REG_B, saved_b);
    (void)cmos_read(RTC_REG_C);

    int ok = time_ok && irqs > 0 && rtc_irqs_without_pf == 0 && pf && irqf && pf_cleared && vrt;
    kprintf("RESULT rtc ok=%d year=%u month=%u day=%u hour=%u minute=%u second=%u bcd=%d h24=%d "
            "rs=%lu nominal_hz=%lu periodic_hz=%lu irqs=%lu irqs_without_flags=%lu pf=%d irqf=%d "
            "pf_cleared=%d vrt=%d tsc_khz=%lu tsc_source=%s\n", ok, t.year, t.month, t.day,
            t.hour, t.minute, t.second, t.bcd, t.h24, rs, 65536UL >> rs, irqs * 1000 / ms, irqs,
            rtc_irqs_without_pf, pf, irqf, pf_cleared, vrt, tsc->khz, tsc->source);
    return ok ? STATUS_OK : STATUS_FAIL;
}
