//! The reporting schema on a ClickHouse cluster: a rewrite of DDL statements for `clickhouse_cluster`.
//!
//! The schema ([`crate::schema`]) is written for one server. With a cluster configured, every statement passes
//! through [`Cluster::rewrite`] before it runs:
//!
//! - `CREATE` / `ALTER` / `DROP` / `RENAME` / `TRUNCATE` / `OPTIMIZE` get `ON CLUSTER <name>` after the object's name
//!   (after the last table for `RENAME`), so the DDL reaches every server of the cluster;
//! - a MergeTree-family engine becomes its Replicated form: `ReplacingMergeTree(version)` becomes
//!   `ReplicatedReplacingMergeTree('<path>', '<replica>', version)`, `MergeTree` becomes
//!   `ReplicatedMergeTree('<path>', '<replica>')`. `{database}` and `{table}` in the path are filled in here (ClickHouse
//!   18.16 has no such macros); `{shard}`, `{replica}` and any other macro are left to each server's `<macros>`;
//! - engines that hold no data of their own (`Distributed`, `Merge`, `Null`, `Buffer`, `Dictionary`) and engines
//!   that are already Replicated stay as they are; every other engine (`Memory`, `Log`, `Join`, unknown names) is
//!   refused, because each server would keep a copy of its own that diverges from the others;
//! - statements that are not DDL (`INSERT`, `SELECT`, `SET`, ...) are returned unchanged: they run on the server the
//!   view writes to, and replication carries their rows. Any other statement kind is refused rather than run on one
//!   server only.
//!
//! The rewrite is purely lexical (string literals, quoted identifiers and comments are skipped, parentheses
//! tracked), so it applies to whatever statements the schema produces, not a fixed list. Applied twice, it changes
//! nothing more.

use std::fmt::Write as _;

/// The cluster the reporting schema is created on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// The cluster's name in the servers' `<remote_servers>`.
    pub name: String,
    /// ZooKeeper path template of each replicated table.
    pub zookeeper_path: String,
    /// Replica name template.
    pub replica_name: String,
}

/// Default of `clickhouse_zookeeper_path`.
pub const DEFAULT_ZOOKEEPER_PATH: &str = "/clickhouse/tables/{shard}/{database}/{table}";
/// Default of `clickhouse_replica_name`.
pub const DEFAULT_REPLICA_NAME: &str = "{replica}";

/// MergeTree engines with a Replicated form.
const REPLICABLE: [&str; 7] = [
    "MergeTree",
    "ReplacingMergeTree",
    "SummingMergeTree",
    "AggregatingMergeTree",
    "CollapsingMergeTree",
    "VersionedCollapsingMergeTree",
    "GraphiteMergeTree",
];

/// Engines that hold no rows of their own: the same definition on every server is right.
const WITHOUT_DATA: [&str; 5] = ["Distributed", "Merge", "Null", "Buffer", "Dictionary"];

/// Statement kinds that are not DDL: they pass unchanged.
const NOT_DDL: [&str; 9] = ["INSERT", "SELECT", "WITH", "SET", "USE", "SHOW", "DESCRIBE", "DESC", "EXISTS"];

/// A statement the rewrite cannot make cluster-wide, with what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    #[error("{what} is never closed in `{statement}`")]
    Unterminated { what: &'static str, statement: String },
    #[error(
        "`{statement}` is not a statement the cluster rewrite knows (CREATE, ALTER, DROP, RENAME, TRUNCATE, OPTIMIZE \
         or a non-DDL statement); it would run on one server only: write it as one of those"
    )]
    UnknownStatement { statement: String },
    #[error("cannot find the object's name in `{statement}`")]
    NoName { statement: String },
    #[error(
        "table {table} has no ENGINE clause; on a cluster it needs an explicit MergeTree-family engine to be \
         replicated: add `ENGINE = ...` to its statement"
    )]
    NoEngine { table: String },
    #[error(
        "table {table} uses engine {engine}, which cannot be replicated (each server would keep a diverging copy of \
         its own): use a MergeTree-family engine ({}) or one without data of its own ({})",
        REPLICABLE.join(", "),
        WITHOUT_DATA.join(", ")
    )]
    UnknownEngine { engine: String, table: String },
    #[error("`{statement}` already names cluster {found}, not {expected}")]
    OtherCluster { found: String, expected: String, statement: String },
    #[error("`{statement}` creates a TEMPORARY table, which lives in one session of one server: use a regular table")]
    Temporary { statement: String },
}

