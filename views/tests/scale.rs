//! Two view instances in one consumer group (`assignment = "group"`) over a scratch pipeline on the local stack:
//! the group splits the partitions, `caught_up` is true only when both hold the cut (false while one is stopped),
//! and the report stays exact through a rebalance (one instance stops, the other takes its partitions over; it
//! comes back and gets a share again).

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use common::{Pipeline, Views, DEADLINE};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Status {
    lag: Lag,
    assigned: Vec<Partition>,
}

#[derive(Debug, Deserialize)]
struct Lag {
    caught_up: bool,
}

#[derive(Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord, Clone)]
struct Partition {
    topic: String,
    partition: i32,
}

async fn status(views: &Views) -> Result<Status> {
    Ok(reqwest::get(format!("{}/status", views.url)).await?.error_for_status()?.json().await?)
}

/// The change topics' partitions: 4 topics of 3 partitions (the capture's default).
const PARTITIONS: usize = 12;

/// Polls until every one of `views` says caught up and, with `shares`, holds that many partitions; returns the
/// partitions each holds.
async fn until_caught_up(views: &[&Views], shares: &[usize]) -> Result<Vec<BTreeSet<Partition>>> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let mut held = Vec::new();
        let mut last = String::new();
        for v in views {
            match status(v).await {
                Ok(s) if s.lag.caught_up => held.push(s.assigned.into_iter().collect::<BTreeSet<_>>()),
                Ok(s) => last = format!("{}: {:?}", v.url, s.lag),
                Err(e) => last = format!("{}: {e:#}", v.url),
            }
        }
        let counts: Vec<usize> = held.iter().map(BTreeSet::len).collect();
        if held.len() == views.len() && (shares.is_empty() || counts == shares) {
            return Ok(held);
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = views.iter().map(|v| v.output()).collect();
            bail!("not caught up (partitions {counts:?}, wanted {shares:?}) within {DEADLINE:?}: {last}\n{}", logs.join("\n---\n"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Orders `from..=to` of user `id % 5 + 1`, with two lines each (products 1..=5).
async fn write_orders(p: &Pipeline, from: u64, to: u64) -> Result<()> {
    let mut sql = String::from("START TRANSACTION;");
    for id in from..=to {
        sql += &format!(
            "INSERT INTO orders (id, user_id, status, total) VALUES ({id}, {}, 'PENDING', 5.00);\
             INSERT INTO order_lines (id, order_id, product_id, quantity, unit_price) VALUES ({}, {id}, {}, 1, 2.50), ({}, {id}, {}, 1, 2.50);",
            id % 5 + 1,
            2 * id,
            id % 5 + 1,
            2 * id + 1,
            (id + 1) % 5 + 1
        );
    }
    p.orders.exec(&(sql + "COMMIT")).await?;
    Ok(())
}

async fn assert_exact(p: &Pipeline, views: &Views, what: &str) -> Result<usize> {
    let (expected, actual) = (p.expected().await?, views.report().await?);
    ensure!(actual == expected, "{what}: the report differs from MySQL ({} rows, expected {})", actual.len(), expected.len());
    Ok(actual.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_share_the_partitions_and_caught_up_needs_both() -> Result<()> {
    let started = Instant::now();
    let p = Pipeline::start("scale").await?;
    let database = cdc_tests::unique_name("scale");
    let config = "batch_wait = \"20ms\"\nheartbeat_timeout = \"4s\"\nassignment = \"group\"\n";
    let a = p.views_in(&database, config)?;
    for id in 1..=5 {
        p.users.exec(&format!("INSERT INTO users (id, email, name, country) VALUES ({id}, 'u{id}@x.io', 'U{id}', 'FR')")).await?;
        p.catalog
            .exec(&format!("INSERT INTO products (id, sku, name, category, price, stock) VALUES ({id}, 'S{id}', 'P{id}', 'c', 2.50, 9)"))
            .await?;
    }
    write_orders(&p, 1, 10).await?;
    until_caught_up(&[&a], &[PARTITIONS]).await?;
    let mut b = p.views_in(&database, config)?;

    // 1. The group splits the partitions; each instance's /lag answers for both.
    let held = until_caught_up(&[&a, &b], &[PARTITIONS / 2, PARTITIONS / 2]).await?;
    ensure!(held[0].is_disjoint(&held[1]), "both instances hold a partition: {held:?}");
    let b_changes = held[1].iter().filter(|p| p.topic.ends_with(".orders") || p.topic.ends_with(".order_lines")).count();
    ensure!(b_changes > 0, "the second instance holds no orders or order_lines partition: {:?}", held[1]);
    println!("{:.1} s: the group split the partitions {:?} / {:?}", started.elapsed().as_secs_f64(), held[0].len(), held[1].len());
    write_orders(&p, 11, 20).await?;
    until_caught_up(&[&a, &b], &[]).await?;
    let rows = assert_exact(&p, &a, "both instances caught up").await?;
    ensure!(rows == 40, "{rows} rows");

    // 2. The second instance is stopped (SIGSTOP: still in the group, its partitions unread). Orders written now
    // land on its partitions too: the first instance applies its own share but must not say caught up.
    b.signal("STOP")?;
    write_orders(&p, 21, 40).await?;
    let share = cdc_tests::eventually(DEADLINE, || async {
        let n = a.report().await?.iter().filter(|r| r.order_id > 20).count();
        ensure!(n > 0, "nothing of the new orders applied yet");
        Ok(n)
    })
    .await?;
    let outage = Instant::now() + Duration::from_secs(4); // the outage itself, not a wait for a result
    let mut answers = 0;
    while Instant::now() < outage {
        let s = status(&a).await?;
        ensure!(!s.lag.caught_up, "caught up while the other instance is stopped with writes pending on its partitions");
        answers += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let during = a.report().await?.iter().filter(|r| r.order_id > 20).count();
    ensure!(during < 40, "every new line is in the report although the second instance is stopped ({during} rows)");
    println!("second instance stopped 4 s: {answers} answers of the first, all not caught up; {share}-{during} of 40 new lines applied");
    b.signal("CONT")?;
    until_caught_up(&[&a, &b], &[PARTITIONS / 2, PARTITIONS / 2]).await?;
    assert_exact(&p, &a, "after the second instance resumed").await?;

    // 3. A rebalance with writes in flight: the second instance stops for good (SIGTERM: it hands its batch over
    // and leaves the group); the first takes every partition over.
    write_orders(&p, 41, 60).await?;
    let left = Instant::now();
    b.stop()?;
    write_orders(&p, 61, 70).await?;
    until_caught_up(&[&a], &[PARTITIONS]).await?;
    let rows = assert_exact(&p, &a, "after the first instance took the partitions over").await?;
    println!("second instance left: the first holds all {PARTITIONS} partitions and the report is exact ({rows} rows) {:.1} s later", left.elapsed().as_secs_f64());

    // 4. It comes back: a new rebalance gives it a share again, and both hold the cut.
    b.restart()?;
    let back = Instant::now();
    until_caught_up(&[&a, &b], &[PARTITIONS / 2, PARTITIONS / 2]).await?;
    write_orders(&p, 71, 80).await?;
    until_caught_up(&[&a, &b], &[PARTITIONS / 2, PARTITIONS / 2]).await?;
    let rows = assert_exact(&p, &b, "after the second instance rejoined").await?;
    ensure!(rows == 160, "{rows} rows");
    println!("second instance rejoined: shares again after {:.1} s; exact ({rows} rows); whole test {:.1} s", back.elapsed().as_secs_f64(), started.elapsed().as_secs_f64());
    drop((a, b));
    p.finish().await
}
