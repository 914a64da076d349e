//! Character sets: from collation ids (binlog metadata) or names (information_schema) to a decoder that turns a
//! column's bytes into UTF-8.
//!
//! Only the charsets a Debezium consumer is likely to meet are decoded exactly: the UTF-8 family, `latin1` (which in
//! MySQL and MariaDB is Windows-1252, not ISO-8859-1), `ascii`, and the UTF-16/UTF-32 family. Any other charset is
//! decoded as UTF-8 with invalid sequences replaced by U+FFFD (lossy but never failing). `binary` is not text at all:
//! such values are emitted as base64, like Debezium's `bytes` mode.

use std::borrow::Cow;

use mysql_common::collations::{Collation, CollationId};

/// How the bytes of a string column are turned into a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Charset {
    /// `binary`: base64 of the bytes.
    Binary,
    /// utf8mb3 / utf8mb4.
    Utf8,
    /// MySQL's `latin1`, which is Windows-1252.
    Latin1,
    /// 7-bit ASCII.
    Ascii,
    /// `ucs2` and `utf16` (big-endian).
    Utf16Be,
    /// `utf16le`.
    Utf16Le,
    /// `utf32` (big-endian).
    Utf32Be,
    /// Anything else: UTF-8, lossy.
    Other,
}

impl Charset {
    /// The charset of a collation id as found in the table map's optional metadata, for MySQL and MariaDB.
    pub(crate) fn from_collation_id(id: u64) -> Charset {
        let Ok(id) = u16::try_from(id) else {
            return Charset::Other;
        };
        match id {
            63 => Charset::Binary,
            // MariaDB-only ids (10.x "croatian", "myanmar", "thai_520_w2" collations and UCA 14.0.0 families).
            576..=607 | 608..=639 | 2048..=2559 => Charset::Utf8,
            640..=671 | 672..=703 | 2560..=3071 => Charset::Utf16Be,
            736..=767 | 3072..=3327 => Charset::Utf32Be,
            // MariaDB's NO PAD collations are their PAD SPACE sibling's id plus 1024.
            1024..=2047 => Charset::from_collation_id(u64::from(id - 1024)),
            _ => match Collation::resolve(CollationId::from(id)).charset() {
                "unknown" => Charset::Other,
                name => Charset::from_name(name),
            },
        }
    }

    /// The charset of an `information_schema` `CHARACTER_SET_NAME`.
    pub(crate) fn from_name(name: &str) -> Charset {
        match name.to_ascii_lowercase().as_str() {
            "binary" => Charset::Binary,
            "utf8" | "utf8mb3" | "utf8mb4" => Charset::Utf8,
            "latin1" => Charset::Latin1,
            "ascii" => Charset::Ascii,
            "ucs2" | "utf16" => Charset::Utf16Be,
            "utf16le" => Charset::Utf16Le,
            "utf32" => Charset::Utf32Be,
            _ => Charset::Other,
        }
    }

    /// Decodes text in this charset. [`Charset::Binary`] is decoded as lossy UTF-8 here (callers base64 it).
    pub(crate) fn decode<'a>(self, bytes: &'a [u8]) -> Cow<'a, str> {
        match self {
            // `from_utf8` validates valid text faster than the lossy decoder; only invalid bytes take the slow path.
            Charset::Utf8 | Charset::Other | Charset::Binary => match std::str::from_utf8(bytes) {
                Ok(s) => Cow::Borrowed(s),
                Err(_) => String::from_utf8_lossy(bytes),
            },
            Charset::Latin1 => match std::str::from_utf8(bytes) {
                Ok(s) if s.is_ascii() => Cow::Borrowed(s),
                _ => Cow::Owned(bytes.iter().map(|&b| cp1252(b)).collect()),
            },
            Charset::Ascii => match std::str::from_utf8(bytes) {
                Ok(s) if s.is_ascii() => Cow::Borrowed(s),
                _ => Cow::Owned(bytes.iter().map(|&b| if b.is_ascii() { b as char } else { '\u{FFFD}' }).collect()),
            },
            Charset::Utf16Be => Cow::Owned(utf16(bytes, u16::from_be_bytes)),
            Charset::Utf16Le => Cow::Owned(utf16(bytes, u16::from_le_bytes)),
            Charset::Utf32Be => {
                let mut s = String::with_capacity(bytes.len() / 4);
                let mut chunks = bytes.chunks_exact(4);
                for c in &mut chunks {
                    let u = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
                    s.push(char::from_u32(u).unwrap_or('\u{FFFD}'));
                }
                if !chunks.remainder().is_empty() {
                    s.push('\u{FFFD}');
                }
                Cow::Owned(s)
            }
        }
    }
}

