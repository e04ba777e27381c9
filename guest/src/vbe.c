/* The std VGA's PCI function and the Bochs VBE dispi interface (see vbe.h). */
#include "vbe.h"
#include "cmdline.h"
#include "io.h"
#include "kit.h"

#define PCI_BAR1        0x14
#define PCI_BAR2        0x18
#define PCI_BAR_MEM_MASK 0xFFFFFFF0u
#define PCI_BAR_MEM_64  0x4             /* type bits 2:1 = 10b */
#define FOUR_GIB        (1ULL << 32)

static uint64_t read_mem_bar(const struct pci_function *f, uint8_t offset)
{
    uint32_t lo = pci_read32(f, offset);
    if (lo & PCI_BAR_IO)
        return 0;                               /* not a memory BAR */
    uint64_t base = lo & PCI_BAR_MEM_MASK;
    if ((lo & 0x6) == PCI_BAR_MEM_64)
        base |= (uint64_t)pci_read32(f, (uint8_t)(offset + 4)) << 32;
    return base;
}

uint16_t vbe_read(const struct vbe_device *dev, uint8_t index)
{
    if (dev->io == VBE_IO_MMIO)
        return *(volatile uint16_t *)(uintptr_t)(dev->mmio + VBE_MMIO_DISPI + 2u * index);
    outw(VBE_DISPI_IOPORT_INDEX, index);
    return inw(VBE_DISPI_IOPORT_DATA);
}

void vbe_write(const struct vbe_device *dev, uint8_t index, uint16_t value)
{
    if (dev->io == VBE_IO_MMIO) {
        *(volatile uint16_t *)(uintptr_t)(dev->mmio + VBE_MMIO_DISPI + 2u * index) = value;
        return;
    }
    outw(VBE_DISPI_IOPORT_INDEX, index);
    outw(VBE_DISPI_IOPORT_DATA, value);
}

int vbe_probe(const char *scenario, enum vbe_io io, struct vbe_device *dev)
{
    *dev = (struct vbe_device){ .io = io };
    if (pci_find_device(VBE_PCI_VENDOR, VBE_PCI_DEVICE, &dev->pci)) {
        kprintf("RESULT %s ok=0 error=no-device id=%04x:%04x\n", scenario, VBE_PCI_VENDOR,
                VBE_PCI_DEVICE);
        return STATUS_FAIL;
    }
    uint16_t cmd = pci_read16(&dev->pci, PCI_COMMAND);
    uint16_t want = PCI_COMMAND_IO | PCI_COMMAND_MEMORY;
    if ((cmd & want) != want)
        pci_write16(&dev->pci, PCI_COMMAND, (uint16_t)(cmd | want));
    dev->lfb = read_mem_bar(&dev->pci, PCI_BAR0);
    dev->mmio = read_mem_bar(&dev->pci, PCI_BAR2);

    /* Announce the newest interface version we know, then read what the device has. */
    dev->io = VBE_IO_PORT;                      /* the ID check always uses the ports */
    vbe_write(dev, VBE_DISPI_INDEX_ID, VBE_DISPI_ID5);
    dev->id = vbe_read(dev, VBE_DISPI_INDEX_ID);
    dev->vram_bytes = (uint32_t)vbe_read(dev, VBE_DISPI_INDEX_VIDEO_MEMORY_64K) << 16;
    dev->io = io;
    kprintf("vbe: pci=%02x:%02x.%x cmd=0x%04x lfb=0x%lx mmio=0x%lx id=0x%04x vram_kb=%u "
            "io=%s\n", dev->pci.bus, dev->pci.dev, dev->pci.fn, cmd, dev->lfb, dev->mmio,
            dev->id, dev->vram_bytes >> 10, io == VBE_IO_MMIO ? "mmio" : "port");

    const char *why = NULL;
    if (dev->id < VBE_DISPI_ID0 || dev->id > VBE_DISPI_ID0 + 0xF)
        why = "no-dispi";
    else if (dev->vram_bytes == 0)
        why = "no-vram-size";
    else if (dev->lfb == 0)
        why = "lfb-unassigned";
    else if (dev->lfb >= FOUR_GIB || FOUR_GIB - dev->lfb < dev->vram_bytes)
        why = "lfb-not-mapped";                 /* the kit maps the first 4 GiB only */
    else if (io == VBE_IO_MMIO && (dev->mmio == 0 || dev->mmio >= FOUR_GIB - VBE_MMIO_SIZE))
        why = "mmio-unassigned";
    if (why) {
        kprintf("RESULT %s ok=0 error=%s lfb=0x%lx mmio=0x%lx id=0x%04x\n", scenario, why,
                dev->lfb, dev->mmio, dev->id);
        return STATUS_FAIL;
    }
    return STATUS_OK;
}

static unsigned bytes_per_pixel(unsigned bpp)
{
    return bpp == 15 ? 2 : bpp / 8;
}

