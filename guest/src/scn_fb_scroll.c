/*
 * fb-scroll: scroll the screen up once per frame, at CPL 3, as a console does.
 *   fb-scroll [kind=pixel|text] [mode=640x480x32] [io=port|mmio] [lines=8]
 *             [frames=60 | seconds=S | ms=M] [setmode=1] [hold=0|1]
 * kind=pixel: the test pattern is drawn (untimed); frame f moves rows lines..H-1 up to
 * row 0 (a forward copy within the LFB, 64-bit loads and stores) and fills the last
 * `lines` rows with the byte (0x11 + 0x1D f) & 0xFF. lines is 1 .. H/2.
 * kind=text: 80x25 text mode (setmode=1 programs mode 03h, see vga-text) showing the
 * vga-text screen; frame f moves rows 1-24 up one row in the 0xB8000 window (64-bit
 * accesses) and writes row 24 as 80 cells of 'a' + f mod 26 in attribute 1 + f mod 15.
 * The cursor is hidden; mode= and lines= do not apply.
 * Afterwards the last rows are checked and the checksum (vbe_pattern.h) of the whole
 * screen is taken (tests/vga_pattern.py replays both kinds).
 * RESULT fb-scroll ok= kind= mode= lines= frames= bytes= cycles= mbps= fps= sum= tsc_khz=
 *   tsc_source=
 * bytes = frames * the bytes each frame writes (the whole screen: moved plus new rows).
 */
#include "cmdline.h"
#include "cpu.h"
#include "io.h"
#include "kit.h"
#include "scenario.h"
#include "tsc.h"
#include "vbe_fb.h"
#include "vbe_pattern.h"
#include "vga.h"

#define DEFAULT_FRAMES 60
#define DEFAULT_LINES  8
#define TEXT_ROW_BYTES (VGA_TEXT_COLS * 2)
#define TEXT_BYTES     (VGA_TEXT_ROWS * TEXT_ROW_BYTES)

static inline uint8_t fill_byte(uint64_t frame)
{
    return (uint8_t)(0x11 + 0x1D * frame);
}

struct scroll_job {
    int text;
    const struct vbe_mode *mode;        /* kind=pixel */
    unsigned lines;
    uint64_t frames, deadline;
    uint64_t done, t0, t1, bad_words, sum;
};

static uint16_t text_cells[VGA_TEXT_COLS * VGA_TEXT_ROWS] __attribute__((aligned(8)));

/* A row of 80 cells as 64-bit words: 4 cells each. */
static uint64_t text_row_word(uint64_t frame)
{
    uint64_t cell = VGA_TEXT_CELL('a' + frame % 26, 1 + frame % 15);
    return cell * 0x0001000100010001ULL;
}

static void scroll_pixel_frame(const struct scroll_job *job, uint64_t f)
{
    const struct vbe_mode *m = job->mode;
    uint64_t moved = (uint64_t)(m->height - job->lines) * m->pitch;
    vbe_copy64(m->fb, m->fb + (uint64_t)job->lines * m->pitch, moved);
    vbe_fill64(m->fb + moved, fill_byte(f), (uint64_t)job->lines * m->pitch);
}

static void scroll_text_frame(uint64_t f)
{
    volatile uint8_t *screen = (volatile uint8_t *)(uintptr_t)VGA_TEXT_BASE;
    vbe_copy64(screen, screen + TEXT_ROW_BYTES, TEXT_BYTES - TEXT_ROW_BYTES);
    volatile uint64_t *last = (volatile uint64_t *)(screen + TEXT_BYTES - TEXT_ROW_BYTES);
    uint64_t w = text_row_word(f);
    for (unsigned i = 0; i < TEXT_ROW_BYTES / 8; i++)
        last[i] = w;
}

/* The last frame's rows hold what it wrote. */
static uint64_t check_last_rows(const struct scroll_job *job)
{
    uint64_t bad = 0, last = job->done - 1;
    if (job->text) {
        const volatile uint64_t *w = (const volatile uint64_t *)
            (uintptr_t)(VGA_TEXT_BASE + TEXT_BYTES - TEXT_ROW_BYTES);
        for (unsigned i = 0; i < TEXT_ROW_BYTES / 8; i++)
            bad += w[i] != text_row_word(last);
        return bad;
    }
    const struct vbe_mode *m = job->mode;
    uint64_t n = (uint64_t)job->lines * m->pitch;
    const volatile uint64_t *w = (const volatile uint64_t *)(m->fb + m->fb_bytes - n);
    uint64_t want = fill_byte(last) * 0x0101010101010101ULL;
    for (uint64_t i = 0; i < n / 8; i++)
        bad += w[i] != want;
    return bad;
}

