/*
 * disk-identify: find the IDE controller on PCI, enable it, IDENTIFY DEVICE the primary
 * master (IRQ 14 driven), report what it says.
 *   disk-identify
 * RESULT disk-identify ok= sectors= sectors28= sectors48= lba48= dma= mwdma= udma=
 *   flush_ext= model= serial= integrity= pci= id= bm= irqs= ...
 * model and serial with spaces as '_' (fields have no spaces); mwdma/udma are IDENTIFY
 * words 63 and 88 (supported modes in bits 0-7, the selected one in bits 8-15).
 * integrity: word 255 checksum "ok", "bad", or "none" (no A5h signature).
 * ok=1 when the drive has a capacity, IDENTIFY completed through the interrupt and
 * nothing fell back to polling.
 */
#include "ata.h"
#include "disk.h"
#include "kit.h"
#include "scenario.h"

static void field_string(char *s)
{
    for (; *s; s++)
        if (*s == ' ')
            *s = '_';
        else if (*s < 0x21 || *s > 0x7E)
            *s = '?';
}

int scn_disk_identify(const struct multiboot_info *mbi)
{
    int st = disk_setup("disk-identify", mbi, 0);
    if (st != STATUS_OK)
        return st;
    char model[sizeof(ata.model)], serial[sizeof(ata.serial)];
    memcpy(model, ata.model, sizeof(model));
    memcpy(serial, ata.serial, sizeof(serial));
    field_string(model);
    field_string(serial);
    int ok = ata.sectors > 0 && ata_stats.irqs > 0 && !disk_irq_trouble() &&
             ata_stats.errors == 0;
    kprintf("RESULT disk-identify ok=%d sectors=%lu sectors28=%lu sectors48=%lu lba48=%d dma=%d "
            "mwdma=0x%04x udma=0x%04x flush_ext=%d model=%s serial=%s integrity=%s "
            "pci=%02x:%02x.%x id=%04x:%04x bm=0x%x pci_cmd=0x%04x", ok, ata.sectors,
            ata.sectors28, ata.sectors48, ata.lba48, ata.dma, ata.mwdma, ata.udma,
            ata.flush_ext, model[0] ? model : "-", serial[0] ? serial : "-",
            ata.integrity > 0 ? "ok" : ata.integrity < 0 ? "bad" : "none", ata.pci_bus,
            ata.pci_dev, ata.pci_fn, ata.vendor, ata.device, ata.bm, ata.pci_command);
    disk_print_stats();
    kprintf("\n");
    return ok ? STATUS_OK : STATUS_FAIL;
}
