//! MySQL's packed binary DECIMAL format, decoded to a decimal string with exactly the column's scale.
//!
//! The format (`decimal2bin` in MySQL's `strings/decimal.cc`): the integer part and the fraction are stored as groups
//! of 9 decimal digits in 4 big-endian bytes each; a leftover group of fewer digits takes the fewest bytes that hold
//! it (the leading integer group comes first, the trailing fraction group last). The first bit is inverted so that
//! positive values compare greater, and negative values have every byte inverted.

/// Bytes needed for a leftover group of `n` digits (`dig2bytes`).
const DIG2BYTES: [usize; 10] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];
const DIGITS_PER_GROUP: usize = 9;
/// Largest precision MySQL and MariaDB allow.
pub(crate) const MAX_PRECISION: u8 = 65;
/// Largest scale (MariaDB allows 38, MySQL 30).
pub(crate) const MAX_SCALE: u8 = 38;

/// Whether `(precision, scale)` is a DECIMAL definition this module can decode.
pub(crate) fn valid_definition(precision: u8, scale: u8) -> bool {
    (1..=MAX_PRECISION).contains(&precision) && scale <= precision && scale <= MAX_SCALE
}

/// Size in bytes of a value of `DECIMAL(precision, scale)`.
pub(crate) fn binary_size(precision: u8, scale: u8) -> usize {
    let intg = usize::from(precision.saturating_sub(scale));
    let frac = usize::from(scale);
    group_bytes(intg) + group_bytes(frac)
}

fn group_bytes(digits: usize) -> usize {
    digits / DIGITS_PER_GROUP * 4 + DIG2BYTES[digits % DIGITS_PER_GROUP]
}

/// Decodes `bytes` (exactly [`binary_size`] long) into e.g. `"-12.30"`; the fraction always has `scale` digits.
pub(crate) fn decode(bytes: &[u8], precision: u8, scale: u8) -> Result<String, &'static str> {
    let mut out = String::new();
    decode_into(bytes, precision, scale, &mut out)?;
    Ok(out)
}

/// [`decode`], appending to `out` (nothing on error).
pub(crate) fn decode_into(bytes: &[u8], precision: u8, scale: u8, out: &mut String) -> Result<(), &'static str> {
    if !valid_definition(precision, scale) {
        return Err("invalid decimal precision or scale");
    }
    if bytes.len() != binary_size(precision, scale) || bytes.is_empty() {
        return Err("decimal has the wrong size");
    }
    let mut buf = [0u8; 64];
    let buf = &mut buf[..bytes.len()];
    let negative = bytes[0] & 0x80 == 0;
    let mask = if negative { 0xff } else { 0 };
    for (dst, src) in buf.iter_mut().zip(bytes) {
        *dst = src ^ mask;
    }
    buf[0] ^= 0x80;

    let intg = usize::from(precision - scale);
    let frac = usize::from(scale);
    let mut pos = 0;
    // Integer digits are collected first so leading zeros can be trimmed; 65 digits at most.
    let mut int_digits = [b'0'; 72];
    let mut n_int = 0;
    let mut any_nonzero = false;

    let lead = intg % DIGITS_PER_GROUP;
    let mut groups: [(usize, usize); 16] = [(0, 0); 16];
    let mut n_groups = 0;
    if lead > 0 {
        groups[n_groups] = (lead, DIG2BYTES[lead]);
        n_groups += 1;
    }
    for _ in 0..intg / DIGITS_PER_GROUP {
        groups[n_groups] = (DIGITS_PER_GROUP, 4);
        n_groups += 1;
    }
    for &(digits, size) in &groups[..n_groups] {
        let value = group(&buf[pos..pos + size], digits)?;
        pos += size;
        any_nonzero |= value != 0;
        write_digits(&mut int_digits[n_int..n_int + digits], value);
        n_int += digits;
    }

    let int_part = &int_digits[..n_int];
    let first_nonzero = int_part.iter().position(|&d| d != b'0').unwrap_or(int_part.len());
    let int_part = &int_part[first_nonzero..];

    let mut frac_digits = [b'0'; 48];
    let mut n_frac = 0;
    for _ in 0..frac / DIGITS_PER_GROUP {
        let value = group(&buf[pos..pos + 4], DIGITS_PER_GROUP)?;
        pos += 4;
        any_nonzero |= value != 0;
        write_digits(&mut frac_digits[n_frac..n_frac + DIGITS_PER_GROUP], value);
        n_frac += DIGITS_PER_GROUP;
    }
    let trail = frac % DIGITS_PER_GROUP;
    if trail > 0 {
        let size = DIG2BYTES[trail];
        let value = group(&buf[pos..pos + size], trail)?;
        any_nonzero |= value != 0;
        write_digits(&mut frac_digits[n_frac..n_frac + trail], value);
        n_frac += trail;
    }

    out.reserve(int_part.len().max(1) + n_frac + 2);
    if negative && any_nonzero {
        out.push('-');
    }
    if int_part.is_empty() {
        out.push('0');
    } else {
        out.push_str(std::str::from_utf8(int_part).unwrap_or_default());
    }
    if n_frac > 0 {
        out.push('.');
        out.push_str(std::str::from_utf8(&frac_digits[..n_frac]).unwrap_or_default());
    }
    Ok(())
}

