//! The reporting database's DDL, for ClickHouse 18.16 and current releases alike, as versioned migrations.
//!
//! Design (the reasons and measurements are in docs/views.md):
//! - Four **entity tables** (ReplacingMergeTree keyed by id, versioned by source position, with a `deleted` flag)
//!   hold every version of each user, product, order and order line; `argMax(..., version)` gives an entity's
//!   newest state at any merge state.
//! - Three **key indexes** (`lines_by_order`, `lines_by_product`, `orders_by_user`) hold every (parent, child) pair
//!   ever seen, so a change of an order, a user or a product finds the lines it reaches by primary key.
//! - **`report_lines`** holds the joined rows, one live row per line, maintained by the view service
//!   ([`crate::join`]): a CollapsingMergeTree keyed by `(order_id, line_id, version, writer)`. A change writes, in one
//!   INSERT, the line's new row (`sign = 1`) and a cancel row (`sign = -1`) of each row it replaces; merges remove a
//!   row together with its cancel.
//! - **`order_report`** is a plain VIEW over it: the rows that are neither deleted nor cancelled by a cancel row not
//!   yet merged. Readers need no FINAL, GROUP BY or version logic, and a read costs a scan of `report_lines` plus a
//!   set of the cancels still waiting for a merge.
//!
//! Migrations ([`migrations`]) are applied once each and recorded in `schema_migrations` ([`crate::migrate`]);
//! [`objects`] are the current definitions, used to recreate an object someone dropped. Every statement is one
//! plain `CREATE`/`INSERT`/`RENAME`/`DROP`/`TRUNCATE` naming `{db}.<table>`, with its ENGINE clause last in a
//! `CREATE TABLE`, so a deployment may rewrite them (engines, `ON CLUSTER`).
//!
//! Portability: at most one JOIN per SELECT (18.16), every subquery aliased (current releases), no DateTime64,
//! LowCardinality, window functions or `ReplacingMergeTree(version, is_deleted)`. LEFT JOIN NULLs are made explicit
//! with a presence column, since 18.16 fills defaults unless `join_use_nulls` is set. Nullable source columns are
//! stored as a value plus a presence flag, because aggregate functions skip NULL arguments (`argMax` would return
//! an older non-NULL).

use crate::report;

/// One schema version: statements applied in order, then recorded. Each statement may run again after a crash
/// before the record (they are written so that doing so is harmless).
#[derive(Debug, Clone, PartialEq)]
pub struct Migration {
    /// Applied in increasing order; recorded in `schema_migrations`.
    pub version: u32,
    /// What it does, recorded beside the version.
    pub name: &'static str,
    pub statements: Vec<String>,
}

/// A table or view of the current schema: how to create it, and how to refill it from the tables before it when
/// it was dropped (empty for tables whose content exists nowhere else).
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub name: &'static str,
    pub create: String,
    pub refill: Vec<String>,
}

/// Orders per partition of `report_lines` (`PARTITION BY intDiv(order_id, 262144)`): about a million lines, the unit
/// a compaction rewrites ([`crate::compact`]). Recent orders, where most changes land, share a partition.
pub const REPORT_PARTITION_ORDERS: u64 = 262_144;

/// The table that records applied migrations.
pub const MIGRATIONS_TABLE: &str = "schema_migrations";

/// `CREATE TABLE` of the migrations record.
pub fn migrations_table(db: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {db}.{MIGRATIONS_TABLE} (version UInt32, name String, applied_at DateTime DEFAULT now()) \
         ENGINE = MergeTree ORDER BY version"
    )
}

