/*
 * fb-fill: fill the whole visible framebuffer once per frame, at CPL 3.
 *   fb-fill [mode=640x480x32] [io=port|mmio] [frames=60 | seconds=S | ms=M] [hold=0|1]
 * Frame f stores the byte (0x11 + 0x1D f) & 0xFF over pitch * height bytes with 64-bit
 * stores (the framebuffer is mapped user-accessible, see vbe.h). Afterwards every word is
 * read back and checked against the last frame's byte.
 * RESULT fb-fill ok= mode= frames= bytes= cycles= mbps= fps= last= sum= tsc_khz= tsc_source=
 * bytes = frames * pitch * height; mbps is 10^6 bytes per second (two decimals).
 */
#include "cpu.h"
#include "io.h"
#include "kit.h"
#include "scenario.h"
#include "tsc.h"
#include "vbe_fb.h"
#include "vbe_pattern.h"

#define DEFAULT_FRAMES 60

static inline uint8_t fill_byte(uint64_t frame)
{
    return (uint8_t)(0x11 + 0x1D * frame);
}

struct fill_job {
    const struct vbe_mode *mode;
    uint64_t frames, deadline;          /* deadline in TSC cycles, 0: count frames */
    uint64_t done, t0, t1, bad_words, sum;
};

static uint64_t fill_user(void *arg)            /* CPL 3 */
{
    struct fill_job *job = arg;
    const struct vbe_mode *m = job->mode;
    uint64_t f = 0;
    job->t0 = rdtsc();
    do {
        vbe_fill64(m->fb, fill_byte(f), m->fb_bytes);
        f++;
        job->t1 = rdtsc();
    } while (job->deadline ? job->t1 - job->t0 < job->deadline : f < job->frames);
    job->done = f;

    uint64_t want = fill_byte(f - 1) * 0x0101010101010101ULL, bad = 0;
    const volatile uint64_t *w = (const volatile uint64_t *)m->fb;
    for (uint64_t i = 0; i < m->fb_bytes / 8; i++)
        bad += w[i] != want;
    job->bad_words = bad;
    job->sum = vbe_checksum(m->fb, m->fb_bytes);
    return 0;
}

int scn_fb_fill(const struct multiboot_info *mbi)
{
    (void)mbi;
    static struct fill_job job;
    int hold;
    if (vbe_fb_arg_run("fb-fill", DEFAULT_FRAMES, &job.frames, &job.deadline) ||
        vbe_fb_arg_hold("fb-fill", &hold))
        return STATUS_USAGE;
    struct vbe_device dev;
    struct vbe_mode mode;
    int st = vbe_fb_start("fb-fill", VBE_FB_DEFAULT_MODE, &dev, &mode);
    if (st != STATUS_OK)
        return st;
    job.mode = &mode;
    run_user(fill_user, &job);

    const struct tsc_info *tsc = tsc_info();
    uint64_t cycles = job.t1 - job.t0, bytes = job.done * mode.fb_bytes;
    uint64_t mb_w, mb_h, fps_w, fps_h;
    vbe_fb_rate(bytes, cycles, 1000000, &mb_w, &mb_h);
    vbe_fb_rate(job.done, cycles, 1, &fps_w, &fps_h);
    int ok = job.bad_words == 0;
    kprintf("RESULT fb-fill ok=%d mode=%ux%ux%u frames=%lu bytes=%lu cycles=%lu "
            "mbps=%lu.%02lu fps=%lu.%02lu last=0x%02x sum=0x%016lx tsc_khz=%lu tsc_source=%s", ok,
            mode.width, mode.height, mode.bpp, job.done, bytes, cycles, mb_w, mb_h, fps_w,
            fps_h, fill_byte(job.done - 1), job.sum, tsc->khz, tsc->source);
    if (!ok)
        kprintf(" bad_words=%lu", job.bad_words);
    kprintf("\n");
    return vbe_fb_finish("fb-fill", hold, ok ? STATUS_OK : STATUS_FAIL);
}
