//! [`ClickHouseViewStore`]: the writes of a batch into the reporting database, in their order.

use clickhouse::Client;

use crate::batch::{Applied, FreshnessRow};
use crate::config::{Assignment, Settings};
use crate::report::Keys;
use crate::{migrate, schema};

/// Writes batches into the reporting database.
#[derive(Clone)]
pub struct ClickHouseViewStore {
    /// Client with the reporting database as default.
    client: Client,
    /// Client without a default database (the database may have to be created).
    base: Client,
    /// The reporting database.
    db: String,
    /// The cluster the schema's DDL runs on (`clickhouse_cluster`), if any.
    cluster: Option<crate::cluster::Cluster>,
    /// This process's id in the report rows it writes ([`crate::join::writer_id`]).
    writer: u64,
    /// Whether other instances write the same report rows at once (`assignment = "group"`).
    settle: bool,
}

impl ClickHouseViewStore {
    /// Connects, applies pending migrations and recreates missing tables ([`migrate::ensure`]).
    pub async fn open(settings: &Settings) -> Result<ClickHouseViewStore, clickhouse::error::Error> {
        let c = &settings.config;
        let base = Client::default()
            .with_url(&c.clickhouse_url)
            .with_user(&c.clickhouse_user)
            .with_password(c.clickhouse_password.expose())
            .with_validation(false);
        let store = ClickHouseViewStore {
            client: base.clone().with_database(&c.database),
            db: c.database.clone(),
            base,
            cluster: settings.cluster.clone(),
            writer: crate::join::writer_id(),
            settle: c.assignment == Assignment::Group,
        };
        store.ensure_schema().await?;
        Ok(store)
    }

    /// [`migrate::ensure`] on the reporting database.
    pub async fn ensure_schema(&self) -> Result<migrate::Ensured, clickhouse::error::Error> {
        migrate::ensure(&self.base, &self.db, self.cluster.as_ref()).await
    }

    /// Inserts `(parent, id)` pairs into a key index.
    async fn index(&self, table: &str, pairs: impl Iterator<Item = (u64, u64)>) -> Result<(), clickhouse::error::Error> {
        let mut values = String::new();
        for (parent, id) in pairs {
            if !values.is_empty() {
                values.push(',');
            }
            values.push_str(&format!("({parent},{id})"));
        }
        if values.is_empty() {
            return Ok(());
        }
        self.client.query(&format!("INSERT INTO {}.{table} VALUES {values}", self.db)).execute().await
    }

    /// Brings the report rows `keys` reach up to date ([`crate::join`]).
    pub async fn recompute(&self, keys: &Keys) -> Result<crate::join::Refreshed, clickhouse::error::Error> {
        crate::join::Joiner { client: &self.client, db: &self.db, writer: self.writer, settle: self.settle }.refresh(keys).await
    }

    async fn insert<T>(&self, table: &str, rows: &[T]) -> Result<(), clickhouse::error::Error>
    where
        T: clickhouse::RowOwned + clickhouse::RowWrite,
    {
        if rows.is_empty() {
            return Ok(());
        }
        let mut insert = self.client.insert::<T>(table).await?;
        for row in rows {
            insert.write(row).await?;
        }
        insert.end().await
    }

    /// Writes a batch, and the freshness of the batch written before it; returns once ClickHouse acknowledged every
    /// statement.
    ///
    /// First the entity rows and their key-index pairs, concurrently: they are independent (each entity converges by
    /// version), and one round of inserts costs the slowest insert rather than the sum. The freshness rows of the
    /// previous batch join that round: that batch is already acknowledged, so freshness never claims a commit whose
    /// rows are not yet readable, and it costs no round of its own. Truncates follow the rows they may cover. Last,
    /// the report rows the batch reaches are computed from the entity tables' newest state, read by primary key
    /// ([`crate::join`]). Because every writer writes its entity rows before it reads them, of two view instances
    /// writing at once at least one reads the other's rows; a retried batch computes the same versions and writes
    /// nothing more.
    pub async fn write(&self, batch: &Applied, fresh: &[FreshnessRow]) -> Result<(), clickhouse::error::Error> {
        tokio::try_join!(
            self.insert("users_state", &batch.users),
            self.insert("products_state", &batch.products),
            self.insert("orders_state", &batch.orders),
            self.insert("lines_state", &batch.lines),
            self.index("lines_by_order", batch.lines.iter().map(|l| (l.order_id, l.id))),
            self.index("lines_by_product", batch.lines.iter().map(|l| (l.product_id, l.id))),
            self.index("orders_by_user", batch.orders.iter().map(|o| (o.user_id, o.id))),
            self.insert("dead_letters", &batch.dead),
            self.insert("freshness_log", fresh),
        )?;
        for (entity, version) in &batch.truncates {
            self.client.query(&schema::truncate(&self.db, entity.table(), *version)).execute().await?;
        }
        if !batch.reach.is_empty() {
            self.recompute(&batch.reach).await?;
        }
        Ok(())
    }

    /// The client (for queries of tests and the lag endpoint).
    pub fn client(&self) -> &Client {
        &self.client
    }
}
