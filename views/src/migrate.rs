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
        client.query(statement).execute().await?;
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
