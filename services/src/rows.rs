//! Multi-row statements: the placeholders of many rows, and id lists.

use mysql_async::prelude::*;
use mysql_async::{Transaction, Value};

/// At most this many rows per multi-row statement (far below the protocol's 65,535 parameters).
pub const CHUNK: usize = 500;

/// `INSERT INTO <into> VALUES <rows> <tail>` (`tail`: e.g. `ON DUPLICATE KEY UPDATE ...`), [`CHUNK`] rows per
/// statement. A row is a list of parameters, or `("?", value)` pairs via [`insert_exprs`].
pub async fn insert(tx: &mut Transaction<'static>, into: &str, tail: &str, rows: Vec<Vec<Value>>) -> Result<(), mysql_async::Error> {
    let width = rows.first().map_or(0, Vec::len);
    insert_exprs(tx, into, &vec!["?"; width].join(", "), tail, rows).await
}

/// Like [`insert`], with each row written as `(<row>)`, `row` holding one `?` per parameter (and any SQL around).
pub async fn insert_exprs(
    tx: &mut Transaction<'static>,
    into: &str,
    row: &str,
    tail: &str,
    rows: Vec<Vec<Value>>,
) -> Result<(), mysql_async::Error> {
    for chunk in rows.chunks(CHUNK) {
        let (sql, params) = values(row, chunk);
        tx.exec_drop(format!("INSERT INTO {into} VALUES {sql} {tail}"), params).await?;
    }
    Ok(())
}

/// The `(<row>), (<row>)` of `rows` and their parameters.
fn values(row: &str, rows: &[Vec<Value>]) -> (String, Vec<Value>) {
    let row = format!("({row})");
    (vec![row.as_str(); rows.len()].join(", "), rows.iter().flatten().cloned().collect())
}

/// The text of `id IN (...)` for integer ids (no parameters needed).
pub fn id_list(ids: impl IntoIterator<Item = u64>) -> String {
    ids.into_iter().map(|id| id.to_string()).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_id_lists() {
        let cases: Vec<(&str, Vec<Vec<Value>>, &str, usize)> = vec![
            ("?", vec![], "", 0),
            ("?", vec![vec![1_u64.into()]], "(?)", 1),
            ("?, ?", vec![vec![1_u64.into(), "a".into()], vec![2_u64.into(), "b".into()]], "(?, ?), (?, ?)", 4),
            ("?, NOW(3) + INTERVAL ? SECOND", vec![vec![1_u64.into(), 2_u64.into()]], "(?, NOW(3) + INTERVAL ? SECOND)", 2),
        ];
        for (row, rows, sql, params) in cases {
            let (s, p) = values(row, &rows);
            assert_eq!((s.as_str(), p.len()), (sql, params));
        }
        assert_eq!(id_list([3, 1, 2]), "3,1,2");
    }
}
