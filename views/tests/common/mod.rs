//! A whole pipeline per test: three scratch databases (one per service server) with the services' schemas, a
//! capture (in-process) publishing under its own topic prefix, and view processes writing to their own ClickHouse
//! databases.
#![allow(dead_code)] // each test binary uses a part

pub(crate) mod analytics;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use cdc_capture::config::{Config as CaptureConfig, Secret, SnapshotMode, SourceConfig};
use cdc_tests::{repo_root, stack, unique_name, ScratchDb};
use mysql_async::prelude::*;
use rand::Rng;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

pub(crate) const DEADLINE: Duration = Duration::from_secs(120);

/// The pipeline of one test.
pub(crate) struct Pipeline {
    pub(crate) users: ScratchDb,
    pub(crate) catalog: ScratchDb,
    pub(crate) orders: ScratchDb,
    pub(crate) prefix: String,
    capture: CancellationToken,
    dir: PathBuf,
}

async fn migrate(db: &ScratchDb, service: &str) -> Result<()> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join("migrations").join(service))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    for f in files {
        db.exec(&std::fs::read_to_string(&f)?).await?;
    }
    Ok(())
}

impl Pipeline {
    /// Databases with the services' schemas, and a capture streaming them.
    pub(crate) async fn start(name: &str) -> Result<Pipeline> {
        let users = ScratchDb::create("USERS", &format!("{name}_users")).await?;
        let catalog = ScratchDb::create("CATALOG", &format!("{name}_catalog")).await?;
        let orders = ScratchDb::create("ORDERS", &format!("{name}_orders")).await?;
        migrate(&users, "users").await?;
        migrate(&catalog, "catalog").await?;
        migrate(&orders, "orders").await?;
        let prefix = unique_name(name);
        let dir = std::env::temp_dir().join(&prefix);
        std::fs::create_dir_all(&dir)?;
        let mut config = CaptureConfig::default();
        config.topic_prefix = prefix.clone();
        config.state_dir = dir.join("capture-state");
        config.listen = "127.0.0.1:0".parse()?;
        config.checkpoint_interval = Duration::from_millis(50);
        config.kafka.brokers = stack().var("KAFKA_BROKERS").to_owned();
        let base: u32 = rand::rng().random_range(100_000..4_000_000);
        for (i, (source, db)) in [("users", &users), ("catalog", &catalog), ("orders", &orders)].into_iter().enumerate() {
            config.sources.push(SourceConfig {
                name: source.into(),
                url: Secret::new(db.capture_url()),
                server_id: base + i as u32,
                include: vec![],
                exclude: vec![],
                snapshot: SnapshotMode::Initial,
                snapshot_chunk_rows: 5000,
                heartbeat_interval: Duration::from_millis(500),
            });
        }
        let settings = config.validate()?;
        let capture = CancellationToken::new();
        let token = capture.clone();
        tokio::spawn(async move {
            if let Err(e) = cdc_capture::run(settings, token).await {
                eprintln!("capture stopped: {e:#}");
            }
        });
        Ok(Pipeline { users, catalog, orders, prefix, capture, dir })
    }

    /// Starts a view process writing to a new ClickHouse database with a new consumer group.
    pub(crate) fn views(&self, label: &str) -> Result<Views> {
        self.views_with(label, "batch_wait = \"20ms\"\n")
    }

    /// [`Pipeline::views`] with more configuration lines (TOML).
    pub(crate) fn views_with(&self, label: &str, extra: &str) -> Result<Views> {
        let env = stack();
        let database = unique_name(label);
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let config = self.dir.join(format!("{database}.toml"));
        std::fs::write(
            &config,
            format!(
                "brokers = \"{brokers}\"\ngroup = \"{database}\"\ntopic_prefix = \"{prefix}\"\nusers_db = \"{u}\"\n\
                 catalog_db = \"{c}\"\norders_db = \"{o}\"\nclickhouse_url = \"{ch}\"\ndatabase = \"{database}\"\n\
                 listen = \"127.0.0.1:{port}\"\n{extra}",
                brokers = env.var("KAFKA_BROKERS"),
                prefix = self.prefix,
                u = self.users.name,
                c = self.catalog.name,
                o = self.orders.name,
                ch = env.var("CLICKHOUSE_URL"),
            ),
        )?;
        let mut views = Views {
            child: None,
            config,
            log: self.dir.join(format!("{database}.log")),
            database,
            url: format!("http://127.0.0.1:{port}"),
        };
        views.spawn()?;
        Ok(views)
    }

