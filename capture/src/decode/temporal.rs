//! Temporal types: MySQL's binary formats to Debezium's numbers (days, µs, ms) and ISO-8601 strings.
//!
//! Dates use the proleptic Gregorian calendar and are converted with Howard Hinnant's `days_from_civil` /
//! `civil_from_days` algorithms (no calendar crate). DATETIME is a wall clock without a zone and is read as UTC, as
//! Debezium does; TIMESTAMP is stored as seconds since the epoch and printed in UTC.
//!
//! Packed formats (MySQL `mysys/my_time.cc`, also used by MariaDB with `mysql56_temporal_format=ON`):
//! - TIME2: 3 big-endian bytes `0x800000 + sign * (hour << 12 | minute << 6 | second)`, then `(fsp + 1) / 2`
//!   fraction bytes; negative values borrow from the integer part.
//! - DATETIME2: 5 big-endian bytes `0x8000000000 + ((year * 13 + month) << 22 | day << 17 | hour << 12 |
//!   minute << 6 | second)`, then the fraction.
//! - TIMESTAMP2: 4 big-endian bytes of seconds since the epoch, then the fraction.

use std::fmt::Write as _;

pub(crate) const MICROS_PER_SECOND: i64 = 1_000_000;
const SECONDS_PER_DAY: i64 = 86_400;

/// A calendar date and wall-clock time with microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DateTime {
    pub(crate) year: u32,
    pub(crate) month: u32,
    pub(crate) day: u32,
    pub(crate) hour: u32,
    pub(crate) minute: u32,
    pub(crate) second: u32,
    pub(crate) micros: u32,
}

