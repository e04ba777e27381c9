"""The PC/AT real-time clock and CMOS RAM: a Motorola MC146818A behind ports 0x70 and 0x71.

Port 0x70 (offset 0) selects a CMOS byte with bits 0-6 and latches the chipset's NMI mask in
bit 7; port 0x71 (offset 1) reads or writes the selected byte. Bytes 0x00-0x09 hold the time,
date and alarm, 0x0A-0x0D the control registers A-D, 0x32 the century (kept by the PC BIOS, not
the chip; here it counts with the year), and everything else is battery-backed RAM.

Time is derived, never ticked: guest-visible time is `base_time` plus the Clock's elapsed time
plus whatever offset the guest set. Flags (PF, AF, UF) are computed from elapsed time when
register C is read or a control register changes, so they are right whether or not a timer
ran. Timers are armed only where an interrupt can result: the periodic rate while PIE is set,
the next second boundary while UIE is set, the next alarm match while only AIE is set.

What the guest can make it do: read and set the time, toggle IRQ 8 through register B's enable
bits, and ask for at most 8192 timer callbacks a second (RS = 3). What it cannot: make it
schedule a callback at or before the current time, grow any buffer, or reach past 128 bytes.

Not emulated: daylight-saving switching (DSE is stored only), the SQW pin (SQWE is stored
only), time bases other than 32.768 kHz (every DV value but 010 holds the divider in reset),
the chipset's second 128-byte bank at ports 0x72/0x73, and the update cycle's duration (the
update is instant at the second boundary; UIP is high during the 244 us before it). Port 0x70
is write-only on a PC and reads as 0xFF. Time fields the guest writes out of range are clamped
into range when the clock resumes (the chip's result would be undefined, datasheet "Time,
Calendar and Alarm Locations"); the day of week is a free-running counter as on the chip.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pyhvm.devices.base import Clock, IrqLine, TimerHandle

# Port offsets from 0x70.
INDEX_OFFSET = 0  # port 0x70: CMOS index, write-only
DATA_OFFSET = 1  # port 0x71: the selected byte
PORT_COUNT = 2
INDEX_MASK = 0x7F  # bits 0-6 select one of 128 bytes
INDEX_NMI_DISABLE = 0x80  # bit 7 masks NMI in the chipset, not in the RTC
UNMAPPED_BYTE = 0xFF  # the index port reads back nothing on a PC
CMOS_SIZE = 128

# Time, calendar and alarm bytes (MC146818A Table 2, "Address Map").
REG_SECONDS = 0x00
REG_SECONDS_ALARM = 0x01
REG_MINUTES = 0x02
REG_MINUTES_ALARM = 0x03
REG_HOURS = 0x04
REG_HOURS_ALARM = 0x05
REG_DAY_OF_WEEK = 0x06  # 1-7, Sunday = 1
REG_DAY_OF_MONTH = 0x07
REG_MONTH = 0x08
REG_YEAR = 0x09  # two digits
REG_A = 0x0A
REG_B = 0x0B
REG_C = 0x0C
REG_D = 0x0D
REG_CENTURY = 0x32  # IBM PC/AT BIOS convention
TIME_REGISTERS = (REG_SECONDS, REG_MINUTES, REG_HOURS, REG_DAY_OF_WEEK, REG_DAY_OF_MONTH,
                  REG_MONTH, REG_YEAR, REG_CENTURY)
HOUR_PM = 0x80  # 12-hour mode: bit 7 of the hours byte (and hours alarm) is PM
ALARM_DONT_CARE = 0xC0  # an alarm byte of 11xxxxxx matches every value

# Register A (section "Register A").
REG_A_UIP = 0x80  # update in progress: read-only, high 244 us before each update
REG_A_DV_MASK = 0x70  # divider control DV2-DV0
REG_A_DV_NORMAL = 0x20  # 010: 32.768 kHz time base, divider running
REG_A_RS_MASK = 0x0F  # rate select for the periodic interrupt / square wave
REG_A_WRITABLE = 0x7F

# Register B (section "Register B").
REG_B_SET = 0x80  # inhibit updates so the guest can write the time; clears UIE
REG_B_PIE = 0x40  # periodic interrupt enable
REG_B_AIE = 0x20  # alarm interrupt enable
REG_B_UIE = 0x10  # update-ended interrupt enable
REG_B_SQWE = 0x08  # square-wave output enable (stored only: no SQW pin here)
REG_B_DM = 0x04  # data mode: 1 = binary, 0 = BCD
REG_B_24H = 0x02  # 1 = 24-hour mode, 0 = 12-hour with the PM bit
REG_B_DSE = 0x01  # daylight-saving enable (stored only, never applied)
REG_B_CLEARED_BY_RESET = REG_B_PIE | REG_B_AIE | REG_B_UIE | REG_B_SQWE  # RESET pin

# Register C (section "Register C"): read-only, cleared by a read and by RESET.
REG_C_IRQF = 0x80  # = PF.PIE + AF.AIE + UF.UIE; drives IRQ
REG_C_PF = 0x40  # periodic edge since the last read
REG_C_AF = 0x20  # alarm matched since the last read
REG_C_UF = 0x10  # an update cycle ended since the last read
REG_C_FLAGS = REG_C_PF | REG_C_AF | REG_C_UF

REG_D_VRT = 0x80  # valid RAM and time: the battery is always good here

# Time base (section "Divider Stages", "Periodic Interrupt Selection", Table 3).
SECOND_NS = 1_000_000_000
DIVIDER_HZ = 32_768  # the PC's crystal
UIP_WINDOW_NS = 244_000  # UIP rises this long before an update (32.768 kHz time base)
DIVIDER_RESTART_NS = 500_000_000  # leaving divider reset: the first update is 500 ms later
LOW_RS_PERIOD_TICKS = {1: 128, 2: 256}  # RS 1 and 2 give 256 Hz and 128 Hz, not 16/8 kHz

# Reset values: what a PC BIOS leaves (Table 3 row RS=0110, BCD, 24-hour).
DEFAULT_INDEX = 0x00
DEFAULT_REG_A = REG_A_DV_NORMAL | 0x06  # 0x26: divider running, 1024 Hz
DEFAULT_REG_B = REG_B_24H  # 0x02
DEFAULT_REG_C = 0x00
DEFAULT_REG_D = REG_D_VRT
DEFAULT_ALARM = 0x00

# The PC/AT CMOS layout a BIOS leaves, beyond the clock (IBM AT Technical Reference).
CMOS_FLOPPY_TYPES = 0x10  # drive A in bits 7-4, drive B in bits 3-0
FLOPPY_TYPE_1440K = 0x4  # 3.5" 1.44 MB
CMOS_DISK_TYPES = 0x12  # hard disks 0 and 1; 0 = none (drives are found by the BIOS)
CMOS_EQUIPMENT = 0x14  # bit 0 floppy present, bit 1 FPU, bits 5-4 display (00 = EGA/VGA)
EQUIPMENT_FLOPPY = 0x01
EQUIPMENT_FPU = 0x02
CMOS_BASE_MEMORY = 0x15  # KB below 1 MiB, little-endian word
CMOS_EXTENDED_MEMORY = 0x17  # KB above 1 MiB, little-endian word, capped
CMOS_CHECKSUM = 0x2E  # big-endian sum of 0x10-0x2D
CHECKSUM_FIRST, CHECKSUM_LAST = 0x10, 0x2D
CMOS_EXTENDED_MEMORY_COPY = 0x30  # same value as 0x17 (POST's own count)
CMOS_MEMORY_ABOVE_16M = 0x34  # 64 KiB units from 16 MiB to the PCI hole (SeaBIOS)
CMOS_MEMORY_ABOVE_4G = 0x5B  # 64 KiB units above 4 GiB, 3 bytes (QEMU/SeaBIOS)
BASE_MEMORY_KB = 640
PCI_HOLE_START = 0xC000_0000  # RAM above 3 GiB is moved above 4 GiB
DEFAULT_CENTURY_BCD = 0x20

_DAY_SECONDS = 86_400
_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


@dataclass(frozen=True)
class RtcState:
    """A snapshot, independent of the Clock's origin; the defaults are a fresh chip at 1970."""

    cmos: bytes = bytes(CMOS_SIZE)  # clock bytes hold the time as read at the snapshot
    index: int = DEFAULT_INDEX
    nmi_disabled: bool = False
    seconds: int = 0  # RTC time as civil seconds since 1970-01-01, used while running
    subsecond_ns: int = 0  # divider phase: how far into the current second
    weekday_adjust: int = 0  # day-of-week counter minus the calendar's weekday, mod 7

    def validate(self) -> None:
        """Refuse a state the chip could never be in (a corrupt or hostile snapshot)."""
        if not isinstance(self.cmos, bytes) or len(self.cmos) != CMOS_SIZE:
            raise ValueError(f"cmos must be {CMOS_SIZE} bytes")
        _check_range("index", self.index, INDEX_MASK)
        _check_range("subsecond_ns", self.subsecond_ns, SECOND_NS - 1)
        _check_range("weekday_adjust", self.weekday_adjust, 6)
        if not isinstance(self.seconds, int) or not -(2**40) <= self.seconds <= 2**40:
            raise ValueError(f"seconds = {self.seconds!r} is out of range")
        if self.cmos[REG_A] & REG_A_UIP or self.cmos[REG_C] & ~REG_C_FLAGS & 0xFF:
            raise ValueError("UIP and IRQF are derived and must be clear in a snapshot")
        if self.cmos[REG_D] != REG_D_VRT:
            raise ValueError("register D must read VRT only")


