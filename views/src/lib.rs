//! The view service: consumes the captured change topics of users, products, orders and order lines and keeps
//! `reporting.order_report` in ClickHouse, one row per existing order line with the newest committed state of its
//! order, user and product.
//!
//! # Guarantees
//!
//! - **Exact under updates and deletes of any entity.** Entities are stored as versioned rows (version = the event's
//!   source position, never the sink's clock); after each batch the joined rows it reaches are computed from their
//!   newest states, read by primary key, and written to `report_lines` with cancel rows for the rows they replace
//!   ([`join`]), so a renamed product or a changed email shows in every joined row, and `order_report` reads like a
//!   flat table ([`schema`]); [`compact`] keeps the cancels a read must subtract few.
//! - **Schema by migrations.** [`migrate`] applies versioned migrations once each and recreates dropped tables.
//! - **Exactly-once effect.** Kafka offsets are committed only after ClickHouse acknowledged the batch
//!   ([`runtime`]); redelivered and replayed events carry the same versions and change nothing; events arriving out
//!   of order across topics converge, because each entity keeps its newest version.
//! - **Lag that stays true.** The sources' heartbeats are watermarks; [`lag`] turns the applied offsets into an
//!   end-to-end lag per source and a `caught_up` that `/lag` checks against each source's current position.
//! - **Scale-out.** With `assignment = "group"` several instances share the partitions, hand batches over at a
//!   rebalance, and judge `caught_up` from the group's committed offsets ([`group`]); with `clickhouse_cluster` the
//!   schema is created `ON CLUSTER` with Replicated engines ([`cluster`]).
//! - **Nothing dropped silently.** Events that cannot be mapped are kept in `dead_letters` with the error.
//!
//! The pure mapping from an event to rows is [`model::apply`], of a batch [`batch`]; [`runtime`] (the consuming loop)
//! and [`store`] (the writes) own all I/O.

pub mod batch;
pub mod cluster;
pub mod compact;
pub mod config;
pub mod dashboard;
pub mod http;
pub mod lag;
pub mod group;
pub mod join;
pub mod metrics;
pub mod migrate;
pub mod model;
pub mod report;
pub mod runtime;
pub mod schema;
pub mod status;
pub mod store;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::metrics::Metrics;
use crate::store::ClickHouseViewStore;

/// Creates the schema, then consumes and applies until `shutdown`.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    if settings.config.sources.is_empty() {
        tracing::warn!("no [[sources]] configured: /lag cannot tell whether the report is caught up");
    }
    let app = Arc::new(http::App::new(&settings, metrics.clone()));
    let http = tokio::spawn(http::serve(settings.config.listen, app, shutdown.clone()));
    let store = loop {
        match ClickHouseViewStore::open(&settings).await {
            Ok(store) => break store,
            Err(e) => {
                tracing::warn!(error = %e, "clickhouse not ready; retrying");
                metrics.set_healthy(Some(format!("clickhouse: {e}")));
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                }
            }
        }
    };
    let compaction = tokio::spawn(compact::run(
        store.client().clone(),
        settings.config.database.clone(),
        settings.cluster.clone(),
        compact::Compaction { limit: settings.config.compact_cancels, every: settings.config.compact_every },
        metrics.clone(),
        shutdown.clone(),
    ));
    let result = runtime::run(settings, store, metrics, shutdown.clone()).await;
    shutdown.cancel();
    let _ = compaction.await;
    let _ = http.await;
    result
}
