/* The framebuffer test pattern and checksum (see vbe_pattern.h). */
#include "vbe_pattern.h"
#include "kit.h"

enum region { R_BORDER, R_RECT_A, R_RECT_B, R_LINE_C, R_BARS, R_GRADIENT, R_LIGHT, R_DARK };

static const uint8_t bar_rgb[8][3] = {
    { 255, 255, 255 }, { 255, 255, 0 }, { 0, 255, 255 }, { 0, 255, 0 },
    { 255, 0, 255 }, { 255, 0, 0 }, { 0, 0, 255 }, { 0, 0, 0 },
};
/* R_BORDER .. R_LINE_C, then R_LIGHT, R_DARK. */
static const uint8_t solid_rgb[4][3] = {
    { 255, 255, 255 }, { 255, 136, 0 }, { 96, 32, 224 }, { 0, 255, 128 },
};
static const uint8_t check_rgb[2][3] = { { 160, 160, 160 }, { 48, 48, 48 } };

/* Palette entries 0-15 (6-bit): bars, two spare greys, checker, A, B, C, border. */
static const uint8_t pal6_low[16][3] = {
    { 63, 63, 63 }, { 63, 63, 0 }, { 0, 63, 63 }, { 0, 63, 0 },
    { 63, 0, 63 }, { 63, 0, 0 }, { 0, 0, 63 }, { 0, 0, 0 },
    { 21, 21, 21 }, { 42, 42, 42 }, { 40, 40, 40 }, { 12, 12, 12 },
    { 63, 34, 0 }, { 24, 8, 56 }, { 0, 63, 32 }, { 63, 63, 63 },
};

void vbe_pattern_palette6(uint8_t rgb6[256 * 3])
{
    for (unsigned i = 0; i < 256; i++) {
        uint8_t *e = &rgb6[i * 3];
        if (i < VBE_PAL_GRADIENT) {
            e[0] = pal6_low[i][0];
            e[1] = pal6_low[i][1];
            e[2] = pal6_low[i][2];
        } else {
            unsigned j = i - VBE_PAL_GRADIENT;  /* 0 .. 239 */
            e[0] = (uint8_t)(j * 63 / 239);
            e[1] = (uint8_t)(63 - j * 63 / 239);
            e[2] = (uint8_t)((j * 5) & 63);
        }
    }
}

static enum region region_of(unsigned x, unsigned y, unsigned w, unsigned h)
{
    if (x == 0 || y == 0 || x == w - 1 || y == h - 1)
        return R_BORDER;
    if (x >= w / 8 && x < w / 8 + w / 4 && y >= 5 * h / 8 && y < 7 * h / 8)
        return R_RECT_A;
    if (x >= w / 2 && x < w / 2 + w / 6 && y >= 9 * h / 16 && y < 13 * h / 16)
        return R_RECT_B;
    if (x >= 3 * w / 4 && x < 3 * w / 4 + 3 && y >= h / 2 && y + 8 < h)
        return R_LINE_C;
    if (y < h / 4)
        return R_BARS;
    if (y < h / 2)
        return R_GRADIENT;
    return ((x >> 3) ^ (y >> 3)) & 1 ? R_LIGHT : R_DARK;
}

static unsigned pixel_index(enum region r, unsigned x, unsigned w)
{
    switch (r) {
    case R_BORDER: return VBE_PAL_BORDER;
    case R_RECT_A: return VBE_PAL_RECT_A;
    case R_RECT_B: return VBE_PAL_RECT_B;
    case R_LINE_C: return VBE_PAL_LINE_C;
    case R_BARS: return x * 8 / w;
    case R_GRADIENT: return VBE_PAL_GRADIENT + x * 240 / w;
    case R_LIGHT: return VBE_PAL_CHECK_LIGHT;
    default: return VBE_PAL_CHECK_DARK;
    }
}