def _check_range(name: str, value: int, maximum: int) -> None:
    if not isinstance(value, int) or not 0 <= value <= maximum:
        raise ValueError(f"{name} = {value!r} is outside 0..{maximum:#x}")


def _check_size(size: int) -> None:
    if size not in (1, 2, 4, 8):
        raise ValueError(f"access size must be 1, 2, 4 or 8 bytes, got {size}")


# -- calendar arithmetic on civil seconds (proleptic Gregorian, any year) ----------------------

def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _days_in_month(year: int, month: int) -> int:
    return 29 if month == 2 and _is_leap(year) else _DAYS_IN_MONTH[month - 1]


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01, counting years from March so the leap day falls last."""
    y = year - (month <= 2)
    era, yoe = divmod(y, 400)
    doy = (153 * (month - 3 if month > 2 else month + 9) + 2) // 5 + day - 1
    return era * 146_097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719_468


def _civil_from_days(days: int) -> tuple[int, int, int]:
    era, doe = divmod(days + 719_468, 146_097)
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return era * 400 + yoe + (month <= 2), month, day


def _weekday(days: int) -> int:
    """0 = Sunday; 1970-01-01 was a Thursday."""
    return (days + 4) % 7


# -- the chip ----------------------------------------------------------------------------------

class CmosRtc:
    """MC146818A plus PC CMOS RAM at ports 0x70-0x71 (map it at base 0x70, size 2).

    `base_time` is the RTC time, in seconds since 1970-01-01 of whatever zone the machine
    chose (UTC or local), at `clock.now_ns()` now; that instant is a second boundary.
    `cmos` fills the NVRAM bytes 0x0E-0x7F (see `pc_cmos_bytes`); the clock bytes come from
    `base_time`, so 0x32 in `cmos` is overwritten by the live century.
    """

    def __init__(self, clock: Clock, irq8: IrqLine, *, base_time: int,
                 cmos: dict[int, int] | None = None) -> None:
        self._clock = clock
        self._irq = irq8
        self._irq_level = False
        self._cmos = bytearray(CMOS_SIZE)
        for offset, value in (cmos or {}).items():
            if not isinstance(offset, int) or not REG_D < offset < CMOS_SIZE:
                raise ValueError(f"cmos offset {offset!r} is not an NVRAM byte (0x0e-0x7f)")
            _check_range(f"cmos[{offset:#x}]", value, 0xFF)
            self._cmos[offset] = value
        self._index = DEFAULT_INDEX
        self._nmi_disabled = False
        now = clock.now_ns()
        self._phase_ns = now  # a second boundary of the divider chain
        self._seconds_at_phase = base_time  # RTC time during [phase, phase + 1 s)
        self._weekday_adjust = 0
        self._synced_ns = now  # flags in register C are accounted up to here
        self._timers: dict[str, tuple[int, TimerHandle] | None] = {"periodic": None,
                                                                   "update": None}
        self._cmos[REG_A] = DEFAULT_REG_A
        self._cmos[REG_B] = DEFAULT_REG_B
        self._cmos[REG_C] = DEFAULT_REG_C
        self._cmos[REG_D] = DEFAULT_REG_D
        for reg in (REG_SECONDS_ALARM, REG_MINUTES_ALARM, REG_HOURS_ALARM):
            self._cmos[reg] = DEFAULT_ALARM

    # -- host side -----------------------------------------------------------------------------

    @property
    def nmi_disabled(self) -> bool:
        """Bit 7 of the last index write: the chipset's NMI mask."""
        return self._nmi_disabled

    @property
    def index(self) -> int:
        return self._index

    @property
    def irq_level(self) -> bool:
        return self._irq_level

    def pending_flags(self) -> int:
        """Register C as a read would return it now, without clearing it."""
        self._sync()
        return self._cmos[REG_C]

    def time_seconds(self) -> int:
        """The RTC's time now, as civil seconds since 1970-01-01 in the machine's zone."""
        return self._current_seconds() if self._running() else self._seconds_from_bytes()

    def reset(self) -> None:
        """The RESET pin: clears PIE, AIE, UIE, SQWE and all of register C; time is kept.

        The index latch and NMI mask live in the chipset and return to their defaults too.
        """
        self._sync()
        self._cmos[REG_B] &= ~REG_B_CLEARED_BY_RESET & 0xFF
        self._cmos[REG_C] = DEFAULT_REG_C
        self._index = DEFAULT_INDEX
        self._nmi_disabled = False
        self._update_irq()
        self._rearm()

    # -- guest side ----------------------------------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        """A wider access is successive byte cycles on consecutive ports, as ISA does it."""
        _check_size(size)
        value = 0
        for lane in range(size):
            value |= self._read_port(offset + lane) << (8 * lane)
        return value

    def write(self, offset: int, size: int, value: int) -> None:
        _check_size(size)
        for lane in range(size):
            self._write_port(offset + lane, (value >> (8 * lane)) & 0xFF)

    def _read_port(self, offset: int) -> int:
        return self._read_byte(self._index) if offset == DATA_OFFSET else UNMAPPED_BYTE

    def _write_port(self, offset: int, value: int) -> None:
        if offset == INDEX_OFFSET:
            self._index = value & INDEX_MASK
            self._nmi_disabled = bool(value & INDEX_NMI_DISABLE)
        elif offset == DATA_OFFSET:
            self._write_byte(self._index, value)

    def _read_byte(self, reg: int) -> int:
        if reg in TIME_REGISTERS and self._running():
            return self._render(self._current_seconds())[reg]
        if reg == REG_A:
            return self._cmos[REG_A] | (REG_A_UIP if self._update_imminent() else 0)
        if reg == REG_C:
            self._sync()
            value = self._cmos[REG_C]
            self._cmos[REG_C] = 0  # reading C clears every flag (section "Register C")
            self._update_irq()
            return value
        if reg == REG_D:
            return REG_D_VRT  # bits 6-0 read as zero
        return self._cmos[reg]

    def _write_byte(self, reg: int, value: int) -> None:
        if reg == REG_A:
            self._write_control(value & REG_A_WRITABLE, self._cmos[REG_B])
        elif reg == REG_B:
            if value & REG_B_SET:
                value &= ~REG_B_UIE & 0xFF  # SET going high clears UIE (section "Register B")
            self._write_control(self._cmos[REG_A], value)
        elif reg in (REG_C, REG_D):
            pass  # read-only
        elif reg in TIME_REGISTERS and self._running():
            # A write without SET lands in the counting registers and counting goes on.
            self._sync()
            self._freeze()
            self._cmos[reg] = value
            self._thaw()
            self._rearm()
        elif reg in (REG_SECONDS_ALARM, REG_MINUTES_ALARM, REG_HOURS_ALARM):
            self._sync()
            self._cmos[reg] = value
            self._rearm()
        else:
            self._cmos[reg] = value  # stopped clock bytes and NVRAM

    def _write_control(self, reg_a: int, reg_b: int) -> None:
        """Register A or B changed: account flags under the old settings, then switch."""
        self._sync()
        was_running, divider_was_on = self._running(), self._divider_on()
        if was_running:
            self._freeze()
        self._cmos[REG_A], self._cmos[REG_B] = reg_a, reg_b
        if self._divider_on() and not divider_was_on:
            self._phase_ns = self._clock.now_ns() - (SECOND_NS - DIVIDER_RESTART_NS)
        if self._running() and not was_running:
            self._thaw()
        self._update_irq()  # an enable bit may have met a flag that is already set
        self._rearm()

    # -- time ----------------------------------------------------------------------------------

    def _divider_on(self) -> bool:
        return self._cmos[REG_A] & REG_A_DV_MASK == REG_A_DV_NORMAL

    def _running(self) -> bool:
        return self._divider_on() and not self._cmos[REG_B] & REG_B_SET

    def _seconds_at(self, now_ns: int) -> int:
        return self._seconds_at_phase + (now_ns - self._phase_ns) // SECOND_NS

    def _current_seconds(self) -> int:
        return self._seconds_at(self._clock.now_ns())

    def _boundary_ns(self, seconds: int) -> int:
        """When the update that makes the time `seconds` happens."""
        return self._phase_ns + (seconds - self._seconds_at_phase) * SECOND_NS

    def _update_imminent(self) -> bool:
        """UIP: the 244 us before an update, only while updates run (SET clears it)."""
        if not self._running():
            return False
        into_second = (self._clock.now_ns() - self._phase_ns) % SECOND_NS
        return into_second >= SECOND_NS - UIP_WINDOW_NS

    def _encode(self, value: int) -> int:
        if self._cmos[REG_B] & REG_B_DM:
            return value & 0xFF
        return (value // 10 % 10) << 4 | value % 10

    def _decode(self, byte: int) -> int:
        return byte if self._cmos[REG_B] & REG_B_DM else (byte >> 4) * 10 + (byte & 0x0F)

    def _encode_hour(self, hour: int) -> int:
        if self._cmos[REG_B] & REG_B_24H:
            return self._encode(hour)
        return self._encode(hour % 12 or 12) | (HOUR_PM if hour >= 12 else 0)

    def _decode_hour(self, byte: int) -> int:
        if self._cmos[REG_B] & REG_B_24H:
            return min(self._decode(byte), 23)
        hour = min(max(self._decode(byte & ~HOUR_PM), 1), 12) % 12
        return hour + (12 if byte & HOUR_PM else 0)

    def _render(self, seconds: int) -> dict[int, int]:
        """The clock bytes for civil time `seconds` in the current data and hour modes."""
        days, tod = divmod(seconds, _DAY_SECONDS)
        year, month, day = _civil_from_days(days)
        weekday = (_weekday(days) + self._weekday_adjust) % 7
        return {
            REG_SECONDS: self._encode(tod % 60),
            REG_MINUTES: self._encode(tod // 60 % 60),
            REG_HOURS: self._encode_hour(tod // 3600),
            REG_DAY_OF_WEEK: self._encode(weekday + 1),
            REG_DAY_OF_MONTH: self._encode(day),
            REG_MONTH: self._encode(month),
            REG_YEAR: self._encode(year % 100),
            REG_CENTURY: self._encode(year // 100 % 100),
        }

    def _seconds_from_bytes(self) -> int:
        """Parse the clock bytes, clamping each field into range."""
        def field(reg: int, low: int, high: int) -> int:
            return min(max(self._decode(self._cmos[reg]), low), high)

        year = field(REG_CENTURY, 0, 99) * 100 + field(REG_YEAR, 0, 99)
        month = field(REG_MONTH, 1, 12)
        day = field(REG_DAY_OF_MONTH, 1, _days_in_month(year, month))
        tod = (self._decode_hour(self._cmos[REG_HOURS]) * 3600
               + field(REG_MINUTES, 0, 59) * 60 + field(REG_SECONDS, 0, 59))
        return _days_from_civil(year, month, day) * _DAY_SECONDS + tod

    def _freeze(self) -> None:
        """Counting stops: the clock bytes become the authority."""
        for reg, byte in self._render(self._current_seconds()).items():
            self._cmos[reg] = byte

    def _thaw(self) -> None:
        """Counting resumes from the clock bytes, keeping the divider's phase."""
        seconds = self._seconds_from_bytes()
        elapsed = (self._clock.now_ns() - self._phase_ns) // SECOND_NS
        self._seconds_at_phase = seconds - elapsed
        written = self._decode(self._cmos[REG_DAY_OF_WEEK])
        calendar = _weekday(seconds // _DAY_SECONDS) + 1
        self._weekday_adjust = (written - calendar) % 7 if 1 <= written <= 7 else 0

    # -- flags, interrupt, timers --------------------------------------------------------------

    def _period_ticks(self) -> int:
        """Periodic interrupt period in 32.768 kHz ticks, 0 when off (Table 3)."""
        rs = self._cmos[REG_A] & REG_A_RS_MASK
        if rs == 0:
            return 0
        return LOW_RS_PERIOD_TICKS.get(rs, 1 << (rs - 1))

    def _periodic_edges(self, now_ns: int) -> int:
        """Periodic edges since the divider's phase point, at `now_ns`."""
        ticks = (now_ns - self._phase_ns) * DIVIDER_HZ // SECOND_NS
        return ticks // self._period_ticks()

    def _alarm_sets(self) -> tuple[list[int], list[int], list[int]]:
        """The hours, minutes and seconds of day the alarm bytes match (section "Alarm")."""
        def matches(reg: int, byte: int) -> bool:
            alarm = self._cmos[reg]
            return alarm & ALARM_DONT_CARE == ALARM_DONT_CARE or alarm == byte
        return ([h for h in range(24) if matches(REG_HOURS_ALARM, self._encode_hour(h))],
                [m for m in range(60) if matches(REG_MINUTES_ALARM, self._encode(m))],
                [s for s in range(60) if matches(REG_SECONDS_ALARM, self._encode(s))])

    def _next_alarm(self, after: int) -> int | None:
        """The first civil second after `after` whose time of day matches the alarm."""
        hours, minutes, secs = self._alarm_sets()
        if not (hours and minutes and secs):
            return None
        start = after + 1
        day, tod = divmod(start, _DAY_SECONDS)
        h0, m0, s0 = tod // 3600, tod // 60 % 60, tod % 60
        for h in (h for h in hours if h >= h0):
            for m in (m for m in minutes if h > h0 or m >= m0):
                for s in (s for s in secs if h > h0 or m > m0 or s >= s0):
                    return day * _DAY_SECONDS + h * 3600 + m * 60 + s
        return (day + 1) * _DAY_SECONDS + hours[0] * 3600 + minutes[0] * 60 + secs[0]

    def _sync(self) -> None:
        """Set PF, UF and AF for every edge and update between the last sync and now."""
        now = max(self._clock.now_ns(), self._synced_ns)
        flags = 0
        if self._divider_on() and self._period_ticks():
            if self._periodic_edges(now) > self._periodic_edges(self._synced_ns):
                flags |= REG_C_PF
        if self._running():
            before, after = self._seconds_at(self._synced_ns), self._seconds_at(now)
            if after > before:
                flags |= REG_C_UF
                alarm = self._next_alarm(before)
                if alarm is not None and alarm <= after:
                    flags |= REG_C_AF
        self._synced_ns = now
        self._cmos[REG_C] |= flags
        if flags:
            self._update_irq()

    def _update_irq(self) -> None:
        """IRQF = PF.PIE + AF.AIE + UF.UIE; the line follows IRQF, changed only on a change."""
        reg_c, reg_b = self._cmos[REG_C], self._cmos[REG_B]
        irqf = bool(reg_c & reg_b & (REG_C_PF | REG_C_AF | REG_C_UF))  # bits line up with B
        self._cmos[REG_C] = (reg_c & REG_C_FLAGS) | (REG_C_IRQF if irqf else 0)
        if irqf != self._irq_level:
            self._irq_level = irqf
            self._irq.set_level(irqf)

    def _rearm(self) -> None:
        """Keep one timer per interrupt source that is enabled and can fire; never in the past."""
        self._set_timer("periodic", self._periodic_deadline())
        self._set_timer("update", self._update_deadline())

    def _periodic_deadline(self) -> int | None:
        """The next periodic edge while PIE is set: the first nanosecond of its tick."""
        if not (self._cmos[REG_B] & REG_B_PIE and self._divider_on() and self._period_ticks()):
            return None
        edge = (self._periodic_edges(self._clock.now_ns()) + 1) * self._period_ticks()
        return self._phase_ns - (-edge * SECOND_NS // DIVIDER_HZ)  # ceiling division

    def _update_deadline(self) -> int | None:
        """The next update while UIE is set; with only AIE, the update that matches the alarm."""
        if not self._running() or not self._cmos[REG_B] & (REG_B_UIE | REG_B_AIE):
            return None
        now_seconds = self._seconds_at(self._clock.now_ns())
        if self._cmos[REG_B] & REG_B_UIE:
            return self._boundary_ns(now_seconds + 1)
        alarm = self._next_alarm(now_seconds)
        return None if alarm is None else self._boundary_ns(alarm)

    def _set_timer(self, name: str, deadline: int | None) -> None:
        current = self._timers[name]
        if current is not None and current[0] == deadline:
            return
        if current is not None:
            current[1].cancel()
        self._timers[name] = None
        if deadline is not None:
            handle = self._clock.call_at(deadline, lambda: self._on_timer(name, deadline))
            self._timers[name] = (deadline, handle)

    def _on_timer(self, name: str, deadline: int) -> None:
        """One source's deadline came: account it, then arm that source again (only that one:
        a timer firing changes nothing the other source's deadline depends on)."""
        self._sync()
        current = self._timers[name]
        if current is not None and current[0] == deadline:  # not a stale, cancelled call
            self._timers[name] = None
            deadline_of = self._periodic_deadline if name == "periodic" else self._update_deadline
            self._set_timer(name, deadline_of())

    # -- snapshots -----------------------------------------------------------------------------

    def state(self) -> RtcState:
        self._sync()
        cmos = bytearray(self._cmos)
        if self._running():
            for reg, byte in self._render(self._current_seconds()).items():
                cmos[reg] = byte
        cmos[REG_C] &= REG_C_FLAGS
        now = self._clock.now_ns()
        return RtcState(
            cmos=bytes(cmos), index=self._index, nmi_disabled=self._nmi_disabled,
            seconds=self._seconds_at(now), subsecond_ns=(now - self._phase_ns) % SECOND_NS,
            weekday_adjust=self._weekday_adjust,
        )

    @classmethod
    def from_state(cls, state: RtcState, clock: Clock, irq8: IrqLine) -> CmosRtc:
        """Rebuild the chip on `clock`; checks bounds, re-raises IRQ 8, re-arms its timers."""
        state.validate()
        rtc = cls(clock, irq8, base_time=state.seconds)
        rtc._cmos[:] = state.cmos
        rtc._index, rtc._nmi_disabled = state.index, bool(state.nmi_disabled)
        rtc._phase_ns = clock.now_ns() - state.subsecond_ns
        rtc._weekday_adjust = state.weekday_adjust
        rtc._update_irq()
        rtc._rearm()
        return rtc


def pc_cmos_bytes(memory_bytes: int, *, floppy: bool = False, fpu: bool = True,
                  pci_hole_start: int = PCI_HOLE_START) -> dict[int, int]:
    """The NVRAM bytes a PC BIOS leaves for `memory_bytes` of RAM, for `CmosRtc(cmos=...)`.

    RAM from `pci_hole_start` up is assumed remapped above 4 GiB. Counts that overflow their
    16-bit fields are capped at 0xFFFF, as BIOSes do.
    """
    if memory_bytes < 0 or not 0 < pci_hole_start <= 1 << 32:
        raise ValueError("memory size must be >= 0 and the PCI hole start in (0, 4 GiB]")
    low = min(memory_bytes, pci_hole_start)
    high = memory_bytes - low
    kib, mib = 1024, 1 << 20
    out: dict[int, int] = {}

    def word(offset: int, value: int) -> None:
        value = min(value, 0xFFFF)
        out[offset], out[offset + 1] = value & 0xFF, value >> 8

    for offset in range(CHECKSUM_FIRST, CHECKSUM_LAST + 1):
        out[offset] = 0
    out[CMOS_FLOPPY_TYPES] = FLOPPY_TYPE_1440K << 4 if floppy else 0
    out[CMOS_DISK_TYPES] = 0
    out[CMOS_EQUIPMENT] = (EQUIPMENT_FLOPPY if floppy else 0) | (EQUIPMENT_FPU if fpu else 0)
    word(CMOS_BASE_MEMORY, min(BASE_MEMORY_KB, low // kib))
    word(CMOS_EXTENDED_MEMORY, max(low - mib, 0) // kib)
    word(CMOS_EXTENDED_MEMORY_COPY, max(low - mib, 0) // kib)
    word(CMOS_MEMORY_ABOVE_16M, max(low - 16 * mib, 0) // (64 * kib))
    above_4g = min(high // (64 * kib), 0xFF_FFFF)
    for i in range(3):
        out[CMOS_MEMORY_ABOVE_4G + i] = (above_4g >> (8 * i)) & 0xFF
    out[REG_CENTURY] = DEFAULT_CENTURY_BCD
    checksum = sum(out[o] for o in range(CHECKSUM_FIRST, CHECKSUM_LAST + 1)) & 0xFFFF
    out[CMOS_CHECKSUM], out[CMOS_CHECKSUM + 1] = checksum >> 8, checksum & 0xFF
    return out
