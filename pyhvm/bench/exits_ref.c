/*
 * Reference exit loop for `pyhvm bench exits`: the floor a userspace VMM can reach on this
 * host. It runs the guest kit from a RAM image that pyhvm's own loader prepared, with the
 * same CPUID and entry state as pyhvm, and does as little as possible per exit: count it.
 *
 * usage: exits_ref RAM_IMAGE RAM_BYTES EIP EAX EBX LIMITED_HOST
 *   RAM_IMAGE  low guest RAM from guest-physical 0 (length a multiple of 4 KiB)
 *   RAM_BYTES  guest RAM size; the part past the image is zero
 *   LIMITED_HOST  1 on a host whose KVM emulator lacks cmpxchg16b/xsave (pyhvm hides them)
 * COM1 THR bytes are kept in memory and written to stdout when the guest ends, so the
 * measured loop pays no write(2). Exit status: (V << 1) | 1 for a debug-exit write of V
 * (as QEMU and pyhvm), 2 when the guest dies, 3 on a host error. Counts go to stderr.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define DEBUG_EXIT_PORT 0xF4
#define COM1_THR 0x3F8
#define COM1_LSR 0x3FD
#define LSR_TX_IDLE 0x60          /* THR empty, transmitter empty */
#define TSS_ADDR 0xFFFBD000ULL    /* the addresses pyhvm gives KVM on VMX hosts */
#define IDENTITY_MAP_ADDR 0xFFFBC000ULL
#define HV_BASE_LEAF 0x40000000u
#define HV_TSC_LEAF 0x40000010u
#define MAX_CPUID 512

static void die(const char *what)
{
    fprintf(stderr, "exits_ref: %s: %s\n", what, strerror(errno));
    exit(3);
}

static uint8_t *out_buf;
static size_t out_len, out_cap;

static void keep_byte(uint8_t byte)
{
    if (out_len == out_cap) {
        out_cap = out_cap ? out_cap * 2 : 65536;
        out_buf = realloc(out_buf, out_cap);
        if (!out_buf)
            die("realloc");
    }
    out_buf[out_len++] = byte;
}

/* KVM's supported CPUID, adjusted as pyhvm.machine.cpu.adjust_cpuid does for vCPU 0. */
static void set_cpuid(int kvm, int vcpu, int limited)
{
    size_t bytes = sizeof(struct kvm_cpuid2) + (MAX_CPUID + 1) * sizeof(struct kvm_cpuid_entry2);
    struct kvm_cpuid2 *cpuid = calloc(1, bytes);
    if (!cpuid)
        die("calloc");
    cpuid->nent = MAX_CPUID;
    if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, cpuid) < 0)
        die("KVM_GET_SUPPORTED_CPUID");
    int tsc_khz = ioctl(vcpu, KVM_GET_TSC_KHZ, 0);
    int hv_seen = 0;
    uint32_t kept = 0;
    for (uint32_t i = 0; i < cpuid->nent; i++) {
        struct kvm_cpuid_entry2 e = cpuid->entries[i];
        if (e.function == 1) {
            e.ecx |= 1u << 31;                              /* hypervisor present */
            e.ebx = (e.ebx & 0xFFFF) | (1u << 16);          /* APIC ID 0, one CPU */
            if (limited)
                e.ecx &= ~((1u << 13) | (1u << 26) | (1u << 27) | (1u << 28));
        } else if (e.function == 7 && e.index == 0 && limited) {
            e.ebx &= ~((1u << 5) | (1u << 16));
        } else if (e.function == 0xB) {
            if (e.index == 0 || e.index == 1)
                e.ebx = 1;
            e.edx = 0;
        } else if (e.function == HV_BASE_LEAF) {
            if (e.eax < HV_TSC_LEAF)
                e.eax = HV_TSC_LEAF;
            hv_seen = 1;
        } else if (e.function == HV_TSC_LEAF) {
            continue;
        }
        cpuid->entries[kept++] = e;
    }
    if (hv_seen && tsc_khz > 0) {
        struct kvm_cpuid_entry2 leaf = { .function = HV_TSC_LEAF, .eax = (uint32_t)tsc_khz };
        cpuid->entries[kept++] = leaf;
    }
    cpuid->nent = kept;
    if (ioctl(vcpu, KVM_SET_CPUID2, cpuid) < 0)
        die("KVM_SET_CPUID2");
    free(cpuid);
}

static struct kvm_segment flat_segment(uint16_t selector, int code)
{
    struct kvm_segment seg = {
        .base = 0, .limit = 0xFFFFFFFF, .selector = selector, .type = code ? 0xB : 0x3,
        .present = 1, .dpl = 0, .db = 1, .s = 1, .l = 0, .g = 1,
    };
    return seg;
}