/// A token: its byte range, what it is, and the parenthesis depth it stands at.
#[derive(Debug, Clone, Copy)]
struct Token {
    start: usize,
    end: usize,
    kind: Kind,
    depth: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A bare word: keyword, identifier or number.
    Word,
    /// A quoted identifier (backticks or double quotes).
    Quoted,
    /// A string literal.
    Str,
    /// One punctuation character.
    Punct(char),
}

/// The first 80 characters of `sql`, for messages.
fn excerpt(sql: &str) -> String {
    let flat: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(80) {
        Some((i, _)) => format!("{}...", &flat[..i]),
        None => flat,
    }
}

fn tokens(sql: &str) -> Result<Vec<Token>, RewriteError> {
    let bytes = sql.as_bytes();
    let unterminated = |what| RewriteError::Unterminated { what, statement: excerpt(sql) };
    let mut out = Vec::new();
    let (mut i, mut depth) = (0usize, 0u32);
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let kind = match c {
            b if b.is_ascii_whitespace() => {
                i += 1;
                continue;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = sql[i..].find('\n').map_or(bytes.len(), |n| i + n + 1);
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = sql[i + 2..].find("*/").map(|n| i + 2 + n + 2).ok_or_else(|| unterminated("a comment"))?;
                continue;
            }
            b'\'' | b'`' | b'"' => {
                i += 1;
                loop {
                    match bytes.get(i) {
                        None => return Err(unterminated(if c == b'\'' { "a string" } else { "a quoted name" })),
                        Some(b'\\') => i += 2,
                        Some(&q) if q == c && bytes.get(i + 1) == Some(&c) => i += 2,
                        Some(&q) if q == c => {
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
                if c == b'\'' {
                    Kind::Str
                } else {
                    Kind::Quoted
                }
            }
            b if b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80 => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] >= 0x80) {
                    i += 1;
                }
                Kind::Word
            }
            _ => {
                i += sql[i..].chars().next().map_or(1, char::len_utf8);
                Kind::Punct(c as char)
            }
        };
        if kind == Kind::Punct(')') {
            depth = depth.checked_sub(1).ok_or_else(|| unterminated("a ')' without '('"))?;
        }
        out.push(Token { start, end: i, kind, depth });
        if kind == Kind::Punct('(') {
            depth += 1;
        }
    }
    if depth > 0 {
        return Err(unterminated("a '('"));
    }
    Ok(out)
}

/// One statement's tokens, with the text they come from.
struct Statement<'a> {
    sql: &'a str,
    toks: Vec<Token>,
}

impl Statement<'_> {
    fn text(&self, i: usize) -> &str {
        self.toks.get(i).map_or("", |t| &self.sql[t.start..t.end])
    }

    /// Whether token `i` is the keyword `kw` (at any depth).
    fn is(&self, i: usize, kw: &str) -> bool {
        self.toks.get(i).is_some_and(|t| t.kind == Kind::Word) && self.text(i).eq_ignore_ascii_case(kw)
    }

    /// Skips the keywords `kws` if they follow at `i`.
    fn skip(&self, i: usize, kws: &[&str]) -> usize {
        if kws.iter().enumerate().all(|(k, kw)| self.is(i + k, kw)) {
            i + kws.len()
        } else {
            i
        }
    }

    fn name_part(&self, i: usize) -> Option<String> {
        let t = self.toks.get(i)?;
        match t.kind {
            Kind::Word => Some(self.text(i).to_owned()),
            Kind::Quoted => {
                let inner = &self.sql[t.start + 1..t.end - 1];
                let q = &self.sql[t.start..t.start + 1];
                Some(inner.replace(&format!("{q}{q}"), q).replace(&format!("\\{q}"), q))
            }
            _ => None,
        }
    }

    /// The (possibly qualified) name at `i`: (database, name, index after it).
    fn name(&self, i: usize) -> Option<(Option<String>, String, usize)> {
        let first = self.name_part(i)?;
        if self.toks.get(i + 1).is_some_and(|t| t.kind == Kind::Punct('.')) {
            Some((Some(first), self.name_part(i + 2)?, i + 3))
        } else {
            Some((None, first, i + 1))
        }
    }
}

