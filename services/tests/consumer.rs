//! The consumers against the real stack: database errors that clear by themselves (a killed connection, a
//! read-only server) are retried until the database accepts, never dead-lettered; redelivered and out-of-order
//! events change nothing; dead letters warn in /health and can be replayed.

mod common;

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use cdc_capture::config::{Config as CaptureConfig, Secret, SnapshotMode, SourceConfig};
use cdc_services::cli;
use cdc_services::config::Config;
use cdc_services::Service;
use cdc_tests::{eventually, stack, unique_name, PrivateStack, StackEnv, TopicReader};
use common::{metric, Shop, Svc, DEADLINE, EXCLUDE};
use mysql_async::prelude::*;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::{json, Value};

/// `/health` of a service: status and body.
async fn health(http: &reqwest::Client, svc: &Svc) -> Result<(u16, Value)> {
    let resp = http.get(format!("{}/health", svc.url)).send().await?;
    Ok((resp.status().as_u16(), resp.json().await?))
}

fn producer() -> Result<FutureProducer> {
    Ok(ClientConfig::new().set("bootstrap.servers", stack().var("KAFKA_BROKERS")).create()?)
}

/// Publishes `value` (or raw bytes) with `key` to `topic`'s `partition`.
async fn publish(producer: &FutureProducer, topic: &str, partition: i32, key: &str, value: &[u8]) -> Result<()> {
    let record = FutureRecord::to(topic).partition(partition).key(key).payload(value);
    producer.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e)?;
    Ok(())
}

async fn count(pool: &mysql_async::Pool, sql: &str) -> Result<u64> {
    Ok(pool.get_conn().await?.query_first(sql).await?.unwrap_or(0))
}

/// A KILL of the catalog consumer's connection while it applies a batch (it waits on a product row lock the test
/// holds, inside the batch's transaction): the batch is retried on a new connection and applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connection_killed_mid_apply_is_retried_and_applied_once() -> Result<()> {
    let shop = Shop::start("svc_kill", |_, _| {}).await?;
    let user = shop.user("kim@example.com").await?;
    let product = shop.product("KILL-1", "4.00", 10).await?;
    shop.wait_known(user, product).await?;
    let catalog = &shop.sources.catalog;

    let mut lock = catalog.pool.start_transaction(Default::default()).await?;
    lock.exec_drop("SELECT stock FROM products WHERE id = ? FOR UPDATE", (product,)).await?;
    let order = shop.order(user, &[(product, 3)]).await?;
    let id = order["id"].as_u64().unwrap();
    let mut admin = catalog.pool.get_conn().await?;
    let victim: u64 = eventually(DEADLINE, || async {
        let mut conn = catalog.pool.get_conn().await?;
        let found: Option<u64> = conn
            .exec_first(
                "SELECT id FROM information_schema.processlist WHERE db = ? AND info LIKE 'SELECT id, stock FROM products%'",
                (&catalog.name,),
            )
            .await?;
        found.context("the consumer is not waiting on the product lock yet")
    })
    .await?;
    admin.query_drop(format!("KILL CONNECTION {victim}")).await?;
    lock.rollback().await?;

    shop.order_status(id, "CONFIRMED").await?;
    assert_eq!(shop.stock(product).await?, 7, "the stock is taken once");
    assert_eq!(count(&catalog.pool, &format!("SELECT COUNT(*) FROM reservation_lines WHERE order_id = {id}")).await?, 1);
    assert_eq!(count(&catalog.pool, "SELECT COUNT(*) FROM dead_letters").await?, 0);
    let m = shop.catalog.metrics().await?;
    assert!(metric(&m, &["cdc_service_apply_retries_total"]) >= 1.0, "no retry counted:\n{m}");
    assert_eq!(metric(&m, &["cdc_service_dead_letters_total"]), 0.0, "{m}");
    drop(admin);
    shop.finish().await
}

