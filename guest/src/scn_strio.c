/*
 * strio: string port I/O, which a VMM sees as one exit with a repeat count.
 *   rep outsb: a 64-byte line to COM1 (it shows on the console)
 *   rep outsw, rep outsl: 16 words, 16 dwords to port 0x404 (nothing decodes it)
 *   rep insb: 16 bytes from port 0x404, which must all read 0xFF
 * Reports RESULT strio ok=1|0 insb=<32 hex digits>.
 */
#include "kit.h"
#include "scenario.h"
#include "serial.h"

#define STRIO_PORT 0x404
#define STRIO_MSG  "strio: rep outsb of 64 bytes to COM1 0123456789abcdefghijklmnop\n"
_Static_assert(sizeof(STRIO_MSG) - 1 == 64, "the message is 64 bytes");

int scn_strio(const struct multiboot_info *mbi)
{
    (void)mbi;
    static const char msg[] = STRIO_MSG;
    static uint16_t words[16];
    static uint32_t dwords[16];
    static uint8_t in[16];

    for (unsigned i = 0; i < 16; i++) {
        words[i] = (uint16_t)(0xA500 + i);
        dwords[i] = 0xC0DE0000u + i;
    }

    const void *p = msg;
    uint64_t n = 64;
    __asm__ volatile("rep outsb" : "+S"(p), "+c"(n) : "d"(COM1_BASE) : "memory");
    p = words;
    n = 16;
    __asm__ volatile("rep outsw" : "+S"(p), "+c"(n) : "d"(STRIO_PORT) : "memory");
    p = dwords;
    n = 16;
    __asm__ volatile("rep outsl" : "+S"(p), "+c"(n) : "d"(STRIO_PORT) : "memory");
    void *q = in;
    n = 16;
    __asm__ volatile("rep insb" : "+D"(q), "+c"(n) : "d"(STRIO_PORT) : "memory");

    int ok = 1;
    for (unsigned i = 0; i < 16; i++)
        ok &= in[i] == 0xFF;
    kprintf("RESULT strio ok=%d insb=", ok);
    for (unsigned i = 0; i < 16; i++)
        kprintf("%02x", in[i]);
    kprintf("\n");
    return ok ? STATUS_OK : STATUS_FAIL;
}
