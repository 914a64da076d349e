//! Classification of statements found in QUERY events: the one place that reads SQL text.
//!
//! Row decoding does not depend on it: with `binlog_row_metadata=FULL` every TABLE_MAP event carries the column
//! names, types, signedness, charsets and enum/set members in force at its position, so events on both sides of a
//! DDL decode with their own schema, also when a restart resumes between them. The classification tells the capture
//! which tables' cached information_schema facts (used for what the binlog lacks, e.g. MariaDB's JSON columns) are
//! stale, and which statements are TRUNCATEs (emitted as op `t`).

use cdc_contract::TableId;

/// What a statement means to the capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    /// `BEGIN`: a transaction starts (servers without GTID events).
    Begin,
    /// `COMMIT`: a non-transactional engine's transaction ends.
    Commit,
    /// `TRUNCATE [TABLE] t`.
    Truncate(TableId),
    /// CREATE/ALTER/DROP/RENAME TABLE: these tables' schemas changed.
    SchemaChange(Vec<TableId>),
    /// Anything else (accounts, grants, views, routines, databases, ...).
    Other,
}

/// Classifies `sql`, run with default database `default_db`.
pub fn classify(default_db: &str, sql: &str) -> Statement {
    let mut t = Tokens::new(sql);
    let Some(first) = t.keyword() else { return Statement::Other };
    match first.as_str() {
        "BEGIN" => Statement::Begin,
        "COMMIT" => Statement::Commit,
        "XA" => Statement::Other,
        "TRUNCATE" => {
            t.skip_keyword("TABLE");
            match t.table(default_db) {
                Some(table) => Statement::Truncate(table),
                None => Statement::Other,
            }
        }
        "ALTER" => {
            t.skip_keyword("ONLINE");
            t.skip_keyword("IGNORE");
            if !t.skip_keyword("TABLE") {
                return Statement::Other;
            }
            t.skip_if_exists();
            let Some(table) = t.table(default_db) else { return Statement::Other };
            let mut tables = vec![table];
            // ALTER TABLE a RENAME [TO|AS] b
            while let Some(word) = t.keyword_or_skip() {
                if word == "RENAME" && !t.peek_keyword("COLUMN") && !t.peek_keyword("INDEX") && !t.peek_keyword("KEY") {
                    t.skip_keyword("TO");
                    t.skip_keyword("AS");
                    if let Some(to) = t.table(default_db) {
                        tables.push(to);
                    }
                }
            }
            Statement::SchemaChange(tables)
        }
        "CREATE" => {
            t.skip_keyword("OR");
            t.skip_keyword("REPLACE");
            t.skip_keyword("TEMPORARY");
            if !t.skip_keyword("TABLE") {
                return Statement::Other;
            }
            t.skip_if_not_exists();
            t.table(default_db).map_or(Statement::Other, |x| Statement::SchemaChange(vec![x]))
        }
        "DROP" => {
            t.skip_keyword("TEMPORARY");
            if !t.skip_keyword("TABLE") {
                return Statement::Other;
            }
            t.skip_if_exists();
            let mut tables = Vec::new();
            while let Some(table) = t.table(default_db) {
                tables.push(table);
                if !t.skip_punct(',') {
                    break;
                }
            }
            Statement::SchemaChange(tables)
        }
        "RENAME" => {
            if !t.skip_keyword("TABLE") {
                return Statement::Other;
            }
            let mut tables = Vec::new();
            while let Some(from) = t.table(default_db) {
                tables.push(from);
                t.skip_keyword("TO");
                if let Some(to) = t.table(default_db) {
                    tables.push(to);
                }
                if !t.skip_punct(',') {
                    break;
                }
            }
            Statement::SchemaChange(tables)
        }
        _ => Statement::Other,
    }
}

/// A tiny SQL tokenizer: skips whitespace and comments, reads keywords, identifiers (plain or backquoted) and
/// punctuation.
struct Tokens<'a> {
    rest: &'a str,
}

impl<'a> Tokens<'a> {
    fn new(sql: &'a str) -> Tokens<'a> {
        Tokens { rest: sql }
    }

    fn skip_space(&mut self) {
        loop {
            let trimmed = self.rest.trim_start();
            if let Some(r) = trimmed.strip_prefix("/*") {
                // MySQL executable comments (/*!50100 ... */) hold real SQL: read their content.
                if let Some(r) = r.strip_prefix('!') {
                    let digits = r.chars().take_while(|c| c.is_ascii_digit()).count();
                    self.rest = &r[digits..];
                    continue;
                }
                self.rest = r.find("*/").map_or("", |i| &r[i + 2..]);
            } else if let Some(r) = trimmed.strip_prefix("*/") {
                self.rest = r;
            } else if trimmed.starts_with("-- ") || trimmed.starts_with('#') {
                self.rest = trimmed.find('\n').map_or("", |i| &trimmed[i + 1..]);
            } else {
                self.rest = trimmed;
                return;
            }
        }
    }

    fn word(&mut self) -> Option<&'a str> {
        self.skip_space();
        let len = self.rest.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$')).unwrap_or(self.rest.len());
        if len == 0 {
            return None;
        }
        let (w, r) = self.rest.split_at(len);
        self.rest = r;
        Some(w)
    }

