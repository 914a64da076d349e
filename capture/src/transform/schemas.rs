//! Which TABLE_MAP events need information_schema facts first, also inside transaction payloads (whose inner
//! events are kept for [`Transformer::handle`], so a payload is decompressed once).

use cdc_contract::TableId;
use mysql_async::binlog::events::{Event, TableMapEvent};
use mysql_async::binlog::EventType;

use super::{compressed, Transformer};

impl Transformer {
    /// The table a TABLE_MAP event maps (also one inside a transaction payload) when it is captured and its
    /// information_schema facts are not known yet; the caller fetches them, calls [`Transformer::set_schema`] and
    /// asks again until `None`, then calls [`Transformer::handle`].
    pub fn missing_schema(&mut self, event: &Event) -> Option<TableId> {
        if event.header().event_type_raw() != compressed::TRANSACTION_PAYLOAD {
            return self.missing_schema_of(event);
        }
        let key = payload_key(&self.file, event);
        let events = match self.payload_cache.take() {
            Some((at, events)) if at == key => events,
            // A payload that cannot be read is reported by `handle`.
            _ => compressed::payload_events(event).ok()?,
        };
        let missing = events.iter().find_map(|inner| self.missing_schema_of(inner));
        self.payload_cache = Some((key, events));
        missing
    }

    fn missing_schema_of(&self, event: &Event) -> Option<TableId> {
        if event.header().event_type_raw() != EventType::TABLE_MAP_EVENT as u8 {
            return None;
        }
        let tme = event.read_event::<TableMapEvent<'_>>().ok()?;
        let id = TableId::new(tme.database_name(), tme.table_name());
        (self.filter.matches(&id.database, &id.table) && !self.schemas.contains_key(&id)).then_some(id)
    }
}

/// Identifies a transaction payload event: binlog file, end position, size.
pub(super) type PayloadKey = (String, u32, u32);

pub(super) fn payload_key(file: &str, event: &Event) -> PayloadKey {
    (file.to_owned(), event.header().log_pos(), event.header().event_size())
}

