//! Row changes written as statements (`binlog_format=STATEMENT` or `MIXED` in some session): refused on captured
//! tables, or counted and skipped with `statement_dml = "skip"`.

use cdc_contract::TableId;
use prometheus_client::metrics::counter::Counter;

use super::{TransformError, Transformer};
use crate::config::StatementDml;

impl Transformer {
    /// Sets what a row change written as a statement on a captured table does, and the counter of those skipped.
    pub fn with_statement_row_changes(mut self, policy: StatementDml, skipped: Counter) -> Transformer {
        self.statement_dml = policy;
        self.skipped_statements = skipped;
        self
    }

    /// Statement-format row changes skipped so far (with [`StatementDml::Skip`]).
    pub fn skipped_statements(&self) -> u64 {
        self.skipped_statements.get()
    }

    /// A row change written as a statement, which changes `tables`: an error when it may change a captured table,
    /// unless the policy is to skip it.
    pub(super) fn statement_row_change(
        &mut self,
        tables: &[TableId],
        sql: &str,
        position: String,
    ) -> Result<(), TransformError> {
        let captured = if tables.is_empty() {
            // The statement could not be read: it may change a captured table.
            Some("(a table the capture could not read from the statement)".to_owned())
        } else {
            tables.iter().find(|t| self.filter.matches(&t.database, &t.table)).map(ToString::to_string)
        };
        let Some(table) = captured else { return Ok(()) };
        let statement = excerpt(sql);
        match self.statement_dml {
            StatementDml::Error => Err(TransformError::StatementRowChange { position, table, statement }),
            StatementDml::Skip => {
                self.skipped_statements.inc();
                tracing::warn!(
                    source = %self.source_name, %position, %table, %statement,
                    "row change written as a statement skipped (statement_dml = \"skip\"): its changes are not captured"
                );
                Ok(())
            }
        }
    }
}

/// The start of a statement, for messages.
fn excerpt(sql: &str) -> String {
    const MAX: usize = 200;
    match sql.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}...", &sql[..at]),
        None => sql.to_owned(),
    }
}