int vbe_set_mode(const char *scenario, const struct vbe_device *dev, unsigned width,
                 unsigned height, unsigned bpp, struct vbe_mode *mode)
{
    unsigned bpx = bytes_per_pixel(bpp);
    uint64_t need = (uint64_t)width * height * bpx;
    if (need > dev->vram_bytes) {
        kprintf("RESULT %s ok=0 error=mode-too-big mode=%ux%ux%u need_kb=%lu vram_kb=%u\n",
                scenario, width, height, bpp, need >> 10, dev->vram_bytes >> 10);
        return STATUS_FAIL;
    }
    /* The order Linux's bochs driver uses: off, geometry, on with the LFB. */
    vbe_write(dev, VBE_DISPI_INDEX_ENABLE, 0);
    vbe_write(dev, VBE_DISPI_INDEX_BPP, (uint16_t)bpp);
    vbe_write(dev, VBE_DISPI_INDEX_XRES, (uint16_t)width);
    vbe_write(dev, VBE_DISPI_INDEX_YRES, (uint16_t)height);
    vbe_write(dev, VBE_DISPI_INDEX_BANK, 0);
    vbe_write(dev, VBE_DISPI_INDEX_VIRT_WIDTH, (uint16_t)width);
    vbe_write(dev, VBE_DISPI_INDEX_VIRT_HEIGHT, (uint16_t)height);
    vbe_write(dev, VBE_DISPI_INDEX_X_OFFSET, 0);
    vbe_write(dev, VBE_DISPI_INDEX_Y_OFFSET, 0);
    vbe_write(dev, VBE_DISPI_INDEX_ENABLE, VBE_DISPI_ENABLED | VBE_DISPI_LFB_ENABLED);

    unsigned got_w = vbe_read(dev, VBE_DISPI_INDEX_XRES);
    unsigned got_h = vbe_read(dev, VBE_DISPI_INDEX_YRES);
    unsigned got_bpp = vbe_read(dev, VBE_DISPI_INDEX_BPP);
    unsigned virt_w = vbe_read(dev, VBE_DISPI_INDEX_VIRT_WIDTH);
    unsigned enable = vbe_read(dev, VBE_DISPI_INDEX_ENABLE);
    unsigned x_off = vbe_read(dev, VBE_DISPI_INDEX_X_OFFSET);
    unsigned y_off = vbe_read(dev, VBE_DISPI_INDEX_Y_OFFSET);
    if (got_w != width || got_h != height || got_bpp != bpp || virt_w < width ||
        !(enable & VBE_DISPI_ENABLED) || x_off || y_off ||
        (uint64_t)virt_w * bpx * height > dev->vram_bytes) {
        kprintf("RESULT %s ok=0 error=mode-refused mode=%ux%ux%u got=%ux%ux%u virt_width=%u "
                "enable=0x%x offset=%u,%u\n", scenario, width, height, bpp, got_w, got_h,
                got_bpp, virt_w, enable, x_off, y_off);
        return STATUS_FAIL;
    }
    *mode = (struct vbe_mode){
        .width = width, .height = height, .bpp = bpp, .bytes_pp = bpx,
        .pitch = virt_w * bpx, .fb = (uint8_t *)(uintptr_t)dev->lfb,
    };
    mode->fb_bytes = (uint64_t)mode->pitch * height;
    return STATUS_OK;
}

void vbe_disable(const struct vbe_device *dev)
{
    vbe_write(dev, VBE_DISPI_INDEX_ENABLE, 0);
}

static int parse_uint(const char **s, unsigned *out)
{
    unsigned v = 0;
    const char *p = *s;
    if (*p < '0' || *p > '9')
        return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        v = v * 10 + (unsigned)(*p - '0');
        if (v > 100000)
            return -1;
    }
    *s = p;
    *out = v;
    return 0;
}

int vbe_parse_mode(const char *s, unsigned *width, unsigned *height, unsigned *bpp)
{
    unsigned w, h, b;
    if (parse_uint(&s, &w) || *s++ != 'x' || parse_uint(&s, &h) || *s++ != 'x' ||
        parse_uint(&s, &b) || *s)
        return -1;
    if (w < VBE_MIN_RES || w % 8 || w > VBE_MAX_XRES || h < VBE_MIN_RES || h > VBE_MAX_YRES)
        return -1;
    if (b != 8 && b != 15 && b != 16 && b != 24 && b != 32)
        return -1;
    *width = w;
    *height = h;
    *bpp = b;
    return 0;
}

int vbe_arg_mode(const char *scenario, const char *def, unsigned *width, unsigned *height,
                 unsigned *bpp)
{
    const char *s = cmdline_get("mode");
    if (vbe_parse_mode(s ? s : def, width, height, bpp) == 0)
        return 0;
    kprintf("RESULT error bad-arg scenario=%s key=mode value=%s\n", scenario, s);
    return -1;
}

int vbe_arg_io(const char *scenario, enum vbe_io *io)
{
    const char *s = cmdline_get("io");
    if (!s || strcmp(s, "port") == 0) {
        *io = VBE_IO_PORT;
        return 0;
    }
    if (strcmp(s, "mmio") == 0) {
        *io = VBE_IO_MMIO;
        return 0;
    }
    kprintf("RESULT error bad-arg scenario=%s key=io value=%s\n", scenario, s);
    return -1;
}
