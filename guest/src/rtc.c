/* CMOS RTC (see rtc.h). Every register access is two port exits: keep them few. */
#include "rtc.h"
#include "io.h"

#define CMOS_INDEX 0x70
#define CMOS_DATA  0x71
#define UIP_MAX_POLLS 100000    /* an update lasts under 2 ms; a poll is several us */
#define READ_TRIES 5

volatile uint64_t rtc_irqs;
uint64_t rtc_irqs_without_pf;

uint8_t cmos_read(uint8_t reg)
{
    outb(CMOS_INDEX, reg);
    return inb(CMOS_DATA);
}

void cmos_write(uint8_t reg, uint8_t value)
{
    outb(CMOS_INDEX, reg);
    outb(CMOS_DATA, value);
}

static unsigned field(uint8_t v, int bcd) { return bcd ? (v >> 4) * 10u + (v & 0x0F) : v; }

struct raw_time { uint8_t sec, min, hour, day, month, year, century; };

static int read_raw(struct raw_time *r)
{
    unsigned polls = 0;
    uint8_t a;
    while ((a = cmos_read(RTC_REG_A)) & RTC_A_UIP)
        if (a == 0xFF || ++polls > UIP_MAX_POLLS)
            return -1;                  /* 0xFF: nothing decodes the port */
    r->sec = cmos_read(RTC_SECONDS);
    r->min = cmos_read(RTC_MINUTES);
    r->hour = cmos_read(RTC_HOURS);
    r->day = cmos_read(RTC_DAY);
    r->month = cmos_read(RTC_MONTH);
    r->year = cmos_read(RTC_YEAR);
    r->century = cmos_read(RTC_CENTURY);
    return 0;
}

int rtc_read_time(struct rtc_time *t)
{
    struct raw_time a, b;
    int tries = 0;
    if (read_raw(&a))
        return -1;
    for (;;) {                          /* an update may have come between the reads */
        if (read_raw(&b))
            return -1;
        if (a.sec == b.sec && a.min == b.min && a.hour == b.hour && a.day == b.day &&
            a.month == b.month && a.year == b.year && a.century == b.century)
            break;
        if (++tries >= READ_TRIES)
            return -1;
        a = b;
    }
    uint8_t regb = cmos_read(RTC_REG_B);
    t->bcd = !(regb & RTC_B_DM);
    t->h24 = !!(regb & RTC_B_24H);
    int pm = !t->h24 && (b.hour & RTC_HOUR_PM);
    b.hour &= (uint8_t)~RTC_HOUR_PM;
    t->second = field(b.sec, t->bcd);
    t->minute = field(b.min, t->bcd);
    t->hour = field(b.hour, t->bcd);
    t->day = field(b.day, t->bcd);
    t->month = field(b.month, t->bcd);
    unsigned century = field(b.century, t->bcd);
    if (!t->h24)
        t->hour = t->hour % 12 + (pm ? 12 : 0);        /* 12 AM is 0, 12 PM is 12 */
    if (century < 19 || century > 29)
        century = 20;                   /* no century register: assume 20xx */
    t->year = century * 100 + field(b.year, t->bcd);
    return 0;
}

void rtc_periodic_start(unsigned rs)
{
    uint8_t a = cmos_read(RTC_REG_A);
    cmos_write(RTC_REG_A, (uint8_t)((a & ~RTC_A_RS) | (rs & RTC_A_RS)));
    /* PF is set at every period even while PIE is clear: clear it first, or setting PIE
     * raises IRQ 8 at once (and a read of C after that would make a pulse the PIC latches,
     * an interrupt that finds C empty). */
    (void)cmos_read(RTC_REG_C);
    cmos_write(RTC_REG_B, cmos_read(RTC_REG_B) | RTC_B_PIE);
}

void rtc_periodic_stop(void)
{
    cmos_write(RTC_REG_B, cmos_read(RTC_REG_B) & (uint8_t)~RTC_B_PIE);
    (void)cmos_read(RTC_REG_C);
}

void rtc_irq(unsigned irq)
{
    (void)irq;
    uint8_t c = cmos_read(RTC_REG_C);
    if ((c & (RTC_C_IRQF | RTC_C_PF)) != (RTC_C_IRQF | RTC_C_PF))
        rtc_irqs_without_pf++;
    rtc_irqs++;
}
