//! Classification of statements found in QUERY events: the one place that reads SQL text.
//!
//! Row decoding does not depend on it: with `binlog_row_metadata=FULL` every TABLE_MAP event carries the column
//! names, types, signedness, charsets and enum/set members in force at its position, so events on both sides of a
//! DDL decode with their own schema, also when a restart resumes between them. The classification tells the capture
//! which tables' cached information_schema facts (used for what the binlog lacks, e.g. MariaDB's JSON columns) are
//! stale, which statements are TRUNCATEs (emitted as op `t`), and which are row changes written as statements
//! (`binlog_format=STATEMENT` or `MIXED` in some session), which the capture cannot decode and must not pass over
//! silently: [`Statement::RowChange`] lists every table such a statement may change.

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
    /// INSERT, REPLACE, UPDATE, DELETE or LOAD DATA (also multi-table and `INSERT ... SELECT` forms): the tables
    /// the statement may change. Multi-table UPDATE and DELETE list every table they name outside subqueries (the
    /// tables read too, and aliases: a superset of those changed); empty when no table could be read.
    RowChange(Vec<TableId>),
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
        // XA START opens the transaction that XA_PREPARE ends; XA COMMIT/ROLLBACK stand alone.
        "XA" if t.peek_keyword("START") || t.peek_keyword("BEGIN") => Statement::Begin,
        "XA" => Statement::Other,
        "INSERT" | "REPLACE" => {
            for modifier in ["LOW_PRIORITY", "DELAYED", "HIGH_PRIORITY", "IGNORE"] {
                t.skip_keyword(modifier);
            }
            t.skip_keyword("INTO");
            Statement::RowChange(t.table(default_db).into_iter().collect())
        }
        "UPDATE" => {
            t.skip_keyword("LOW_PRIORITY");
            t.skip_keyword("IGNORE");
            Statement::RowChange(t.table_references(default_db, &["SET"]))
        }
        "DELETE" => {
            for modifier in ["LOW_PRIORITY", "QUICK", "IGNORE"] {
                t.skip_keyword(modifier);
            }
            const END: [&str; 5] = ["WHERE", "ORDER", "LIMIT", "RETURNING", "USING"];
            let mut tables = if t.skip_keyword("FROM") {
                t.table_references(default_db, &END)
            } else {
                // DELETE t1, t2 FROM <references>
                let mut targets = t.table_references(default_db, &["FROM"]);
                t.skip_keyword("FROM");
                targets.extend(t.table_references(default_db, &END));
                targets
            };
            // DELETE FROM t1, t2 USING <references>
            if t.skip_keyword("USING") {
                tables.extend(t.table_references(default_db, &END));
            }
            Statement::RowChange(tables)
        }
        "LOAD" => {
            if !(t.skip_keyword("DATA") || t.skip_keyword("XML")) {
                return Statement::Other;
            }
            // ... INFILE 'file' [REPLACE | IGNORE] INTO TABLE t
            while let Some(word) = t.keyword_or_skip() {
                if word == "INTO" && t.skip_keyword("TABLE") {
                    return Statement::RowChange(t.table(default_db).into_iter().collect());
                }
            }
            Statement::RowChange(Vec::new())
        }
        "WITH" => {
            // WITH <common table expressions> UPDATE/DELETE/INSERT ...: classify the statement after them.
            while !t.rest.is_empty() {
                t.skip_space();
                if t.rest.starts_with('(') {
                    t.skip_parenthesized();
                    continue;
                }
                let before = t.rest;
                match t.keyword_or_skip().as_deref() {
                    Some("UPDATE" | "DELETE" | "INSERT" | "REPLACE") => return classify(default_db, before),
                    Some(_) => {}
                    None => break,
                }
            }
            Statement::Other
        }
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

    /// Skips a parenthesized group (with nested groups and quoted strings) starting at `(`.
    fn skip_parenthesized(&mut self) {
        let mut depth = 0usize;
        while let Some(c) = self.rest.chars().next() {
            match c {
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                '`' | '\'' | '"' => {
                    let close = self.rest[1..].find(c).map_or(self.rest.len(), |i| i + 2);
                    self.rest = &self.rest[close..];
                    if depth == 0 {
                        return;
                    }
                    continue;
                }
                _ => {}
            }
            self.rest = &self.rest[c.len_utf8()..];
            if depth == 0 {
                return;
            }
        }
    }

    /// The tables named in a table reference list (`a, b JOIN c ON ... LEFT JOIN (d, e) USING (x)`), up to one of
    /// the keywords `stop` outside parentheses. Derived tables (subqueries) are skipped; `t.*` names `t`.
    fn table_references(&mut self, default_db: &str, stop: &[&str]) -> Vec<TableId> {
        let mut tables = Vec::new();
        let mut expect_table = true;
        let mut depth = 0usize;
        loop {
            self.skip_space();
            let Some(c) = self.rest.chars().next() else { break };
            match c {
                '(' => {
                    let mut probe = Tokens { rest: &self.rest[1..] };
                    if !expect_table || probe.skip_keyword("SELECT") || probe.skip_keyword("WITH") {
                        self.skip_parenthesized();
                        expect_table = false;
                    } else {
                        self.rest = &self.rest[1..];
                        depth += 1;
                    }
                }
                ')' => {
                    self.rest = &self.rest[1..];
                    depth = depth.saturating_sub(1);
                }
                ',' => {
                    self.rest = &self.rest[1..];
                    expect_table = true;
                }
                '\'' | '"' => {
                    let close = self.rest[1..].find(c).map_or(self.rest.len(), |i| i + 2);
                    self.rest = &self.rest[close..];
                }
                '`' if !expect_table => {
                    // A quoted alias or column name.
                    self.ident();
                }
                c if c == '`' || c.is_alphanumeric() || c == '_' || c == '$' => {
                    if expect_table {
                        let Some(first) = self.ident() else { break };
                        let table = if let Some(r) = self.rest.strip_prefix('.') {
                            self.rest = r;
                            if let Some(r) = self.rest.strip_prefix('*') {
                                self.rest = r;
                                TableId::new(default_db, first)
                            } else {
                                match self.ident() {
                                    Some(table) => TableId::new(first, table),
                                    None => break,
                                }
                            }
                        } else if let Some(r) = self.rest.strip_prefix(".*") {
                            self.rest = r;
                            TableId::new(default_db, first)
                        } else {
                            TableId::new(default_db, first)
                        };
                        tables.push(table);
                        expect_table = false;
                    } else {
                        let before = self.rest;
                        let Some(word) = self.keyword() else { break };
                        if depth == 0 && stop.contains(&word.as_str()) {
                            // Leave the stop keyword for the caller.
                            self.rest = before;
                            break;
                        }
                        if word == "JOIN" || word == "STRAIGHT_JOIN" {
                            expect_table = true;
                        }
                    }
                }
                _ => self.rest = &self.rest[c.len_utf8()..],
            }
        }
        tables
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
            ("XA START X'31'", Begin),
            ("XA COMMIT X'31'", Other),
            // Row changes written as statements: every table they may change.
            ("INSERT INTO orders VALUES (1)", RowChange(vec![t("shop", "orders")])),
            ("insert low_priority ignore into `o`.`x` (a) values (1)", RowChange(vec![t("o", "x")])),
            ("INSERT orders SET a = 1", RowChange(vec![t("shop", "orders")])),
            ("INSERT INTO a (x) SELECT x FROM b JOIN c ON b.i = c.i", RowChange(vec![t("shop", "a")])),
            ("REPLACE DELAYED INTO s.t VALUES (1)", RowChange(vec![t("s", "t")])),
            ("UPDATE orders SET a = 1 WHERE id IN (SELECT id FROM other)", RowChange(vec![t("shop", "orders")])),
            ("UPDATE LOW_PRIORITY IGNORE s.orders o SET o.a = 1", RowChange(vec![t("s", "orders")])),
            (
                "UPDATE a JOIN b ON a.id = b.id LEFT JOIN (SELECT 1 AS id) d USING (id), `x`.`c` SET a.v = 1",
                RowChange(vec![t("shop", "a"), t("shop", "b"), t("x", "c")]),
            ),
            ("UPDATE (a, b) SET a.v = b.v", RowChange(vec![t("shop", "a"), t("shop", "b")])),
            ("DELETE FROM orders WHERE id = 1", RowChange(vec![t("shop", "orders")])),
            ("delete quick ignore from `s`.`o` partition (p0) order by id limit 5", RowChange(vec![t("s", "o")])),
            ("DELETE FROM orders WHERE id IN (SELECT id FROM gone)", RowChange(vec![t("shop", "orders")])),
            (
                "DELETE a, b.* FROM a INNER JOIN b ON a.id = b.id WHERE a.x = 1",
                RowChange(vec![t("shop", "a"), t("shop", "b"), t("shop", "a"), t("shop", "b")]),
            ),
            (
                "DELETE FROM a, s.b USING a JOIN s.b JOIN c WHERE a.id = b.id",
                RowChange(vec![t("shop", "a"), t("s", "b"), t("shop", "a"), t("s", "b"), t("shop", "c")]),
            ),
            (
                "LOAD DATA LOCAL INFILE '/tmp/x into table y' REPLACE INTO TABLE s.t FIELDS TERMINATED BY ','",
                RowChange(vec![t("s", "t")]),
            ),
            ("LOAD XML INFILE 'f' INTO TABLE t", RowChange(vec![t("shop", "t")])),
            (
                "WITH c AS (SELECT id FROM src WHERE (x > 1)) UPDATE dst JOIN c USING (id) SET dst.v = 1",
                RowChange(vec![t("shop", "dst"), t("shop", "c")]),
            ),
            ("/* app */ UPDATE orders SET a = 1", RowChange(vec![t("shop", "orders")])),
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
