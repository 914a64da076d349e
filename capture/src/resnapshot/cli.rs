//! `capture resnapshot`: asks the running capture (its HTTP server, `listen` of its configuration, or `--url`) to
//! re-snapshot one table of one source, and prints the answer.

use crate::config::Settings;

/// `capture resnapshot --source S --table db.t [--where SQL]`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// The source (`name` of a `[[sources]]` entry).
    #[arg(long)]
    pub source: String,
    /// The table, `database.table`; it must be captured by the source and have a primary key.
    #[arg(long)]
    pub table: String,
    /// Only rows matching this SQL condition on the table's columns (as after WHERE), e.g. "id > 1000".
    #[arg(long = "where", value_name = "SQL")]
    pub filter: Option<String>,
    #[command(flatten)]
    pub remote: crate::remote::Remote,
}

/// Sends the request; returns the line to print on success, or the error.
pub async fn run(settings: &Settings, args: &Args) -> anyhow::Result<String> {
    let base = crate::remote::base_url(settings, &args.remote);
    let body = serde_json::json!({ "table": args.table, "where": args.filter }).to_string();
    let path = format!("/sources/{}/resnapshot", args.source);
    let (status, text) = crate::remote::request(&base, "POST", &path, Some(body)).await?;
    if (200..300).contains(&status) {
        let json: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        Ok(format!("resnapshot of {} on source {} started; progress in {base}/health: {json}", args.table, args.source))
    } else {
        Err(crate::remote::refused(status, &text))
    }
}
