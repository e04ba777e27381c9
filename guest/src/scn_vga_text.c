/*
 * vga-text: the 80x25 colour text mode: known text in known attributes, and the cursor.
 *   vga-text [setmode=1] [hold=0|1]
 * setmode=1 programs the mode 03h registers and the 16-colour DAC entries (vga.c) as a
 * VGA BIOS does; setmode=0 keeps what the firmware or the VMM left. The screen
 * (vga_text_layout in vga.c, the same as tests/vga_pattern.py text_layout) is built in RAM
 * and copied to 0xB8000 at CPL 3 with 64-bit stores, then read back; the cursor goes to
 * row 20, column 40, scan lines 13-14, read back from the CRTC.
 * RESULT vga-text ok= sum= cells= cursor_row= cursor_col= cursor_start= cursor_end=
 *   char_width= char_height= setmode=
 * sum is the checksum (vbe_pattern.h) of the 4000 bytes read back. hold=1 then prints
 * "READY vga-text" and halts, for a screenshot.
 */
#include "cmdline.h"
#include "cpu.h"
#include "kit.h"
#include "scenario.h"
#include "vbe_fb.h"
#include "vbe_pattern.h"
#include "vga.h"

#define CURSOR_FIRST 13
#define CURSOR_LAST  14
#define TEXT_BYTES   (VGA_TEXT_COLS * VGA_TEXT_ROWS * 2)

struct text_job {
    uint64_t written, readback;
};

static uint16_t cells[VGA_TEXT_COLS * VGA_TEXT_ROWS] __attribute__((aligned(8)));

static uint64_t text_user(void *arg)            /* CPL 3 */
{
    struct text_job *job = arg;
    volatile void *screen = (volatile void *)(uintptr_t)VGA_TEXT_BASE;
    vga_text_layout(cells);
    job->written = vbe_checksum(cells, TEXT_BYTES);
    vbe_copy64(screen, cells, TEXT_BYTES);
    job->readback = vbe_checksum(screen, TEXT_BYTES);
    return 0;
}

int scn_vga_text(const struct multiboot_info *mbi)
{
    (void)mbi;
    uint64_t setmode;
    int hold;
    if (arg_u64("vga-text", "setmode", 1, &setmode) || vbe_fb_arg_hold("vga-text", &hold))
        return STATUS_USAGE;
    if (setmode)
        vga_set_text_mode();

    static struct text_job job;
    run_user(text_user, &job);
    vga_cursor_shape(CURSOR_FIRST, CURSOR_LAST);
    vga_cursor_set(VGA_LAYOUT_CURSOR_ROW, VGA_LAYOUT_CURSOR_COL);

    unsigned pos = vga_cursor_offset();
    unsigned start = vga_crtc_read(CRTC_CURSOR_START), end = vga_crtc_read(CRTC_CURSOR_END);
    unsigned char_width = vga_seq_read(1) & 1 ? 8 : 9;
    unsigned char_height = (vga_crtc_read(0x09) & 0x1F) + 1u;
    int ok = job.written == job.readback &&
             pos == VGA_LAYOUT_CURSOR_ROW * VGA_TEXT_COLS + VGA_LAYOUT_CURSOR_COL &&
             (start & 0x3F) == CURSOR_FIRST && (end & 0x1F) == CURSOR_LAST;
    kprintf("RESULT vga-text ok=%d sum=0x%016lx cells=%u cursor_row=%u cursor_col=%u "
            "cursor_start=%u cursor_end=%u char_width=%u char_height=%u setmode=%lu",
            ok, job.readback, VGA_TEXT_COLS * VGA_TEXT_ROWS, pos / VGA_TEXT_COLS,
            pos % VGA_TEXT_COLS, start & 0x3F, end & 0x1F, char_width, char_height, setmode);
    if (job.written != job.readback)
        kprintf(" written=0x%016lx", job.written);
    kprintf("\n");
    return vbe_fb_finish("vga-text", hold, ok ? STATUS_OK : STATUS_FAIL);
}
