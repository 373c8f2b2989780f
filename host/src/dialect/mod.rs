//! SQL dialects: what the checkpoint store ([`crate::store`]) says
//! differently to each database. One unit per database, with its DDL,
//! upsert, type mapping and limits, and here the SQL built from them;
//! everything else is shared through sqlx's `Any` driver.
//!
//! Adding a database is a file here implementing [`Dialect`] and one line
//! in [`for_url`].
//!
//! Statements are written with `?` placeholders and numbered by
//! [`Dialect::numbered`] where the database wants `$1, $2, …`.

mod mysql;
mod postgres;
mod sqlite;

use std::borrow::Cow;

pub use mysql::Mysql;
pub use postgres::Postgres;
pub use sqlite::Sqlite;

use crate::model::TableSchema;
use crate::model::schema::ColumnSchema;
use crate::model::wit::types::{ColumnType, MergeMode, Value};

/// Column types of Apiary's own tables.
#[derive(Debug, Clone, Copy)]
pub struct OwnTypes {
    /// Record bytes and state values.
    pub blob: &'static str,
    /// Consumer and stream names (at most 191 bytes, MySQL's longest
    /// indexable utf8mb4 text).
    pub name: &'static str,
    /// The dead-letter table's generated key.
    pub id: &'static str,
    /// Timestamps, as output columns have them.
    pub time: &'static str,
}

/// The length of every key column: MySQL's `VARCHAR(255)` (characters)
/// and `VARBINARY(255)` (bytes), the longest keys it indexes. Keys are
/// held to it on every dialect, so rules and state behave alike on each.
pub const KEY_LEN: usize = 255;

/// What one row may hold on a sink, beyond what every sink stores alike:
/// rows past these are the rule's error, as the database would refuse
/// them on every retry of the checkpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowLimits {
    /// The most bytes of a non-key text cell ([`Dialect::max_text_bytes`]).
    pub text_bytes: Option<usize>,
    /// The most bytes of one row ([`Dialect::statement_bytes_query`]),
    /// as [`statement_bytes`] counts them.
    pub row_bytes: Option<usize>,
}

/// Bytes a row takes in a statement's parameters: each value with its
/// length and type (11 bytes, a bound on MySQL's binary protocol, the
/// tightest of the databases').
pub fn statement_bytes(cells: &[Value]) -> usize {
    cells
        .iter()
        .map(|cell| {
            11 + match cell {
                Value::Text(text) => text.len(),
                Value::Bytes(bytes) => bytes.len(),
                // `yyyy-mm-dd hh:mm:ss.fff`
                Value::Timestamp(_) => 23,
                Value::Null | Value::Int(_) | Value::Float(_) | Value::Boolean(_) => 8,
            }
        })
        .sum()
}

/// One database's SQL.
pub trait Dialect: Send + Sync + std::fmt::Debug {
    /// The database's name, for messages.
    fn name(&self) -> &'static str;

    /// A checked identifier, quoted so keywords are safe (standard SQL's
    /// double quotes unless the dialect says otherwise).
    fn quote(&self, name: &str) -> String {
        format!("\"{name}\"")
    }

    /// `sql` with its `?` placeholders numbered as the database wants
    /// them. Only for Apiary's own statements, which have no `?` inside a
    /// string.
    fn numbered<'a>(&self, sql: &'a str) -> Cow<'a, str> {
        Cow::Borrowed(sql)
    }

    /// The placeholder of a value bound into a column of type `ty`
    /// (timestamps are bound as text).
    fn value(&self, ty: ColumnType) -> &'static str {
        let _ = ty;
        "?"
    }

    /// The column type of an output column.
    fn column_type(&self, column: &ColumnSchema) -> &'static str;

    /// The types of Apiary's own tables.
    fn own_types(&self) -> OwnTypes;

    /// The most bytes a non-key text column holds, where that is less
    /// than a row can carry (MySQL's `TEXT`: 64 KiB).
    fn max_text_bytes(&self) -> Option<usize> {
        None
    }

    /// A query for the most bytes one statement's parameters may hold,
    /// where the server has such a limit (MySQL's `max_allowed_packet`).
    fn statement_bytes_query(&self) -> Option<&'static str> {
        None
    }

    /// The statements a new connection runs first.
    fn session(&self, read_only: bool) -> &'static [&'static str] {
        let _ = read_only;
        &[]
    }

    /// The connection URL to open for `url`.
    fn url(&self, url: &str, read_only: bool) -> String {
        let _ = read_only;
        url.to_owned()
    }

    /// The stored value of `column` of table `table` in an upsert's update.
    fn stored(&self, table: &str, column: &str) -> String {
        format!("{table}.{column}")
    }

    /// The incoming value of `column` in an upsert's update.
    fn incoming(&self, column: &str) -> String {
        format!("excluded.{column}")
    }

    /// The functions taking the larger and the smaller of two values.
    fn greatest_least(&self) -> (&'static str, &'static str) {
        ("GREATEST", "LEAST")
    }

    /// `insert` (an `INSERT INTO … VALUES …`) turned into an upsert on the
    /// primary key `key` (quoted, comma-separated) that applies `updates`
    /// (`col = expr`), or keeps the stored row where there are none;
    /// `ON CONFLICT` unless the dialect says otherwise.
    fn upsert(&self, insert: String, key: &str, updates: &[String]) -> String {
        if updates.is_empty() {
            format!("{insert} ON CONFLICT ({key}) DO NOTHING")
        } else {
            format!(
                "{insert} ON CONFLICT ({key}) DO UPDATE SET {}",
                updates.join(", ")
            )
        }
    }

    /// Lists the columns of table `?`: name, type, 1-based position in the
    /// primary key (0 if not in it) and 1 if NOT NULL; one row each, in
    /// order.
    fn columns_query(&self) -> &'static str;

    /// Counts the indexes named `?` (second) on table `?` (first).
    fn index_query(&self) -> &'static str;

    /// The SQL array type holding values of a column of type `ty`, where
    /// the dialect writes rows as one array per column
    /// ([`array_upsert_sql`]): one short statement for any number of rows,
    /// which the database plans once, in place of thousands of bound
    /// parameters. `None` (the default) binds every value.
    fn array_type(&self, ty: ColumnType) -> Option<&'static str> {
        let _ = ty;
        None
    }

    /// Bind parameters one statement may carry.
    fn max_params(&self) -> usize;

    /// Whether a database error code means "try again" (a lost
    /// connection, a deadlock, a busy database).
    fn is_transient(&self, code: &str) -> bool;
}

