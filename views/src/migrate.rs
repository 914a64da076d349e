//! Applies the schema's migrations ([`crate::schema::migrations`]) once each, recorded in `<db>.schema_migrations`,
//! and recreates objects of the current schema that are missing (someone dropped a table), refilling derived tables
//! from the entity tables. The view service runs [`ensure`] at start and again after a failed write, so a dropped
//! table costs one retry instead of a stalled stream.
//!
//! A migration's statements are recorded only after all of them succeeded; each is written so that running it again
//! after a crash half-way is harmless (`IF NOT EXISTS`, a table emptied before it is filled, a rename that swaps).
//! Migrations are meant to run from one process at a time: start one instance of a new version first.

use clickhouse::Client;

use crate::schema::{self, migrations_table, MIGRATIONS_TABLE};

/// What [`ensure`] did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Ensured {
    /// Migrations applied now, by version.
    pub applied: Vec<u32>,
    /// Objects that were missing and were created (and refilled).
    pub recreated: Vec<&'static str>,
}

/// Brings `db` to the current schema: pending migrations, then missing objects.
pub async fn ensure(client: &Client, db: &str) -> Result<Ensured, clickhouse::error::Error> {
    client.query(&format!("CREATE DATABASE IF NOT EXISTS {db}")).execute().await?;
    client.query(&migrations_table(db)).execute().await?;
    let done: Vec<u32> =
        client.query(&format!("SELECT version FROM {db}.{MIGRATIONS_TABLE}")).fetch_all::<u32>().await?;
    let mut ensured = Ensured::default();
    for migration in schema::migrations(db) {
        if done.contains(&migration.version) {
            continue;
        }
        tracing::info!(database = db, version = migration.version, name = migration.name, "applying migration");
        for statement in &migration.statements {
            client.query(statement).execute().await?;
        }
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
        client.query(&object.create).execute().await?;
        for statement in &object.refill {
            client.query(statement).execute().await?;
        }
        ensured.recreated.push(object.name);
    }
    Ok(ensured)
}
