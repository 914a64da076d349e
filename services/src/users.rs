//! The users service: `POST /users`, `GET /users/{id}`, `GET /users`, `PATCH /users/{id}`, `DELETE /users/{id}`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use mysql_async::prelude::*;
use mysql_async::Pool;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::http::{is_duplicate, ApiError, Body, ErrorBody, Id, Page, PageParams, Query};

/// A user.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct User {
    pub id: u64,
    pub email: String,
    pub name: String,
    /// ISO 3166-1 alpha-2 code, or null.
    pub country: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// `POST /users`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub email: String,
    pub name: String,
    #[serde(default)]
    pub country: Option<String>,
}

/// `PATCH /users/{id}`: absent fields stay; `"country": null` clears the country.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    pub email: Option<String>,
    pub name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub country: Option<Option<String>>,
}

/// A field that is present (possibly null) is `Some`; an absent one stays `None` through `#[serde(default)]`.
pub fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Checks an email address the way a sign-up form would: one `@`, a non-empty local part, a dotted domain, no
/// spaces, at most 255 characters.
pub fn check_email(email: &str) -> Result<(), ApiError> {
    let ok = email.len() <= 255
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && matches!(email.split_once('@'), Some((local, domain))
            if !local.is_empty() && !domain.contains('@') && domain.contains('.')
                && !domain.starts_with('.') && !domain.ends_with('.') && !domain.contains(".."));
    if ok { Ok(()) } else { Err(ApiError::invalid(format!("`{email}` is not a valid email address"))) }
}

/// A required text field: trimmed length between 1 and `max` characters.
pub fn check_text(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    let n = value.trim().chars().count();
    if n == 0 {
        return Err(ApiError::invalid(format!("{field} must not be empty")));
    }
    if value.chars().count() > max {
        return Err(ApiError::invalid(format!("{field} is longer than {max} characters")));
    }
    Ok(())
}

fn check_country(country: &Option<String>) -> Result<(), ApiError> {
    match country {
        Some(c) if !(c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase())) => {
            Err(ApiError::invalid(format!("country `{c}` is not a two-letter ISO 3166 code like \"DE\"")))
        }
        _ => Ok(()),
    }
}

/// `DATE_FORMAT` pattern for RFC 3339 UTC timestamps (sessions run in UTC).
pub const TS: &str = "'%Y-%m-%dT%H:%i:%s.%fZ'";

fn select_users() -> String {
    format!("SELECT id, email, name, country, DATE_FORMAT(created_at, {TS}), DATE_FORMAT(updated_at, {TS}) FROM users")
}

type UserTuple = (u64, String, String, Option<String>, String, String);

fn user((id, email, name, country, created_at, updated_at): UserTuple) -> User {
    User { id, email, name, country, created_at, updated_at }
}

#[derive(Clone)]
struct AppState {
    pool: Pool,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "users", description = "The users service: its own database, captured into `<prefix>.users.users`."),
    paths(create_user, get_user, list_users, patch_user, delete_user),
    components(schemas(User, NewUser, UserPatch, ErrorBody, Page<User>))
)]
struct ApiDoc;

/// The service's routes, with their OpenAPI document.
pub fn routes(pool: Pool) -> (Router, utoipa::openapi::OpenApi) {
    let routes = Router::new()
        .route("/users", get(list_users).post(create_user))
        .route("/users/{id}", get(get_user).patch(patch_user).delete(delete_user))
        .with_state(AppState { pool });
    (routes, ApiDoc::openapi())
}

async fn load(pool: &Pool, id: u64) -> Result<User, ApiError> {
    let row: Option<UserTuple> = pool.get_conn().await?.exec_first(format!("{} WHERE id = ?", select_users()), (id,)).await?;
    row.map(user).ok_or_else(|| ApiError::not_found("user", id))
}

fn duplicate_email(e: mysql_async::Error, email: &str) -> ApiError {
    if is_duplicate(&e) {
        ApiError::conflict("duplicate", format!("a user with email `{email}` already exists"))
    } else {
        e.into()
    }
}

