//! The dashboard page and `views status` against a whole pipeline on the local stack (MariaDB, broker, ClickHouse, an
//! in-process capture and a view process): Debian's headless `chromium` renders the page the view serves at `/`, whose
//! charts must carry the samples of the real `/status`; `views status` must print every source and exit 0 once the view
//! is caught up; and an unreachable view is reported as such, by the command (exit code 2) and by the page (banner).
//!
//! A screenshot of the page is kept at `target/dashboard.png`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use cdc_tests::{describe, eventually, repo_root};
use cdc_views::status::{fetch, Status};
use common::{Pipeline, DEADLINE};

const SOURCES: [&str; 3] = ["users", "catalog", "orders"];

/// Longest run of one headless Chromium.
const CHROMIUM_DEADLINE: Duration = Duration::from_secs(90);

/// `chromium --headless` with a profile of its own under `dir`, giving the page 10 s of virtual time (five polls of
/// `/status`) before the DOM is dumped or the screenshot taken.
async fn chromium(dir: &Path, args: &[&str]) -> Result<Output> {
    let mut command = tokio::process::Command::new("chromium");
    command
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=10000"])
        .arg(format!("--user-data-dir={}", dir.join("chromium-profile").display()))
        .args(args)
        .kill_on_drop(true);
    let output = tokio::time::timeout(CHROMIUM_DEADLINE, command.output())
        .await
        .with_context(|| format!("chromium {args:?} did not finish within {CHROMIUM_DEADLINE:?}"))?
        .context("running chromium (Debian package `chromium`; scripts/test installs it)")?;
    ensure!(output.status.success(), "chromium {args:?} failed:\n{}", describe(&output));
    Ok(output)
}

/// The `data-points` of the `<svg>` element with id `id` in a dumped DOM.
fn svg_points(dom: &str, id: &str) -> Result<u64> {
    let at = dom.find(&format!("id=\"{id}\"")).with_context(|| format!("no element with id {id} in the page"))?;
    let start = dom[..at].rfind('<').context("a tag")?;
    let end = at + dom[at..].find('>').context("a tag end")?;
    let tag = &dom[start..end];
    ensure!(tag.starts_with("<svg"), "#{id} is not an <svg>: {tag}");
    let points = tag.split("data-points=\"").nth(1).and_then(|v| v.split('"').next());
    points.with_context(|| format!("#{id} has no data-points: {tag}"))?.parse().context("data-points is a number")
}

/// `views status --url URL`.
async fn views_status(url: &str) -> Result<Output> {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_views"))
        .args(["status", "--url", url])
        .env_remove("VIEWS_URL")
        .output()
        .await
        .context("running views status")
}

