/*
 * The Bochs/QEMU "std VGA" (PCI 1234:1111) and its VBE dispi interface: index at port
 * 0x1CE, data (16-bit) at 0x1CF, or the same registers as 16-bit MMIO words at BAR2 +
 * 0x500 + 2 * index (QEMU's "mmio" BAR). BAR0 is the linear framebuffer. Both BARs are
 * read from configuration space: firmware (SeaBIOS) or the VMM assigns them, usually
 * 0xFD000000 and 0xFEBF0000; the kit's page tables map the whole 4 GiB, user-accessible,
 * so the framebuffer is reachable from CPL 3 without more mapping.
 */
#ifndef GUEST_VBE_H
#define GUEST_VBE_H

#include <stdint.h>

#include "pci.h"

#define VBE_PCI_VENDOR      0x1234
#define VBE_PCI_DEVICE      0x1111

#define VBE_DISPI_IOPORT_INDEX 0x1CE
#define VBE_DISPI_IOPORT_DATA  0x1CF
#define VBE_MMIO_DISPI      0x500   /* BAR2 offset of dispi register 0 */
#define VBE_MMIO_SIZE       0x1000

#define VBE_DISPI_INDEX_ID          0x0
#define VBE_DISPI_INDEX_XRES        0x1
#define VBE_DISPI_INDEX_YRES        0x2
#define VBE_DISPI_INDEX_BPP         0x3
#define VBE_DISPI_INDEX_ENABLE      0x4
#define VBE_DISPI_INDEX_BANK        0x5
#define VBE_DISPI_INDEX_VIRT_WIDTH  0x6
#define VBE_DISPI_INDEX_VIRT_HEIGHT 0x7
#define VBE_DISPI_INDEX_X_OFFSET    0x8
#define VBE_DISPI_INDEX_Y_OFFSET    0x9
#define VBE_DISPI_INDEX_VIDEO_MEMORY_64K 0xA

#define VBE_DISPI_ID0       0xB0C0  /* IDs a driver may write; the device answers its own */
#define VBE_DISPI_ID5       0xB0C5

#define VBE_DISPI_ENABLED     0x01
#define VBE_DISPI_GETCAPS     0x02
#define VBE_DISPI_8BIT_DAC    0x20
#define VBE_DISPI_LFB_ENABLED 0x40
#define VBE_DISPI_NOCLEARMEM  0x80

#define VBE_MAX_XRES        2560    /* what QEMU accepts; the mode must also fit VRAM */
#define VBE_MAX_YRES        1600
#define VBE_MIN_RES         16      /* the kit's own floor (the test pattern needs room) */

enum vbe_io { VBE_IO_PORT, VBE_IO_MMIO };

struct vbe_device {
    struct pci_function pci;
    uint64_t lfb;               /* BAR0, physical == virtual */
    uint64_t mmio;              /* BAR2, 0 when the device has none */
    uint32_t vram_bytes;        /* VIDEO_MEMORY_64K * 64 KiB */
    uint16_t id;
    enum vbe_io io;
};

struct vbe_mode {
    unsigned width, height, bpp;
    unsigned bytes_pp;          /* 1, 2, 3 or 4 */
    unsigned pitch;             /* bytes per line: VIRT_WIDTH * bytes_pp */
    uint8_t *fb;                /* the LFB, where the visible picture starts */
    uint64_t fb_bytes;          /* pitch * height */
};

/* Find the device, read its BARs (enable memory decoding if firmware did not) and its ID;
 * 0 on success, else prints "RESULT <scenario> ok=0 error=..." and returns STATUS_FAIL. */
int vbe_probe(const char *scenario, enum vbe_io io, struct vbe_device *dev);

uint16_t vbe_read(const struct vbe_device *dev, uint8_t index);
void vbe_write(const struct vbe_device *dev, uint8_t index, uint16_t value);

/*
 * Switch to width x height x bpp (8, 15, 16, 24, 32) with the LFB on. Checks that the mode
 * fits video memory before, and that the device kept what was asked after (it clamps
 * silently). 0 on success, else prints a RESULT error line and returns STATUS_FAIL.
 */
int vbe_set_mode(const char *scenario, const struct vbe_device *dev, unsigned width,
                 unsigned height, unsigned bpp, struct vbe_mode *mode);
/* Back to VGA (dispi disabled). */
void vbe_disable(const struct vbe_device *dev);

/* Parse "WxHxBPP" (e.g. 1024x768x32); 0 when well formed and supported: width a multiple
 * of 8 in VBE_MIN_RES..VBE_MAX_XRES, height in VBE_MIN_RES..VBE_MAX_YRES, bpp 8, 15, 16,
 * 24 or 32. */
int vbe_parse_mode(const char *s, unsigned *width, unsigned *height, unsigned *bpp);

/* The mode= argument (default def) parsed, or prints the bad-arg line and returns -1. */
int vbe_arg_mode(const char *scenario, const char *def, unsigned *width, unsigned *height,
                 unsigned *bpp);
/* io=port|mmio (default port), or prints the bad-arg line and returns -1. */
int vbe_arg_io(const char *scenario, enum vbe_io *io);

#endif
