/*
 * VGA registers and the 80x25 colour text mode (IBM VGA Technical Reference; FreeVGA).
 * The registers sit at 0x3C0-0x3DF (colour addressing: misc output bit 0 set); the text
 * buffer is at 0xB8000 in odd/even mode (character in the even byte, attribute in the odd
 * byte); the font lives in plane 2, loaded by the VGA BIOS (or by the VMM when no BIOS ran)
 * and left alone here. Every access is a port or MMIO exit: keep them few at CPL 0.
 */
#ifndef GUEST_VGA_H
#define GUEST_VGA_H

#include <stdint.h>

#define VGA_AC_INDEX    0x3C0   /* attribute controller: index and data through a flip-flop */
#define VGA_AC_READ     0x3C1
#define VGA_MISC_WRITE  0x3C2
#define VGA_SEQ_INDEX   0x3C4
#define VGA_SEQ_DATA    0x3C5
#define VGA_DAC_READ    0x3C7   /* DAC read index */
#define VGA_DAC_WRITE   0x3C8   /* DAC write index */
#define VGA_DAC_DATA    0x3C9   /* three 6-bit values, R G B, per entry */
#define VGA_MISC_READ   0x3CC
#define VGA_GC_INDEX    0x3CE
#define VGA_GC_DATA     0x3CF
#define VGA_CRTC_INDEX  0x3D4
#define VGA_CRTC_DATA   0x3D5
#define VGA_INSTAT1     0x3DA   /* input status 1: reading resets the AC flip-flop */

#define VGA_AC_PAS      0x20    /* AC index bit 5: palette address source = display on */

#define CRTC_CURSOR_START 0x0A  /* bit 5: cursor off; bits 4-0: first scan line */
#define CRTC_CURSOR_END   0x0B
#define CRTC_START_HI     0x0C
#define CRTC_START_LO     0x0D
#define CRTC_CURSOR_HI    0x0E
#define CRTC_CURSOR_LO    0x0F
#define CRTC_V_SYNC_END   0x11  /* bit 7: protect CR0-CR7 */

#define VGA_TEXT_BASE   0xB8000ULL
#define VGA_TEXT_COLS   80
#define VGA_TEXT_ROWS   25
#define VGA_TEXT_CELL(ch, attr) ((uint16_t)((uint8_t)(ch) | (uint16_t)(attr) << 8))

uint8_t vga_seq_read(uint8_t index);
void vga_seq_write(uint8_t index, uint8_t value);
uint8_t vga_crtc_read(uint8_t index);
void vga_crtc_write(uint8_t index, uint8_t value);
uint8_t vga_gc_read(uint8_t index);
void vga_gc_write(uint8_t index, uint8_t value);
uint8_t vga_ac_read(uint8_t index);     /* leaves the display enabled (PAS set) */

/* DAC entries first.. first+count-1 from rgb6 (3 bytes per entry, 6-bit values). */
void vga_dac_load(unsigned first, unsigned count, const uint8_t *rgb6);
/* One DAC entry read back through 0x3C7/0x3C9. */
void vga_dac_read(unsigned index, uint8_t rgb6[3]);

/*
 * Program the standard mode 03h register set (80x25 text, 9-dot cells, 16 scan lines:
 * 720x400) and the EGA-compatible 64-entry DAC palette a VGA BIOS loads with it. The
 * text buffer and the font (plane 2) are not touched.
 */
void vga_set_text_mode(void);

/* The cursor: location as row/column from CRTC start 0, shape as scan lines. */
void vga_cursor_set(unsigned row, unsigned col);
void vga_cursor_shape(unsigned first_line, unsigned last_line);
unsigned vga_cursor_offset(void);       /* CRTC 0x0E/0x0F read back */
void vga_cursor_hide(void);             /* CRTC 0x0A bit 5 */

/*
 * The vga-text screen, 80x25 cells (character | attribute << 8), also built by
 * tests/vga_pattern.py (text_layout): spaces on 0x07 everywhere, then
 *   row 1, col 2: "pyhvm guest kit vga-text" in 0x1F
 *   rows 4-11 (background b = row - 4), col 4 + 4f for f = 0..15: 0xDB, 'A' + f, ' ' in
 *     attribute b << 4 | f (every foreground on every background, no blink bit)
 *   row 14, col 2: "0123456789 abc...xyz ABC...XYZ" in 0x0E
 *   row 16, cols 2-77: 0xC4 (a line-graphics character) in 0x0A
 *   row 24: "bottom-left" at col 0 in 0x4F, '#' at col 79 in 0x2F
 *   row 20, col 40: ' ' in 0x1E, where the cursor goes (VGA_LAYOUT_CURSOR_*)
 */
#define VGA_LAYOUT_CURSOR_ROW 20
#define VGA_LAYOUT_CURSOR_COL 40
void vga_text_layout(uint16_t cells[VGA_TEXT_COLS * VGA_TEXT_ROWS]);

/* DAC entry i of the EGA-compatible palette (bits 0-2: blue, green, red at 2/3; bits 3-5:
 * the same at 1/3), 6-bit R, G, B: what text colours 0-15 select through the AC palette. */
void vga_ega_rgb6(unsigned i, uint8_t rgb6[3]);

#endif
