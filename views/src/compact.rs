//! Keeps the set of cancel rows `order_report` subtracts small, whatever ClickHouse's merges do.
//!
//! `order_report` hides a live row of `report_lines` that a cancel row (`sign = -1`) not yet merged with it names, so
//! every read builds the set of those cancels (see [`crate::schema`]). A merge removes a row with its cancel only
//! when both are in the parts it merges, and ClickHouse merges large old parts rarely: the cancels of a rename that
//! reached old lines, or of many old orders changed at once, could wait hours, and every read would pay for them
//! (at 1,000,000 lines, 100,000 unmerged cancels made one order's lookup 64 ms instead of 6 ms; docs/benchmarks.md).
//!
//! So every [`Compaction::every`] the view service counts the unmerged cancels per partition of `report_lines`
//! (`PARTITION BY intDiv(order_id, 262144)`, [`crate::schema::REPORT_PARTITION_ORDERS`]) and, when there are more
//! than [`Compaction::limit`], runs `OPTIMIZE TABLE report_lines PARTITION p FINAL` on the partitions with the most,
//! one at a time, until the rest hold at most the limit ([`choose`]). The work is a rewrite of those partitions
//! (about 1,000,000 lines each); recent orders, where most changes land, share one partition.
//!
//! Readers are unaffected by a compaction: a merge replaces parts atomically with parts holding the same live rows.
//! With several instances (`assignment = "group"`) each compacts; a second `OPTIMIZE` of a partition already merged
//! finds little to do.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clickhouse::Client;
use tokio_util::sync::CancellationToken;

use crate::cluster::{self, Cluster};
use crate::metrics::Metrics;
use crate::schema::REPORT_PARTITION_ORDERS;

/// When to compact (options `compact_cancels`, `compact_every`).
#[derive(Debug, Clone, PartialEq)]
pub struct Compaction {
    /// Most unmerged cancel rows left in `report_lines` after a compaction round; 0 turns compaction off.
    pub limit: u64,
    /// Time between two counts.
    pub every: Duration,
}

/// The partitions to compact, most cancels first, so that the others hold at most `limit` cancels together.
/// `pending` is (partition, unmerged cancels).
pub fn choose(pending: &[(u64, u64)], limit: u64) -> Vec<u64> {
    if limit == 0 {
        return Vec::new();
    }
    let mut by_count = pending.to_vec();
    by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut left: u64 = by_count.iter().map(|(_, n)| n).sum();
    let mut chosen = Vec::new();
    for (partition, count) in by_count {
        if left <= limit {
            break;
        }
        chosen.push(partition);
        left -= count;
    }
    chosen
}

/// The unmerged cancel rows of `report_lines`, per partition.
pub async fn pending(client: &Client, db: &str) -> Result<Vec<(u64, u64)>, clickhouse::error::Error> {
    client
        .query(&format!(
            "SELECT intDiv(order_id, {REPORT_PARTITION_ORDERS}) AS p, count() FROM {db}.report_lines WHERE sign = -1 GROUP BY p"
        ))
        .fetch_all::<(u64, u64)>()
        .await
}

/// `OPTIMIZE ... FINAL` of one partition of `report_lines` (rewritten for `cluster`).
async fn optimize(client: &Client, db: &str, cluster: Option<&Cluster>, partition: u64) -> Result<(), clickhouse::error::Error> {
    let statement = format!("OPTIMIZE TABLE {db}.report_lines PARTITION {partition} FINAL");
    for statement in cluster::for_servers(cluster, vec![statement], db).map_err(|e| clickhouse::error::Error::Custom(e.to_string()))? {
        client.query(&statement).execute().await?;
    }
    Ok(())
}

/// One round: counts, then compacts what [`choose`] picks; returns the partitions compacted.
pub async fn round(
    client: &Client,
    db: &str,
    cluster: Option<&Cluster>,
    limit: u64,
    metrics: &Metrics,
) -> Result<Vec<u64>, clickhouse::error::Error> {
    let counts = pending(client, db).await?;
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    metrics.cancels_pending(total);
    let chosen = choose(&counts, limit);
    for &partition in &chosen {
        let started = Instant::now();
        optimize(client, db, cluster, partition).await?;
        let cancels = counts.iter().find(|(p, _)| *p == partition).map_or(0, |(_, n)| *n);
        metrics.compacted();
        tracing::info!(partition, cancels, took_ms = started.elapsed().as_millis() as u64, "report_lines partition compacted");
    }
    if !chosen.is_empty() {
        let left: u64 = pending(client, db).await?.iter().map(|(_, n)| n).sum();
        metrics.cancels_pending(left);
    }
    Ok(chosen)
}

/// Runs [`round`] every `policy.every` until `shutdown`; errors are logged and the next round tries again.
pub async fn run(client: Client, db: String, cluster: Option<Cluster>, policy: Compaction, metrics: Arc<Metrics>, shutdown: CancellationToken) {
    if policy.limit == 0 {
        return;
    }
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(policy.every) => {}
        }
        if let Err(e) = round(&client, &db, cluster.as_ref(), policy.limit, &metrics).await {
            tracing::warn!(error = %e, "compacting report_lines failed; trying again in the next round");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::choose;

    #[test]
    fn the_partitions_with_most_cancels_are_compacted_until_the_rest_fit_the_limit() {
        type Case = (&'static str, Vec<(u64, u64)>, u64, Vec<u64>);
        let cases: Vec<Case> = vec![
            ("nothing pending", vec![], 10, vec![]),
            ("under the limit", vec![(0, 4), (1, 5)], 10, vec![]),
            ("at the limit", vec![(0, 5), (1, 5)], 10, vec![]),
            ("one partition over", vec![(0, 3), (1, 30)], 10, vec![1]),
            ("the largest first, until the rest fit", vec![(0, 8), (1, 9), (2, 7), (3, 1)], 10, vec![1, 0]),
            ("equal counts: the lower partition first", vec![(5, 6), (2, 6)], 10, vec![2]),
            ("every partition when each alone is over", vec![(0, 20), (1, 20)], 10, vec![0, 1]),
            ("limit 0: off", vec![(0, 1000)], 0, vec![]),
        ];
        for (name, pending, limit, want) in cases {
            assert_eq!(choose(&pending, limit), want, "{name}");
        }
    }
}
