/*
 * vbe: set a VBE mode through the dispi interface and draw the kit's test pattern.
 *   vbe [mode=640x480x32] [io=port|mmio] [hold=0|1]
 * mode is WxHxBPP (bpp 8, 15, 16, 24, 32; W a multiple of 8); io picks the dispi registers'
 * form (ports 0x1CE/0x1CF or BAR2 MMIO). The pattern (vbe_pattern.h, reproduced by
 * tests/vga_pattern.py) is drawn at CPL 3 line by line; then the framebuffer is read back
 * at CPL 3 and its checksum compared with that of what was written. 8 bpp loads the
 * pattern's palette into the DAC and reads one entry back.
 * RESULT vbe ok= mode= pitch= bytes= sum= dac_ok= lfb= mmio= vram_kb= id= io=
 *   draw_cycles= tsc_khz= tsc_source=
 * With hold=1 it then prints "READY vbe" and halts with the picture on screen, for the host
 * to take a screenshot and end the run.
 */
#include "cpu.h"
#include "io.h"
#include "kit.h"
#include "scenario.h"
#include "tsc.h"
#include "vbe.h"
#include "vbe_fb.h"
#include "vbe_pattern.h"
#include "vga.h"

struct vbe_job {
    const struct vbe_mode *mode;
    uint64_t written, readback;
    uint64_t t0, t1;
};

static uint64_t vbe_user(void *arg)                /* CPL 3 */
{
    struct vbe_job *job = arg;
    job->t0 = rdtsc();
    job->written = vbe_pattern_draw(job->mode);
    job->t1 = rdtsc();
    job->readback = vbe_checksum(job->mode->fb, job->mode->fb_bytes);
    return 0;
}

int scn_vbe(const struct multiboot_info *mbi)
{
    (void)mbi;
    int hold;
    if (vbe_fb_arg_hold("vbe", &hold))
        return STATUS_USAGE;
    struct vbe_device dev;
    struct vbe_mode mode;
    int st = vbe_fb_start("vbe", VBE_FB_DEFAULT_MODE, &dev, &mode);
    if (st != STATUS_OK)
        return st;

    int dac_ok = 1;
    if (mode.bpp == 8) {
        uint8_t want[256 * 3], got[3];
        vbe_pattern_palette6(want);
        unsigned probe = VBE_PAL_GRADIENT + 101;
        vga_dac_read(probe, got);
        dac_ok = got[0] == want[probe * 3] && got[1] == want[probe * 3 + 1] &&
                 got[2] == want[probe * 3 + 2];
    }
    static struct vbe_job job;
    job.mode = &mode;
    run_user(vbe_user, &job);

    const struct tsc_info *tsc = tsc_info();
    int ok = job.written == job.readback && dac_ok;
    kprintf("RESULT vbe ok=%d mode=%ux%ux%u pitch=%u bytes=%lu sum=0x%016lx dac_ok=%d "
            "lfb=0x%lx mmio=0x%lx vram_kb=%u id=0x%04x io=%s draw_cycles=%lu tsc_khz=%lu "
            "tsc_source=%s", ok, mode.width, mode.height, mode.bpp, mode.pitch, mode.fb_bytes,
            job.readback, dac_ok, dev.lfb, dev.mmio, dev.vram_bytes >> 10, dev.id,
            dev.io == VBE_IO_MMIO ? "mmio" : "port", job.t1 - job.t0, tsc->khz, tsc->source);
    if (job.written != job.readback)
        kprintf(" written=0x%016lx", job.written);
    kprintf("\n");
    return vbe_fb_finish("vbe", hold, ok ? STATUS_OK : STATUS_FAIL);
}
