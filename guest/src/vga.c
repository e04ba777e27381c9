/* VGA register access and the mode 03h text mode (see vga.h). */
#include "vga.h"
#include "io.h"

/* The sequencer, CRTC and graphics controller: an index port, then its data port. */
static uint8_t indexed_read(uint16_t index_port, uint16_t data_port, uint8_t index)
{
    outb(index_port, index);
    return inb(data_port);
}

static void indexed_write(uint16_t index_port, uint16_t data_port, uint8_t index,
                          uint8_t value)
{
    outb(index_port, index);
    outb(data_port, value);
}

uint8_t vga_seq_read(uint8_t index)
{
    return indexed_read(VGA_SEQ_INDEX, VGA_SEQ_DATA, index);
}

void vga_seq_write(uint8_t index, uint8_t value)
{
    indexed_write(VGA_SEQ_INDEX, VGA_SEQ_DATA, index, value);
}

uint8_t vga_crtc_read(uint8_t index)
{
    return indexed_read(VGA_CRTC_INDEX, VGA_CRTC_DATA, index);
}

void vga_crtc_write(uint8_t index, uint8_t value)
{
    indexed_write(VGA_CRTC_INDEX, VGA_CRTC_DATA, index, value);
}

uint8_t vga_gc_read(uint8_t index)
{
    return indexed_read(VGA_GC_INDEX, VGA_GC_DATA, index);
}

void vga_gc_write(uint8_t index, uint8_t value)
{
    indexed_write(VGA_GC_INDEX, VGA_GC_DATA, index, value);
}

uint8_t vga_ac_read(uint8_t index)
{
    (void)inb(VGA_INSTAT1);                     /* flip-flop to "index" */
    outb(VGA_AC_INDEX, (uint8_t)((index & 0x1F) | VGA_AC_PAS));
    uint8_t v = inb(VGA_AC_READ);
    (void)inb(VGA_INSTAT1);
    return v;
}

void vga_dac_load(unsigned first, unsigned count, const uint8_t *rgb6)
{
    outb(VGA_DAC_WRITE, (uint8_t)first);        /* auto-increments after each B */
    for (unsigned i = 0; i < count * 3; i++)
        outb(VGA_DAC_DATA, rgb6[i] & 0x3F);
}

void vga_dac_read(unsigned index, uint8_t rgb6[3])
{
    outb(VGA_DAC_READ, (uint8_t)index);
    for (unsigned i = 0; i < 3; i++)
        rgb6[i] = inb(VGA_DAC_DATA) & 0x3F;
}

void vga_ega_rgb6(unsigned i, uint8_t rgb6[3])
{
    /* Each channel: 2/3 intensity from the primary bit, 1/3 from the secondary one. */
    rgb6[0] = (uint8_t)(((i >> 2) & 1) * 0x2A + ((i >> 5) & 1) * 0x15);
    rgb6[1] = (uint8_t)(((i >> 1) & 1) * 0x2A + ((i >> 4) & 1) * 0x15);
    rgb6[2] = (uint8_t)((i & 1) * 0x2A + ((i >> 3) & 1) * 0x15);
}

/* Mode 03h: the register values every VGA BIOS programs (IBM VGA Technical Reference,
 * "BIOS video modes"), in the order a BIOS writes them. */
#define MODE3_MISC 0x67         /* colour I/O at 0x3Dx, 28.322 MHz clock, RAM enabled */
static const uint8_t mode3_seq[5] = { 0x03, 0x00, 0x03, 0x00, 0x02 };
static const uint8_t mode3_crtc[25] = {
    0x5F, 0x4F, 0x50, 0x82, 0x55, 0x81, 0xBF, 0x1F, 0x00, 0x4F, 0x0D, 0x0E, 0x00,
    0x00, 0x00, 0x00, 0x9C, 0x8E, 0x8F, 0x28, 0x1F, 0x96, 0xB9, 0xA3, 0xFF,
};
static const uint8_t mode3_gc[9] = { 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x0E, 0x00, 0xFF };
static const uint8_t mode3_ac[21] = {
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x14, 0x07, 0x38, 0x39, 0x3A, 0x3B, 0x3C, 0x3D,
    0x3E, 0x3F, 0x0C, 0x00, 0x0F, 0x08, 0x00,
};

