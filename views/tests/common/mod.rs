//! A whole pipeline per test: three scratch databases (one per service server) with the services' schemas, a
//! capture (in-process) publishing under its own topic prefix, and view processes writing to their own ClickHouse
//! databases.
#![allow(dead_code)] // each test binary uses a part

pub(crate) mod analytics;
pub(crate) mod chdb;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use cdc_tests::{stack, unique_name, Sources};
use mysql_async::prelude::*;
use serde::Deserialize;

pub(crate) const DEADLINE: Duration = Duration::from_secs(120);

/// The pipeline of one test: the sources with their capture ([`Sources`]) and view processes.
pub(crate) struct Pipeline {
    sources: Sources,
}

impl std::ops::Deref for Pipeline {
    type Target = Sources;
    fn deref(&self) -> &Sources {
        &self.sources
    }
}

impl std::ops::DerefMut for Pipeline {
    fn deref_mut(&mut self) -> &mut Sources {
        &mut self.sources
    }
}

impl Pipeline {
    /// Databases with the services' schemas, and a capture streaming them.
    pub(crate) async fn start(name: &str) -> Result<Pipeline> {
        Ok(Pipeline { sources: Sources::start(name, &[]).await? })
    }

    /// [`Pipeline::start`] with the capture's configuration adjusted by `adjust`.
    pub(crate) async fn start_with(name: &str, adjust: impl FnOnce(&mut cdc_capture::config::Config)) -> Result<Pipeline> {
        Ok(Pipeline { sources: Sources::start_with(name, &[], adjust).await? })
    }

    /// Starts a view process writing to a new ClickHouse database with a new consumer group.
    pub(crate) fn views(&self, label: &str) -> Result<Views> {
        self.views_with(label, "batch_wait = \"20ms\"\n")
    }

    /// [`Pipeline::views`] with more configuration lines (TOML).
    pub(crate) fn views_with(&self, label: &str, extra: &str) -> Result<Views> {
        self.views_in(&unique_name(label), extra)
    }

    /// A view process writing to ClickHouse database `database` in consumer group `database` (several processes
    /// may share them), with more configuration lines (TOML).
    pub(crate) fn views_in(&self, database: &str, extra: &str) -> Result<Views> {
        let env = stack();
        let database = database.to_owned();
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let config = self.dir.join(format!("{database}-{port}.toml"));
        std::fs::write(
            &config,
            format!(
                "brokers = \"{brokers}\"\ngroup = \"{database}\"\ntopic_prefix = \"{prefix}\"\nusers_db = \"{u}\"\n\
                 catalog_db = \"{c}\"\norders_db = \"{o}\"\nclickhouse_url = \"{ch}\"\ndatabase = \"{database}\"\n\
                 listen = \"127.0.0.1:{port}\"\nsources = [{{ name = \"users\", url = \"{uu}\" }}, \
                 {{ name = \"catalog\", url = \"{cu}\" }}, {{ name = \"orders\", url = \"{ou}\" }}]\n{extra}",
                brokers = env.var("KAFKA_BROKERS"),
                prefix = self.prefix,
                u = self.users.name,
                c = self.catalog.name,
                o = self.orders.name,
                uu = self.users.capture_url(),
                cu = self.catalog.capture_url(),
                ou = self.orders.capture_url(),
                ch = env.var("CLICKHOUSE_URL"),
            ),
        )?;
        let mut views = Views {
            child: None,
            config,
            log: self.dir.join(format!("{database}-{port}.log")),
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
        self.sources.finish().await
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

    /// SIGTERM, and waits until the process has exited (it leaves its consumer group on the way out).
    pub(crate) fn stop(&mut self) -> Result<()> {
        if self.child.is_some() {
            self.signal("TERM")?;
        }
        if let Some(mut c) = self.child.take() {
            let deadline = std::time::Instant::now() + DEADLINE;
            while c.try_wait()?.is_none() {
                anyhow::ensure!(std::time::Instant::now() < deadline, "views did not exit within {DEADLINE:?} of SIGTERM");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// Sends `SIG<name>` (e.g. `STOP`, `CONT`, `TERM`) to the running process.
    pub(crate) fn signal(&self, name: &str) -> Result<()> {
        let pid = self.child.as_ref().map(Child::id).context("views is not running")?;
        let status = Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status()?;
        anyhow::ensure!(status.success(), "kill -{name} {pid}: {status}");
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