impl Cluster {
    /// Rewrites `sql` (one statement or several separated by `;`) for the cluster; `database` is the default
    /// database of unqualified names.
    pub fn rewrite(&self, sql: &str, database: &str) -> Result<String, RewriteError> {
        let toks = tokens(sql)?;
        let mut pieces = Vec::new();
        let mut begin = 0;
        for (i, t) in toks.iter().enumerate() {
            if t.kind == Kind::Punct(';') && t.depth == 0 {
                pieces.push(toks[begin..i].to_vec());
                begin = i + 1;
            }
        }
        pieces.push(toks[begin..].to_vec());
        let mut pieces: Vec<Vec<Token>> = pieces.into_iter().filter(|p| !p.is_empty()).collect();
        if pieces.len() == 1 {
            return self.rewrite_one(&Statement { sql, toks: pieces.remove(0) }, database);
        }
        let mut out = Vec::new();
        for toks in pieces {
            let (start, end) = (toks[0].start, toks[toks.len() - 1].end);
            let toks = toks.into_iter().map(|t| Token { start: t.start - start, end: t.end - start, ..t }).collect();
            out.push(self.rewrite_one(&Statement { sql: &sql[start..end], toks }, database)?);
        }
        Ok(out.join(";\n"))
    }

    fn rewrite_one(&self, s: &Statement<'_>, database: &str) -> Result<String, RewriteError> {
        let statement = || excerpt(s.sql);
        let Some(first) = s.toks.first().filter(|t| t.kind == Kind::Word).map(|_| s.text(0).to_ascii_uppercase()) else {
            return Err(RewriteError::UnknownStatement { statement: statement() });
        };
        if NOT_DDL.contains(&first.as_str()) {
            return Ok(s.sql[..s.toks.last().map_or(0, |t| t.end)].to_owned());
        }
        // Where the object's name starts, and what kind of object it is.
        let (at, kind) = match first.as_str() {
            "CREATE" | "ATTACH" => {
                let i = s.skip(s.skip(1, &["OR", "REPLACE"]), &["IF", "NOT", "EXISTS"]);
                if s.is(i, "TEMPORARY") {
                    return Err(RewriteError::Temporary { statement: statement() });
                }
                let (i, kind) = match s.text(i).to_ascii_uppercase().as_str() {
                    "MATERIALIZED" | "LIVE" | "WINDOW" if s.is(i + 1, "VIEW") => (i + 2, "MATERIALIZED VIEW"),
                    "TABLE" => (i + 1, "TABLE"),
                    "VIEW" => (i + 1, "VIEW"),
                    "DATABASE" => (i + 1, "DATABASE"),
                    "DICTIONARY" => (i + 1, "DICTIONARY"),
                    _ => return Err(RewriteError::UnknownStatement { statement: statement() }),
                };
                (s.skip(i, &["IF", "NOT", "EXISTS"]), kind)
            }
            "DROP" | "DETACH" => {
                if s.is(1, "TEMPORARY") {
                    return Err(RewriteError::Temporary { statement: statement() });
                }
                match s.text(1).to_ascii_uppercase().as_str() {
                    "TABLE" | "VIEW" | "DATABASE" | "DICTIONARY" => (s.skip(2, &["IF", "EXISTS"]), "OTHER"),
                    _ => return Err(RewriteError::UnknownStatement { statement: statement() }),
                }
            }
            "ALTER" | "OPTIMIZE" if s.is(1, "TABLE") => (2, "OTHER"),
            "TRUNCATE" => (s.skip(s.skip(1, &["TABLE"]), &["IF", "EXISTS"]), "OTHER"),
            "RENAME" if s.is(1, "TABLE") => (2, "RENAME"),
            _ => return Err(RewriteError::UnknownStatement { statement: statement() }),
        };
        let (db, name, after) = s.name(at).ok_or_else(|| RewriteError::NoName { statement: statement() })?;
        let (db, table) = (db.unwrap_or_else(|| database.to_owned()), name);
        let mut edits: Vec<(usize, usize, String)> = Vec::new(); // byte ranges of s.sql to replace
        // ON CLUSTER: after the name, or at the end of a RENAME (after its last `TO name`).
        let cluster_at = if kind == "RENAME" { s.toks.len().saturating_sub(3).max(after) } else { after };
        if s.is(cluster_at, "ON") && s.is(cluster_at + 1, "CLUSTER") {
            let found = s.name_part(cluster_at + 2).unwrap_or_default();
            if found != self.name {
                return Err(RewriteError::OtherCluster { found, expected: self.name.clone(), statement: statement() });
            }
        } else {
            let pos = if kind == "RENAME" { s.toks[s.toks.len() - 1].end } else { s.toks[after - 1].end };
            edits.push((pos, pos, format!(" ON CLUSTER {}", self.name)));
        }
        if kind == "TABLE" || kind == "MATERIALIZED VIEW" {
            self.engine(s, after, &db, &table, kind, &mut edits)?;
        }
        let end = s.toks.last().map_or(0, |t| t.end);
        let mut out = String::with_capacity(end + 100);
        let mut copied = 0;
        edits.sort_by_key(|e| e.0);
        for (from, to, with) in edits {
            out.push_str(&s.sql[copied..from]);
            out.push_str(&with);
            copied = to;
        }
        out.push_str(&s.sql[copied..end]);
        Ok(out)
    }

