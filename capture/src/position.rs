//! Source positions: binlog file/offset and GTID sets, for MariaDB (`domain-server-seq`) and MySQL (`uuid:n`).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A binlog coordinate: file name and byte offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinlogPosition {
    /// File name, e.g. `binlog.000003`.
    pub file: String,
    /// Byte offset in the file.
    pub pos: u64,
}

impl BinlogPosition {
    /// A coordinate.
    pub fn new(file: impl Into<String>, pos: u64) -> BinlogPosition {
        BinlogPosition { file: file.into(), pos }
    }

    /// The numeric suffix of the file name, which orders files of one server.
    pub fn file_seq(&self) -> Option<u64> {
        self.file.rsplit('.').next()?.parse().ok()
    }
}

impl fmt::Display for BinlogPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.pos)
    }
}

/// One transaction identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gtid {
    /// MariaDB: domain, server id, sequence number.
    MariaDb { domain: u32, server: u32, seq: u64 },
    /// MySQL: source UUID (lowercase, hyphenated, optionally `uuid:tag`) and transaction number.
    MySql { uuid: String, gno: u64 },
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Gtid::MariaDb { domain, server, seq } => write!(f, "{domain}-{server}-{seq}"),
            Gtid::MySql { uuid, gno } => write!(f, "{uuid}:{gno}"),
        }
    }
}

/// The set of transactions executed up to a point: MariaDB keeps the last GTID per domain, MySQL keeps intervals per
/// source UUID. Rendered in each server's own syntax (`0-1-42,1-2-7` or `uuid:1-42:50`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GtidSet {
    mariadb: BTreeMap<u32, (u32, u64)>,
    mysql: BTreeMap<String, Vec<(u64, u64)>>,
}

impl GtidSet {
    /// Records a committed transaction.
    pub fn add(&mut self, gtid: &Gtid) {
        match gtid {
            Gtid::MariaDb { domain, server, seq } => {
                self.mariadb.insert(*domain, (*server, *seq));
            }
            Gtid::MySql { uuid, gno } => {
                let ranges = self.mysql.entry(uuid.clone()).or_default();
                match ranges.last_mut() {
                    Some(last) if last.1 + 1 == *gno => last.1 = *gno,
                    Some(last) if last.1 >= *gno => {}
                    _ => ranges.push((*gno, *gno)),
                }
            }
        }
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.mariadb.is_empty() && self.mysql.is_empty()
    }

    /// Parses either syntax; an empty string is the empty set.
    pub fn parse(text: &str) -> Result<GtidSet, String> {
        let mut set = GtidSet::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if let Some((uuid, rest)) = part.split_once(':') {
                let ranges = set.mysql.entry(uuid.to_ascii_lowercase()).or_default();
                for interval in rest.split(':') {
                    let (a, b) = interval.split_once('-').unwrap_or((interval, interval));
                    let a = a.parse().map_err(|_| format!("bad GTID interval {interval:?} in {text:?}"))?;
                    let b = b.parse().map_err(|_| format!("bad GTID interval {interval:?} in {text:?}"))?;
                    ranges.push((a, b));
                }
            } else {
                let mut it = part.split('-');
                let mut next = || it.next().and_then(|n| n.parse::<u64>().ok());
                match (next(), next(), next()) {
                    (Some(d), Some(s), Some(n)) if d <= u32::MAX as u64 && s <= u32::MAX as u64 => {
                        set.mariadb.insert(d as u32, (s as u32, n));
                    }
                    _ => return Err(format!("bad GTID {part:?} in {text:?}")),
                }
            }
        }
        Ok(set)
    }
}

impl fmt::Display for GtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut sep = |f: &mut fmt::Formatter<'_>| {
            let s = if first { "" } else { "," };
            first = false;
            f.write_str(s)
        };
        for (domain, (server, seq)) in &self.mariadb {
            sep(f)?;
            write!(f, "{domain}-{server}-{seq}")?;
        }
        for (uuid, ranges) in &self.mysql {
            sep(f)?;
            f.write_str(uuid)?;
            for (a, b) in ranges {
                if a == b {
                    write!(f, ":{a}")?;
                } else {
                    write!(f, ":{a}-{b}")?;
                }
            }
        }
        Ok(())
    }
}

impl Serialize for GtidSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for GtidSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        GtidSet::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Formats a 16-byte MySQL server UUID in its canonical hyphenated form.
pub fn format_uuid(sid: &[u8; 16]) -> String {
    let h: String = sid.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mariadb_sets_keep_the_last_gtid_per_domain() {
        let mut set = GtidSet::default();
        for (d, s, n) in [(0, 1, 5), (0, 1, 6), (1, 2, 3)] {
            set.add(&Gtid::MariaDb { domain: d, server: s, seq: n });
        }
        assert_eq!(set.to_string(), "0-1-6,1-2-3");
        assert_eq!(GtidSet::parse("0-1-6,1-2-3").unwrap(), set);
    }

    #[test]
    fn mysql_sets_merge_intervals() {
        let uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562".to_string();
        let mut set = GtidSet::default();
        for gno in [1, 2, 3, 5] {
            set.add(&Gtid::MySql { uuid: uuid.clone(), gno });
        }
        assert_eq!(set.to_string(), format!("{uuid}:1-3:5"));
        assert_eq!(GtidSet::parse(&set.to_string()).unwrap(), set);
    }

    #[test]
    fn bad_sets_are_rejected() {
        for bad in ["0-1", "x-1-2", "uuid:a-b"] {
            assert!(GtidSet::parse(bad).is_err(), "{bad}");
        }
        assert!(GtidSet::parse("").unwrap().is_empty());
    }

    #[test]
    fn uuids_format_canonically() {
        let sid = [0x3e, 0x11, 0xfa, 0x47, 0x71, 0xca, 0x11, 0xe1, 0x9e, 0x33, 0xc8, 0x0a, 0xa9, 0x42, 0x95, 0x62];
        assert_eq!(format_uuid(&sid), "3e11fa47-71ca-11e1-9e33-c80aa9429562");
    }
}