    fn keyword(&mut self) -> Option<String> {
        self.word().map(str::to_ascii_uppercase)
    }

    /// The next keyword, skipping punctuation and quoted tokens; `None` at the end.
    fn keyword_or_skip(&mut self) -> Option<String> {
        loop {
            self.skip_space();
            let c = self.rest.chars().next()?;
            if c.is_alphanumeric() || c == '_' {
                return self.keyword();
            }
            if matches!(c, '`' | '\'' | '"') {
                let close = self.rest[1..].find(c).map_or(self.rest.len(), |i| i + 2);
                self.rest = &self.rest[close..];
            } else {
                self.rest = &self.rest[c.len_utf8()..];
            }
        }
    }

    fn peek_keyword(&self, kw: &str) -> bool {
        let mut probe = Tokens { rest: self.rest };
        probe.word().is_some_and(|w| w.eq_ignore_ascii_case(kw))
    }

    fn skip_keyword(&mut self, kw: &str) -> bool {
        if self.peek_keyword(kw) {
            self.word();
            true
        } else {
            false
        }
    }

    fn skip_if_exists(&mut self) {
        let mut probe = Tokens { rest: self.rest };
        if probe.skip_keyword("IF") && probe.skip_keyword("EXISTS") {
            self.rest = probe.rest;
        }
    }

    fn skip_if_not_exists(&mut self) {
        let mut probe = Tokens { rest: self.rest };
        if probe.skip_keyword("IF") && probe.skip_keyword("NOT") && probe.skip_keyword("EXISTS") {
            self.rest = probe.rest;
        }
    }

    fn skip_punct(&mut self, p: char) -> bool {
        self.skip_space();
        match self.rest.strip_prefix(p) {
            Some(r) => {
                self.rest = r;
                true
            }
            None => false,
        }
    }

    fn ident(&mut self) -> Option<String> {
        self.skip_space();
        if let Some(r) = self.rest.strip_prefix('`') {
            let mut out = String::new();
            let mut chars = r.char_indices();
            while let Some((i, c)) = chars.next() {
                if c == '`' {
                    if r[i + 1..].starts_with('`') {
                        out.push('`');
                        chars.next();
                    } else {
                        self.rest = &r[i + 1..];
                        return Some(out);
                    }
                } else {
                    out.push(c);
                }
            }
            None
        } else {
            self.word().map(str::to_owned)
        }
    }

    fn table(&mut self, default_db: &str) -> Option<TableId> {
        let first = self.ident()?;
        if self.rest.starts_with('.') {
            self.rest = &self.rest[1..];
            let table = self.ident()?;
            Some(TableId::new(first, table))
        } else {
            Some(TableId::new(default_db, first))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(db: &str, table: &str) -> TableId {
        TableId::new(db, table)
    }

    #[test]
    fn statements_are_classified() {
        use Statement::*;
        let cases: Vec<(&str, Statement)> = vec![
            ("BEGIN", Begin),
            ("COMMIT", Commit),
            ("truncate table orders", Truncate(t("shop", "orders"))),
            ("TRUNCATE `other`.`x``y`", Truncate(t("other", "x`y"))),
            ("ALTER TABLE orders ADD COLUMN note TEXT", SchemaChange(vec![t("shop", "orders")])),
            ("alter table orders rename column a to b", SchemaChange(vec![t("shop", "orders")])),
            ("ALTER TABLE a RENAME TO b", SchemaChange(vec![t("shop", "a"), t("shop", "b")])),
            ("ALTER ONLINE TABLE s.a MODIFY x INT", SchemaChange(vec![t("s", "a")])),
            ("CREATE TABLE IF NOT EXISTS n (id INT)", SchemaChange(vec![t("shop", "n")])),
            ("CREATE OR REPLACE TABLE n (id INT)", SchemaChange(vec![t("shop", "n")])),
            (
                "DROP TABLE IF EXISTS a, `b`.c /* generated by server */",
                SchemaChange(vec![t("shop", "a"), t("b", "c")]),
            ),
            ("RENAME TABLE a TO b, c TO d", SchemaChange(vec![t("shop", "a"), t("shop", "b"), t("shop", "c"), t("shop", "d")])),
            ("/* comment */ ALTER TABLE x DROP y", SchemaChange(vec![t("shop", "x")])),
            ("/*!40000 ALTER TABLE x DISABLE KEYS */", SchemaChange(vec![t("shop", "x")])),
            ("CREATE USER 'a'@'%'", Other),
            ("GRANT ALL ON *.* TO x", Other),
            ("CREATE DATABASE d", Other),
            ("CREATE VIEW v AS SELECT 1", Other),
            ("", Other),
        ];
        for (sql, want) in cases {
            assert_eq!(classify("shop", sql), want, "{sql}");
        }
    }
}
