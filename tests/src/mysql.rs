//! A scratch database per test on one of the stack's MariaDB servers.

use anyhow::Result;
use mysql_async::prelude::*;

use crate::{stack, unique_name};

/// A database created for one test, with an admin pool on it. Dropped at the end of the test by [`ScratchDb::drop_db`]
/// (kept on failure for inspection).
pub struct ScratchDb {
    /// Database name.
    pub name: String,
    /// Admin pool with the database as default.
    pub pool: mysql_async::Pool,
    /// `USERS`, `CATALOG` or `ORDERS`: which server.
    server: String,
}

impl ScratchDb {
    /// Creates a database named after `prefix` on `server` (`USERS`, `CATALOG`, `ORDERS`).
    pub async fn create(server: &str, prefix: &str) -> Result<ScratchDb> {
        let env = stack();
        let name = unique_name(prefix);
        let admin = env.var(&format!("{server}_MYSQL_ADMIN_URL"));
        let root = mysql_async::Pool::new(admin);
        root.get_conn().await?.query_drop(format!("CREATE DATABASE `{name}`")).await?;
        root.disconnect().await?;
        let url = replace_db(admin, &name);
        Ok(ScratchDb { name, pool: mysql_async::Pool::new(url.as_str()), server: server.to_owned() })
    }

    /// The capture account's URL with this database as its path.
    pub fn capture_url(&self) -> String {
        replace_db(stack().var(&format!("{}_MYSQL_CAPTURE_URL", self.server)), &self.name)
    }

    /// The admin account's URL with this database as its path.
    pub fn url(&self) -> String {
        replace_db(stack().var(&format!("{}_MYSQL_ADMIN_URL", self.server)), &self.name)
    }

    /// Runs statements.
    pub async fn exec(&self, sql: &str) -> Result<()> {
        self.pool.get_conn().await?.query_drop(sql).await?;
        Ok(())
    }

    /// Drops the database, first ending other sessions that still use it (their open transactions would block the
    /// DROP).
    pub async fn drop_db(self) -> Result<()> {
        let mut conn = self.pool.get_conn().await?;
        let others: Vec<u64> = conn
            .exec("SELECT id FROM information_schema.processlist WHERE db = ? AND id <> CONNECTION_ID()", (&self.name,))
            .await?;
        for id in others {
            conn.query_drop(format!("KILL CONNECTION {id}")).await.ok(); // it may have ended meanwhile
        }
        conn.query_drop(format!("DROP DATABASE `{}`", self.name)).await?;
        drop(conn);
        self.pool.disconnect().await?;
        Ok(())
    }
}

/// `mysql://u:p@h:port/db` with another database.
pub fn replace_db(url: &str, db: &str) -> String {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    match url[scheme_end..].find('/') {
        Some(i) => format!("{}/{db}", &url[..scheme_end + i]),
        None => format!("{url}/{db}"),
    }
}
