//! Applies the schema's migrations ([`crate::schema::migrations`]) once each, recorded in `<db>.schema_migrations`,
//! and recreates objects of the current schema that are missing (someone dropped a table), refilling derived tables
//! from the entity tables. The view service runs [`ensure`] at start and again after a failed write, so a dropped
//! table costs one retry instead of a stalled stream.
//!
//! A migration's statements are recorded only after all of them succeeded; each is written so that running it again
//! after a crash half-way is harmless (`IF NOT EXISTS`, a table emptied before it is filled, a rename that swaps).
//! Migrations are meant to run from one process at a time: start one instance of a new version first.
//!
//! With a cluster (`clickhouse_cluster`), every statement goes through the same rewrite as the rest of the schema
//! ([`crate::cluster::for_servers`]: `ON CLUSTER`, Replicated engines) before it runs; `INSERT`s run unchanged on the
//! server the view writes to, and replication copies their parts.

use clickhouse::Client;

use crate::cluster::{self, Cluster};
use crate::report;

use crate::schema::{self, migrations_table, MIGRATIONS_TABLE};

/// What [`ensure`] did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Ensured {
    /// Migrations applied now, by version.
    pub applied: Vec<u32>,
    /// Objects that were missing and were created (and refilled).
    pub recreated: Vec<&'static str>,
}

/// Runs `statements` in order, each rewritten for `cluster` first.
async fn run(client: &Client, db: &str, cluster: Option<&Cluster>, statements: Vec<String>) -> Result<(), clickhouse::error::Error> {
    let statements =
        cluster::for_servers(cluster, statements, db).map_err(|e| clickhouse::error::Error::Custom(e.to_string()))?;
    for statement in &statements {
        execute(client, db, statement).await?;
    }
    Ok(())
}

/// Runs one statement of the schema; the fill of `report_lines` ([`report::fill`]) runs as one statement per range
/// of line ids ([`report::fill_range`]), which bounds its memory.
pub async fn execute(client: &Client, db: &str, statement: &str) -> Result<(), clickhouse::error::Error> {
    if statement == report::fill(db) {
        return per_line_range(client, db, |first, last| report::fill_range(db, first, last)).await;
    }
    client.query(statement).execute().await
}

/// Runs `statement(first, last)` for each range of line ids of `lines_state` ([`report::ranges`]).
pub async fn per_line_range(client: &Client, db: &str, statement: impl Fn(u64, u64) -> String) -> Result<(), clickhouse::error::Error> {
    let (count, min, max) =
        client.query(&format!("SELECT count(), min(id), max(id) FROM {db}.lines_state")).fetch_one::<(u64, u64, u64)>().await?;
    if count == 0 {
        return Ok(());
    }
    for (first, last) in report::ranges(min, max) {
        // One part per statement: readers see a line's new row and its cancels together.
        client
            .query(&statement(first, last))
            .with_setting("max_query_size", "67108864")
            .with_setting("min_insert_block_size_rows", "1000000000")
            .with_setting("min_insert_block_size_bytes", "100000000000")
            .execute()
            .await?;
    }
    Ok(())
}

/// Brings `db` to the current schema: pending migrations, then missing objects; every DDL statement rewritten for
/// `cluster` when there is one.
pub async fn ensure(client: &Client, db: &str, cluster: Option<&Cluster>) -> Result<Ensured, clickhouse::error::Error> {
    run(client, db, cluster, vec![format!("CREATE DATABASE IF NOT EXISTS {db}"), migrations_table(db)]).await?;
    let done: Vec<u32> =
        client.query(&format!("SELECT version FROM {db}.{MIGRATIONS_TABLE}")).fetch_all::<u32>().await?;
    let mut ensured = Ensured::default();
    for migration in schema::migrations(db) {
        if done.contains(&migration.version) {
            continue;
        }
        tracing::info!(database = db, version = migration.version, name = migration.name, "applying migration");
        run(client, db, cluster, migration.statements).await?;
        client
            .query(&format!("INSERT INTO {db}.{MIGRATIONS_TABLE} (version, name) VALUES (?, ?)"))
            .bind(migration.version)
            .bind(migration.name)
            .execute()
            .await?;
        ensured.applied.push(migration.version);
    }
    let existing: Vec<String> = client
        .query("SELECT name FROM system.tables WHERE database = ?")
        .bind(db)
        .fetch_all::<String>()
        .await?;
    for object in schema::objects(db) {
        if existing.iter().any(|name| name == object.name) {
            continue;
        }
        if ensured.applied.is_empty() {
            if object.refill.is_empty() && object.name.ends_with("_state") {
                tracing::error!(
                    database = db,
                    table = object.name,
                    "entity table missing: recreated empty, its rows are lost; rebuild the report by consuming the \
                     topics from the beginning into a new database (a new `database` and `group`)"
                );
            } else {
                tracing::warn!(database = db, table = object.name, "table missing: recreating and refilling it");
            }
        }
        let mut statements = vec![object.create];
        statements.extend(object.refill);
        run(client, db, cluster, statements).await?;
        ensured.recreated.push(object.name);
    }
    Ok(ensured)
}