/// Old events published again (as a replay or a producer retry would) and every message twice change nothing: the
/// catalog does not reserve again for an order whose reservation it released, and the orders service's copy of a
/// product keeps its newest price. Guards the per-key version check of batches (a key twice in one batch).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redelivered_and_out_of_order_events_apply_once_and_older_never_overwrite_newer() -> Result<()> {
    let shop = Shop::start("svc_dup", |_, _| {}).await?;
    let user = shop.user("dup@example.com").await?;
    let product = shop.product("DUP-1", "2.50", 10).await?;
    shop.wait_known(user, product).await?;
    let order = shop.order(user, &[(product, 2)]).await?;
    let id = order["id"].as_u64().unwrap();
    shop.order_status(id, "CONFIRMED").await?;
    let (status, _) = shop.post(&format!("{}/orders/{id}/cancel", shop.orders.url), Value::Null).await?;
    assert_eq!(status, 200);
    shop.stock_becomes(product, 10).await?;
    common::eventually_json(|| shop.reservation(id), |r| r["status"] == "RELEASED").await?;
    let (status, _) = shop.call("PATCH", &format!("{}/products/{product}", shop.catalog.url), Some(r#"{"price": "3.00"}"#)).await?;
    assert_eq!(status, 200);
    let price = || async {
        let p: Option<String> = shop
            .sources
            .orders
            .pool
            .get_conn()
            .await?
            .exec_first("SELECT CAST(price AS CHAR) FROM known_products WHERE id = ?", (product,))
            .await?;
        Ok::<_, anyhow::Error>(p.unwrap_or_default())
    };
    eventually(DEADLINE, || async { if price().await? == "3.00" { Ok(()) } else { bail!("price not updated yet") } }).await?;

    let orders_topic = format!("{}.{}.orders", shop.sources.prefix, shop.sources.orders.name);
    let products_topic = format!("{}.{}.products", shop.sources.prefix, shop.sources.catalog.name);
    let mut reader = TopicReader::new(stack().var("KAFKA_BROKERS"), &[&orders_topic, &products_topic])?;
    let events = |m: &[cdc_tests::Message], topic: &str| m.iter().filter(|m| m.topic == topic && m.value.is_some()).count();
    reader
        .read_until(DEADLINE, |m| {
            events(m, &orders_topic) >= 3
                && m.iter().any(|m| m.topic == products_topic && m.value.as_ref().is_some_and(|v| v["after"]["price"] == "3.00"))
        })
        .await?;
    let catalog_dups = metric(&shop.catalog.metrics().await?, &["cdc_service_events_duplicate_total"]);
    let orders_dups = metric(&shop.orders.metrics().await?, &["cdc_service_events_duplicate_total"]);

    // Every order event twice, in order; every product event before the price change twice.
    let producer = producer()?;
    let mut again = (0, 0);
    for m in &reader.messages {
        let Some(value) = &m.value else { continue };
        let newest_price = value["after"]["price"] == "3.00";
        if m.topic == products_topic && newest_price {
            continue;
        }
        for _ in 0..2 {
            publish(&producer, &m.topic, m.partition, &m.key.to_string(), value.to_string().as_bytes()).await?;
        }
        if m.topic == orders_topic { again.0 += 2 } else { again.1 += 2 }
    }
    eventually(DEADLINE, || async {
        let c = metric(&shop.catalog.metrics().await?, &["cdc_service_events_duplicate_total"]) - catalog_dups;
        let o = metric(&shop.orders.metrics().await?, &["cdc_service_events_duplicate_total"]) - orders_dups;
        ensure!(c >= again.0 as f64 && o >= again.1 as f64, "duplicates seen: catalog {c} of {}, orders {o} of {}", again.0, again.1);
        Ok(())
    })
    .await?;
    assert_eq!(shop.stock(product).await?, 10, "the released stock is not taken again");
    assert_eq!(shop.reservation(id).await?.1["status"], "RELEASED");
    assert_eq!(price().await?, "3.00", "an older product event overwrote a newer one");
    let (_, order) = shop.call("GET", &format!("{}/orders/{id}", shop.orders.url), None).await?;
    assert_eq!(order["status"], "CANCELLED");
    assert_eq!(order["history"].as_array().map(Vec::len), Some(3), "{order}");
    for pool in [&shop.sources.catalog.pool, &shop.sources.orders.pool] {
        assert_eq!(count(pool, "SELECT COUNT(*) FROM dead_letters").await?, 0);
    }
    shop.finish().await
}

/// A message that is not a change event goes to `dead_letters` (the stream goes on), `/health` stays 200 and warns
/// with the command; `orders replay-dead-letters` applies a letter that can apply now, reports one whose key has a
/// newer change as already applied, and keeps one that fails again with its new error.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_letters_warn_in_health_and_replay_through_the_idempotent_apply() -> Result<()> {
    let shop = Shop::start("svc_dead", |_, _| {}).await?;
    let user = shop.user("dl@example.com").await?;
    let product = shop.product("DEAD-1", "1.25", 3).await?;
    shop.wait_known(user, product).await?;
    let orders = &shop.sources.orders.pool;
    let topic = format!("{}.{}.products", shop.sources.prefix, shop.sources.catalog.name);
    let mut reader = TopicReader::new(stack().var("KAFKA_BROKERS"), &[&topic])?;
    reader.read_events(1, DEADLINE).await?;
    let created = reader.messages.iter().find(|m| m.value.is_some()).expect("the product's event").clone();

    publish(&producer()?, &topic, created.partition, r#"{"id":999999}"#, b"not json").await?;
    let body = common::eventually_json(|| health(&shop.http, &shop.orders), |b| b["warning"].is_string()).await?;
    let warning = body["warning"].as_str().unwrap();
    assert!(warning.contains("1 dead letters") && warning.contains("orders replay-dead-letters"), "{warning}");
    assert_eq!(health(&shop.http, &shop.orders).await?.0, 200);
    let m = shop.orders.metrics().await?;
    assert_eq!(metric(&m, &["cdc_service_dead_letters_pending{", &topic]), 1.0, "{m}");
    let garbage: u64 = orders.get_conn().await?.query_first("SELECT id FROM dead_letters").await?.unwrap();

    // Letters as an earlier failure would have left them: a product the copy lacks (applies now), the product's
    // own creation, of which the copy already has this version (already applied), and a product whose name the
    // copy's column refuses (too long): the one statement that writes both new products' copies fails, and the
    // events applied one by one find which one it is.
    let mut unknown = created.value.clone().unwrap();
    unknown["after"]["id"] = json!(product + 1000);
    unknown["after"]["name"] = json!("Replayed");
    let mut too_long = created.value.clone().unwrap();
    too_long["after"]["id"] = json!(product + 2000);
    too_long["after"]["name"] = json!("n".repeat(300));
    let group = &shop.orders.config.group;
    let mut conn = orders.get_conn().await?;
    let mut letters = Vec::new();
    for (key, payload) in [
        (json!({"id": product + 1000}), &unknown),
        (created.key.clone(), created.value.as_ref().unwrap()),
        (json!({"id": product + 2000}), &too_long),
    ] {
        conn.exec_drop(
            "INSERT INTO dead_letters (consumer, topic, kafka_partition, kafka_offset, event_key, error, payload) \
             VALUES (?, ?, 0, 0, ?, 'database refused the effect', ?)",
            (group, &topic, key.to_string(), payload.to_string()),
        )
        .await?;
        letters.push(conn.last_insert_id().context("an id")?);
    }
    let report = cli::replay_dead_letters(Service::Orders, &shop.orders.config).await?;
    assert_eq!(report.applied, vec![letters[0]], "{report:?}");
    assert_eq!(report.already_applied, vec![letters[1]], "{report:?}");
    assert_eq!(report.failed.iter().map(|f| f.id).collect::<Vec<_>>(), vec![garbage, letters[2]], "{report:?}");
    assert!(report.failed[1].error.contains("refuses the event's data"), "{report:?}");
    let name: Option<String> = conn.exec_first("SELECT name FROM known_products WHERE id = ?", (product + 1000,)).await?;
    assert_eq!(name.as_deref(), Some("Replayed"));
    type Audit = (u64, Option<String>, u32, bool);
    let audit: Vec<Audit> =
        conn.query("SELECT id, replay_result, replay_attempts, replayed_at IS NOT NULL FROM dead_letters ORDER BY id").await?;
    assert_eq!(
        audit,
        vec![
            (garbage, None, 1, false),
            (letters[0], Some("applied".into()), 1, true),
            (letters[1], Some("already applied (this or a newer change of the key)".into()), 1, true),
            (letters[2], None, 1, false),
        ]
    );
    // A second replay has only the ones that still fail.
    let again = cli::replay_dead_letters(Service::Orders, &shop.orders.config).await?;
    assert!(again.applied.is_empty() && again.already_applied.is_empty() && again.failed.len() == 2, "{again:?}");
    // Once the operator removed them, the warning goes.
    conn.exec_drop("DELETE FROM dead_letters WHERE id IN (?, ?)", (garbage, letters[2])).await?;
    common::eventually_json(|| health(&shop.http, &shop.orders), |b| b["status"] == "ok" && b.get("warning").is_none()).await?;
    drop(conn);
    shop.finish().await
}

/// The three services and a capture on a private stack, connected as the services' own accounts (the admin account
/// would bypass `read_only`), on the stack's migrated `users`, `catalog` and `orders` databases.
struct PrivateShop {
    users: Svc,
    catalog: Svc,
    orders: Svc,
    capture: tokio_util::sync::CancellationToken,
    capture_task: tokio::task::JoinHandle<()>,
    http: reqwest::Client,
}

impl PrivateShop {
    async fn start(env: &StackEnv, tune: impl Fn(Service, &mut Config)) -> Result<PrivateShop> {
        let prefix = unique_name("svc_private");
        let mut config = CaptureConfig {
            topic_prefix: prefix.clone(),
            state_dir: std::env::temp_dir().join(&prefix).join("capture-state"),
            listen: "127.0.0.1:0".parse()?,
            checkpoint_interval: Duration::from_millis(50),
            ..CaptureConfig::default()
        };
        config.kafka.brokers = env.var("KAFKA_BROKERS").to_owned();
        for (i, server) in ["USERS", "CATALOG", "ORDERS"].into_iter().enumerate() {
            config.sources.push(SourceConfig {
                name: server.to_lowercase(),
                url: Secret::new(env.var(&format!("{server}_MYSQL_CAPTURE_URL")).to_owned()),
                server_id: 7100 + i as u32,
                include: vec![],
                exclude: EXCLUDE.iter().map(|e| e.to_string()).collect(),
                snapshot: SnapshotMode::Initial,
                snapshot_chunk_rows: 5000,
                heartbeat_interval: Duration::from_millis(500),
                statement_dml: Default::default(),
            });
        }
        let settings = config.validate()?;
        let capture = tokio_util::sync::CancellationToken::new();
        let stop = capture.clone();
        let capture_task = tokio::spawn(async move {
            if let Err(e) = cdc_capture::run(settings, stop).await {
                eprintln!("capture stopped: {e:#}");
            }
        });
        let service = |service: Service, var: &str| {
            let mut c = Config::new(service, env.var(var), env.var("KAFKA_BROKERS"));
            c.topic_prefix = prefix.clone();
            c.group = unique_name(service.name());
            c.reconcile_interval = Duration::from_millis(200);
            tune(service, &mut c);
            c
        };
        Ok(PrivateShop {
            users: Svc::start(Service::Users, service(Service::Users, "USERS_MYSQL_URL")).await?,
            catalog: Svc::start(Service::Catalog, service(Service::Catalog, "CATALOG_MYSQL_URL")).await?,
            orders: Svc::start(Service::Orders, service(Service::Orders, "ORDERS_MYSQL_URL")).await?,
            capture,
            capture_task,
            http: reqwest::Client::new(),
        })
    }

    async fn post(&self, url: String, body: Value) -> Result<(u16, Value)> {
        let resp = self.http.post(url).json(&body).send().await?;
        Ok((resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null)))
    }

    async fn finish(mut self) -> Result<()> {
        self.users.stop().await?;
        self.catalog.stop().await?;
        self.orders.stop().await?;
        self.capture.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(30), self.capture_task).await;
        Ok(())
    }
}

