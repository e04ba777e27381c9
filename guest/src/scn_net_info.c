/*
 * net-info: the RTL8139 as the driver finds it.
 *   net-info [txirq=1]
 * PCI function, I/O base, IRQ (from firmware or routed by the driver), software reset,
 * the MAC read from the 93C46 EEPROM (words 7-9, ID word 0 = 0x8129) and from IDR0-5, the
 * chip version from TCR (HWVERID bits 30:26 and 23:22).
 * RESULT net-info ok= mac= eeprom_mac= eeprom_id= tcr= tcr_version= chip= pci= io= irq=
 *   irq_source=firmware|routed
 * ok=1 when both MACs agree, the EEPROM ID is 0x8129 and the MAC is not zero/broadcast.
 */
#include "kit.h"
#include "net.h"
#include "rtl8139.h"
#include "scenario.h"

int scn_net_info(const struct multiboot_info *mbi)
{
    int st = net_setup("net-info", mbi, 0, 0);
    if (st != STATUS_OK)
        return st;
    int same = memcmp(rtl.mac, rtl.mac_eeprom, 6) == 0;
    int zero = 1, bcast = 1;
    for (int i = 0; i < 6; i++) {
        zero &= rtl.mac[i] == 0;
        bcast &= rtl.mac[i] == 0xFF;
    }
    int ok = same && !zero && !bcast && rtl.eeprom_id == RTL_EEPROM_ID;
    char mac[18], mac_ee[18];
    net_format_mac(mac, rtl.mac);
    net_format_mac(mac_ee, rtl.mac_eeprom);
    kprintf("RESULT net-info ok=%d mac=%s eeprom_mac=%s eeprom_id=0x%04x tcr=0x%08x "
            "tcr_version=0x%08x chip=%s pci=%02x:%02x.%x io=0x%x irq=%u irq_source=%s\n", ok,
            mac, mac_ee, rtl.eeprom_id, rtl.tcr, rtl.tcr & RTL_TCR_VERSION_MASK,
            rtl_chip_name(rtl.tcr), rtl.pci_bus, rtl.pci_dev, rtl.pci_fn, rtl.io, rtl.irq,
            rtl.routed ? "routed" : "firmware");
    return ok ? STATUS_OK : STATUS_FAIL;
}
