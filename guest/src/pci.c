/* PCI configuration mechanism #1 on bus 0 (see pci.h). */
#include "pci.h"
#include "io.h"

static void select_reg(const struct pci_function *f, uint8_t offset)
{
    outl(PCI_CONFIG_ADDRESS, PCI_CONFIG_ENABLE | (uint32_t)f->bus << 16 |
                             (uint32_t)f->dev << 11 | (uint32_t)f->fn << 8 | (offset & 0xFC));
}

uint32_t pci_read32(const struct pci_function *f, uint8_t offset)
{
    select_reg(f, offset);
    return inl(PCI_CONFIG_DATA);
}

uint16_t pci_read16(const struct pci_function *f, uint8_t offset)
{
    return (uint16_t)(pci_read32(f, offset) >> (8 * (offset & 2)));
}

void pci_write32(const struct pci_function *f, uint8_t offset, uint32_t value)
{
    select_reg(f, offset);
    outl(PCI_CONFIG_DATA, value);
}

/* A word access to its own lanes, so that a write of the command register leaves the
 * status register (write 1 to clear) alone. */
void pci_write16(const struct pci_function *f, uint8_t offset, uint16_t value)
{
    select_reg(f, offset);
    outw((uint16_t)(PCI_CONFIG_DATA + (offset & 2)), value);
}

/* The first function on bus 0, in device/function order, whose vendor/device dword and
 * class/revision dword match `id` and `class_rev` in the bits of their masks; its IDs and
 * class are filled in. Function 0 tells whether a device has more functions. */
static int scan(uint32_t id_want, uint32_t id_mask, uint32_t class_want, uint32_t class_mask,
                struct pci_function *out)
{
    for (uint8_t dev = 0; dev < 32; dev++) {
        uint8_t functions = 1;
        for (uint8_t fn = 0; fn < functions; fn++) {
            struct pci_function f = { 0, dev, fn, 0, 0, 0, 0, 0, 0 };
            uint32_t id = pci_read32(&f, PCI_VENDOR_ID);
            if ((id & 0xFFFF) == PCI_VENDOR_NONE)
                continue;                       /* function 0 absent: no device */
            uint32_t class_rev = pci_read32(&f, PCI_CLASS_REVISION);
            if (fn == 0 && ((pci_read32(&f, PCI_HEADER_TYPE) >> 16) & PCI_HEADER_MULTI_FUNCTION))
                functions = 8;
            if ((id & id_mask) == id_want && (class_rev & class_mask) == class_want) {
                f.vendor = (uint16_t)id;
                f.device = (uint16_t)(id >> 16);
                f.class_code = (uint8_t)(class_rev >> 24);
                f.subclass = (uint8_t)(class_rev >> 16);
                f.prog_if = (uint8_t)(class_rev >> 8);
                f.revision = (uint8_t)class_rev;
                *out = f;
                return 0;
            }
        }
    }
    return -1;
}

int pci_find_class(uint8_t class_code, uint8_t subclass, struct pci_function *out)
{
    return scan(0, 0, (uint32_t)class_code << 24 | (uint32_t)subclass << 16, 0xFFFF0000u, out);
}

int pci_find_device(uint16_t vendor, uint16_t device, struct pci_function *out)
{
    return scan((uint32_t)device << 16 | vendor, 0xFFFFFFFFu, 0, 0, out);
}
