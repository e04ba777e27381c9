/*
 * fb-blit: copy a rectangle to a new place on the framebuffer once per frame, at CPL 3.
 *   fb-blit [mode=640x480x32] [io=port|mmio] [src=fb|ram] [w=W/4] [h=H/4]
 *           [frames=60 | seconds=S | ms=M] [hold=0|1]
 * The test pattern is drawn first (untimed). The source is the w x h rectangle at (0, 0):
 * on the framebuffer itself (src=fb, a copy within the LFB) or a copy of it in RAM
 * (src=ram, at VBE_RAM_AREA). Frame f copies it to x = w + 8 (f mod ((W - 2w) / 8 + 1)),
 * y = 4f mod (H - h + 1), row by row with 64-bit loads and stores; the destination never
 * overlaps the source (x >= w). w is a multiple of 8 up to W/2, h at most H/2.
 * Afterwards the last destination is compared with the source, and the checksum
 * (vbe_pattern.h) of the whole framebuffer is taken (tests/vga_pattern.py replays it).
 * RESULT fb-blit ok= mode= src= w= h= frames= bytes= cycles= mbps= fps= sum= tsc_khz=
 *   tsc_source=
 * bytes = frames * w * h * bytes per pixel.
 */
#include "cmdline.h"
#include "cpu.h"
#include "io.h"
#include "kit.h"
#include "scenario.h"
#include "tsc.h"
#include "vbe_fb.h"
#include "vbe_pattern.h"

#define DEFAULT_FRAMES 60

struct blit_job {
    const struct vbe_mode *mode;
    unsigned rw, rh;                    /* rectangle, pixels */
    int from_ram;
    uint64_t frames, deadline;
    uint64_t done, t0, t1, bad_words, sum;
};

static void blit(const struct blit_job *job, const uint8_t *src, uint64_t src_pitch,
                 unsigned x, unsigned y)
{
    const struct vbe_mode *m = job->mode;
    uint64_t row = (uint64_t)job->rw * m->bytes_pp;
    uint8_t *dst = m->fb + (uint64_t)y * m->pitch + (uint64_t)x * m->bytes_pp;
    for (unsigned r = 0; r < job->rh; r++)
        vbe_copy64(dst + (uint64_t)r * m->pitch, src + (uint64_t)r * src_pitch, row);
}

static uint64_t blit_user(void *arg)            /* CPL 3 */
{
    struct blit_job *job = arg;
    const struct vbe_mode *m = job->mode;
    uint64_t row = (uint64_t)job->rw * m->bytes_pp;
    vbe_pattern_draw(m);
    const uint8_t *src = m->fb;
    uint64_t src_pitch = m->pitch;
    if (job->from_ram) {
        uint8_t *ram = (uint8_t *)(uintptr_t)VBE_RAM_AREA;
        for (unsigned r = 0; r < job->rh; r++)
            vbe_copy64(ram + r * row, m->fb + (uint64_t)r * m->pitch, row);
        src = ram;
        src_pitch = row;
    }
    unsigned x_steps = (m->width - 2 * job->rw) / 8 + 1, y_range = m->height - job->rh + 1;
    unsigned x = 0, y = 0;
    uint64_t f = 0;
    job->t0 = rdtsc();
    do {
        x = job->rw + 8 * (unsigned)(f % x_steps);
        y = (unsigned)(4 * f % y_range);
        blit(job, src, src_pitch, x, y);
        f++;
        job->t1 = rdtsc();
    } while (job->deadline ? job->t1 - job->t0 < job->deadline : f < job->frames);
    job->done = f;

    uint64_t bad = 0;
    for (unsigned r = 0; r < job->rh; r++) {
        const volatile uint64_t *a = (const volatile uint64_t *)(src + r * src_pitch);
        const volatile uint64_t *b = (const volatile uint64_t *)
            (m->fb + (uint64_t)(y + r) * m->pitch + (uint64_t)x * m->bytes_pp);
        for (uint64_t i = 0; i < row / 8; i++)
            bad += a[i] != b[i];
    }
    job->bad_words = bad;
    job->sum = vbe_checksum(m->fb, m->fb_bytes);
    return 0;
}

int scn_fb_blit(const struct multiboot_info *mbi)
{
    static struct blit_job job;
    int hold;
    uint64_t rw, rh;
    if (vbe_fb_arg_run("fb-blit", DEFAULT_FRAMES, &job.frames, &job.deadline) ||
        vbe_fb_arg_hold("fb-blit", &hold) || arg_u64("fb-blit", "w", 0, &rw) ||
        arg_u64("fb-blit", "h", 0, &rh))
        return STATUS_USAGE;
    const char *src = cmdline_get("src");
    if (src && strcmp(src, "fb") != 0 && strcmp(src, "ram") != 0) {
        kprintf("RESULT error bad-arg scenario=fb-blit key=src value=%s\n", src);
        return STATUS_USAGE;
    }
    job.from_ram = src && strcmp(src, "ram") == 0;
    struct vbe_device dev;
    struct vbe_mode mode;
    int st = vbe_fb_start("fb-blit", VBE_FB_DEFAULT_MODE, &dev, &mode);
    if (st != STATUS_OK)
        return st;
    if (!cmdline_get("w"))
        rw = mode.width / 4 / 8 * 8;
    if (!cmdline_get("h"))
        rh = mode.height / 4;
    if (rw == 0 || rw % 8 || rw > mode.width / 2 || rh == 0 || rh > mode.height / 2) {
        kprintf("RESULT error bad-arg scenario=fb-blit key=%s value=%lu\n",
                rw == 0 || rw % 8 || rw > mode.width / 2 ? "w" : "h",
                rw == 0 || rw % 8 || rw > mode.width / 2 ? rw : rh);
        return STATUS_USAGE;
    }
    job.rw = (unsigned)rw;
    job.rh = (unsigned)rh;
    if (job.from_ram && (st = vbe_fb_ram("fb-blit", mbi, rw * rh * mode.bytes_pp)) != STATUS_OK)
        return st;
    job.mode = &mode;
    run_user(blit_user, &job);

    const struct tsc_info *tsc = tsc_info();
    uint64_t cycles = job.t1 - job.t0, bytes = job.done * rw * rh * mode.bytes_pp;
    uint64_t mb_w, mb_h, fps_w, fps_h;
    vbe_fb_rate(bytes, cycles, 1000000, &mb_w, &mb_h);
    vbe_fb_rate(job.done, cycles, 1, &fps_w, &fps_h);
    int ok = job.bad_words == 0;
    kprintf("RESULT fb-blit ok=%d mode=%ux%ux%u src=%s w=%lu h=%lu frames=%lu bytes=%lu "
            "cycles=%lu mbps=%lu.%02lu fps=%lu.%02lu sum=0x%016lx tsc_khz=%lu tsc_source=%s",
            ok, mode.width, mode.height, mode.bpp, job.from_ram ? "ram" : "fb", rw, rh,
            job.done, bytes, cycles, mb_w, mb_h, fps_w, fps_h, job.sum, tsc->khz,
            tsc->source);
    if (!ok)
        kprintf(" bad_words=%lu", job.bad_words);
    kprintf("\n");
    return vbe_fb_finish("fb-blit", hold, ok ? STATUS_OK : STATUS_FAIL);
}