/// The dialect of the database at `url`, by its scheme.
pub fn for_url(url: &str) -> Option<&'static dyn Dialect> {
    let scheme = url.split(':').next().unwrap_or_default();
    match scheme {
        "sqlite" => Some(&Sqlite),
        "mysql" | "mariadb" => Some(&Mysql),
        "postgres" | "postgresql" => Some(&Postgres),
        _ => None,
    }
}

/// The primary-key columns of `table`, quoted, comma-separated.
pub fn key_list(dialect: &dyn Dialect, table: &TableSchema) -> String {
    let key: Vec<String> = table
        .key
        .iter()
        .map(|&i| dialect.quote(&table.columns[i].name))
        .collect();
    key.join(", ")
}

/// The multi-row upsert of `rows` rows into table `name` of shape `table`:
/// each column merges by its mode, and nulls never win a merge except
/// under `replace` (see the row buffer's merge).
pub fn upsert_sql(dialect: &dyn Dialect, table: &TableSchema, name: &str, rows: usize) -> String {
    let q = |name: &str| dialect.quote(name);
    let names: Vec<String> = table.columns.iter().map(|c| q(&c.name)).collect();
    let values: Vec<&str> = table.columns.iter().map(|c| dialect.value(c.ty)).collect();
    let one = format!("({})", values.join(","));
    let insert = format!(
        "INSERT INTO {} ({}) VALUES {}",
        q(name),
        names.join(","),
        vec![one.as_str(); rows].join(",")
    );
    upsert_of(dialect, table, name, insert)
}

/// The upsert of any number of rows into table `name` of shape `table`
/// from one array per column (`INSERT … SELECT * FROM UNNEST(…)`), where
/// the dialect has array types; it merges as [`upsert_sql`] does. Its
/// parameters are the columns' arrays in the text form of
/// [`array_literal`].
pub fn array_upsert_sql(dialect: &dyn Dialect, table: &TableSchema, name: &str) -> Option<String> {
    let q = |name: &str| dialect.quote(name);
    let names: Vec<String> = table.columns.iter().map(|c| q(&c.name)).collect();
    let arrays = table
        .columns
        .iter()
        .map(|c| Some(format!("CAST(? AS {})", dialect.array_type(c.ty)?)))
        .collect::<Option<Vec<String>>>()?;
    let insert = format!(
        "INSERT INTO {} ({}) SELECT * FROM UNNEST({})",
        q(name),
        names.join(","),
        arrays.join(", ")
    );
    Some(upsert_of(dialect, table, name, insert))
}

/// `insert` into table `name` of shape `table` as the dialect's upsert on
/// its key, merging each column by its mode, with numbered placeholders.
fn upsert_of(dialect: &dyn Dialect, table: &TableSchema, name: &str, insert: String) -> String {
    let sql = dialect.upsert(
        insert,
        &key_list(dialect, table),
        &merges(dialect, table, name),
    );
    dialect.numbered(&sql).into_owned()
}