void vga_set_text_mode(void)
{
    vga_seq_write(0, 0x01);                     /* synchronous reset while clocks change */
    outb(VGA_MISC_WRITE, MODE3_MISC);
    for (uint8_t i = 1; i < sizeof(mode3_seq); i++)
        vga_seq_write(i, mode3_seq[i]);
    vga_seq_write(0, mode3_seq[0]);

    /* CR0-CR7 are write-protected while CR11 bit 7 is set; the table sets it again. */
    vga_crtc_write(CRTC_V_SYNC_END, mode3_crtc[CRTC_V_SYNC_END] & 0x7F);
    for (uint8_t i = 0; i < sizeof(mode3_crtc); i++)
        vga_crtc_write(i, mode3_crtc[i]);
    for (uint8_t i = 0; i < sizeof(mode3_gc); i++)
        vga_gc_write(i, mode3_gc[i]);

    (void)inb(VGA_INSTAT1);
    for (uint8_t i = 0; i < sizeof(mode3_ac); i++) {
        outb(VGA_AC_INDEX, i);                  /* PAS clear: display off meanwhile */
        outb(VGA_AC_INDEX, mode3_ac[i]);
    }
    outb(VGA_AC_INDEX, VGA_AC_PAS);

    uint8_t dac[64 * 3];
    for (unsigned i = 0; i < 64; i++)
        vga_ega_rgb6(i, &dac[i * 3]);
    vga_dac_load(0, 64, dac);
}

void vga_cursor_set(unsigned row, unsigned col)
{
    unsigned pos = row * VGA_TEXT_COLS + col;
    vga_crtc_write(CRTC_CURSOR_HI, (uint8_t)(pos >> 8));
    vga_crtc_write(CRTC_CURSOR_LO, (uint8_t)pos);
}

void vga_cursor_shape(unsigned first_line, unsigned last_line)
{
    /* Keep the reserved/skew bits of both registers as they are. */
    vga_crtc_write(CRTC_CURSOR_START,
                   (uint8_t)((vga_crtc_read(CRTC_CURSOR_START) & 0xC0) | (first_line & 0x1F)));
    vga_crtc_write(CRTC_CURSOR_END,
                   (uint8_t)((vga_crtc_read(CRTC_CURSOR_END) & 0xE0) | (last_line & 0x1F)));
}

void vga_cursor_hide(void)
{
    vga_crtc_write(CRTC_CURSOR_START, (uint8_t)(vga_crtc_read(CRTC_CURSOR_START) | 0x20));
}

unsigned vga_cursor_offset(void)
{
    return (unsigned)vga_crtc_read(CRTC_CURSOR_HI) << 8 | vga_crtc_read(CRTC_CURSOR_LO);
}

static void put_text(uint16_t *cells, unsigned row, unsigned col, const char *s, uint8_t attr)
{
    for (uint16_t *c = &cells[row * VGA_TEXT_COLS + col]; *s; s++)
        *c++ = VGA_TEXT_CELL(*s, attr);
}

void vga_text_layout(uint16_t cells[VGA_TEXT_COLS * VGA_TEXT_ROWS])
{
    for (unsigned i = 0; i < VGA_TEXT_COLS * VGA_TEXT_ROWS; i++)
        cells[i] = VGA_TEXT_CELL(' ', 0x07);
    put_text(cells, 1, 2, "pyhvm guest kit vga-text", 0x1F);
    for (unsigned b = 0; b < 8; b++) {
        for (unsigned f = 0; f < 16; f++) {
            uint8_t attr = (uint8_t)(b << 4 | f);
            uint16_t *c = &cells[(4 + b) * VGA_TEXT_COLS + 4 + 4 * f];
            c[0] = VGA_TEXT_CELL(0xDB, attr);
            c[1] = VGA_TEXT_CELL('A' + f, attr);
            c[2] = VGA_TEXT_CELL(' ', attr);
        }
    }
    put_text(cells, 14, 2, "0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ",
             0x0E);
    for (unsigned col = 2; col <= 77; col++)
        cells[16 * VGA_TEXT_COLS + col] = VGA_TEXT_CELL(0xC4, 0x0A);
    put_text(cells, 24, 0, "bottom-left", 0x4F);
    cells[24 * VGA_TEXT_COLS + 79] = VGA_TEXT_CELL('#', 0x2F);
    cells[VGA_LAYOUT_CURSOR_ROW * VGA_TEXT_COLS + VGA_LAYOUT_CURSOR_COL] =
        VGA_TEXT_CELL(' ', 0x1E);
}
