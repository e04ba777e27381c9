/* MC146818-style CMOS RTC at ports 0x70 (index) / 0x71 (data); periodic IRQ 8. */
#ifndef GUEST_RTC_H
#define GUEST_RTC_H

#include <stdint.h>

#define RTC_IRQ      8

#define RTC_SECONDS  0x00
#define RTC_MINUTES  0x02
#define RTC_HOURS    0x04
#define RTC_DAY      0x07
#define RTC_MONTH    0x08
#define RTC_YEAR     0x09
#define RTC_REG_A    0x0A
#define RTC_REG_B    0x0B
#define RTC_REG_C    0x0C
#define RTC_REG_D    0x0D
#define RTC_CENTURY  0x32       /* PC convention (ACPI FADT default) */

#define RTC_A_UIP    0x80       /* update in progress */
#define RTC_A_RS     0x0F       /* rate select: periodic rate 32768 >> (RS - 1) Hz */
#define RTC_B_PIE    0x40
#define RTC_B_AIE    0x20
#define RTC_B_UIE    0x10
#define RTC_B_DM     0x04       /* data mode: 1 binary, 0 BCD */
#define RTC_B_24H    0x02
#define RTC_C_IRQF   0x80
#define RTC_C_PF     0x40
#define RTC_D_VRT    0x80

#define RTC_HOUR_PM  0x80       /* 12-hour mode */

struct rtc_time {
    unsigned year, month, day, hour, minute, second;    /* hour in 0..23 */
    int bcd, h24;               /* the RTC's own formats (register B) */
};

uint8_t cmos_read(uint8_t reg);
void cmos_write(uint8_t reg, uint8_t value);

/* Reads a consistent time (UIP clear, two equal reads); -1 if the RTC never settles. */
int rtc_read_time(struct rtc_time *t);

/* Periodic interrupt at 65536 >> rs Hz (rs 3..15): reg C cleared, then PIE set. */
void rtc_periodic_start(unsigned rs);
void rtc_periodic_stop(void);

/* IRQ_FLOW_ACK handler: acknowledges the RTC (reads reg C) and counts. */
extern volatile uint64_t rtc_irqs;
extern uint64_t rtc_irqs_without_pf;   /* reg C read in the handler lacked IRQF or PF */
void rtc_irq(unsigned irq);

#endif