impl DateTime {
    /// Microseconds since 1970-01-01 00:00:00 (UTC), or `None` for zero dates (month or day 0) and impossible
    /// times, which Debezium emits as null.
    pub(crate) fn epoch_micros(&self) -> Option<i64> {
        if self.month == 0 || self.day == 0 || self.month > 12 || self.day > 31 {
            return None;
        }
        if self.hour > 23 || self.minute > 59 || self.second > 59 || self.micros > 999_999 {
            return None;
        }
        let days = days_from_civil(i64::from(self.year), self.month, self.day);
        let seconds =
            days * SECONDS_PER_DAY + i64::from(self.hour) * 3600 + i64::from(self.minute) * 60 + i64::from(self.second);
        Some(seconds * MICROS_PER_SECOND + i64::from(self.micros))
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let (month, day) = (i64::from(month), i64::from(day));
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date `days` after 1970-01-01.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Number of fraction bytes that follow the integer part of TIME2/DATETIME2/TIMESTAMP2.
pub(crate) fn fraction_bytes(fsp: u8) -> usize {
    usize::from(fsp).div_ceil(2)
}

/// DATE: 3 little-endian bytes `year << 9 | month << 5 | day`. Days since the epoch, `None` for a zero date.
pub(crate) fn date(packed: u32) -> Option<i64> {
    let (year, month, day) = (packed >> 9, (packed >> 5) & 15, packed & 31);
    let dt = DateTime { year, month, day, hour: 0, minute: 0, second: 0, micros: 0 };
    dt.epoch_micros().map(|_| days_from_civil(i64::from(year), month, day))
}

/// Legacy TIME (3 bytes): a signed `±HHMMSS` decimal number. Microseconds.
pub(crate) fn time_legacy(value: i32) -> i64 {
    let abs = i64::from(value).abs();
    let seconds = abs / 10_000 * 3600 + abs / 100 % 100 * 60 + abs % 100;
    seconds * MICROS_PER_SECOND * i64::from(value.signum())
}

/// The packed form of a TIME2 value (`my_time_packed_from_binary`).
fn time2_packed(bytes: &[u8], fsp: u8) -> Option<i64> {
    let int_part = be(bytes.get(..3)?) - 0x80_0000;
    Some(match fsp {
        0 => int_part << 24,
        1 | 2 => {
            let (mut int_part, mut frac) = (int_part, i64::from(*bytes.get(3)?));
            if int_part < 0 && frac != 0 {
                int_part += 1;
                frac -= 0x100;
            }
            (int_part << 24) + frac * 10_000
        }
        3 | 4 => {
            let (mut int_part, mut frac) = (int_part, be(bytes.get(3..5)?));
            if int_part < 0 && frac != 0 {
                int_part += 1;
                frac -= 0x1_0000;
            }
            (int_part << 24) + frac * 100
        }
        5 | 6 => be(bytes.get(..6)?) - 0x8000_0000_0000,
        _ => return None,
    })
}

/// TIME2 to signed microseconds (Debezium MicroTime). `None` when the bytes are not a valid time.
pub(crate) fn time2(bytes: &[u8], fsp: u8) -> Option<i64> {
    unpack_time(time2_packed(bytes, fsp)?)
}

/// A packed time (`hms << 24 | micros`, negated for negative times) to signed microseconds.
pub(crate) fn unpack_time(packed: i64) -> Option<i64> {
    let (negative, hour, minute, second, micros) = time_parts(packed)?;
    let value =
        (i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second)) * MICROS_PER_SECOND + i64::from(micros);
    Some(if negative { -value } else { value })
}

/// A packed time split into sign, hours, minutes, seconds and microseconds.
pub(crate) fn time_parts(packed: i64) -> Option<(bool, u32, u32, u32, u32)> {
    let negative = packed < 0;
    let abs = packed.checked_abs()?;
    let hms = abs >> 24;
    let micros = (abs & 0xff_ffff) as u32;
    let (hour, minute, second) = (((hms >> 12) & 0x3ff) as u32, ((hms >> 6) & 63) as u32, (hms & 63) as u32);
    if minute > 59 || second > 59 || micros > 999_999 {
        return None;
    }
    Some((negative, hour, minute, second, micros))
}

/// DATETIME2 to its parts. `None` when the bytes are not a valid datetime.
pub(crate) fn datetime2(bytes: &[u8], fsp: u8) -> Option<DateTime> {
    let int_part = be(bytes.get(..5)?) - 0x80_0000_0000;
    let frac = match fsp {
        0 => 0,
        1 | 2 => i64::from(*bytes.get(5)?) * 10_000,
        3 | 4 => be(bytes.get(5..7)?) * 100,
        5 | 6 => be(bytes.get(5..8)?),
        _ => return None,
    };
    unpack_datetime((int_part << 24) + frac)
}

/// A packed datetime (`TIME_to_longlong_datetime_packed`) to its parts; negative values are not datetimes.
pub(crate) fn unpack_datetime(packed: i64) -> Option<DateTime> {
    if packed < 0 {
        return None;
    }
    let ymdhms = packed >> 24;
    let micros = (packed & 0xff_ffff) as u32;
    let ymd = ymdhms >> 17;
    let ym = ymd >> 5;
    let hms = ymdhms & 0x1_ffff;
    let dt = DateTime {
        year: (ym / 13) as u32,
        month: (ym % 13) as u32,
        day: (ymd & 31) as u32,
        hour: (hms >> 12) as u32,
        minute: ((hms >> 6) & 63) as u32,
        second: (hms & 63) as u32,
        micros,
    };
    (dt.year <= 9999 && dt.hour <= 23 && dt.minute <= 59 && dt.second <= 59 && micros <= 999_999).then_some(dt)
}

/// Legacy DATETIME (8 bytes): the decimal number `YYYYMMDDhhmmss`.
pub(crate) fn datetime_legacy(value: u64) -> DateTime {
    let (date, time) = (value / 1_000_000, value % 1_000_000);
    DateTime {
        year: (date / 10_000) as u32,
        month: (date / 100 % 100) as u32,
        day: (date % 100) as u32,
        hour: (time / 10_000) as u32,
        minute: (time / 100 % 100) as u32,
        second: (time % 100) as u32,
        micros: 0,
    }
}

/// TIMESTAMP2: seconds since the epoch and microseconds. `None` when the fraction is out of range.
pub(crate) fn timestamp2(bytes: &[u8], fsp: u8) -> Option<(u32, u32)> {
    let seconds = be(bytes.get(..4)?) as u32;
    let micros = match fsp {
        0 => 0,
        1 | 2 => u32::from(*bytes.get(4)?) * 10_000,
        3 | 4 => be(bytes.get(4..6)?) as u32 * 100,
        5 | 6 => be(bytes.get(4..7)?) as u32,
        _ => return None,
    };
    (micros <= 999_999).then_some((seconds, micros))
}

/// ISO-8601 in UTC like Debezium's ZonedTimestamp: `2024-01-02T03:04:05Z`, or with `fsp` fraction digits
/// (`2024-01-02T03:04:05.120Z` for fsp 3).
pub(crate) fn format_timestamp(seconds: i64, micros: u32, fsp: u8) -> String {
    let mut out = String::with_capacity(28);
    push_timestamp(&mut out, seconds, micros, fsp);
    out
}

/// [`format_timestamp`], appending to `out`.
pub(crate) fn push_timestamp(out: &mut String, seconds: i64, micros: u32, fsp: u8) {
    let (year, month, day) = civil_from_days(seconds.div_euclid(SECONDS_PER_DAY));
    let tod = seconds.rem_euclid(SECONDS_PER_DAY);
    out.reserve(28);
    match u32::try_from(year) {
        // Digits are placed by hand: this runs for every TIMESTAMP value, and `write!` costs ten times as much.
        Ok(year) if year <= 9999 => {
            let mut text = *b"0000-00-00T00:00:00";
            write_digits(&mut text[0..4], year);
            write_digits(&mut text[5..7], month);
            write_digits(&mut text[8..10], day);
            write_digits(&mut text[11..13], (tod / 3600) as u32);
            write_digits(&mut text[14..16], (tod / 60 % 60) as u32);
            write_digits(&mut text[17..19], (tod % 60) as u32);
            out.push_str(ascii(&text));
        }
        _ => {
            let _ = write!(out, "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}", tod / 3600, tod / 60 % 60, tod % 60);
        }
    }
    push_fraction(out, micros, fsp);
    out.push('Z');
}

/// Appends `.` and the first `fsp` digits of the microseconds (nothing for fsp 0).
pub(crate) fn push_fraction(out: &mut String, micros: u32, fsp: u8) {
    if fsp > 0 {
        let fsp = usize::from(fsp.min(6));
        let digits = micros / 10u32.pow(6 - fsp as u32);
        if micros <= 999_999 {
            let mut text = *b".000000";
            write_digits(&mut text[1..=fsp], digits);
            out.push_str(ascii(&text[..=fsp]));
        } else {
            let _ = write!(out, ".{digits:0fsp$}");
        }
    }
}

/// Writes the last `dst.len()` decimal digits of `value`, zero-padded.
fn write_digits(dst: &mut [u8], mut value: u32) {
    for d in dst.iter_mut().rev() {
        *d = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Text made of ASCII digits and punctuation.
fn ascii(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or_default()
}

fn be(bytes: &[u8]) -> i64 {
    super::reader::be_uint(bytes) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        let cases = [
            ((1970, 1, 1), 0),
            ((2024, 1, 2), 19_724),
            ((1969, 12, 31), -1),
            ((2000, 3, 1), 11_017),
            ((1000, 1, 1), -354_285),
            ((9999, 12, 31), 2_932_896),
            ((1, 1, 1), -719_162),
        ];
        for ((y, m, d), days) in cases {
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
            assert_eq!(civil_from_days(days), (y, m, d));
        }
        for days in (-800_000..3_000_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn dates() {
        let pack = |y: u32, m: u32, d: u32| y << 9 | m << 5 | d;
        assert_eq!(date(pack(2024, 1, 2)), Some(19_724));
        assert_eq!(date(pack(1000, 1, 1)), Some(-354_285));
        assert_eq!(date(0), None);
        assert_eq!(date(pack(2024, 0, 0)), None);
    }

    /// Encodes a TIME2 value the way MySQL's `my_time_packed_to_binary` does (test helper; C remainder semantics).
    fn encode_time2(negative: bool, h: i64, m: i64, s: i64, micros: i64, fsp: u8) -> Vec<u8> {
        let mut packed = ((h << 12 | m << 6 | s) << 24) + micros;
        if negative {
            packed = -packed;
        }
        let int_part = packed >> 24;
        let frac = packed % (1 << 24);
        let mut out = ((int_part + 0x80_0000) as u32).to_be_bytes()[1..].to_vec();
        match fsp {
            1 | 2 => out.push((frac / 10_000) as i8 as u8),
            3 | 4 => out.extend_from_slice(&((frac / 100) as i16).to_be_bytes()),
            5 | 6 => out = ((packed + 0x8000_0000_0000) as u64).to_be_bytes()[2..].to_vec(),
            _ => {}
        }
        out
    }

    #[test]
    fn time2_table() {
        let cases: &[(&[u8], u8, i64)] = &[
            (&[0x80, 0x00, 0x00], 0, 0),
            (&[0x80, 0xb0, 0x83], 0, (11 * 3600 + 2 * 60 + 3) * 1_000_000),
            (&[0x7f, 0x4f, 0x7d], 0, -(11 * 3600 + 2 * 60 + 3) * 1_000_000),
            (&[0x4b, 0x91, 0x05], 0, -(838 * 3600 + 59 * 60 + 59) * 1_000_000),
            (&[0xb4, 0x6e, 0xfb], 0, (838 * 3600 + 59 * 60 + 59) * 1_000_000),
            (&[0x7f, 0xff, 0xff, 0xff, 0xff, 0xff], 6, -1),
            (&[0x80, 0x00, 0x00, 0x00, 0x00, 0x01], 6, 1),
        ];
        for (bytes, fsp, micros) in cases {
            assert_eq!(time2(bytes, *fsp), Some(*micros), "{bytes:02x?} fsp {fsp}");
        }
        for fsp in 0..=6u8 {
            let scale = 10i64.pow(6 - u32::from(fsp));
            for &(neg, h, m, s, us) in
                &[(true, 12, 34, 56, 789_012), (false, 838, 59, 59, 999_999), (true, 0, 0, 0, 500_000)]
            {
                let us = us / scale * scale;
                let bytes = encode_time2(neg, h, m, s, us, fsp);
                assert_eq!(bytes.len(), 3 + fraction_bytes(fsp));
                let expected = ((h * 3600 + m * 60 + s) * 1_000_000 + us) * if neg { -1 } else { 1 };
                assert_eq!(time2(&bytes, fsp), Some(expected), "fsp {fsp} {neg} {h}:{m}:{s}.{us}");
            }
        }
    }

    #[test]
    fn legacy_time() {
        assert_eq!(time_legacy(-8_385_959), -(838 * 3600 + 59 * 60 + 59) * 1_000_000);
        assert_eq!(time_legacy(10_203), (3600 + 2 * 60 + 3) * 1_000_000);
        assert_eq!(time_legacy(0), 0);
    }

    fn encode_datetime2(dt: DateTime, fsp: u8) -> Vec<u8> {
        let ym = u64::from(dt.year) * 13 + u64::from(dt.month);
        let ymd = ym << 5 | u64::from(dt.day);
        let hms = u64::from(dt.hour) << 12 | u64::from(dt.minute) << 6 | u64::from(dt.second);
        let int_part = (ymd << 17 | hms) + 0x80_0000_0000;
        let mut out = int_part.to_be_bytes()[3..].to_vec();
        let frac = dt.micros / 10u32.pow(6 - u32::from(fsp)) * 10u32.pow(6 - u32::from(fsp));
        match fsp {
            1 | 2 => out.push((frac / 10_000) as u8),
            3 | 4 => out.extend_from_slice(&((frac / 100) as u16).to_be_bytes()),
            5 | 6 => out.extend_from_slice(&frac.to_be_bytes()[1..]),
            _ => {}
        }
        out
    }

    #[test]
    fn datetime2_every_fsp() {
        let dt = DateTime { year: 2024, month: 1, day: 2, hour: 3, minute: 4, second: 5, micros: 123_456 };
        let base = (19_724 * 86_400 + 3 * 3600 + 4 * 60 + 5) * 1_000_000;
        let expected = [0, 100_000, 120_000, 123_000, 123_400, 123_450, 123_456];
        for fsp in 0..=6u8 {
            let bytes = encode_datetime2(dt, fsp);
            assert_eq!(bytes.len(), 5 + fraction_bytes(fsp));
            let decoded = datetime2(&bytes, fsp).unwrap();
            assert_eq!(decoded.epoch_micros(), Some(base + expected[usize::from(fsp)]), "fsp {fsp}");
        }
        let zero = DateTime { year: 0, month: 0, day: 0, hour: 0, minute: 0, second: 0, micros: 0 };
        assert_eq!(datetime2(&encode_datetime2(zero, 0), 0).unwrap().epoch_micros(), None);
        assert_eq!(datetime2(&[0x00; 5], 0), None, "negative packed value");
    }

    #[test]
    fn legacy_datetime() {
        let dt = datetime_legacy(20_240_102_030_405);
        assert_eq!(dt, DateTime { year: 2024, month: 1, day: 2, hour: 3, minute: 4, second: 5, micros: 0 });
        assert_eq!(datetime_legacy(0).epoch_micros(), None);
    }

    #[test]
    fn timestamps() {
        let secs: u32 = 1_704_164_645; // 2024-01-02T03:04:05Z
        let cases: &[(u8, Vec<u8>, u32, &str)] = &[
            (0, secs.to_be_bytes().to_vec(), 0, "2024-01-02T03:04:05Z"),
            (1, [&secs.to_be_bytes()[..], &[10]].concat(), 100_000, "2024-01-02T03:04:05.1Z"),
            (2, [&secs.to_be_bytes()[..], &[12]].concat(), 120_000, "2024-01-02T03:04:05.12Z"),
            (3, [&secs.to_be_bytes()[..], &1200u16.to_be_bytes()[..]].concat(), 120_000, "2024-01-02T03:04:05.120Z"),
            (4, [&secs.to_be_bytes()[..], &1234u16.to_be_bytes()[..]].concat(), 123_400, "2024-01-02T03:04:05.1234Z"),
            (5, [&secs.to_be_bytes()[..], &[0x01, 0xe2, 0x3a]].concat(), 123_450, "2024-01-02T03:04:05.12345Z"),
            (6, [&secs.to_be_bytes()[..], &[0x00, 0x00, 0x01]].concat(), 1, "2024-01-02T03:04:05.000001Z"),
        ];
        for (fsp, bytes, micros, text) in cases {
            assert_eq!(bytes.len(), 4 + fraction_bytes(*fsp));
            assert_eq!(timestamp2(bytes, *fsp), Some((secs, *micros)), "fsp {fsp}");
            assert_eq!(format_timestamp(i64::from(secs), *micros, *fsp), *text);
        }
        assert_eq!(format_timestamp(2_147_483_647, 990_000, 2), "2038-01-19T03:14:07.99Z");
        assert_eq!(format_timestamp(0, 0, 6), "1970-01-01T00:00:00.000000Z");
        assert_eq!(format_timestamp(-1, 5, 6), "1969-12-31T23:59:59.000005Z");
        assert_eq!(format_timestamp(253_402_300_799, 999_999, 3), "9999-12-31T23:59:59.999Z");
        // Years beyond four digits (not a TIMESTAMP, but the function is total) keep the generic formatting.
        assert_eq!(format_timestamp(253_402_300_800, 0, 0), "10000-01-01T00:00:00Z");
        assert_eq!(format_timestamp(-62_135_596_801, 0, 0), "0000-12-31T23:59:59Z");
        assert_eq!(format_timestamp(-62_167_219_201, 0, 0), "-001-12-31T23:59:59Z");
        assert_eq!(timestamp2(&[0, 0, 0, 1, 0xff, 0xff, 0xff], 6), None);
    }
}
