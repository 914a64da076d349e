//! Compressed binlog events to the events they stand for. No I/O.
//!
//! - MySQL 8.0.20+ with `binlog_transaction_compression=ON` writes a transaction's events (BEGIN, table maps, rows
//!   events, XID) zstd-compressed into one TRANSACTION_PAYLOAD event that follows the transaction's GTID event.
//!   [`payload_events`] decompresses it and parses the inner events, which carry no checksums.
//! - MariaDB with `log_bin_compress=ON` writes QUERY and rows events above `log_bin_compress_min_len` as
//!   QUERY_COMPRESSED and WRITE/UPDATE/DELETE_ROWS_COMPRESSED(_V1) events: the event's head (post-header, status
//!   variables and database name; or table id, flags, width and column bitmaps) as usual, then the rest zlib
//!   compressed behind a small header (see [`mariadb_inflate`]). [`mariadb_uncompressed`] rebuilds the uncompressed
//!   event, which mysql_common then parses like any other.
//!
//! Malformed input gives an error, never a panic: every length is checked before mysql_common reads the bytes.

use std::io::{self, Read};

use mysql_async::binlog::events::{Event, FormatDescriptionEvent, TransactionPayloadEvent};

/// MySQL's TRANSACTION_PAYLOAD_EVENT.
pub(crate) const TRANSACTION_PAYLOAD: u8 = 40;
/// MariaDB's QUERY_COMPRESSED_EVENT.
pub(crate) const MARIADB_QUERY_COMPRESSED: u8 = 165;
/// MariaDB's WRITE/UPDATE/DELETE_ROWS_COMPRESSED_EVENT_V1 (166-168) and WRITE/UPDATE/DELETE_ROWS_COMPRESSED_EVENT
/// (169-171, the v2 layout with a variable header).
const MARIADB_ROWS_COMPRESSED_V1: u8 = 166;
const MARIADB_ROWS_COMPRESSED_V2: u8 = 169;
const MARIADB_ROWS_COMPRESSED_LAST: u8 = 171;

/// The common event header: timestamp, type, server id, event size, log position, flags.
const HEADER_LEN: usize = 19;
/// Table id (6 bytes) and flags (2) of a rows event.
const ROWS_HEADER_LEN_V1: usize = 8;
/// The post-header of a QUERY event: thread id, exec time, db length, error code, status variables length.
const QUERY_POST_HEADER_LEN: usize = 13;

/// Whether an event of this type is one of MariaDB's compressed events.
pub(crate) fn is_mariadb_compressed(event_type: u8) -> bool {
    (MARIADB_QUERY_COMPRESSED..=MARIADB_ROWS_COMPRESSED_LAST).contains(&event_type)
}

/// The events inside a TRANSACTION_PAYLOAD event, in order.
pub(crate) fn payload_events(event: &Event) -> io::Result<Vec<Event>> {
    let payload = event.read_event::<TransactionPayloadEvent<'_>>()?;
    let mut reader = payload.decompressed()?;
    let fde = without_checksums(event.fde());
    let mut events = Vec::new();
    while reader.has_data_left()? {
        let mut header = [0u8; HEADER_LEN];
        reader.read_exact(&mut header)?;
        let size = u32::from_le_bytes(header[9..13].try_into().expect("4 bytes")) as usize;
        if size < HEADER_LEN {
            return Err(invalid(format!("inner event {} of the payload has size {size}", events.len())));
        }
        if header[4] == TRANSACTION_PAYLOAD {
            return Err(invalid("a transaction payload inside a transaction payload".into()));
        }
        let mut bytes = Vec::with_capacity(size);
        bytes.extend_from_slice(&header);
        (&mut reader).take((size - HEADER_LEN) as u64).read_to_end(&mut bytes)?;
        if bytes.len() != size {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the payload ends inside an event"));
        }
        events.push(Event::read(&fde, &bytes[..])?);
    }
    Ok(events)
}

/// The uncompressed event a MariaDB compressed event stands for: same header (with the uncompressed type and size),
/// same head, the inflated body.
pub(crate) fn mariadb_uncompressed(event: &Event) -> io::Result<Event> {
    let header = event.header();
    let event_type = header.event_type_raw();
    let data = event.data();
    let (head_len, new_type) = if event_type == MARIADB_QUERY_COMPRESSED {
        let post_header = post_header_len(event.fde(), event_type, QUERY_POST_HEADER_LEN);
        if data.len() < post_header.max(QUERY_POST_HEADER_LEN) {
            return Err(short("query"));
        }
        let db_len = data[8] as usize;
        let status_len = u16::from_le_bytes([data[11], data[12]]) as usize;
        (post_header + status_len + db_len + 1, 2)
    } else if (MARIADB_ROWS_COMPRESSED_V1..=MARIADB_ROWS_COMPRESSED_LAST).contains(&event_type) {
        let v2 = event_type >= MARIADB_ROWS_COMPRESSED_V2;
        let mut at = ROWS_HEADER_LEN_V1;
        if v2 {
            let var = data.get(at..at + 2).ok_or_else(|| short("rows"))?;
            at += u16::from_le_bytes([var[0], var[1]]) as usize;
        }
        let (width, n) = lenenc(data.get(at..).ok_or_else(|| short("rows"))?).ok_or_else(|| short("rows"))?;
        at += n;
        let bitmap = usize::try_from(width.div_ceil(8)).map_err(|_| short("rows"))?;
        // 0: write, 1: update (two column bitmaps), 2: delete.
        let kind = (event_type - if v2 { MARIADB_ROWS_COMPRESSED_V2 } else { MARIADB_ROWS_COMPRESSED_V1 }) as usize;
        at = at.saturating_add(bitmap.saturating_mul(if kind == 1 { 2 } else { 1 }));
        // WRITE_ROWS_EVENT_V1 is 23, WRITE_ROWS_EVENT (v2) 30.
        (at, if v2 { 30 } else { 23 } + kind as u8)
    } else {
        return Err(invalid(format!("event type {event_type} is not a MariaDB compressed event")));
    };
    let compressed = data.get(head_len..).filter(|c| !c.is_empty()).ok_or_else(|| short("compressed"))?;
    let body = mariadb_inflate(compressed)?;
    let size = HEADER_LEN + head_len + body.len();
    let size32 = u32::try_from(size).map_err(|_| invalid(format!("uncompressed event of {size} bytes")))?;
    let mut bytes = Vec::with_capacity(size);
    bytes.extend_from_slice(&header.timestamp().to_le_bytes());
    bytes.push(new_type);
    bytes.extend_from_slice(&header.server_id().to_le_bytes());
    bytes.extend_from_slice(&size32.to_le_bytes());
    bytes.extend_from_slice(&header.log_pos().to_le_bytes());
    bytes.extend_from_slice(&header.flags_raw().to_le_bytes());
    bytes.extend_from_slice(&data[..head_len]);
    bytes.extend_from_slice(&body);
    Event::read(&without_checksums(event.fde()), &bytes[..])
}