fn sample_count(status: &Status) -> usize {
    status.history.samples.len()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_and_views_status_show_the_running_pipeline() -> Result<()> {
    let p = Pipeline::start("dashboard").await?;
    // The harness configures the three sources, so `/lag` can read their binlog positions.
    let views = p.views("dashboard")?;
    p.users
        .exec("INSERT INTO users (email, name, country) VALUES ('a@x.io', 'A', 'DE'), ('b@x.io', 'B', NULL)")
        .await?;
    p.catalog
        .exec("INSERT INTO products (sku, name, category, price, stock) VALUES ('S1', 'Lamp', 'home', 9.99, 5)")
        .await?;
    p.orders
        .exec(
            "INSERT INTO orders (user_id, status, total) VALUES (1, 'PENDING', 19.98);
             INSERT INTO order_lines (order_id, product_id, quantity, unit_price) VALUES (1, 1, 2, 9.99)",
        )
        .await?;

    // Enough history for the charts, with a lag known for every source in the newest sample.
    let status = eventually(DEADLINE, || async {
        let status = fetch(&views.url, Duration::from_secs(5)).await?;
        let last = status.history.samples.last();
        ensure!(
            sample_count(&status) >= 3
                && SOURCES.iter().all(|s| last.and_then(|l| l.lag_ms.get(*s).copied().flatten()).is_some())
                && !status.consumer_lag.is_empty(),
            "{} samples, newest {last:?}, consumer lag of {} partitions",
            sample_count(&status),
            status.consumer_lag.len()
        );
        Ok(status)
    })
    .await
    .with_context(|| format!("views log:\n{}", views.output()))?;
    let sources: Vec<&str> = status.lag.sources.iter().map(|s| s.source.as_str()).collect();
    ensure!(SOURCES.iter().all(|s| sources.contains(s)), "/status lists the sources {sources:?}");

    // The page as a browser renders it from the live /status.
    let dump = chromium(&p.dir, &["--dump-dom", &views.url]).await?;
    let dom = String::from_utf8_lossy(&dump.stdout);
    let lag_points = svg_points(&dom, "lag-chart").with_context(|| format!("page:\n{dom}"))?;
    let rate_points = svg_points(&dom, "rate-chart")?;
    ensure!(lag_points >= 3, "the lag chart drew {lag_points} points from at least 3 samples");
    ensure!(rate_points >= 2, "the throughput chart drew {rate_points} points from at least 3 samples");
    for source in SOURCES {
        ensure!(dom.contains(&format!("data-source=\"{source}\"")), "the page shows no card or line for {source}");
    }
    ensure!(dom.contains("id=\"down\" hidden"), "the page says the view is down:\n{dom}");
    ensure!(dom.contains(&format!("{}.", p.prefix)), "the consumer lag table lists the view's topics");
    println!("dashboard: lag chart {lag_points} points, throughput chart {rate_points} points");

    let screenshot: PathBuf = repo_root().join("target/dashboard.png");
    let _ = std::fs::remove_file(&screenshot);
    chromium(&p.dir, &["--window-size=1400,1000", &format!("--screenshot={}", screenshot.display()), &views.url])
        .await?;
    let png = std::fs::read(&screenshot).with_context(|| format!("reading {}", screenshot.display()))?;
    ensure!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "{} is not a rendered page", screenshot.display());
    println!("dashboard screenshot: {}", screenshot.display());

    // The terminal view: every source and section, and exit code 0 once healthy and caught up (other tests write
    // to the same servers, which moves their binlog positions, so caught up may take a few heartbeats).
    let out = eventually(DEADLINE, || async {
        let out = views_status(&views.url).await?;
        let text = String::from_utf8_lossy(&out.stdout);
        for source in SOURCES {
            ensure!(
                text.lines().any(|l| l.starts_with(&format!("{source} "))),
                "no row for {source}:\n{}",
                describe(&out)
            );
        }
        for section in ["SOURCES", "THROUGHPUT", "CONSUMER LAG", "FRESHNESS", "HEALTH"] {
            ensure!(text.lines().any(|l| l.starts_with(section)), "no {section} section:\n{}", describe(&out));
        }
        match out.status.code() {
            Some(0) => Ok(out),
            Some(1) => bail!("not caught up yet:\n{}", describe(&out)),
            _ => bail!("views status failed against a running view:\n{}", describe(&out)),
        }
    })
    .await?;
    println!("{}", String::from_utf8_lossy(&out.stdout));

    // A view that cannot be reached: exit code 2, with the URL on stderr.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let dead = format!("http://127.0.0.1:{port}");
    let out = views_status(&dead).await?;
    ensure!(out.status.code() == Some(2), "views status against nothing: {}", describe(&out));
    ensure!(String::from_utf8_lossy(&out.stderr).contains(&dead), "stderr names the URL: {}", describe(&out));

    // The page when /status fails: the same file, opened where no /status answers.
    let page = p.dir.join("dashboard.html");
    std::fs::write(&page, include_str!("../src/dashboard.html"))?;
    let dump = chromium(&p.dir, &["--dump-dom", &format!("file://{}", page.display())]).await?;
    let dom = String::from_utf8_lossy(&dump.stdout);
    ensure!(!dom.contains("id=\"down\" hidden") && dom.contains("View service unreachable"), "no down banner:\n{dom}");
    ensure!(svg_points(&dom, "lag-chart").is_err(), "no chart is drawn without data");

    drop(views);
    p.finish().await
}

#[test]
fn svg_points_reads_the_chart_tag() {
    let dom =
        r#"<p id="x">a</p><svg id="lag-chart" class="chart" data-points="42"><path data-points="7"></path></svg>"#;
    assert_eq!(svg_points(dom, "lag-chart").unwrap(), 42);
    assert!(svg_points(dom, "x").is_err());
    assert!(svg_points(dom, "rate-chart").is_err());
    assert!(svg_points(r#"<svg id="lag-chart">"#, "lag-chart").is_err());
}
