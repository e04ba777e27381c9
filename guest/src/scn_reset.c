/*
 * reset: machine reset through the i8042 keyboard controller (command 0xFE pulses the
 * CPU reset line), the way PCs have done it since the AT.
 *   reset
 * Prints "RESULT reset writing=0xfe" and writes 0xFE to port 0x64 once the controller's
 * input buffer is empty (bounded wait). A VMM must reset (or, as QEMU -no-reboot, stop)
 * the machine. If the guest still runs 1 s later: "RESULT reset still-running", status 1.
 */
#include "io.h"
#include "kit.h"
#include "scenario.h"
#include "tsc.h"

#define I8042_STATUS     0x64
#define I8042_COMMAND    0x64
#define I8042_STATUS_IBF 0x02   /* input buffer full: not ready for a command */
#define I8042_PULSE_RESET 0xFE
#define IBF_MAX_POLLS    10000
#define GRACE_US         1000000

int scn_reset(const struct multiboot_info *mbi)
{
    (void)mbi;
    (void)tsc_info();                   /* calibrate before, not during, the grace time */
    kprintf("RESULT reset writing=0x%x\n", I8042_PULSE_RESET);
    for (int i = 0; i < IBF_MAX_POLLS; i++)
        if (!(inb(I8042_STATUS) & I8042_STATUS_IBF))
            break;
    outb(I8042_COMMAND, I8042_PULSE_RESET);
    tsc_spin_us(GRACE_US);
    kprintf("RESULT reset still-running\n");
    return STATUS_FAIL;
}
