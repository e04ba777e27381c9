/* hello: proves boot, UART and command line; shows what the loader handed over. */
#include "cmdline.h"
#include "kit.h"
#include "multiboot.h"
#include "scenario.h"

int scn_hello(const struct multiboot_info *mbi)
{
    kprintf("cmdline: %s\n", cmdline_raw());
    if (mbi->flags & MBI_FLAG_MEM)
        kprintf("mem: lower_kb=%u upper_kb=%u\n", mbi->mem_lower, mbi->mem_upper);
    if (mbi->flags & MBI_FLAG_MMAP) {
        uintptr_t p = mbi->mmap_addr, end = p + mbi->mmap_length;
        for (int i = 0; p < end && i < 64; i++) {
            const struct multiboot_mmap_entry *e = (const void *)p;
            kprintf("mmap: base=0x%lx len=0x%lx type=%u\n", e->addr, e->len, e->type);
            p += e->size + 4;
        }
    }
    kprintf("RESULT hello ok=1 args=%d\n", cmdline_count());
    return STATUS_OK;
}