/// Column `column` of `rows` as one array in the SQL standard's text form
/// (`{1,NULL,"text"}`), which PostgreSQL's array input reads: every
/// non-null element is double-quoted with `"` and `\` escaped, so nothing
/// in a value can end it early. It is bound as a parameter, never spliced
/// into the statement. Timestamps are written `utc_offset_secs` east of
/// UTC, as bound values are.
pub fn array_literal(rows: &[Vec<Value>], column: usize, utc_offset_secs: i32) -> String {
    use std::fmt::Write as _;
    fn quoted(out: &mut String, text: &str) {
        out.push('"');
        for c in text.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    }
    let mut out = String::with_capacity(rows.len() * 16 + 2);
    out.push('{');
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        // `write!` into a String cannot fail.
        match &row[column] {
            Value::Null => out.push_str("NULL"),
            Value::Int(v) => {
                let _ = write!(out, "{v}");
            }
            Value::Float(v) if v.is_nan() => out.push_str("NaN"),
            Value::Float(v) if v.is_infinite() => {
                out.push_str(if *v > 0.0 { "Infinity" } else { "-Infinity" });
            }
            // Debug prints the shortest text that reads back exactly.
            Value::Float(v) => {
                let _ = write!(out, "{v:?}");
            }
            Value::Boolean(v) => out.push(if *v { 't' } else { 'f' }),
            Value::Text(v) => quoted(&mut out, v),
            // bytea's hex form, its backslash escaped: "\\x00ab".
            Value::Bytes(v) => {
                out.push_str("\"\\\\x");
                for byte in v {
                    let _ = write!(out, "{byte:02x}");
                }
                out.push('"');
            }
            Value::Timestamp(ms) => {
                quoted(&mut out, &crate::time::format_millis(*ms, utc_offset_secs));
            }
        }
    }
    out.push('}');
    out
}

/// The `col = merged` assignments of an upsert into table `name`: each
/// non-key column by its merge mode.
fn merges(dialect: &dyn Dialect, table: &TableSchema, name: &str) -> Vec<String> {
    let q = |name: &str| dialect.quote(name);
    let stored_table = q(name);
    let (greatest, least) = dialect.greatest_least();
    table
        .columns
        .iter()
        .filter(|c| !c.key)
        .map(|c| {
            let name = q(&c.name);
            let (o, n) = (
                dialect.stored(&stored_table, &name),
                dialect.incoming(&name),
            );
            let merged = match c.merge {
                MergeMode::Replace => n,
                MergeMode::Add if c.ty == ColumnType::Int => saturating_add(&o, &n),
                MergeMode::Add => format!("COALESCE({o} + {n}, {o}, {n})"),
                MergeMode::Max => format!("COALESCE({greatest}({o}, {n}), {o}, {n})"),
                MergeMode::Min => format!("COALESCE({least}({o}, {n}), {o}, {n})"),
            };
            format!("{name} = {merged}")
        })
        .collect()
}

/// `o + n` for `BIGINT` columns, saturating at the type's bounds on every
/// dialect (SQLite would turn an overflow into a REAL, MySQL refuse it);
/// a null side yields the other. Nested `CASE`s are evaluated lazily, so
/// no bound is computed on the side where it would overflow.
fn saturating_add(o: &str, n: &str) -> String {
    const MAX: &str = "9223372036854775807";
    const MIN: &str = "(-9223372036854775807 - 1)";
    format!(
        "CASE WHEN {o} IS NULL THEN {n} WHEN {n} IS NULL THEN {o} \
         WHEN {n} > 0 THEN CASE WHEN {o} > {MAX} - {n} THEN {MAX} ELSE {o} + {n} END \
         ELSE CASE WHEN {o} < {MIN} - {n} THEN {MIN} ELSE {o} + {n} END END"
    )
}

/// `?` placeholders as `$1, $2, …`.
fn dollar_numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + sql.len() / 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::wit::types::{Column, OutputSchema};

    /// A table with a key, a counter, a maximum, a text and a timestamp.
    pub fn table() -> Arc<TableSchema> {
        let column = |name: &str, type_, merge| Column {
            name: name.into(),
            type_,
            merge,
            nullable: true,
        };
        Arc::new(
            TableSchema::from_output(
                "p",
                &OutputSchema {
                    name: "totals".into(),
                    table: None,
                    columns: vec![
                        column("room", ColumnType::Int, MergeMode::Replace),
                        column("gifts", ColumnType::Int, MergeMode::Add),
                        column("peak", ColumnType::Float, MergeMode::Max),
                        column("title", ColumnType::Text, MergeMode::Replace),
                        column("at", ColumnType::Timestamp, MergeMode::Replace),
                    ],
                    primary_key: vec!["room".into()],
                },
            )
            .unwrap(),
        )
    }

    #[test]
    fn dialects_are_chosen_by_scheme() {
        assert_eq!(for_url("sqlite://x.db").unwrap().name(), "SQLite");
        assert_eq!(for_url("mysql://root@h/db").unwrap().name(), "MySQL");
        assert_eq!(for_url("postgres://u@h/db").unwrap().name(), "PostgreSQL");
        assert_eq!(for_url("postgresql://u@h/db").unwrap().name(), "PostgreSQL");
        assert!(for_url("oracle://h").is_none());
    }

    #[test]
    fn placeholders_are_numbered_in_order() {
        assert_eq!(
            dollar_numbered("INSERT INTO t VALUES (?, ?), (?, ?)"),
            "INSERT INTO t VALUES ($1, $2), ($3, $4)"
        );
    }
}
