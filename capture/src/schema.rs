//! information_schema queries: column facts the binlog lacks (MariaDB's JSON columns are LONGTEXT with a
//! `json_valid` check), primary keys and table lists for snapshots.

use cdc_contract::TableId;
use mysql_async::prelude::*;
use mysql_async::Conn;

use crate::position::Flavor;
use crate::config::TableFilter;
use crate::decode::SchemaColumn;

/// The columns of a table in ordinal order; empty when the table no longer exists.
pub async fn columns(conn: &mut Conn, flavor: Flavor, table: &TableId) -> mysql_async::Result<Vec<SchemaColumn>> {
    let json = match flavor {
        Flavor::MariaDb => {
            "EXISTS (SELECT 1 FROM information_schema.CHECK_CONSTRAINTS k
               WHERE k.CONSTRAINT_SCHEMA = c.TABLE_SCHEMA AND k.TABLE_NAME = c.TABLE_NAME
                 AND k.CHECK_CLAUSE LIKE CONCAT('%json_valid(`', c.COLUMN_NAME, '`)%'))"
        }
        Flavor::MySql => "c.DATA_TYPE = 'json'",
    };
    let sql = format!(
        "SELECT c.COLUMN_NAME, LOWER(c.DATA_TYPE), c.COLUMN_TYPE, c.CHARACTER_SET_NAME, c.COLUMN_KEY = 'PRI', {json}
         FROM information_schema.COLUMNS c
         WHERE c.TABLE_SCHEMA = ? AND c.TABLE_NAME = ? ORDER BY c.ORDINAL_POSITION"
    );
    conn.exec_map(
        sql,
        (&table.database, &table.table),
        |(name, data_type, column_type, charset, pk, is_json): (String, String, String, Option<String>, bool, bool)| {
            SchemaColumn { name, data_type, column_type, charset, is_json, is_primary_key: pk }
        },
    )
    .await
}

/// The primary key columns of a table, in key order; empty without a primary key.
pub async fn primary_key(conn: &mut Conn, table: &TableId) -> mysql_async::Result<Vec<String>> {
    conn.exec(
        "SELECT COLUMN_NAME FROM information_schema.STATISTICS
         WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX",
        (&table.database, &table.table),
    )
    .await
}

/// The base tables the filter captures, in name order.
pub async fn captured_tables(conn: &mut Conn, filter: &TableFilter) -> mysql_async::Result<Vec<TableId>> {
    let all: Vec<(String, String)> = conn
        .query(
            "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES
             WHERE TABLE_TYPE = 'BASE TABLE'
               AND TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')
             ORDER BY TABLE_SCHEMA, TABLE_NAME",
        )
        .await?;
    Ok(all.into_iter().filter(|(d, t)| filter.matches(d, t)).map(|(d, t)| TableId::new(d, t)).collect())
}

/// Quotes an identifier with backticks.
pub fn quote(ident: &str) -> String {
    format!("`{}`", ident.replace('`', "``"))
}