    /// Finds the engine clause of a CREATE TABLE / MATERIALIZED VIEW (at depth 0, before any SELECT) and adds the
    /// edit that replicates it.
    fn engine(
        &self,
        s: &Statement<'_>,
        from: usize,
        db: &str,
        table: &str,
        kind: &str,
        edits: &mut Vec<(usize, usize, String)>,
    ) -> Result<(), RewriteError> {
        let qualified = format!("{db}.{table}");
        let top = |i: usize| s.toks[i].depth == 0;
        let body_end = (from..s.toks.len()).find(|&i| top(i) && (s.is(i, "SELECT") || s.is(i, "WITH"))).unwrap_or(s.toks.len());
        let Some(e) = (from..body_end).find(|&i| top(i) && s.is(i, "ENGINE")) else {
            // A materialized view that writes TO another table has no storage of its own.
            if kind == "MATERIALIZED VIEW" && (from..body_end).any(|i| top(i) && s.is(i, "TO")) {
                return Ok(());
            }
            return Err(RewriteError::NoEngine { table: qualified });
        };
        let n = if s.toks.get(e + 1).is_some_and(|t| t.kind == Kind::Punct('=')) { e + 2 } else { e + 1 };
        let engine = s.text(n).to_owned();
        if s.toks.get(n).is_none_or(|t| t.kind != Kind::Word) {
            return Err(RewriteError::NoEngine { table: qualified });
        }
        let replicated = engine.strip_prefix("Replicated").is_some_and(|base| REPLICABLE.contains(&base));
        if replicated || WITHOUT_DATA.contains(&engine.as_str()) {
            return Ok(());
        }
        if !REPLICABLE.contains(&engine.as_str()) {
            return Err(RewriteError::UnknownEngine { engine, table: qualified });
        }
        // The engine's arguments, if any: from its '(' to the matching ')'.
        let (args, end) = match s.toks.get(n + 1) {
            Some(open) if open.kind == Kind::Punct('(') => {
                let close = (n + 2..s.toks.len())
                    .find(|&i| s.toks[i].kind == Kind::Punct(')') && s.toks[i].depth == open.depth)
                    .expect("tokens() checked the parentheses");
                (s.sql[open.end..s.toks[close].start].trim().to_owned(), s.toks[close].end)
            }
            _ => (String::new(), s.toks[n].end),
        };
        let literal = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
        let path = self.zookeeper_path.replace("{database}", db).replace("{table}", table);
        let mut with = format!("Replicated{engine}({}, {}", literal(&path), literal(&self.replica_name));
        if !args.is_empty() {
            let _ = write!(with, ", {args}");
        }
        with.push(')');
        edits.push((s.toks[n].start, end, with));
        Ok(())
    }

    /// Rewrites every statement of `statements`.
    pub fn rewrite_all(&self, statements: &[String], database: &str) -> Result<Vec<String>, RewriteError> {
        statements.iter().map(|s| self.rewrite(s, database)).collect()
    }
}