/// One big-endian digit group holding `digits` decimal digits.
fn group(bytes: &[u8], digits: usize) -> Result<u32, &'static str> {
    let value = bytes.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
    if u64::from(value) >= 10u64.pow(digits as u32) {
        return Err("decimal digit group out of range");
    }
    Ok(value)
}

fn write_digits(dst: &mut [u8], mut value: u32) {
    for d in dst.iter_mut().rev() {
        *d = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Encodes a decimal string the way MySQL's `decimal2bin` does (test helper, no validation of the input).
    pub(crate) fn encode(text: &str, precision: u8, scale: u8) -> Vec<u8> {
        let negative = text.starts_with('-');
        let text = text.trim_start_matches('-');
        let (int_text, frac_text) = text.split_once('.').unwrap_or((text, ""));
        let intg = usize::from(precision - scale);
        let frac = usize::from(scale);
        let int_text = if intg == 0 { String::new() } else { format!("{int_text:0>intg$}") };
        let frac_text = format!("{frac_text:0<frac$}");
        let mut out = Vec::new();
        let mut push_group = |digits: &str, size: usize| {
            let v: u32 = if digits.is_empty() { 0 } else { digits.parse().unwrap() };
            out.extend_from_slice(&v.to_be_bytes()[4 - size..]);
        };
        let lead = intg % 9;
        push_group(&int_text[..lead], DIG2BYTES[lead]);
        for chunk in int_text.as_bytes()[lead..].chunks(9) {
            push_group(std::str::from_utf8(chunk).unwrap(), 4);
        }
        let full = frac / 9 * 9;
        for chunk in frac_text.as_bytes()[..full].chunks(9) {
            push_group(std::str::from_utf8(chunk).unwrap(), 4);
        }
        let trail = frac % 9;
        push_group(&frac_text[full..], DIG2BYTES[trail]);
        out[0] ^= 0x80;
        if negative {
            for b in &mut out {
                *b = !*b;
            }
        }
        out
    }

    #[test]
    fn sizes() {
        assert_eq!(binary_size(10, 2), 5);
        assert_eq!(binary_size(65, 30), 30);
        assert_eq!(binary_size(5, 0), 3);
        assert_eq!(binary_size(4, 4), 2);
        assert_eq!(binary_size(18, 9), 8);
    }

    #[test]
    fn decodes_table() {
        let cases: &[(&[u8], u8, u8, &str)] = &[
            // DECIMAL(10,2) 12.30: int part 8 digits (4 bytes), fraction 2 digits (1 byte).
            (&[0x80, 0x00, 0x00, 0x0c, 0x1e], 10, 2, "12.30"),
            // MySQL documentation example: 1234567890.1234 as DECIMAL(14,4).
            (&[0x81, 0x0d, 0xfb, 0x38, 0xd2, 0x04, 0xd2], 14, 4, "1234567890.1234"),
            // The same value negated.
            (&[0x7e, 0xf2, 0x04, 0xc7, 0x2d, 0xfb, 0x2d], 14, 4, "-1234567890.1234"),
            (&[0x7f, 0xff, 0xff, 0xff, 0xfa], 10, 2, "-0.05"),
            (&[0x80, 0x00, 0x00, 0x00, 0x00], 10, 2, "0.00"),
            (&[0x7f, 0xff, 0xff, 0xff, 0xff], 10, 2, "0.00"),
            (&[0xa7, 0x0f], 4, 4, "0.9999"),
            (&[0x7e, 0x79, 0x60], 5, 0, "-99999"),
        ];
        for (bytes, p, s, expected) in cases {
            assert_eq!(decode(bytes, *p, *s).as_deref(), Ok(*expected), "DECIMAL({p},{s}) {bytes:02x?}");
        }
    }

    #[test]
    fn round_trips_large_precision() {
        let cases: &[(&str, u8, u8)] = &[
            ("-12345678901234567890123456789012345.123456789012345678901234567890", 65, 30),
            ("99999999999999999999999999999999999.999999999999999999999999999999", 65, 30),
            ("0.000000000000000000000000000001", 65, 30),
            ("123456789012345678901234567.12345678901234567890123456789012345678", 65, 38),
            ("-1", 1, 0),
            ("7", 1, 0),
            ("-0.5", 1, 1),
            ("18446744073709551615", 20, 0),
            ("99999999.99", 10, 2),
        ];
        for &(text, p, s) in cases {
            let bytes = encode(text, p, s);
            assert_eq!(bytes.len(), binary_size(p, s));
            assert_eq!(decode(&bytes, p, s).as_deref(), Ok(text), "DECIMAL({p},{s})");
        }
    }

    #[test]
    fn rejects_bad_input() {
        assert!(decode(&[0x80], 10, 2).is_err());
        assert!(decode(&[], 1, 0).is_err());
        assert!(decode(&[0x80; 5], 0, 0).is_err());
        assert!(decode(&[0x80; 5], 10, 11).is_err());
        // A 9-digit group holding 10^9 is not a valid encoding.
        assert!(decode(&[0xbb, 0x9a, 0xca, 0x00], 9, 0).is_err());
    }
}
