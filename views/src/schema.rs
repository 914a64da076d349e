//! The reporting database's DDL, for ClickHouse 18.16 and current releases alike.
//!
//! Design: four entity tables (ReplacingMergeTree keyed by id, versioned by source position, with a `deleted`
//! flag) hold the newest state of each user, product, order and order line. `order_report` is a plain VIEW that
//! takes each entity's newest version with `argMax(..., version)` (exact at any merge state, unlike `FINAL` with
//! filters pushed before the merge) and joins them at read time: a product renamed once is renamed in every line
//! that references it, with one row of work per change. Readers see one row per existing order line and need no
//! FINAL, GROUP BY or version logic.
//!
//! Portability: at most one JOIN per SELECT (18.16), every subquery aliased (current releases), no DateTime64,
//! LowCardinality or `ReplacingMergeTree(version, is_deleted)`. LEFT JOIN NULLs are made explicit with a presence
//! column, since 18.16 fills defaults unless `join_use_nulls` is set. Nullable source columns are stored as a value
//! plus a presence flag, because aggregate functions skip NULL arguments (`argMax` would return an older non-NULL).

/// Statements that create the reporting schema in `db`, idempotently.
pub fn ddl(db: &str) -> Vec<String> {
    let entity = |name: &str, columns: &str| {
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.{name} ({columns}, version UInt64, deleted UInt8) \
             ENGINE = ReplacingMergeTree(version) ORDER BY id"
        )
    };
    vec![
        format!("CREATE DATABASE IF NOT EXISTS {db}"),
        entity("users_state", "id UInt64, email String, name String, country String, has_country UInt8"),
        entity("products_state", "id UInt64, sku String, name String, category String, price Decimal(12, 2)"),
        entity("orders_state", "id UInt64, user_id UInt64, status String, total Decimal(14, 2), created_at DateTime"),
        entity("lines_state", "id UInt64, order_id UInt64, product_id UInt64, quantity UInt32, unit_price Decimal(12, 2)"),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.freshness_log (source String, commit_ms UInt64, applied_ms UInt64) \
             ENGINE = ReplacingMergeTree(commit_ms) ORDER BY source"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.dead_letters (topic String, partition Int32, offset Int64, \
             error String, payload String, at DateTime DEFAULT now()) ENGINE = MergeTree ORDER BY (topic, partition, offset)"
        ),
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
        ),
        format!(
            "CREATE VIEW IF NOT EXISTS {db}.freshness AS \
             SELECT source, toDateTime(intDiv(max(commit_ms), 1000)) AS newest_commit, max(commit_ms) AS newest_commit_ms, \
               toDateTime(intDiv(argMax(applied_ms, commit_ms), 1000)) AS applied_at, argMax(applied_ms, commit_ms) AS applied_at_ms \
             FROM {db}.freshness_log GROUP BY source"
        ),
    ]
}

/// The truncate of an entity: every row older than `version` gets a deleted version.
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