    /// The report the three databases imply: the LEFT JOIN of CONTRACTS section 4, computed from MySQL.
    pub(crate) async fn expected(&self) -> Result<Vec<ReportRow>> {
        let users: Vec<(u64, String, String, Option<String>)> =
            self.users.pool.get_conn().await?.query("SELECT id, email, name, country FROM users").await?;
        let products: Vec<(u64, String, String, String)> =
            self.catalog.pool.get_conn().await?.query("SELECT id, sku, name, category FROM products").await?;
        let mut conn = self.orders.pool.get_conn().await?;
        let orders: Vec<(u64, u64, String, u32)> = conn
            .query("SELECT id, user_id, status, CAST(FLOOR(UNIX_TIMESTAMP(created_at)) AS UNSIGNED) FROM orders")
            .await?;
        let lines: Vec<(u64, u64, u64, u32, i64)> = conn
            .query("SELECT id, order_id, product_id, quantity, CAST(unit_price * 100 AS SIGNED) FROM order_lines")
            .await?;
        let users: BTreeMap<u64, _> = users.into_iter().map(|u| (u.0, u)).collect();
        let products: BTreeMap<u64, _> = products.into_iter().map(|p| (p.0, p)).collect();
        let orders: BTreeMap<u64, _> = orders.into_iter().map(|o| (o.0, o)).collect();
        let mut rows: Vec<ReportRow> = lines
            .into_iter()
            .filter_map(|(line_id, order_id, product_id, quantity, price)| {
                let order = orders.get(&order_id)?;
                let user = users.get(&order.1);
                let product = products.get(&product_id);
                Some(ReportRow {
                    order_id,
                    line_id,
                    order_status: order.2.clone(),
                    created: order.3,
                    user_id: order.1,
                    user_email: user.map(|u| u.1.clone()),
                    user_name: user.map(|u| u.2.clone()),
                    user_country: user.and_then(|u| u.3.clone()),
                    product_id,
                    product_sku: product.map(|p| p.1.clone()),
                    product_name: product.map(|p| p.2.clone()),
                    product_category: product.map(|p| p.3.clone()),
                    quantity,
                    price,
                    total: price * quantity as i64,
                })
            })
            .collect();
        rows.sort_by_key(|r| r.line_id);
        Ok(rows)
    }

    /// Stops the capture and drops the databases.
    pub(crate) async fn finish(self) -> Result<()> {
        self.capture.cancel();
        self.users.drop_db().await?;
        self.catalog.drop_db().await?;
        self.orders.drop_db().await
    }
}

/// One row of `order_report`, with decimals in cents and the time in seconds.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, clickhouse::Row)]
pub(crate) struct ReportRow {
    pub(crate) order_id: u64,
    pub(crate) line_id: u64,
    pub(crate) order_status: String,
    pub(crate) created: u32,
    pub(crate) user_id: u64,
    pub(crate) user_email: Option<String>,
    pub(crate) user_name: Option<String>,
    pub(crate) user_country: Option<String>,
    pub(crate) product_id: u64,
    pub(crate) product_sku: Option<String>,
    pub(crate) product_name: Option<String>,
    pub(crate) product_category: Option<String>,
    pub(crate) quantity: u32,
    pub(crate) price: i64,
    pub(crate) total: i64,
}

/// A view process.
pub(crate) struct Views {
    child: Option<Child>,
    config: PathBuf,
    log: PathBuf,
    /// Its ClickHouse database.
    pub(crate) database: String,
    /// Base URL of /metrics and /health.
    pub(crate) url: String,
}

impl Views {
    fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        self.child = Some(
            Command::new(env!("CARGO_BIN_EXE_views"))
                .arg("--config")
                .arg(&self.config)
                .stdout(Stdio::from(log.try_clone()?))
                .stderr(Stdio::from(log))
                .spawn()
                .context("starting views")?,
        );
        Ok(())
    }

    /// SIGKILL.
    pub(crate) fn kill(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    /// Starts again with the same configuration (consumer group, database).
    pub(crate) fn restart(&mut self) -> Result<()> {
        self.kill()?;
        self.spawn()
    }

    /// The report as the view shows it, ordered by line.
    pub(crate) async fn report(&self) -> Result<Vec<ReportRow>> {
        let client = clickhouse::Client::default().with_url(stack().var("CLICKHOUSE_URL")).with_validation(false);
        let sql = format!(
            "SELECT order_id, line_id, order_status, toUInt32(order_created_at) AS created, user_id, user_email, \
             user_name, user_country, product_id, product_sku, product_name, product_category, quantity, \
             toInt64(unit_price * 100) AS price, toInt64(line_total * 100) AS total \
             FROM {}.order_report ORDER BY line_id",
            self.database
        );
        Ok(client.query(&sql).fetch_all::<ReportRow>().await?)
    }

    /// Process id, while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Output so far.
    pub(crate) fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Views {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}