/// Creates a user.
#[utoipa::path(post, path = "/users", request_body = NewUser, responses(
    (status = 201, body = User), (status = 400, body = ErrorBody), (status = 409, description = "email taken", body = ErrorBody)))]
async fn create_user(State(s): State<AppState>, Body(new): Body<NewUser>) -> Result<(StatusCode, Json<User>), ApiError> {
    check_email(&new.email)?;
    check_text("name", &new.name, 255)?;
    check_country(&new.country)?;
    let mut conn = s.pool.get_conn().await?;
    conn.exec_drop("INSERT INTO users (email, name, country) VALUES (?, ?, ?)", (&new.email, &new.name, &new.country))
        .await
        .map_err(|e| duplicate_email(e, &new.email))?;
    let id = conn.last_insert_id().unwrap_or(0);
    drop(conn);
    Ok((StatusCode::CREATED, Json(load(&s.pool, id).await?)))
}

/// One user.
#[utoipa::path(get, path = "/users/{id}", params(("id" = u64, Path)), responses((status = 200, body = User), (status = 404, body = ErrorBody)))]
async fn get_user(State(s): State<AppState>, Id(id): Id) -> Result<Json<User>, ApiError> {
    Ok(Json(load(&s.pool, id).await?))
}

/// Users in id order, a page at a time.
#[utoipa::path(get, path = "/users", params(PageParams), responses((status = 200, body = Page<User>)))]
async fn list_users(State(s): State<AppState>, Query(page): Query<PageParams>) -> Result<Json<Page<User>>, ApiError> {
    let limit = page.limit()?;
    let rows: Vec<UserTuple> = s
        .pool
        .get_conn()
        .await?
        .exec(format!("{} WHERE id > ? ORDER BY id LIMIT ?", select_users()), (page.after.unwrap_or(0), limit + 1))
        .await?;
    Ok(Json(Page::cut(rows.into_iter().map(user).collect(), limit, |u| u.id)))
}

/// Changes a user's email, name or country.
#[utoipa::path(patch, path = "/users/{id}", params(("id" = u64, Path)), request_body = UserPatch, responses(
    (status = 200, body = User), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn patch_user(State(s): State<AppState>, Id(id): Id, Body(patch): Body<UserPatch>) -> Result<Json<User>, ApiError> {
    if let Some(email) = &patch.email {
        check_email(email)?;
    }
    if let Some(name) = &patch.name {
        check_text("name", name, 255)?;
    }
    if let Some(country) = &patch.country {
        check_country(country)?;
    }
    let mut conn = s.pool.get_conn().await?;
    let result = conn
        .exec_drop(
            "UPDATE users SET email = COALESCE(?, email), name = COALESCE(?, name), \
             country = IF(?, ?, country) WHERE id = ?",
            (&patch.email, &patch.name, patch.country.is_some(), patch.country.clone().flatten(), id),
        )
        .await;
    result.map_err(|e| duplicate_email(e, patch.email.as_deref().unwrap_or_default()))?;
    drop(conn);
    Ok(Json(load(&s.pool, id).await?))
}

/// Deletes a user.
#[utoipa::path(delete, path = "/users/{id}", params(("id" = u64, Path)), responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete_user(State(s): State<AppState>, Id(id): Id) -> Result<StatusCode, ApiError> {
    let mut conn = s.pool.get_conn().await?;
    conn.exec_drop("DELETE FROM users WHERE id = ?", (id,)).await?;
    if conn.affected_rows() == 0 {
        return Err(ApiError::not_found("user", id));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        for ok in ["a@b.co", "first.last+tag@example.org"] {
            assert!(check_email(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a", "a@b", "@b.co", "a@@b.co", "a b@c.de", "a@.co", "a@b.co.", "a@b..co"] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn patch_tells_null_from_absent() {
        let p: UserPatch = serde_json::from_str(r#"{"country": null}"#).unwrap();
        assert_eq!(p.country, Some(None));
        let p: UserPatch = serde_json::from_str(r#"{"name": "x"}"#).unwrap();
        assert_eq!(p.country, None);
        assert!(serde_json::from_str::<UserPatch>(r#"{"nmae": "x"}"#).is_err());
    }
}