/// Statements as they run: rewritten for `cluster` when there is one, else unchanged.
pub fn for_servers(cluster: Option<&Cluster>, statements: Vec<String>, database: &str) -> Result<Vec<String>, RewriteError> {
    match cluster {
        Some(cluster) => cluster.rewrite_all(&statements, database),
        None => Ok(statements),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> Cluster {
        Cluster {
            name: "reporting".into(),
            zookeeper_path: DEFAULT_ZOOKEEPER_PATH.into(),
            replica_name: DEFAULT_REPLICA_NAME.into(),
        }
    }

    fn rewrite(sql: &str) -> Result<String, RewriteError> {
        cluster().rewrite(sql, "db")
    }

    #[test]
    fn each_kind_of_statement_gets_on_cluster_and_replicated_engines() {
        let path = |t: &str| format!("'/clickhouse/tables/{{shard}}/db/{t}', '{{replica}}'");
        let cases: Vec<(&str, String)> = vec![
            ("CREATE DATABASE IF NOT EXISTS db", "CREATE DATABASE IF NOT EXISTS db ON CLUSTER reporting".into()),
            ("create database db engine = Atomic", "create database db ON CLUSTER reporting engine = Atomic".into()),
            (
                "CREATE TABLE IF NOT EXISTS db.t (id UInt64, version UInt64) ENGINE = ReplacingMergeTree(version) ORDER BY id",
                format!(
                    "CREATE TABLE IF NOT EXISTS db.t ON CLUSTER reporting (id UInt64, version UInt64) ENGINE = \
                     ReplicatedReplacingMergeTree({}, version) ORDER BY id",
                    path("t")
                ),
            ),
            (
                "CREATE TABLE db.d (at DateTime DEFAULT now()) ENGINE = MergeTree ORDER BY at",
                format!("CREATE TABLE db.d ON CLUSTER reporting (at DateTime DEFAULT now()) ENGINE = ReplicatedMergeTree({}) ORDER BY at", path("d")),
            ),
            (
                "CREATE TABLE t (x UInt8) ENGINE=MergeTree() ORDER BY x",
                format!("CREATE TABLE t ON CLUSTER reporting (x UInt8) ENGINE=ReplicatedMergeTree({}) ORDER BY x", path("t")),
            ),
            (
                "CREATE TABLE `db`.`odd name` (x UInt8) ENGINE = SummingMergeTree((x)) ORDER BY x",
                format!(
                    "CREATE TABLE `db`.`odd name` ON CLUSTER reporting (x UInt8) ENGINE = ReplicatedSummingMergeTree({}, (x)) ORDER BY x",
                    path("odd name")
                ),
            ),
            (
                "CREATE TABLE db.f ENGINE = AggregatingMergeTree ORDER BY k AS SELECT k, sumState(v) AS s FROM db.x GROUP BY k",
                format!(
                    "CREATE TABLE db.f ON CLUSTER reporting ENGINE = ReplicatedAggregatingMergeTree({}) ORDER BY k AS SELECT k, \
                     sumState(v) AS s FROM db.x GROUP BY k",
                    path("f")
                ),
            ),
            (
                "CREATE TABLE db.c (s Int8, v UInt64) ENGINE = VersionedCollapsingMergeTree(s, v) ORDER BY v",
                format!(
                    "CREATE TABLE db.c ON CLUSTER reporting (s Int8, v UInt64) ENGINE = ReplicatedVersionedCollapsingMergeTree({}, s, v) ORDER BY v",
                    path("c")
                ),
            ),
            // A view's body is left alone, even where it mentions engines or ON.
            (
                "CREATE VIEW IF NOT EXISTS db.v AS SELECT 'ENGINE = MergeTree' AS e FROM db.a ALL LEFT JOIN db.b ON a.x = b.x",
                "CREATE VIEW IF NOT EXISTS db.v ON CLUSTER reporting AS SELECT 'ENGINE = MergeTree' AS e FROM db.a ALL LEFT JOIN db.b ON a.x = b.x".into(),
            ),
            (
                "CREATE MATERIALIZED VIEW db.mv ENGINE = ReplacingMergeTree(v) ORDER BY id AS SELECT id, v FROM db.t",
                format!(
                    "CREATE MATERIALIZED VIEW db.mv ON CLUSTER reporting ENGINE = ReplicatedReplacingMergeTree({}, v) ORDER BY id AS SELECT id, v FROM db.t",
                    path("mv")
                ),
            ),
            (
                "CREATE MATERIALIZED VIEW db.mv TO db.t AS SELECT id FROM db.s",
                "CREATE MATERIALIZED VIEW db.mv ON CLUSTER reporting TO db.t AS SELECT id FROM db.s".into(),
            ),
            (
                "CREATE TABLE db.all_t AS db.t ENGINE = Distributed(reporting, db, t, rand())",
                "CREATE TABLE db.all_t ON CLUSTER reporting AS db.t ENGINE = Distributed(reporting, db, t, rand())".into(),
            ),
            ("ALTER TABLE db.t ADD COLUMN x UInt8", "ALTER TABLE db.t ON CLUSTER reporting ADD COLUMN x UInt8".into()),
            ("ALTER TABLE db.t DELETE WHERE id = 1", "ALTER TABLE db.t ON CLUSTER reporting DELETE WHERE id = 1".into()),
            ("DROP TABLE IF EXISTS db.t", "DROP TABLE IF EXISTS db.t ON CLUSTER reporting".into()),
            ("DROP VIEW db.v", "DROP VIEW db.v ON CLUSTER reporting".into()),
            ("DROP DATABASE IF EXISTS db", "DROP DATABASE IF EXISTS db ON CLUSTER reporting".into()),
            ("TRUNCATE TABLE IF EXISTS db.t", "TRUNCATE TABLE IF EXISTS db.t ON CLUSTER reporting".into()),
            ("OPTIMIZE TABLE db.t FINAL", "OPTIMIZE TABLE db.t ON CLUSTER reporting FINAL".into()),
            ("RENAME TABLE db.a TO db.b, db.c TO db.d", "RENAME TABLE db.a TO db.b, db.c TO db.d ON CLUSTER reporting".into()),
            // Not DDL: unchanged.
            ("INSERT INTO db.t SELECT id FROM db.t GROUP BY id", "INSERT INTO db.t SELECT id FROM db.t GROUP BY id".into()),
            ("SELECT 1", "SELECT 1".into()),
            // Comments and a trailing semicolon.
            (
                "-- the log\nCREATE TABLE db.l /* rows */ (x UInt8) ENGINE = MergeTree ORDER BY x;",
                format!("-- the log\nCREATE TABLE db.l ON CLUSTER reporting /* rows */ (x UInt8) ENGINE = ReplicatedMergeTree({}) ORDER BY x", path("l")),
            ),
        ];
        for (sql, want) in cases {
            let got = rewrite(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
            assert_eq!(got, want, "{sql}");
            assert_eq!(rewrite(&got).as_ref(), Ok(&got), "applied twice, the rewrite changes nothing more: {got}");
        }
    }

    #[test]
    fn several_statements_are_rewritten_one_by_one() {
        let got = rewrite("CREATE DATABASE db; CREATE TABLE db.t (x UInt8) ENGINE = MergeTree ORDER BY x;\n").unwrap();
        assert_eq!(
            got,
            "CREATE DATABASE db ON CLUSTER reporting;\nCREATE TABLE db.t ON CLUSTER reporting (x UInt8) ENGINE = \
             ReplicatedMergeTree('/clickhouse/tables/{shard}/db/t', '{replica}') ORDER BY x"
        );
    }

    #[test]
    fn statements_that_cannot_be_made_cluster_wide_are_refused() {
        type Expected = fn(&RewriteError) -> bool;
        let cases: [(&str, Expected); 10] = [
            ("CREATE TABLE db.m (x UInt8) ENGINE = Memory", |e| matches!(e, RewriteError::UnknownEngine { engine, .. } if engine == "Memory")),
            ("CREATE TABLE db.l (x UInt8) ENGINE = TinyLog", |e| matches!(e, RewriteError::UnknownEngine { .. })),
            ("CREATE TABLE db.n (x UInt8) ENGINE = FancyNewTree ORDER BY x", |e| matches!(e, RewriteError::UnknownEngine { .. })),
            ("CREATE TABLE db.c AS db.t", |e| matches!(e, RewriteError::NoEngine { .. })),
            ("CREATE TABLE db.d (x UInt8) ORDER BY x", |e| matches!(e, RewriteError::NoEngine { .. })),
            ("CREATE TEMPORARY TABLE t (x UInt8)", |e| matches!(e, RewriteError::Temporary { .. })),
            ("SYSTEM RELOAD DICTIONARIES", |e| matches!(e, RewriteError::UnknownStatement { .. })),
            ("GRANT SELECT ON db.* TO analyst", |e| matches!(e, RewriteError::UnknownStatement { .. })),
            ("CREATE TABLE db.t ON CLUSTER other (x UInt8) ENGINE = MergeTree ORDER BY x", |e| matches!(e, RewriteError::OtherCluster { .. })),
            ("CREATE TABLE db.t (x String DEFAULT 'open) ENGINE = MergeTree", |e| matches!(e, RewriteError::Unterminated { .. })),
        ];
        for (sql, expected) in cases {
            match rewrite(sql) {
                Err(e) => assert!(expected(&e), "{sql}: unexpected error {e}"),
                Ok(out) => panic!("{sql} was rewritten to {out}"),
            }
        }
        let e = rewrite("CREATE TABLE db.m (x UInt8) ENGINE = Memory").unwrap_err().to_string();
        assert!(e.contains("db.m") && e.contains("Memory") && e.contains("MergeTree-family"), "{e}");
    }

    /// Every statement the schema produces: each DDL statement names the cluster once, right after its object;
    /// every table is Replicated with its own path; the views' bodies are unchanged; nothing else differs.
    #[test]
    fn every_statement_of_the_schema_is_rewritten() {
        let db = "reporting";
        let schema = crate::schema::ddl(db);
        let rewritten = cluster().rewrite_all(&schema, db).expect("the schema is cluster-ready");
        // A table created again by a later migration (report_lines, partitioned by migration 3) keeps its path.
        let mut paths = std::collections::HashMap::new();
        let (mut tables, mut views) = (0, 0);
        for (before, after) in schema.iter().zip(&rewritten) {
            assert_eq!(after.matches(" ON CLUSTER reporting").count(), 1, "{after}");
            let head = after.split(" ON CLUSTER reporting").next().unwrap();
            assert!(before.starts_with(head), "ON CLUSTER right after the name: {after}");
            if before.starts_with("CREATE TABLE") {
                tables += 1;
                let engine = after.split("ENGINE = ").nth(1).expect("an engine");
                assert!(
                    ["ReplicatedReplacingMergeTree('", "ReplicatedCollapsingMergeTree('", "ReplicatedMergeTree('"]
                        .iter()
                        .any(|e| engine.starts_with(e)),
                    "{after}"
                );
                let table = head.rsplit('.').next().unwrap();
                let path = format!("'/clickhouse/tables/{{shard}}/{db}/{table}', '{{replica}}'");
                assert!(engine.contains(&path), "{after}");
                assert_eq!(*paths.entry(path.clone()).or_insert(table), table, "two tables share a path: {after}");
                // Besides the cluster and the engine, the statement is the same.
                let original_engine = before.split("ENGINE = ").nth(1).unwrap();
                let (name, rest) = original_engine.split_once(['(', ' ']).unwrap();
                let args = if original_engine.as_bytes()[name.len()] == b'(' { rest.split_once(')').unwrap().0 } else { "" };
                let expected_engine = format!(
                    "Replicated{name}({path}{}){}",
                    if args.is_empty() { String::new() } else { format!(", {args}") },
                    &original_engine[name.len() + if args.is_empty() { 0 } else { args.len() + 2 }..]
                );
                assert_eq!(engine, expected_engine, "{before}");
            } else if before.starts_with("CREATE VIEW") {
                views += 1;
                assert_eq!(after.replacen(" ON CLUSTER reporting", "", 1), *before, "a view's body is unchanged");
            } else {
                assert!(before.starts_with("CREATE DATABASE"), "a statement kind this test does not know: {before}");
                assert_eq!(*after, format!("{before} ON CLUSTER reporting"));
            }
        }
        assert!(tables >= 6 && views >= 2, "{tables} tables, {views} views");
    }
}