fn utf16(bytes: &[u8], unit: fn([u8; 2]) -> u16) -> String {
    let mut chunks = bytes.chunks_exact(2);
    let units = (&mut chunks).map(|c| unit([c[0], c[1]]));
    let mut s: String = char::decode_utf16(units).map(|r| r.unwrap_or('\u{FFFD}')).collect();
    if !chunks.remainder().is_empty() {
        s.push('\u{FFFD}');
    }
    s
}

/// Windows-1252 as MySQL defines `latin1`: the five bytes Windows leaves undefined map to the C1 controls.
fn cp1252(b: u8) -> char {
    const HIGH: [char; 32] = [
        '\u{20AC}', '\u{0081}', '\u{201A}', '\u{0192}', '\u{201E}', '\u{2026}', '\u{2020}', '\u{2021}', '\u{02C6}',
        '\u{2030}', '\u{0160}', '\u{2039}', '\u{0152}', '\u{008D}', '\u{017D}', '\u{008F}', '\u{0090}', '\u{2018}',
        '\u{2019}', '\u{201C}', '\u{201D}', '\u{2022}', '\u{2013}', '\u{2014}', '\u{02DC}', '\u{2122}', '\u{0161}',
        '\u{203A}', '\u{0153}', '\u{009D}', '\u{017E}', '\u{0178}',
    ];
    match b {
        0x80..=0x9f => HIGH[usize::from(b - 0x80)],
        _ => char::from(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collation_ids() {
        let cases = [
            (63, Charset::Binary),
            (33, Charset::Utf8),     // utf8mb3_general_ci
            (45, Charset::Utf8),     // utf8mb4_general_ci
            (224, Charset::Utf8),    // utf8mb4_unicode_ci
            (255, Charset::Utf8),    // MySQL 8 utf8mb4_0900_ai_ci
            (309, Charset::Utf8),    // MySQL 8 utf8mb4_0900_bin
            (8, Charset::Latin1),    // latin1_swedish_ci
            (47, Charset::Latin1),   // latin1_bin
            (11, Charset::Ascii),    // ascii_general_ci
            (35, Charset::Utf16Be),  // ucs2_general_ci
            (54, Charset::Utf16Be),  // utf16_general_ci
            (56, Charset::Utf16Le),  // utf16le_general_ci
            (60, Charset::Utf32Be),  // utf32_general_ci
            (28, Charset::Other),    // gbk_chinese_ci
            (1069, Charset::Utf8),   // MariaDB utf8mb4_general_nopad_ci
            (1071, Charset::Latin1), // MariaDB latin1_nopad_bin (47 + 1024)
            (2305, Charset::Utf8),   // MariaDB utf8mb4_uca1400_ai_ci family
            (608, Charset::Utf8),    // MariaDB utf8mb4_croatian_mysql561_ci
            (9999, Charset::Other),
            (u64::MAX, Charset::Other),
        ];
        for (id, expected) in cases {
            assert_eq!(Charset::from_collation_id(id), expected, "collation {id}");
        }
    }

    #[test]
    fn names() {
        assert_eq!(Charset::from_name("UTF8MB4"), Charset::Utf8);
        assert_eq!(Charset::from_name("utf8mb3"), Charset::Utf8);
        assert_eq!(Charset::from_name("latin1"), Charset::Latin1);
        assert_eq!(Charset::from_name("binary"), Charset::Binary);
        assert_eq!(Charset::from_name("koi8r"), Charset::Other);
    }

    #[test]
    fn decoding() {
        let cases: &[(Charset, &[u8], &str)] = &[
            (Charset::Utf8, "😀 é".as_bytes(), "😀 é"),
            (Charset::Utf8, b"a\xffb", "a\u{FFFD}b"),
            (Charset::Latin1, b"caf\xe9", "café"),
            (Charset::Latin1, b"\x80\x81\x9f\xff", "€\u{81}Ÿÿ"),
            (Charset::Latin1, b"plain", "plain"),
            (Charset::Ascii, b"ok\xe9", "ok\u{FFFD}"),
            (Charset::Utf16Be, &[0x00, 0xe9, 0xd8, 0x3d, 0xde, 0x00], "é😀"),
            (Charset::Utf16Be, &[0x00, 0x41, 0x00], "A\u{FFFD}"),
            (Charset::Utf16Le, &[0xe9, 0x00], "é"),
            (Charset::Utf32Be, &[0, 1, 0xf6, 0x00, 0, 0, 0, 0x41], "😀A"),
            (Charset::Utf32Be, &[0, 0x11, 0, 0], "\u{FFFD}"),
            (Charset::Other, b"x\xfe", "x\u{FFFD}"),
        ];
        for (cs, input, expected) in cases {
            assert_eq!(cs.decode(input), *expected, "{cs:?} {input:?}");
        }
    }
}
