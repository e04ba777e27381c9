/*
 * PCI configuration space through mechanism #1 (ports 0xCF8/0xCFC, PCI Local Bus
 * Specification 2.1, 3.7.4.1), bus 0 only: that is where the PC chipset sits.
 * Every access is two port exits (address, then data): the scan reads one dword per slot.
 */
#ifndef GUEST_PCI_H
#define GUEST_PCI_H

#include <stdint.h>

#define PCI_CONFIG_ADDRESS 0xCF8
#define PCI_CONFIG_DATA    0xCFC
#define PCI_CONFIG_ENABLE  0x80000000u

#define PCI_VENDOR_ID      0x00         /* word; device ID at 0x02 */
#define PCI_COMMAND        0x04         /* word; status at 0x06 (write 1 to clear) */
#define PCI_CLASS_REVISION 0x08         /* dword: class, subclass, prog-if, revision */
#define PCI_HEADER_TYPE    0x0E
#define PCI_BAR0           0x10

#define PCI_COMMAND_IO     0x0001
#define PCI_COMMAND_MEMORY 0x0002
#define PCI_COMMAND_MASTER 0x0004

#define PCI_HEADER_MULTI_FUNCTION 0x80
#define PCI_BAR_IO         0x1
#define PCI_BAR_IO_MASK    0xFFFFFFFCu
#define PCI_VENDOR_NONE    0xFFFF

struct pci_function {
    uint8_t bus, dev, fn;
    uint16_t vendor, device;
    uint8_t class_code, subclass, prog_if, revision;
};

uint32_t pci_read32(const struct pci_function *f, uint8_t offset);     /* offset & ~3 */
uint16_t pci_read16(const struct pci_function *f, uint8_t offset);     /* from the dword */
void pci_write32(const struct pci_function *f, uint8_t offset, uint32_t value);
void pci_write16(const struct pci_function *f, uint8_t offset, uint16_t value);

/* First function on bus 0 with this class and subclass (e.g. 0x01, 0x01: IDE), in
 * device/function order; 0 when found, -1 when none. */
int pci_find_class(uint8_t class_code, uint8_t subclass, struct pci_function *out);

/* First function on bus 0 with this vendor and device ID, in the same order. */
int pci_find_device(uint16_t vendor, uint16_t device, struct pci_function *out);

#endif
