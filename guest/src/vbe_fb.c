/* Shared plumbing of the vbe and fb-* scenarios (see vbe_fb.h). */
#include "vbe_fb.h"
#include "cmdline.h"
#include "kit.h"
#include "multiboot.h"
#include "tsc.h"
#include "vbe_pattern.h"
#include "vga.h"

int vbe_fb_start(const char *scenario, const char *default_mode, struct vbe_device *dev,
                 struct vbe_mode *mode)
{
    unsigned w, h, bpp;
    enum vbe_io io;
    if (vbe_arg_mode(scenario, default_mode, &w, &h, &bpp) || vbe_arg_io(scenario, &io))
        return STATUS_USAGE;
    (void)tsc_info();                   /* calibrate before anything is timed */
    int st = vbe_probe(scenario, io, dev);
    if (st == STATUS_OK)
        st = vbe_set_mode(scenario, dev, w, h, bpp, mode);
    if (st == STATUS_OK && bpp == 8) {
        static uint8_t pal[256 * 3];
        vbe_pattern_palette6(pal);
        vga_dac_load(0, 256, pal);
    }
    return st;
}

int vbe_fb_arg_run(const char *scenario, uint64_t def_frames, uint64_t *frames,
                   uint64_t *deadline)
{
    uint64_t seconds, ms;
    if (arg_u64(scenario, "frames", def_frames, frames) ||
        arg_u64(scenario, "seconds", 0, &seconds) || arg_u64(scenario, "ms", 0, &ms))
        return -1;
    if (*frames == 0 || *frames > 1000000) {
        kprintf("RESULT error bad-arg scenario=%s key=frames value=%s\n", scenario,
                cmdline_get("frames"));
        return -1;
    }
    if (seconds > 3600 || ms > 3600000) {
        kprintf("RESULT error bad-arg scenario=%s key=%s value=%s\n", scenario,
                cmdline_get("ms") ? "ms" : "seconds",
                cmdline_get("ms") ? cmdline_get("ms") : cmdline_get("seconds"));
        return -1;
    }
    if (!cmdline_get("ms"))
        ms = seconds * 1000;
    *deadline = ms * tsc_info()->khz;
    return 0;
}

int vbe_fb_arg_hold(const char *scenario, int *hold)
{
    uint64_t v;
    if (arg_u64(scenario, "hold", 0, &v))
        return -1;
    if (v > 1) {
        kprintf("RESULT error bad-arg scenario=%s key=hold value=%s\n", scenario,
                cmdline_get("hold"));
        return -1;
    }
    *hold = (int)v;
    return 0;
}

int vbe_fb_ram(const char *scenario, const struct multiboot_info *mbi, uint64_t bytes)
{
    uint64_t ram = mbi->flags & MBI_FLAG_MEM ? (1024ULL + mbi->mem_upper) << 10 : 0;
    if ((uintptr_t)_kernel_end > VBE_RAM_AREA || ram < VBE_RAM_AREA + bytes) {
        kprintf("RESULT %s ok=0 error=memory need=0x%lx ram=0x%lx\n", scenario,
                (uint64_t)(VBE_RAM_AREA + bytes), ram);
        return STATUS_FAIL;
    }
    return STATUS_OK;
}

int vbe_fb_finish(const char *scenario, int hold, int status)
{
    if (!hold)
        return status;
    kprintf("READY %s\n", scenario);
    for (;;)
        __asm__ volatile("cli; hlt");
}

void vbe_fb_rate(uint64_t units, uint64_t cycles, uint64_t per, uint64_t *whole,
                 uint64_t *hundredths)
{
    /* units / (cycles / (khz * 1000)) / per, times 100. per is 1 or 10^6, so the scale
     * keeps its precision and units * scale stays in 64 bits for any run this kit makes. */
    uint64_t scale = tsc_info()->khz * 100000 / per;
    uint64_t x100 = cycles ? units * scale / cycles : 0;
    *whole = x100 / 100;
    *hundredths = x100 % 100;
}