static void pixel_rgb(enum region r, unsigned x, unsigned y, unsigned w, unsigned h,
                      uint8_t rgb[3])
{
    const uint8_t *c;
    switch (r) {
    case R_BORDER: case R_RECT_A: case R_RECT_B: case R_LINE_C:
        c = solid_rgb[r];
        break;
    case R_BARS:
        c = bar_rgb[x * 8 / w];
        break;
    case R_GRADIENT:
        rgb[0] = (uint8_t)(x * 255 / (w - 1));
        rgb[1] = (uint8_t)(y * 255 / (h - 1));
        rgb[2] = (uint8_t)((x ^ y) & 255);
        return;
    default:
        c = check_rgb[r == R_LIGHT ? 0 : 1];
        break;
    }
    rgb[0] = c[0];
    rgb[1] = c[1];
    rgb[2] = c[2];
}

/* One line, built in RAM, then copied to the LFB with 64-bit stores: fewer, wider writes
 * (each one an exit when the VMM traps the framebuffer). Width * 4 bytes at most. */
static uint8_t line_buf[VBE_MAX_XRES * 4] __attribute__((aligned(8)));

uint64_t vbe_pattern_draw(const struct vbe_mode *m)
{
    unsigned w = m->width, h = m->height;
    uint64_t row_bytes = (uint64_t)w * m->bytes_pp;     /* a multiple of 8: w % 8 == 0 */
    uint64_t sum = 0;
    for (unsigned y = 0; y < h; y++) {
        for (unsigned x = 0; x < w; x++) {
            enum region r = region_of(x, y, w, h);
            if (m->bpp == 8) {
                line_buf[x] = (uint8_t)pixel_index(r, x, w);
                continue;
            }
            uint8_t c[3];
            pixel_rgb(r, x, y, w, h, c);
            uint8_t *p = &line_buf[(uint64_t)x * m->bytes_pp];
            if (m->bpp == 15 || m->bpp == 16) {
                uint16_t v = m->bpp == 16
                    ? (uint16_t)((c[0] >> 3) << 11 | (c[1] >> 2) << 5 | c[2] >> 3)
                    : (uint16_t)((c[0] >> 3) << 10 | (c[1] >> 3) << 5 | c[2] >> 3);
                p[0] = (uint8_t)v;
                p[1] = (uint8_t)(v >> 8);
            } else {
                p[0] = c[2];
                p[1] = c[1];
                p[2] = c[0];
                if (m->bpp == 32)
                    p[3] = 0;
            }
        }
        /* Bytes past the visible width up to the pitch stay as they are (not in the sum
         * unless pitch == row_bytes, which vbe_set_mode gives for these modes). */
        vbe_copy64(m->fb + (uint64_t)y * m->pitch, line_buf, row_bytes);
        sum = vbe_checksum_from(sum, (uint64_t)y * m->pitch / 8, line_buf, row_bytes);
    }
    return sum;
}

uint64_t vbe_checksum_from(uint64_t sum, uint64_t first, const volatile void *p, uint64_t n)
{
    const volatile uint64_t *w = p;
    uint64_t k = 2 * first + 1;
    for (uint64_t i = 0; i < n / 8; i++, k += 2)
        sum += w[i] * k;
    return sum;
}

uint64_t vbe_checksum(const volatile void *p, uint64_t n)
{
    return vbe_checksum_from(0, 0, p, n);
}

void vbe_copy64(volatile void *dst, const volatile void *src, uint64_t n)
{
    volatile uint64_t *d = dst;
    const volatile uint64_t *s = src;
    for (uint64_t i = 0; i < n / 8; i++)
        d[i] = s[i];
}

void vbe_fill64(volatile void *dst, uint8_t b, uint64_t n)
{
    volatile uint64_t *d = dst;
    uint64_t v = b * 0x0101010101010101ULL;
    for (uint64_t i = 0; i < n / 8; i++)
        d[i] = v;
}