/// The migrations of the reporting database, oldest first.
pub fn migrations(db: &str) -> Vec<Migration> {
    let mut first = vec![format!("CREATE DATABASE IF NOT EXISTS {db}")];
    first.extend(
        ["users_state", "products_state", "orders_state", "lines_state", "freshness_log", "dead_letters"]
            .into_iter()
            .map(|t| table(db, t).expect("a table of the first schema")),
    );
    first.push(legacy_order_report(db));
    first.push(freshness_view(db));
    let mut second = Vec::new();
    for index in ["lines_by_order", "lines_by_product", "orders_by_user", "report_lines"] {
        // Emptied first: a crash during the fill leaves a partial table, and this migration then runs again.
        second.push(if index == "report_lines" {
            report_lines(db, "report_lines", "")
        } else {
            table(db, index).expect("a table of the second schema")
        });
        second.push(format!("TRUNCATE TABLE {db}.{index}"));
        second.push(refill(db, index).expect("a refill"));
    }
    second.push(format!("CREATE VIEW IF NOT EXISTS {db}.order_report_next AS {}", report::view_query(db)));
    second.push(format!("RENAME TABLE {db}.order_report TO {db}.order_report_legacy, {db}.order_report_next TO {db}.order_report"));
    second.push(format!("DROP TABLE IF EXISTS {db}.order_report_legacy"));
    // report_lines partitioned by order id range, so that compaction rewrites a partition rather than the table:
    // copied as it is (live rows and cancels), then swapped in. A crash after the swap leaves the old table under
    // `report_lines_unpartitioned`, dropped first when this runs again (the copy then comes from the new table).
    let partitioned = format!("PARTITION BY intDiv(order_id, {REPORT_PARTITION_ORDERS}) ");
    let third = vec![
        format!("DROP TABLE IF EXISTS {db}.report_lines_unpartitioned"),
        report_lines(db, "report_lines_next", &partitioned),
        format!("TRUNCATE TABLE {db}.report_lines_next"),
        format!("INSERT INTO {db}.report_lines_next SELECT * FROM {db}.report_lines"),
        format!("RENAME TABLE {db}.report_lines TO {db}.report_lines_unpartitioned, {db}.report_lines_next TO {db}.report_lines"),
        format!("DROP TABLE IF EXISTS {db}.report_lines_unpartitioned"),
    ];
    vec![
        // The schema before migrations existed (created by `CREATE ... IF NOT EXISTS` at every start): an existing
        // deployment records it without change.
        Migration { version: 1, name: "entity tables, freshness, dead letters, order_report as a joining view", statements: first },
        Migration {
            version: 2,
            name: "key indexes and report_lines filled from the entity tables; order_report reads report_lines",
            statements: second,
        },
        Migration { version: 3, name: "report_lines partitioned by order id range, for compaction", statements: third },
    ]
}

/// Every `CREATE` statement the schema runs (the database, the migrations record, each migration's and each current
/// object's), once each: what a deployment checks its rewrite against (`clickhouse_cluster`) and what tests parse.
pub fn ddl(db: &str) -> Vec<String> {
    let mut all = vec![format!("CREATE DATABASE IF NOT EXISTS {db}"), migrations_table(db)];
    let creates = migrations(db).into_iter().flat_map(|m| m.statements).chain(objects(db).into_iter().map(|o| o.create));
    for statement in creates {
        if statement.starts_with("CREATE ") && !all.contains(&statement) {
            all.push(statement);
        }
    }
    all
}

/// The current schema's tables and views, in an order in which each can be refilled from those before it.
pub fn objects(db: &str) -> Vec<Object> {
    let tables = [
        "users_state",
        "products_state",
        "orders_state",
        "lines_state",
        "freshness_log",
        "dead_letters",
        "lines_by_order",
        "lines_by_product",
        "orders_by_user",
        "report_lines",
    ];
    let mut objects: Vec<Object> = tables
        .into_iter()
        .map(|name| Object {
            name,
            create: table(db, name).expect("a table"),
            refill: refill(db, name).into_iter().collect(),
        })
        .collect();
    objects.push(Object {
        name: "order_report",
        create: format!("CREATE VIEW IF NOT EXISTS {db}.order_report AS {}", report::view_query(db)),
        refill: Vec::new(),
    });
    objects.push(Object { name: "freshness", create: freshness_view(db), refill: Vec::new() });
    objects
}