/* Multiboot's 32-bit flat protected mode, as pyhvm.machine.cpu.set_protected_mode_entry. */
static void set_entry(int vcpu, uint64_t eip, uint64_t eax, uint64_t ebx)
{
    struct kvm_sregs sregs;
    if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0)
        die("KVM_GET_SREGS");
    sregs.cs = flat_segment(0x08, 1);
    sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = flat_segment(0x10, 0);
    struct kvm_segment tr = { .limit = 0x67, .type = 0xB, .present = 1 };
    sregs.tr = tr;
    sregs.cr0 = 0x11;                                       /* PE | ET */
    sregs.cr4 = 0;
    sregs.efer = 0;
    if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0)
        die("KVM_SET_SREGS");
    struct kvm_regs regs = { .rip = eip, .rax = eax, .rbx = ebx, .rflags = 2 };
    if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0)
        die("KVM_SET_REGS");
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: %s RAM_IMAGE RAM_BYTES EIP EAX EBX LIMITED_HOST\n", argv[0]);
        return 3;
    }
    uint64_t ram_bytes = strtoull(argv[2], NULL, 0);
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0)
        die("/dev/kvm");
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0)
        die("KVM_CREATE_VM");
    if (ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_SET_TSS_ADDR) > 0 &&
        ioctl(vm, KVM_SET_TSS_ADDR, TSS_ADDR) < 0)
        die("KVM_SET_TSS_ADDR");
    uint64_t identity = IDENTITY_MAP_ADDR;
    if (ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_SET_IDENTITY_MAP_ADDR) > 0 &&
        ioctl(vm, KVM_SET_IDENTITY_MAP_ADDR, &identity) < 0)
        die("KVM_SET_IDENTITY_MAP_ADDR");

    /* Anonymous RAM, with the prepared image mapped privately over its start. */
    uint8_t *ram = mmap(NULL, ram_bytes, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (ram == MAP_FAILED)
        die("mmap RAM");
    int image = open(argv[1], O_RDONLY | O_CLOEXEC);
    if (image < 0)
        die(argv[1]);
    off_t image_bytes = lseek(image, 0, SEEK_END);
    if (image_bytes <= 0 || (uint64_t)image_bytes > ram_bytes || image_bytes % 4096) {
        fprintf(stderr, "exits_ref: %s: bad image size\n", argv[1]);
        return 3;
    }
    if (mmap(ram, image_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, image, 0)
        == MAP_FAILED)
        die("mmap image");
    close(image);
    struct kvm_userspace_memory_region slot = {
        .slot = 0, .guest_phys_addr = 0, .memory_size = ram_bytes,
        .userspace_addr = (uint64_t)(uintptr_t)ram,
    };
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &slot) < 0)
        die("KVM_SET_USER_MEMORY_REGION");

    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (vcpu < 0)
        die("KVM_CREATE_VCPU");
    int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (run_size < 0)
        die("KVM_GET_VCPU_MMAP_SIZE");
    struct kvm_run *run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED)
        die("mmap kvm_run");
    set_cpuid(kvm, vcpu, atoi(argv[6]));
    set_entry(vcpu, strtoull(argv[3], NULL, 0), strtoull(argv[4], NULL, 0),
              strtoull(argv[5], NULL, 0));

    uint64_t exits = 0, pio_out = 0, pio_in = 0, mmio_write = 0, mmio_read = 0;
    int status = -1;
    while (status < 0) {
        if (ioctl(vcpu, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            die("KVM_RUN");
        }
        exits++;
        if (run->exit_reason == KVM_EXIT_IO) {
            uint8_t *data = (uint8_t *)run + run->io.data_offset;
            uint32_t size = run->io.size;
            for (uint32_t i = 0; i < run->io.count; i++, data += size) {
                if (run->io.direction == KVM_EXIT_IO_OUT) {
                    pio_out++;
                    if (run->io.port == DEBUG_EXIT_PORT) {
                        uint32_t value = 0;
                        memcpy(&value, data, size < 4 ? size : 4);
                        status = (int)(((value << 1) | 1) & 0xFF);
                        break;
                    }
                    if (run->io.port == COM1_THR)
                        keep_byte(data[0]);
                } else {
                    pio_in++;
                    memset(data, 0xFF, size);
                    if (run->io.port == COM1_LSR)
                        data[0] = LSR_TX_IDLE;
                }
            }
        } else if (run->exit_reason == KVM_EXIT_MMIO) {
            if (run->mmio.is_write)
                mmio_write++;
            else {
                mmio_read++;
                memset(run->mmio.data, 0xFF, sizeof(run->mmio.data));
            }
        } else if (run->exit_reason == KVM_EXIT_INTR) {
            continue;
        } else {
            fprintf(stderr, "exits_ref: guest stopped: exit reason %u\n", run->exit_reason);
            status = 2;
        }
    }
    if (out_len && fwrite(out_buf, 1, out_len, stdout) != out_len)
        die("stdout");
    fflush(stdout);
    fprintf(stderr, "exits_ref: exits=%llu pio_out=%llu pio_in=%llu mmio_write=%llu "
            "mmio_read=%llu\n", (unsigned long long)exits, (unsigned long long)pio_out,
            (unsigned long long)pio_in, (unsigned long long)mmio_write,
            (unsigned long long)mmio_read);
    return status;
}
