//! SQLite 3.24 or later: the embedded default. Upserts with
//! `ON CONFLICT … DO UPDATE`; WAL, so readers (a dashboard) are let in
//! while lanes commit.

use super::{Dialect, OwnTypes};
use crate::model::schema::ColumnSchema;
use crate::model::wit::types::ColumnType;

/// SQLite.
#[derive(Debug, Clone, Copy)]
pub struct Sqlite;

impl Dialect for Sqlite {
    fn name(&self) -> &'static str {
        "SQLite"
    }

    fn column_type(&self, column: &ColumnSchema) -> &'static str {
        match column.ty {
            ColumnType::Int | ColumnType::Boolean => "INTEGER",
            ColumnType::Float => "REAL",
            ColumnType::Text | ColumnType::Timestamp => "TEXT",
            ColumnType::Bytes => "BLOB",
        }
    }

    fn own_types(&self) -> OwnTypes {
        OwnTypes {
            blob: "BLOB",
            name: "TEXT",
            id: "INTEGER PRIMARY KEY AUTOINCREMENT",
            time: "TEXT",
        }
    }

    fn session(&self, read_only: bool) -> &'static [&'static str] {
        if read_only {
            return &[];
        }
        // NORMAL sync is still durable across process crashes in WAL mode.
        &[
            "PRAGMA journal_mode = WAL",
            "PRAGMA synchronous = NORMAL",
            "PRAGMA busy_timeout = 10000",
        ]
    }

    fn url(&self, url: &str, read_only: bool) -> String {
        // A named in-memory database (`sqlite:file:x?mode=memory&cache=shared`)
        // keeps its mode; one pool's connections share it.
        if url.contains("mode=memory") {
            return url.to_owned();
        }
        let sep = if url.contains('?') { '&' } else { '?' };
        let mode = if read_only { "ro" } else { "rwc" };
        format!("{url}{sep}mode={mode}")
    }

    fn greatest_least(&self) -> (&'static str, &'static str) {
        ("MAX", "MIN")
    }

    fn columns_query(&self) -> &'static str {
        "SELECT name, type, pk, \"notnull\" FROM pragma_table_info(?) ORDER BY cid"
    }

    fn index_query(&self) -> &'static str {
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND name = ?"
    }

    fn max_params(&self) -> usize {
        // SQLite allows 32766.
        30_000
    }

    fn is_transient(&self, code: &str) -> bool {
        // SQLITE_BUSY, SQLITE_LOCKED.
        matches!(code, "5" | "6")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::tests::table;
    use crate::dialect::upsert_sql;

    #[test]
    fn upsert_merges_by_column_mode() {
        let sql = upsert_sql(&Sqlite, &table(), "totals", 2);
        assert!(
            sql.starts_with(
                "INSERT INTO \"totals\" (\"room\",\"gifts\",\"peak\",\"title\",\"at\") \
                 VALUES (?,?,?,?,?),(?,?,?,?,?) ON CONFLICT (\"room\") DO UPDATE SET "
            ),
            "{sql}"
        );
        assert!(
            sql.contains("\"peak\" = COALESCE(MAX(\"totals\".\"peak\", excluded.\"peak\")"),
            "{sql}"
        );
        assert!(sql.contains("\"title\" = excluded.\"title\""), "{sql}");
    }

    #[test]
    fn types_and_limits() {
        let t = table();
        let types: Vec<&str> = t.columns.iter().map(|c| Sqlite.column_type(c)).collect();
        assert_eq!(types, ["INTEGER", "INTEGER", "REAL", "TEXT", "TEXT"]);
        assert!(Sqlite.max_params() <= 32766);
        assert!(Sqlite.is_transient("5") && !Sqlite.is_transient("1"));
        assert_eq!(Sqlite.url("sqlite://a.db", true), "sqlite://a.db?mode=ro");
    }
}
