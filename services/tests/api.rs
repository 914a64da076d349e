//! The REST APIs: CRUD, paging, every kind of bad input (a 4xx with a JSON body that says what is wrong, nothing
//! written), /health, /metrics and /openapi.json.

mod common;

use anyhow::Result;
use common::{metric, Shop};
use mysql_async::prelude::*;
use serde_json::{json, Value};

async fn count(db: &cdc_tests::ScratchDb, table: &str) -> Result<u64> {
    Ok(db.pool.get_conn().await?.query_first(format!("SELECT COUNT(*) FROM {table}")).await?.unwrap_or(0))
}

/// Sends `body` and checks the status and that the error message mentions `words`.
async fn refused(shop: &Shop, method: &str, url: &str, body: &str, status: u16, words: &str) -> Result<()> {
    let (got, answer) = shop.call(method, url, Some(body)).await?;
    assert_eq!(got, status, "{method} {url} {body} -> {answer}");
    let message = answer["message"].as_str().unwrap_or_default().to_lowercase();
    assert!(answer["error"].is_string(), "{answer}");
    assert!(message.contains(&words.to_lowercase()), "{method} {url} {body}: `{message}` lacks `{words}`");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crud_paging_and_documents() -> Result<()> {
    let shop = Shop::start("svc_crud", |_, _| {}).await?;
    let users = format!("{}/users", shop.users.url);
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(shop.user(&format!("u{i}@example.com")).await?);
    }
    let (_, page) = shop.call("GET", &format!("{users}?limit=2"), None).await?;
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let after = page["next_after"].as_u64().unwrap();
    let (_, rest) = shop.call("GET", &format!("{users}?limit=10&after={after}"), None).await?;
    assert_eq!(rest["items"].as_array().unwrap().len(), 3);
    assert_eq!(rest["next_after"], Value::Null);

    let (status, user) = shop.call("PATCH", &format!("{users}/{}", ids[0]), Some(r#"{"name":"Ada L.","country":null}"#)).await?;
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["name"], "Ada L.");
    assert_eq!(user["country"], Value::Null);
    assert_eq!(user["email"], "u0@example.com");
    let (status, _) = shop.call("DELETE", &format!("{users}/{}", ids[1]), None).await?;
    assert_eq!(status, 204);
    let (status, body) = shop.call("GET", &format!("{users}/{}", ids[1]), None).await?;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));

    let products = format!("{}/products", shop.catalog.url);
    let p = shop.product("SKU-1", "9.99", 3).await?;
    let (status, product) = shop.call("PATCH", &format!("{products}/{p}"), Some(r#"{"price":"12.5","stock":7,"name":"Better"}"#)).await?;
    assert_eq!(status, 200, "{product}");
    assert_eq!((product["price"].as_str(), product["stock"].as_u64(), product["name"].as_str()), (Some("12.50"), Some(7), Some("Better")));
    let (status, _) = shop.call("DELETE", &format!("{products}/{p}"), None).await?;
    assert_eq!(status, 204);

    for svc in [&shop.users, &shop.catalog, &shop.orders] {
        let (status, health) = shop.call("GET", &format!("{}/health", svc.url), None).await?;
        assert_eq!(status, 200, "{health}");
        let (status, doc) = shop.call("GET", &format!("{}/openapi.json", svc.url), None).await?;
        assert_eq!(status, 200);
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
        assert!(!doc["paths"].as_object().unwrap().is_empty());
    }
    let (_, doc) = shop.call("GET", &format!("{}/openapi.json", shop.orders.url), None).await?;
    assert!(doc["paths"]["/orders/{id}/cancel"]["post"].is_object(), "{}", doc["paths"]);
    let m = shop.users.metrics().await?;
    assert!(metric(&m, &["cdc_service_http_requests_total", "route=\"/users\"", "status=\"201\""]) >= 5.0, "{m}");
    shop.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_is_refused_and_writes_nothing() -> Result<()> {
    let shop = Shop::start("svc_bad", |_, _| {}).await?;
    let user = shop.user("taken@example.com").await?;
    let product = shop.product("TAKEN-1", "1.00", 1).await?;
    shop.wait_known(user, product).await?;
    let users = format!("{}/users", shop.users.url);
    let products = format!("{}/products", shop.catalog.url);
    let orders = format!("{}/orders", shop.orders.url);
    let (u0, p0, o0) = (count(&shop.sources.users, "users").await?, count(&shop.sources.catalog, "products").await?, count(&shop.sources.orders, "orders").await?);

    refused(&shop, "POST", &users, "{\"email\": ", 400, "").await?;
    refused(&shop, "POST", &users, r#"{"email": 5, "name": "x"}"#, 422, "email").await?;
    refused(&shop, "POST", &users, r#"{"name": "x"}"#, 422, "missing field `email`").await?;
    refused(&shop, "POST", &users, r#"{"email": "no-at-sign", "name": "x"}"#, 400, "not a valid email").await?;
    refused(&shop, "POST", &users, r#"{"email": "a@b.co", "name": "  "}"#, 400, "name must not be empty").await?;
    refused(&shop, "POST", &users, r#"{"email": "a@b.co", "name": "x", "country": "Germany"}"#, 400, "two-letter").await?;
    refused(&shop, "POST", &users, r#"{"email": "a@b.co", "name": "x", "role": "admin"}"#, 422, "unknown field").await?;
    refused(&shop, "POST", &users, r#"{"email": "taken@example.com", "name": "x"}"#, 409, "already exists").await?;
    refused(&shop, "PATCH", &format!("{users}/{user}"), r#"{"email": "bad"}"#, 400, "not a valid email").await?;
    refused(&shop, "GET", &format!("{users}/abc"), "", 400, "not an id").await?;
    refused(&shop, "GET", &format!("{users}?limit=0"), "", 400, "limit").await?;
    refused(&shop, "GET", &format!("{users}/999999"), "", 404, "does not exist").await?;

    let p = |price: &str, stock: &str| format!(r#"{{"sku": "NEW-1", "name": "n", "category": "c", "price": {price}, "stock": {stock}}}"#);
    refused(&shop, "POST", &products, &p("\"-1.00\"", "1"), 422, "negative").await?;
    refused(&shop, "POST", &products, &p("\"1.001\"", "1"), 422, "more than two decimal places").await?;
    refused(&shop, "POST", &products, &p("\"abc\"", "1"), 422, "not a decimal").await?;
    refused(&shop, "POST", &products, &p("\"1.00\"", "-1"), 422, "stock").await?;
    refused(&shop, "POST", &products, &p("\"1.00\"", "\"many\""), 422, "stock").await?;
    refused(&shop, "POST", &products, r#"{"sku": "has space", "name": "n", "category": "c", "price": "1", "stock": 1}"#, 400, "sku").await?;
    refused(&shop, "POST", &products, r#"{"sku": "TAKEN-1", "name": "n", "category": "c", "price": "1", "stock": 1}"#, 409, "already exists").await?;
    refused(&shop, "PATCH", &format!("{products}/{product}"), r#"{"price": "-2"}"#, 422, "negative").await?;

    let o = |body: Value| body.to_string();
    refused(&shop, "POST", &orders, &o(json!({"user_id": user, "lines": []})), 400, "at least one line").await?;
    refused(&shop, "POST", &orders, &o(json!({"user_id": user, "lines": [{"product_id": product, "quantity": 0}]})), 400, "at least 1").await?;
    refused(&shop, "POST", &orders, &o(json!({"user_id": user, "lines": [{"product_id": product, "quantity": -1}]})), 422, "quantity").await?;
    refused(&shop, "POST", &orders, &o(json!({"user_id": "me", "lines": []})), 422, "user_id").await?;
    refused(&shop, "POST", &orders, &o(json!({"user_id": 424242, "lines": [{"product_id": product, "quantity": 1}]})), 422, "may not have arrived yet").await?;
    refused(&shop, "POST", &orders, &o(json!({"user_id": user, "lines": [{"product_id": 434343, "quantity": 1}]})), 422, "may not have arrived yet").await?;
    refused(&shop, "POST", &format!("{orders}/777/cancel"), "", 404, "does not exist").await?;
    let (status, _) = shop.call("POST", &orders, None).await?;
    assert_eq!(status, 415, "a body without a JSON content type");

    assert_eq!(count(&shop.sources.users, "users").await?, u0);
    assert_eq!(count(&shop.sources.catalog, "products").await?, p0);
    assert_eq!(count(&shop.sources.orders, "orders").await?, o0);
    assert_eq!(count(&shop.sources.orders, "order_lines").await?, 0);
    assert_eq!(count(&shop.sources.orders, "order_history").await?, 0);
    shop.finish().await
}