static uint64_t scroll_user(void *arg)          /* CPL 3 */
{
    struct scroll_job *job = arg;
    if (job->text) {
        vga_text_layout(text_cells);
        vbe_copy64((volatile void *)(uintptr_t)VGA_TEXT_BASE, text_cells, TEXT_BYTES);
    } else {
        vbe_pattern_draw(job->mode);
    }
    uint64_t f = 0;
    job->t0 = rdtsc();
    do {
        if (job->text)
            scroll_text_frame(f);
        else
            scroll_pixel_frame(job, f);
        f++;
        job->t1 = rdtsc();
    } while (job->deadline ? job->t1 - job->t0 < job->deadline : f < job->frames);
    job->done = f;
    job->bad_words = check_last_rows(job);
    job->sum = job->text ? vbe_checksum((const volatile void *)(uintptr_t)VGA_TEXT_BASE,
                                        TEXT_BYTES)
                         : vbe_checksum(job->mode->fb, job->mode->fb_bytes);
    return 0;
}

int scn_fb_scroll(const struct multiboot_info *mbi)
{
    (void)mbi;
    static struct scroll_job job;
    int hold;
    uint64_t lines, setmode;
    if (vbe_fb_arg_run("fb-scroll", DEFAULT_FRAMES, &job.frames, &job.deadline) ||
        vbe_fb_arg_hold("fb-scroll", &hold) ||
        arg_u64("fb-scroll", "lines", DEFAULT_LINES, &lines) ||
        arg_u64("fb-scroll", "setmode", 1, &setmode))
        return STATUS_USAGE;
    const char *kind = cmdline_get("kind");
    if (kind && strcmp(kind, "pixel") != 0 && strcmp(kind, "text") != 0) {
        kprintf("RESULT error bad-arg scenario=fb-scroll key=kind value=%s\n", kind);
        return STATUS_USAGE;
    }
    job.text = kind && strcmp(kind, "text") == 0;
    struct vbe_device dev;
    struct vbe_mode mode = { 0 };
    uint64_t frame_bytes;
    if (job.text) {
        (void)tsc_info();
        if (setmode)
            vga_set_text_mode();
        vga_cursor_hide();               /* a blinking cursor would spoil a screenshot */
        lines = 1;
        frame_bytes = TEXT_BYTES;
    } else {
        int st = vbe_fb_start("fb-scroll", VBE_FB_DEFAULT_MODE, &dev, &mode);
        if (st != STATUS_OK)
            return st;
        if (lines == 0 || lines > mode.height / 2) {
            kprintf("RESULT error bad-arg scenario=fb-scroll key=lines value=%s\n",
                    cmdline_get("lines"));
            return STATUS_USAGE;
        }
        frame_bytes = mode.fb_bytes;
    }
    job.lines = (unsigned)lines;
    job.mode = &mode;
    run_user(scroll_user, &job);

    const struct tsc_info *tsc = tsc_info();
    uint64_t cycles = job.t1 - job.t0, bytes = job.done * frame_bytes;
    uint64_t mb_w, mb_h, fps_w, fps_h;
    vbe_fb_rate(bytes, cycles, 1000000, &mb_w, &mb_h);
    vbe_fb_rate(job.done, cycles, 1, &fps_w, &fps_h);
    int ok = job.bad_words == 0;
    if (job.text)
        kprintf("RESULT fb-scroll ok=%d kind=text mode=80x25 lines=1", ok);
    else
        kprintf("RESULT fb-scroll ok=%d kind=pixel mode=%ux%ux%u lines=%u", ok, mode.width,
                mode.height, mode.bpp, job.lines);
    kprintf(" frames=%lu bytes=%lu cycles=%lu mbps=%lu.%02lu fps=%lu.%02lu sum=0x%016lx "
            "tsc_khz=%lu tsc_source=%s", job.done, bytes, cycles, mb_w, mb_h, fps_w, fps_h,
            job.sum, tsc->khz, tsc->source);
    if (!ok)
        kprintf(" bad_words=%lu", job.bad_words);
    kprintf("\n");
    return vbe_fb_finish("fb-scroll", hold, ok ? STATUS_OK : STATUS_FAIL);
}
