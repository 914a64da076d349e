//! The analytics guide against the real local stack (ClickHouse 18.16): the known data set of
//! `common/analytics.rs` is written by SQL into the three MariaDB databases, captured, applied by a view process, and
//! every SQL block of `docs/analytics.md` must then return exactly what the data set implies.
//!
//! The queries run as written; the only change is the database qualifier, since each test writes its own
//! reporting database (`reporting.` becomes `<database>.`).

mod common;

use std::collections::BTreeMap;

use anyhow::{ensure, Context, Result};
use cdc_tests::{eventually, stack};
use cdc_common::now_ms;
use common::analytics::{self, DataSet, Freshness, Source};
use common::{Pipeline, ReportRow, DEADLINE};

/// The data set's report in the harness's row type, to compare with both MySQL and ClickHouse.
fn report_rows(data: &DataSet) -> Vec<ReportRow> {
    data.report()
        .into_iter()
        .map(|r| ReportRow {
            order_id: r.order.id,
            line_id: r.line.id,
            order_status: r.order.status.into(),
            created: analytics::seconds(r.order.day, &r.order.time) as u32,
            user_id: r.order.user_id,
            user_email: r.user.as_ref().map(|u| u.email.clone()),
            user_name: r.user.as_ref().map(|u| u.name.clone()),
            user_country: r.user.as_ref().and_then(|u| u.country.map(str::to_owned)),
            product_id: r.line.product_id,
            product_sku: r.product.as_ref().map(|p| p.sku.clone()),
            product_name: r.product.as_ref().map(|p| p.name.clone()),
            product_category: r.product.as_ref().map(|p| p.category.to_owned()),
            quantity: r.line.quantity,
            price: r.line.unit_price,
            total: r.line.unit_price * i64::from(r.line.quantity),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_guides_queries_return_what_the_data_set_implies() -> Result<()> {
    let queries = analytics::doc_queries()?;
    analytics::check_coverage(&queries)?;
    let data = DataSet::new();
    let p = Pipeline::start("analytics").await?;

    // Write the data set; remember when each source's last transaction began.
    let started = now_ms();
    let mut last_write: BTreeMap<Source, i64> = BTreeMap::new();
    for (source, sql) in data.mysql() {
        let db = match source {
            Source::Users => &p.users,
            Source::Catalog => &p.catalog,
            Source::Orders => &p.orders,
        };
        last_write.insert(source, now_ms());
        db.exec(&sql).await.with_context(|| format!("writing to {}: {sql}", source.name()))?;
    }
    let want = report_rows(&data);
    ensure!(p.expected().await? == want, "MySQL does not hold the data set: its join differs from the data set's report");

    let views = p.views("analytics")?;
    let client = clickhouse::Client::default().with_url(stack().var("CLICKHOUSE_URL")).with_validation(false);
    // Wait until the report shows the data set and freshness has every source's last commit (it is written after
    // the rows of the same batch).
    let freshness_sql = format!("SELECT source, toInt64(newest_commit_ms) FROM {}.freshness", views.database);
    eventually(DEADLINE, || async {
        let got = views.report().await?;
        ensure!(got == want, "report has {} rows, the data set {}", got.len(), want.len());
        let fresh: BTreeMap<String, i64> = client.query(&freshness_sql).fetch_all::<(String, i64)>().await?.into_iter().collect();
        for (source, at) in &last_write {
            let newest = fresh.get(source.name()).copied().unwrap_or(0);
            // Binlog commit times have whole seconds.
            ensure!(newest >= at - at.rem_euclid(1000), "freshness of {} at {newest}, its last write at {at}", source.name());
        }
        Ok(())
    })
    .await
    .with_context(|| format!("the view's output:\n{}", views.output()))?;

    for q in &queries {
        let sql = q.sql.replace("reporting.", &format!("{}.", views.database));
        let before = now_ms();
        let tsv = client.query(&sql).fetch_bytes("TabSeparatedWithNames")?.collect().await
            .with_context(|| format!("ClickHouse 18.16 rejects the guide's query `{}`:\n{sql}", q.name))?;
        let tsv = String::from_utf8(tsv.to_vec())?;
        let fresh = Freshness {
            sources: Source::ALL
                .into_iter()
                .map(|s| {
                    let floor = started - started.rem_euclid(1000);
                    (s, (floor..=before, started..=before))
                })
                .collect(),
            now_ms: before..=now_ms(),
        };
        let expected = data.expected(&q.name, &fresh).with_context(|| format!("no expected result for `{}`", q.name))?;
        expected.check(&tsv).with_context(|| format!("the guide's query `{}` on ClickHouse 18.16", q.name))?;
        println!("{}:\n{tsv}", q.name);
    }
    println!("{} guide queries on ClickHouse 18.16 return what the data set implies", queries.len());
    drop(views);
    p.finish().await
}