/// The catalog database refuses writes for 2 s (`SET GLOBAL read_only = 1`) while orders keep coming: the catalog's
/// consumer retries (503 while it does) and every order is decided, none CANCELLED by its pending timeout, nothing
/// dead-lettered. Before, the consumer dead-lettered an event after five refusals and its order timed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_catalog_refusing_writes_for_two_seconds_under_load_loses_no_order() -> Result<()> {
    let private = PrivateStack::new("svc_read_only");
    private.cmd.ok(&["up"])?;
    let env = StackEnv::parse(&private.cmd.ok(&["env"])?);
    let admin = mysql_async::Pool::new(env.var("CATALOG_MYSQL_ADMIN_URL"));
    let result = read_only_under_load(&env, &admin).await;
    admin.get_conn().await?.query_drop("SET GLOBAL read_only = 0").await?;
    admin.disconnect().await?;
    result
}

async fn read_only_under_load(env: &StackEnv, admin: &mysql_async::Pool) -> Result<()> {
    let shop = PrivateShop::start(env, |_, c| {
        c.pending_timeout = Duration::from_secs(10);
        c.reservation_ttl = Duration::from_secs(20);
    })
    .await?;
    let (status, user) = shop.post(format!("{}/users", shop.users.url), json!({"email": "ro@example.com", "name": "R"})).await?;
    ensure!(status == 201, "{user}");
    let body = json!({"sku": "RO-1", "name": "P", "category": "c", "price": "1.00", "stock": 1000});
    let (status, product) = shop.post(format!("{}/products", shop.catalog.url), body).await?;
    ensure!(status == 201, "{product}");
    let order = json!({"user_id": user["id"], "lines": [{"product_id": product["id"], "quantity": 1}]});
    eventually(DEADLINE, || async {
        let (status, body) = shop.post(format!("{}/orders", shop.orders.url), order.clone()).await?;
        if status == 201 { Ok(()) } else { bail!("{status} {body}") }
    })
    .await?;

    // 20 orders/s for 6 s; the catalog database refuses writes from 2 s to 4 s.
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let (mut read_only, mut saw_503) = (false, None);
    let mut placed = 0;
    while started.elapsed() < Duration::from_secs(6) {
        tick.tick().await;
        let (status, body) = shop.post(format!("{}/orders", shop.orders.url), order.clone()).await?;
        ensure!(status == 201, "{status} {body}");
        placed += 1;
        let t = started.elapsed();
        if !read_only && t >= Duration::from_secs(2) && t < Duration::from_secs(4) {
            admin.get_conn().await?.query_drop("SET GLOBAL read_only = 1").await?;
            read_only = true;
        } else if read_only && t >= Duration::from_secs(4) {
            admin.get_conn().await?.query_drop("SET GLOBAL read_only = 0").await?;
            read_only = false;
        }
        if read_only && saw_503.is_none() {
            let (status, body) = health(&shop.http, &shop.catalog).await?;
            if status == 503 {
                saw_503 = Some(body);
            }
        }
    }
    let orders_db = mysql_async::Pool::new(env.var("ORDERS_MYSQL_URL"));
    let catalog_db = mysql_async::Pool::new(env.var("CATALOG_MYSQL_URL"));
    eventually(Duration::from_secs(60), || async {
        let pending = count(&orders_db, "SELECT COUNT(*) FROM orders WHERE status = 'PENDING'").await?;
        ensure!(pending == 0, "{pending} orders still PENDING");
        Ok(())
    })
    .await?;
    let statuses: Vec<(String, u64)> =
        orders_db.get_conn().await?.query("SELECT CAST(status AS CHAR), COUNT(*) FROM orders GROUP BY status").await?;
    assert_eq!(statuses, vec![("CONFIRMED".to_owned(), placed + 1)], "every order confirmed");
    assert_eq!(count(&catalog_db, "SELECT COUNT(*) FROM dead_letters").await?, 0, "nothing dead-lettered");
    let m = shop.catalog.metrics().await?;
    assert!(metric(&m, &["cdc_service_apply_retries_total"]) >= 1.0, "the read-only window was not hit:\n{m}");
    let body = saw_503.context("/health of the catalog was never 503 while its database was read-only")?;
    assert!(body["reason"].as_str().is_some_and(|r| r.contains("read-only") || r.contains("read_only")), "{body}");
    assert_eq!(health(&shop.http, &shop.catalog).await?.0, 200);
    orders_db.disconnect().await?;
    catalog_db.disconnect().await?;
    shop.finish().await
}
