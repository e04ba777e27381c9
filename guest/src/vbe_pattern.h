/*
 * The kit's framebuffer test pattern and checksum. tests/vga_pattern.py reimplements both
 * exactly (same integer arithmetic); change them together.
 *
 * Pattern for a W x H mode, each pixel by the first rule that holds (integer division):
 *   border   x == 0, y == 0, x == W-1 or y == H-1
 *   rect A   W/8 <= x < W/8 + W/4   and 5H/8 <= y < 7H/8
 *   rect B   W/2 <= x < W/2 + W/6   and 9H/16 <= y < 13H/16
 *   line C   3W/4 <= x < 3W/4 + 3   and H/2 <= y < H - 8
 *   bars     y < H/4: bar k = 8x/W (white yellow cyan green magenta red blue black)
 *   gradient y < H/2: RGB (255x/(W-1), 255y/(H-1), (x ^ y) & 255); 8 bpp: index 16 + 240x/W
 *   checker  otherwise: light if ((x >> 3) ^ (y >> 3)) & 1, else dark
 * 8 bpp uses palette indices (VBE_PAL_*, gradient 16-255) and loads the palette below
 * (6-bit DAC values); 15/16 bpp keep the top 5/6/5 bits; 24 bpp is B, G, R bytes; 32 bpp
 * is 0x00RRGGBB little-endian.
 *
 * Checksum of a byte range (length a multiple of 8): the sum over its little-endian 64-bit
 * words w[i] of w[i] * (2i + 1), modulo 2^64.
 */
#ifndef GUEST_VBE_PATTERN_H
#define GUEST_VBE_PATTERN_H

#include <stdint.h>

#include "vbe.h"

#define VBE_PAL_CHECK_LIGHT 10
#define VBE_PAL_CHECK_DARK  11
#define VBE_PAL_RECT_A      12
#define VBE_PAL_RECT_B      13
#define VBE_PAL_LINE_C      14
#define VBE_PAL_BORDER      15
#define VBE_PAL_GRADIENT    16

/* The 256-entry palette, 6-bit R, G, B per entry. */
void vbe_pattern_palette6(uint8_t rgb6[256 * 3]);

/* Draw the pattern on the whole visible framebuffer. CPL 3 (a loop over every pixel);
 * returns the checksum of what it wrote (computed from its line buffer, not read back). */
uint64_t vbe_pattern_draw(const struct vbe_mode *m);

/* Checksum of bytes [0, n) at p (n a multiple of 8); CPL 3 for large n. */
uint64_t vbe_checksum(const volatile void *p, uint64_t n);
/* The same, continued: word index `first` for the first word at p. */
uint64_t vbe_checksum_from(uint64_t sum, uint64_t first, const volatile void *p, uint64_t n);

/* Copy n bytes (a multiple of 8, 8-aligned) with 64-bit loads and stores, forwards. */
void vbe_copy64(volatile void *dst, const volatile void *src, uint64_t n);
/* Store the byte b n times (n a multiple of 8, 8-aligned) with 64-bit stores. */
void vbe_fill64(volatile void *dst, uint8_t b, uint64_t n);

#endif
