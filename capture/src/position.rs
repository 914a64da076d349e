//! Source positions: binlog file/offset and GTID sets, for MariaDB (`domain-server-seq`) and MySQL (`uuid:n`).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The server family, which decides the dialect of a few replication commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// MariaDB 10.5+.
    MariaDb,
    /// MySQL 8.0+.
    MySql,
}

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
    /// MySQL: source UUID (lowercase, hyphenated, `uuid:tag` for a tagged GTID of MySQL 8.3+) and transaction
    /// number.
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
/// source UUID and tag. Rendered in each server's own syntax (`0-1-42,1-2-7` or `uuid:1-42:50:tag:1-3`).
///
/// MySQL sets are kept per *tsid*, `uuid` or `uuid:tag` (the tag lowercased), with sorted, disjoint, non-adjacent
/// closed intervals, so equal sets compare equal however they were written. A tag (MySQL 8.3+) in the text switches
/// the tag of the intervals after it: `uuid:1-5:tag:3:tag2:7` has `uuid` 1-5, `uuid:tag` 3 and `uuid:tag2` 7.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GtidSet {
    mariadb: BTreeMap<u32, (u32, u64)>,
    mysql: BTreeMap<String, Vec<(u64, u64)>>,
}

/// The longest GTID tag MySQL accepts.
const MAX_TAG_LEN: usize = 32;

/// A GTID tag in its canonical (lowercase) form, if `text` is one: letters, digits and underscores, starting with a
/// letter or an underscore, at most 32 characters, case-insensitive.
fn tag(text: &str) -> Option<String> {
    let first = text.chars().next()?;
    let valid = text.len() <= MAX_TAG_LEN
        && (first.is_ascii_alphabetic() || first == '_')
        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    valid.then(|| text.to_ascii_lowercase())
}

/// Whether `text` is a hyphenated UUID (32 hex digits, hyphens after 8, 12, 16 and 20 of them).
fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text.char_indices().all(|(i, c)| if matches!(i, 8 | 13 | 18 | 23) { c == '-' } else { c.is_ascii_hexdigit() })
}

/// Adds the closed interval `[a, b]` to sorted, disjoint, non-adjacent `ranges`, merging what it touches.
fn add_interval(ranges: &mut Vec<(u64, u64)>, a: u64, b: u64) {
    let at = ranges.partition_point(|r| r.1.saturating_add(1) < a);
    let mut end = at;
    let (mut lo, mut hi) = (a, b);
    while end < ranges.len() && ranges[end].0 <= hi.saturating_add(1) {
        lo = lo.min(ranges[end].0);
        hi = hi.max(ranges[end].1);
        end += 1;
    }
    ranges.splice(at..end, [(lo, hi)]);
}

/// Whether sorted, disjoint `outer` contains every number of `inner`.
fn covers(outer: &[(u64, u64)], inner: &[(u64, u64)]) -> bool {
    inner.iter().all(|&(a, b)| {
        let i = outer.partition_point(|r| r.1 < a);
        outer.get(i).is_some_and(|r| r.0 <= a && b <= r.1)
    })
}

impl GtidSet {
    /// Records a committed transaction.
    pub fn add(&mut self, gtid: &Gtid) {
        match gtid {
            Gtid::MariaDb { domain, server, seq } => {
                self.mariadb.insert(*domain, (*server, *seq));
            }
            Gtid::MySql { uuid, gno } => {
                let ranges = match self.mysql.get_mut(uuid.as_str()) {
                    Some(ranges) => ranges,
                    None => self.mysql.entry(uuid.clone()).or_default(),
                };
                // The common case, the next transaction of the newest interval, without a search.
                match ranges.last_mut() {
                    Some(last) if last.1.checked_add(1) == Some(*gno) => last.1 = *gno,
                    _ => add_interval(ranges, *gno, *gno),
                }
            }
        }
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.mariadb.is_empty() && self.mysql.is_empty()
    }