/// `CREATE TABLE IF NOT EXISTS` of a table of the schema.
fn table(db: &str, name: &str) -> Option<String> {
    let entity = |columns: &str| {
        format!("CREATE TABLE IF NOT EXISTS {db}.{name} ({columns}, version UInt64, deleted UInt8) ENGINE = ReplacingMergeTree(version) ORDER BY id")
    };
    let index = |parent: &str| {
        format!("CREATE TABLE IF NOT EXISTS {db}.{name} ({parent} UInt64, id UInt64) ENGINE = ReplacingMergeTree ORDER BY ({parent}, id)")
    };
    Some(match name {
        "users_state" => entity("id UInt64, email String, name String, country String, has_country UInt8"),
        "products_state" => entity("id UInt64, sku String, name String, category String, price Decimal(12, 2)"),
        "orders_state" => entity("id UInt64, user_id UInt64, status String, total Decimal(14, 2), created_at DateTime"),
        "lines_state" => entity("id UInt64, order_id UInt64, product_id UInt64, quantity UInt32, unit_price Decimal(12, 2)"),
        "freshness_log" => format!(
            "CREATE TABLE IF NOT EXISTS {db}.freshness_log (source String, commit_ms UInt64, applied_ms UInt64) \
             ENGINE = ReplacingMergeTree(commit_ms) ORDER BY source"
        ),
        "dead_letters" => format!(
            "CREATE TABLE IF NOT EXISTS {db}.dead_letters (topic String, partition Int32, offset Int64, \
             error String, payload String, at DateTime DEFAULT now()) ENGINE = MergeTree ORDER BY (topic, partition, offset)"
        ),
        "lines_by_order" => index("order_id"),
        "lines_by_product" => index("product_id"),
        "orders_by_user" => index("user_id"),
        "report_lines" => report_lines(db, "report_lines", &format!("PARTITION BY intDiv(order_id, {REPORT_PARTITION_ORDERS}) ")),
        _ => return None,
    })
}

/// `CREATE TABLE IF NOT EXISTS` of `report_lines` (under `name`), with `partition` (empty or a `PARTITION BY ...`
/// clause and a space) before its ORDER BY.
fn report_lines(db: &str, name: &str, partition: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {db}.{name} ({}, version UInt64, writer UInt64, deleted UInt8, sign Int8) \
         ENGINE = CollapsingMergeTree(sign) {partition}ORDER BY (order_id, line_id, version, writer)",
        report::COLUMNS.iter().map(|(name, ty)| format!("{name} {ty}")).collect::<Vec<_>>().join(", ")
    )
}

/// The statement that fills a derived table from the entity tables, if it is one.
fn refill(db: &str, name: &str) -> Option<String> {
    let index = |parent: &str, child: &str| {
        format!("INSERT INTO {db}.{name} SELECT DISTINCT {parent}, id FROM {db}.{child}")
    };
    Some(match name {
        "lines_by_order" => index("order_id", "lines_state"),
        "lines_by_product" => index("product_id", "lines_state"),
        "orders_by_user" => index("user_id", "orders_state"),
        "report_lines" => report::fill(db),
        _ => return None,
    })
}

/// `order_report` of the first schema: the entities' newest versions joined when read. Kept as migration 1 created
/// it; migration 2 replaces it.
fn legacy_order_report(db: &str) -> String {
    format!(
        "CREATE VIEW IF NOT EXISTS {db}.order_report AS \
         SELECT order_id, line_id, order_status, order_created_at, user_id, \
           if(user_present = 1, toNullable(user_email), NULL) AS user_email, \
           if(user_present = 1, toNullable(user_name), NULL) AS user_name, \
           if(user_present = 1 AND user_has_country = 1, toNullable(user_country), NULL) AS user_country, \
           product_id, \
           if(product_present = 1, toNullable(product_sku), NULL) AS product_sku, \
           if(product_present = 1, toNullable(product_name), NULL) AS product_name, \
           if(product_present = 1, toNullable(product_category), NULL) AS product_category, \
           quantity, unit_price, CAST(quantity * unit_price AS Decimal(14, 2)) AS line_total \
         FROM ( \
           SELECT * FROM ( \
             SELECT * FROM ( \
               SELECT id AS line_id, argMax(order_id, version) AS order_id, argMax(product_id, version) AS product_id, \
                 argMax(quantity, version) AS quantity, argMax(unit_price, version) AS unit_price \
               FROM {db}.lines_state GROUP BY id HAVING argMax(deleted, version) = 0 \
             ) AS l ALL INNER JOIN ( \
               SELECT id AS order_id, argMax(user_id, version) AS user_id, argMax(status, version) AS order_status, \
                 argMax(created_at, version) AS order_created_at \
               FROM {db}.orders_state GROUP BY id HAVING argMax(deleted, version) = 0 \
             ) AS o USING (order_id) \
           ) AS lo ALL LEFT JOIN ( \
             SELECT id AS user_id, argMax(email, version) AS user_email, argMax(name, version) AS user_name, \
               argMax(country, version) AS user_country, argMax(has_country, version) AS user_has_country, \
               toUInt8(1) AS user_present \
             FROM {db}.users_state GROUP BY id HAVING argMax(deleted, version) = 0 \
           ) AS u USING (user_id) \
         ) AS lou ALL LEFT JOIN ( \
           SELECT id AS product_id, argMax(sku, version) AS product_sku, argMax(name, version) AS product_name, \
             argMax(category, version) AS product_category, toUInt8(1) AS product_present \
           FROM {db}.products_state GROUP BY id HAVING argMax(deleted, version) = 0 \
         ) AS p USING (product_id)"
    )
}

