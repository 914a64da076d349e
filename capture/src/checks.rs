//! Start-up checks of a source server: every precondition the capture relies on, each failing with a message that
//! names the setting and the remedy, and the decision where the source resumes ([`crate::resume`]). Run before
//! streaming and by `capture --check`.

use mysql_async::prelude::*;
use mysql_async::Pool;

use crate::checkpoint::Checkpoint;
use crate::config::SourceSettings;
use crate::error::{classify_mysql, CaptureError};
use crate::epoch::EpochFile;
use crate::position::{BinlogPosition, Flavor};
use crate::resume::{self, ResumePlan};

/// What the checks learned about the server.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    /// MariaDB or MySQL.
    pub flavor: Flavor,
    /// `VERSION()`.
    pub version: String,
    /// The server's `server_id`.
    pub server_id: u32,
    /// Binlog files on the server with their sizes, oldest first.
    pub binlogs: Vec<(String, u64)>,
    /// Where and in which epoch the source resumes (see [`crate::resume`]).
    pub plan: ResumePlan,
}

/// Runs the checks; `checkpoint` is the source's saved checkpoint, if any, `checkpoint_path` names its file in
/// messages, and `epochs` is the source's epoch file.
pub async fn run(
    pool: &Pool,
    source: &SourceSettings,
    checkpoint: Option<&Checkpoint>,
    checkpoint_path: &str,
    epochs: &EpochFile,
) -> Result<ServerInfo, CaptureError> {
    let name = source.name.as_str();
    let my = |e| classify_mysql(name, e);
    let mut conn = pool.get_conn().await.map_err(my)?;
    let (version, server_id): (String, u32) =
        conn.query_first("SELECT VERSION(), @@server_id").await.map_err(my)?.unwrap_or_default();
    let flavor = if version.to_ascii_lowercase().contains("mariadb") { Flavor::MariaDb } else { Flavor::MySql };
    let setting = |setting: &str, found: String, required: &str, remedy: &str| CaptureError::ServerSetting {
        source_name: name.to_owned(),
        setting: setting.to_owned(),
        found,
        required: required.to_owned(),
        remedy: remedy.to_owned(),
    };

    let log_bin: Option<String> = conn.query_first("SELECT @@log_bin").await.map_err(my)?;
    if !matches!(log_bin.as_deref(), Some("1") | Some("ON")) {
        return Err(setting("log_bin", log_bin.unwrap_or_default(), "ON", "start the server with log_bin enabled"));
    }
    for (var, required) in [("binlog_format", "ROW"), ("binlog_row_image", "FULL"), ("binlog_row_metadata", "FULL")] {
        let value: Option<String> = match conn.query_first(format!("SELECT @@GLOBAL.{var}")).await {
            Ok(v) => v,
            Err(mysql_async::Error::Server(e)) if e.code == 1193 => Some("(unsupported by this server)".into()),
            Err(e) => return Err(my(e)),
        };
        let value = value.unwrap_or_default();
        if !value.eq_ignore_ascii_case(required) {
            return Err(setting(
                var,
                value,
                required,
                &format!("run SET GLOBAL {var}='{required}' and set it in the server's config file"),
            ));
        }
    }
    if flavor == Flavor::MySql {
        let gtid_mode: Option<String> = conn.query_first("SELECT @@GLOBAL.gtid_mode").await.map_err(my)?;
        let gtid_mode = gtid_mode.unwrap_or_default();
        if !gtid_mode.eq_ignore_ascii_case("ON") {
            return Err(setting(
                "gtid_mode",
                gtid_mode,
                "ON",
                "set gtid_mode=ON and enforce_gtid_consistency=ON in the server's config file",
            ));
        }
    }

    let grants: Vec<String> = conn.query("SHOW GRANTS FOR CURRENT_USER()").await.map_err(my)?;
    let missing = missing_privileges(&grants, flavor);
    if !missing.is_empty() {
        return Err(CaptureError::Privileges { source_name: name.to_owned(), missing: missing.join(", ") });
    }

    let binlogs: Vec<(String, u64)> = conn
        .query_map("SHOW BINARY LOGS", |row: mysql_async::Row| {
            let file: String = row.get(0).unwrap_or_default();
            let size: u64 = row.get(1).unwrap_or_default();
            (file, size)
        })
        .await
        .map_err(my)?;
    let facts = resume::server_facts(&mut conn, flavor, name, server_id, binlogs.clone(), checkpoint).await?;
    let plan = resume::plan(checkpoint, epochs.state(), &facts)
        .map_err(|refusal| resume::refusal_error(name, refusal, checkpoint_path))?;
    Ok(ServerInfo { flavor, version, server_id, binlogs, plan })
}

/// Privileges the capture needs that the grants do not give.
pub fn missing_privileges(grants: &[String], flavor: Flavor) -> Vec<&'static str> {
    let global: Vec<String> = grants
        .iter()
        .map(|g| g.to_ascii_uppercase())
        .filter(|g| g.contains(" ON *.* "))
        .collect();
    let has = |p: &str| global.iter().any(|g| g.contains("ALL PRIVILEGES") || g.contains(p));
    let mut missing = Vec::new();
    if !has("REPLICATION SLAVE") {
        missing.push("REPLICATION SLAVE");
    }
    let client = match flavor {
        Flavor::MariaDb => has("BINLOG MONITOR") || has("REPLICATION CLIENT") || has("SUPER"),
        Flavor::MySql => has("REPLICATION CLIENT"),
    };
    if !client {
        missing.push(match flavor {
            Flavor::MariaDb => "BINLOG MONITOR",
            Flavor::MySql => "REPLICATION CLIENT",
        });
    }
    if !has("SELECT") {
        missing.push("SELECT");
    }
    missing
}

/// The server's current binlog end.
pub async fn current_position(pool: &Pool, flavor: Flavor, source: &str) -> Result<BinlogPosition, CaptureError> {
    let mut conn = pool.get_conn().await.map_err(|e| classify_mysql(source, e))?;
    let statement = match flavor {
        Flavor::MariaDb => "SHOW MASTER STATUS",
        Flavor::MySql => "SHOW BINARY LOG STATUS",
    };
    let row: Option<mysql_async::Row> = conn.query_first(statement).await.map_err(|e| classify_mysql(source, e))?;
    let row = row.ok_or_else(|| CaptureError::Definite {
        source_name: source.to_owned(),
        message: format!("{statement} returned nothing: is the binlog enabled?"),
    })?;
    Ok(BinlogPosition::new(row.get::<String, _>(0).unwrap_or_default(), row.get::<u64, _>(1).unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn privileges_are_read_from_grants() {
        let ok = vec!["GRANT SELECT, REPLICATION SLAVE, BINLOG MONITOR ON *.* TO `c`@`%`".to_string()];
        assert!(missing_privileges(&ok, Flavor::MariaDb).is_empty());
        let all = vec!["GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost`".to_string()];
        assert!(missing_privileges(&all, Flavor::MySql).is_empty());
        let app = vec!["GRANT SELECT, INSERT ON `users`.* TO `u`@`%`".to_string(), "GRANT USAGE ON *.* TO `u`@`%`".into()];
        assert_eq!(missing_privileges(&app, Flavor::MariaDb), vec!["REPLICATION SLAVE", "BINLOG MONITOR", "SELECT"]);
        assert_eq!(missing_privileges(&app, Flavor::MySql), vec!["REPLICATION SLAVE", "REPLICATION CLIENT", "SELECT"]);
    }
}