    /// Parses either syntax; an empty string is the empty set. MySQL's output may span lines (`uuid:1-5,\nuuid:3`).
    pub fn parse(text: &str) -> Result<GtidSet, String> {
        let mut set = GtidSet::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if let Some((uuid, rest)) = part.split_once(':') {
                let uuid = uuid.trim().to_ascii_lowercase();
                if !is_uuid(&uuid) {
                    return Err(format!("bad server UUID {uuid:?} in GTID set {text:?}"));
                }
                let mut tsid = uuid.clone();
                let mut intervals = 0;
                for item in rest.split(':').map(str::trim) {
                    if item.starts_with(|c: char| c.is_ascii_digit()) {
                        let (a, b) = item.split_once('-').unwrap_or((item, item));
                        let bad = || format!("bad GTID interval {item:?} in {text:?}");
                        let a: u64 = a.parse().map_err(|_| bad())?;
                        let b: u64 = b.parse().map_err(|_| bad())?;
                        if a == 0 || b < a {
                            return Err(bad());
                        }
                        add_interval(set.mysql.entry(tsid.clone()).or_default(), a, b);
                        intervals += 1;
                    } else {
                        let tag = tag(item).ok_or_else(|| format!("bad GTID tag {item:?} in {text:?}"))?;
                        tsid = format!("{uuid}:{tag}");
                        intervals = 0;
                    }
                }
                if intervals == 0 {
                    return Err(format!("GTID set {text:?}: {part:?} ends without an interval"));
                }
            } else {
                let mut it = part.split('-');
                let mut next = || it.next().and_then(|n| n.parse::<u64>().ok());
                match (next(), next(), next(), it.next()) {
                    (Some(d), Some(s), Some(n), None) if d <= u32::MAX as u64 && s <= u32::MAX as u64 => {
                        set.mariadb.insert(d as u32, (s as u32, n));
                    }
                    _ => return Err(format!("bad GTID {part:?} in {text:?}")),
                }
            }
        }
        Ok(set)
    }

    /// Whether every transaction of `other` is in this set: for MySQL every interval of every tsid; for MariaDB,
    /// whose sets hold the last GTID per domain, each domain of `other` is here with a sequence number at least as
    /// high.
    pub fn contains(&self, other: &GtidSet) -> bool {
        let mariadb = other
            .mariadb
            .iter()
            .all(|(domain, (_, seq))| self.mariadb.get(domain).is_some_and(|(_, mine)| mine >= seq));
        let mysql = other
            .mysql
            .iter()
            .all(|(tsid, ranges)| covers(self.mysql.get(tsid).map_or(&[][..], Vec::as_slice), ranges));
        mariadb && mysql
    }

    /// MariaDB: the last GTID per domain, as `(domain, server, seq)`.
    pub fn mariadb_domains(&self) -> impl Iterator<Item = (u32, u32, u64)> + '_ {
        self.mariadb.iter().map(|(&d, &(s, n))| (d, s, n))
    }

    /// MySQL: per tsid (`uuid` or `uuid:tag`), its closed intervals in order.
    pub fn mysql_intervals(&self) -> impl Iterator<Item = (&str, &[(u64, u64)])> + '_ {
        self.mysql.iter().map(|(tsid, ranges)| (tsid.as_str(), ranges.as_slice()))
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
        // Keys sort as `uuid` < `uuid:tag` < `uuid:tag2` < the next uuid (UUIDs have one length), so one UUID's
        // untagged intervals come first and its tags follow in order, as MySQL writes them.
        let mut current: Option<&str> = None;
        for (tsid, ranges) in &self.mysql {
            let (uuid, tag) = match tsid.split_once(':') {
                Some((uuid, tag)) => (uuid, Some(tag)),
                None => (tsid.as_str(), None),
            };
            if current != Some(uuid) {
                sep(f)?;
                f.write_str(uuid)?;
                current = Some(uuid);
            }
            if let Some(tag) = tag {
                write!(f, ":{tag}")?;
            }
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

    const U: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const V: &str = "4f22ab58-82db-22f2-af44-d91bb0530673";

    /// MySQL 8.3+ syntax: a tag after the UUID switches the tag of the intervals that follow; tags are
    /// case-insensitive and written lowercase; intervals are sorted and merged; untagged intervals come first.
    #[test]
    fn tagged_mysql_sets_parse_and_format_canonically() {
        let cases: Vec<(String, String)> = vec![
            (format!("{U}:1-5"), format!("{U}:1-5")),
            (format!("{U}:tag:1-5"), format!("{U}:tag:1-5")),
            (format!("{U}:1-5:tag:3:tag2:7-9"), format!("{U}:1-5:tag:3:tag2:7-9")),
            (format!("{U}:Tag_A:1:tag_a:2"), format!("{U}:tag_a:1-2")),
            (format!("{U}:zz:1:aa:2:3"), format!("{U}:aa:2-3:zz:1")),
            (format!("{U}:aa:2,{U}:5"), format!("{U}:5:aa:2")),
            (format!("{U}:7-9:1-3:4"), format!("{U}:1-4:7-9")),
            (format!("{U}:7-9:1-3:4-6"), format!("{U}:1-9")),
            (format!("{U}:5:1-2:_x9:1"), format!("{U}:1-2:5:_x9:1")),
            (format!("{V}:t:1,\n{}:1-2", U.to_uppercase()), format!("{U}:1-2,{V}:t:1")),
            (format!("{U}:{}:1", "a".repeat(32)), format!("{U}:{}:1", "a".repeat(32))),
        ];
        for (text, canonical) in cases {
            let set = GtidSet::parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(set.to_string(), canonical, "{text}");
            assert_eq!(GtidSet::parse(&canonical).unwrap(), set, "{text}");
            let json = serde_json::to_string(&set).unwrap();
            assert_eq!(serde_json::from_str::<GtidSet>(&json).unwrap(), set, "{text}");
        }
    }

    #[test]
    fn bad_tagged_sets_are_rejected() {
        let long = "a".repeat(33);
        let bad = [
            format!("{U}:1tag:1"),
            format!("{U}:ta-g:1"),
            format!("{U}:tag"),
            format!("{U}:1:tag"),
            format!("{U}:{long}:1"),
            format!("{U}:0"),
            format!("{U}:5-3"),
            format!("{U}:"),
            "not-a-uuid:1".to_string(),
            format!("{U}:tag:1:tåg:2"),
        ];
        for text in bad {
            assert!(GtidSet::parse(&text).is_err(), "{text}");
        }
    }

    /// Tagged GTID events decode as `Gtid::MySql { uuid: "uuid:tag" }`; the set keeps them apart from the untagged
    /// transactions of the same UUID, in any order of arrival.
    #[test]
    fn tagged_gtids_are_added_per_tag_in_any_order() {
        let mut set = GtidSet::default();
        for (uuid, gno) in [(U.to_string(), 1), (format!("{U}:tag"), 1), (U.to_string(), 3), (U.to_string(), 2), (format!("{U}:tag"), 2), (U.to_string(), 2)] {
            set.add(&Gtid::MySql { uuid, gno });
        }
        assert_eq!(set.to_string(), format!("{U}:1-3:tag:1-2"));
    }

    #[test]
    fn containment_follows_each_servers_semantics() {
        let set = |t: &str| GtidSet::parse(t).unwrap();
        let cases = [
            (format!("{U}:1-10:tag:1-3"), format!("{U}:2-5:tag:3"), true),
            (format!("{U}:1-10"), format!("{U}:tag:1"), false),
            (format!("{U}:1-4:6-10"), format!("{U}:3-7"), false),
            (format!("{U}:1-10"), format!("{V}:1"), false),
            (format!("{U}:1-10"), String::new(), true),
            ("0-1-10,1-2-5".to_string(), "0-3-9".to_string(), true),
            ("0-1-10".to_string(), "0-1-11".to_string(), false),
            ("0-1-10".to_string(), "1-1-1".to_string(), false),
        ];
        for (outer, inner, expected) in cases {
            assert_eq!(set(&outer).contains(&set(&inner)), expected, "{outer} contains {inner}");
        }
    }

    #[test]
    fn bad_sets_are_rejected() {
        for bad in ["0-1", "x-1-2", "0-1-2-3", "uuid:a-b"] {
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