fn freshness_view(db: &str) -> String {
    format!(
        "CREATE VIEW IF NOT EXISTS {db}.freshness AS \
         SELECT source, toDateTime(intDiv(max(commit_ms), 1000)) AS newest_commit, max(commit_ms) AS newest_commit_ms, \
           toDateTime(intDiv(argMax(applied_ms, commit_ms), 1000)) AS applied_at, argMax(applied_ms, commit_ms) AS applied_at_ms \
         FROM {db}.freshness_log GROUP BY source"
    )
}

/// The truncate of an entity: every row older than `version` gets a deleted version. (The report's rows follow by
/// a recomputation of every line: [`crate::report::Keys::all`].)
pub fn truncate(db: &str, table: &str, version: u64) -> String {
    let columns = match table {
        "users_state" => "argMax(email, version), argMax(name, version), argMax(country, version), argMax(has_country, version)",
        "products_state" => "argMax(sku, version), argMax(name, version), argMax(category, version), argMax(price, version)",
        "orders_state" => {
            "argMax(user_id, version), argMax(status, version), argMax(total, version), argMax(created_at, version)"
        }
        _ => "argMax(order_id, version), argMax(product_id, version), argMax(quantity, version), argMax(unit_price, version)",
    };
    format!(
        "INSERT INTO {db}.{table} SELECT id, {columns}, toUInt64({version}) AS v, toUInt8(1) \
         FROM {db}.{table} GROUP BY id HAVING max(version) < {version}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With a cluster, every statement the migrations and the recreation of dropped objects run has a rewrite
    /// (`ON CLUSTER` on each DDL statement; INSERTs unchanged).
    #[test]
    fn every_statement_of_migrations_and_recreation_rewrites_for_a_cluster() {
        let cluster = crate::cluster::Cluster {
            name: "reporting".into(),
            zookeeper_path: crate::cluster::DEFAULT_ZOOKEEPER_PATH.into(),
            replica_name: crate::cluster::DEFAULT_REPLICA_NAME.into(),
        };
        let statements = migrations("r")
            .into_iter()
            .flat_map(|m| m.statements)
            .chain(objects("r").into_iter().flat_map(|o| std::iter::once(o.create).chain(o.refill)));
        for statement in statements {
            let rewritten = cluster.rewrite(&statement, "r").unwrap_or_else(|e| panic!("{e}: {statement}"));
            if statement.starts_with("INSERT") {
                assert_eq!(rewritten, statement);
            } else {
                assert_eq!(rewritten.matches(" ON CLUSTER reporting").count(), 1, "{rewritten}");
            }
        }
    }

    #[test]
    fn migrations_are_ordered_and_every_object_has_a_create_statement_naming_it() {
        let migrations = migrations("r");
        let versions: Vec<u32> = migrations.iter().map(|m| m.version).collect();
        assert_eq!(versions, (1..=versions.len() as u32).collect::<Vec<_>>());
        for object in objects("r") {
            assert!(object.create.contains(&format!("r.{} ", object.name)), "{}", object.create);
            assert!(object.create.starts_with("CREATE "), "{}", object.create);
            // Each object of the current schema is created by some migration.
            let created = migrations.iter().flat_map(|m| &m.statements).any(|s| {
                s.starts_with("CREATE") && (s.contains(&format!("r.{} ", object.name)) || object.name == "order_report")
            });
            assert!(created, "{} is created by no migration", object.name);
        }
        // Derived tables are refilled; entity tables, whose content is only in Kafka, are not.
        let refilled: Vec<&str> = objects("r").into_iter().filter(|o| !o.refill.is_empty()).map(|o| o.name).collect();
        assert_eq!(refilled, ["lines_by_order", "lines_by_product", "orders_by_user", "report_lines"]);
    }
}