/// Inflates MariaDB's compressed record: one byte (bit 7 set; bits 4-6 the algorithm, 0 = zlib; bits 0-2 the number
/// of bytes of the uncompressed length), the uncompressed length big-endian, then the zlib stream.
pub(crate) fn mariadb_inflate(record: &[u8]) -> io::Result<Vec<u8>> {
    let (&first, rest) = record.split_first().ok_or_else(|| short("compressed"))?;
    if first & 0x80 == 0 {
        return Err(invalid(format!("compressed record header {first:#04x} lacks the compressed bit")));
    }
    let algorithm = (first & 0x70) >> 4;
    if algorithm != 0 {
        return Err(invalid(format!("unknown compression algorithm {algorithm} (only zlib, 0, is defined)")));
    }
    let len_bytes = (first & 0x07) as usize;
    if !(1..=4).contains(&len_bytes) || rest.len() < len_bytes {
        return Err(invalid(format!("bad length of the uncompressed length: {len_bytes}")));
    }
    let len = rest[..len_bytes].iter().fold(0usize, |acc, &b| (acc << 8) | b as usize);
    let mut out = Vec::with_capacity(len);
    flate2::read::ZlibDecoder::new(&rest[len_bytes..]).take(len as u64 + 1).read_to_end(&mut out)?;
    if out.len() != len {
        return Err(invalid(format!("inflated to {} bytes, the header says {len}", out.len())));
    }
    Ok(out)
}

/// The format description of the stream, for events that carry no checksum (inside a payload, or rebuilt here).
pub(super) fn without_checksums(fde: &FormatDescriptionEvent<'static>) -> FormatDescriptionEvent<'static> {
    let mut footer = fde.footer();
    footer.set_checksum_enabled(false);
    fde.clone().with_footer(footer)
}

/// The post-header length the format description gives for `event_type`, or `default`.
fn post_header_len(fde: &FormatDescriptionEvent<'static>, event_type: u8, default: usize) -> usize {
    let lengths = fde.event_type_header_lengths();
    match lengths.get(event_type as usize - 1) {
        Some(&n) if n > 0 => n as usize,
        _ => default,
    }
}

/// A length-encoded integer (`net_field_length`) and its size in bytes.
fn lenenc(bytes: &[u8]) -> Option<(u64, usize)> {
    let uint = |n: usize| bytes.get(1..1 + n).map(|b| b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | x as u64));
    match *bytes.first()? {
        b @ 0..=250 => Some((b as u64, 1)),
        252 => uint(2).map(|v| (v, 3)),
        253 => uint(3).map(|v| (v, 4)),
        254 => uint(8).map(|v| (v, 9)),
        _ => None,
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

fn short(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, format!("the {what} part of the event is truncated"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::event_tests::mariadb_deflate;

    #[test]
    fn mariadb_records_inflate_and_bad_ones_are_refused() {
        for data in [&b"x"[..], &[7u8; 300][..], &vec![1u8; 70_000][..]] {
            assert_eq!(mariadb_inflate(&mariadb_deflate(data)).unwrap(), data);
        }
        let good = mariadb_deflate(b"hello world");
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", vec![]),
            ("no compressed bit", [&[0x01][..], &good[1..]].concat()),
            ("another algorithm", [&[0x91][..], &good[1..]].concat()),
            ("no length bytes", [&[0x80][..], &good[1..]].concat()),
            ("length too large", [&[0x81, 12][..], &good[2..]].concat()),
            ("truncated zlib", good[..good.len() - 3].to_vec()),
        ];
        for (what, record) in cases {
            assert!(mariadb_inflate(&record).is_err(), "{what}");
        }
    }

    #[test]
    fn length_encoded_integers() {
        assert_eq!(lenenc(&[5]), Some((5, 1)));
        assert_eq!(lenenc(&[252, 0x34, 0x12]), Some((0x1234, 3)));
        assert_eq!(lenenc(&[253, 1, 0, 0]), Some((1, 4)));
        assert_eq!(lenenc(&[252, 1]), None);
        assert_eq!(lenenc(&[251]), None);
    }
}
