//! PostgreSQL 12 or later. Upserts with `ON CONFLICT … DO UPDATE`, like
//! SQLite, of rows bound as one array per column (`UNNEST`); placeholders
//! are numbered (`$1`), and timestamps, bound as text, are cast to
//! `TIMESTAMP(3)`.

use std::borrow::Cow;

use super::{Dialect, OwnTypes};
use crate::model::schema::ColumnSchema;
use crate::model::wit::types::ColumnType;

/// PostgreSQL.
#[derive(Debug, Clone, Copy)]
pub struct Postgres;

impl Dialect for Postgres {
    fn name(&self) -> &'static str {
        "PostgreSQL"
    }

    fn numbered<'a>(&self, sql: &'a str) -> Cow<'a, str> {
        Cow::Owned(super::dollar_numbered(sql))
    }

    fn value(&self, ty: ColumnType) -> &'static str {
        match ty {
            ColumnType::Timestamp => "CAST(? AS TIMESTAMP(3))",
            _ => "?",
        }
    }

    fn column_type(&self, column: &ColumnSchema) -> &'static str {
        match column.ty {
            ColumnType::Int => "BIGINT",
            ColumnType::Boolean => "BOOLEAN",
            ColumnType::Float => "DOUBLE PRECISION",
            ColumnType::Text => "TEXT",
            ColumnType::Bytes => "BYTEA",
            ColumnType::Timestamp => "TIMESTAMP(3)",
        }
    }

    fn array_type(&self, ty: ColumnType) -> Option<&'static str> {
        Some(match ty {
            ColumnType::Int => "BIGINT[]",
            ColumnType::Boolean => "BOOLEAN[]",
            ColumnType::Float => "DOUBLE PRECISION[]",
            ColumnType::Text => "TEXT[]",
            ColumnType::Bytes => "BYTEA[]",
            ColumnType::Timestamp => "TIMESTAMP(3)[]",
        })
    }

    fn own_types(&self) -> OwnTypes {
        OwnTypes {
            blob: "BYTEA",
            name: "VARCHAR(191)",
            id: "BIGSERIAL PRIMARY KEY",
            time: "TIMESTAMP(3)",
        }
    }

    fn columns_query(&self) -> &'static str {
        "SELECT c.column_name::text, UPPER(c.data_type)::text, \
         COALESCE(k.ordinal_position, 0)::bigint, \
         (CASE WHEN c.is_nullable = 'NO' THEN 1 ELSE 0 END)::bigint \
         FROM information_schema.columns c \
         LEFT JOIN information_schema.table_constraints t \
         ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
         AND t.constraint_type = 'PRIMARY KEY' \
         LEFT JOIN information_schema.key_column_usage k \
         ON k.constraint_schema = t.constraint_schema AND k.constraint_name = t.constraint_name \
         AND k.table_name = c.table_name AND k.column_name = c.column_name \
         WHERE c.table_schema = current_schema() AND c.table_name = ? \
         ORDER BY c.ordinal_position"
    }

    fn index_query(&self) -> &'static str {
        "SELECT COUNT(*)::bigint FROM pg_indexes \
         WHERE schemaname = current_schema() AND tablename = ? AND indexname = ?"
    }

    fn max_params(&self) -> usize {
        // The protocol counts parameters in 16 bits: 65535.
        30_000
    }

    fn is_transient(&self, code: &str) -> bool {
        // Connection exceptions (08…), serialization failure, deadlock,
        // too many connections, the server shutting down or restarting.
        code.starts_with("08")
            || matches!(
                code,
                "40001" | "40P01" | "53300" | "57P01" | "57P02" | "57P03"
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::tests::table;
    use crate::dialect::{array_literal, array_upsert_sql, upsert_sql};
    use crate::model::wit::types::Value;

    #[test]
    fn upsert_numbers_its_placeholders_and_casts_timestamps() {
        let sql = upsert_sql(&Postgres, &table(), "totals", 2);
        assert!(
            sql.starts_with(
                "INSERT INTO \"totals\" (\"room\",\"gifts\",\"peak\",\"title\",\"at\") VALUES \
                 ($1,$2,$3,$4,CAST($5 AS TIMESTAMP(3))),($6,$7,$8,$9,CAST($10 AS TIMESTAMP(3))) \
                 ON CONFLICT (\"room\") DO UPDATE SET "
            ),
            "{sql}"
        );
        assert!(
            sql.contains("\"peak\" = COALESCE(GREATEST(\"totals\".\"peak\", excluded.\"peak\")"),
            "{sql}"
        );
        assert!(!sql.contains('?'), "{sql}");
    }

    #[test]
    fn rows_go_as_one_array_per_column() {
        let sql = array_upsert_sql(&Postgres, &table(), "totals").unwrap();
        assert!(
            sql.starts_with(
                "INSERT INTO \"totals\" (\"room\",\"gifts\",\"peak\",\"title\",\"at\") \
                 SELECT * FROM UNNEST(CAST($1 AS BIGINT[]), CAST($2 AS BIGINT[]), \
                 CAST($3 AS DOUBLE PRECISION[]), CAST($4 AS TEXT[]), CAST($5 AS TIMESTAMP(3)[])) \
                 ON CONFLICT (\"room\") DO UPDATE SET "
            ),
            "{sql}"
        );
        let rows = vec![
            vec![
                Value::Text("a \"b\" \\ {c},NULL".into()),
                Value::Float(f64::NAN),
            ],
            vec![Value::Null, Value::Float(-1.5)],
            vec![Value::Bytes(vec![0, 0xab]), Value::Float(f64::NEG_INFINITY)],
            vec![Value::Timestamp(1_000), Value::Boolean(true)],
        ];
        assert_eq!(
            array_literal(&rows, 0, 3600),
            r#"{"a \"b\" \\ {c},NULL",NULL,"\\x00ab","1970-01-01 01:00:01.000"}"#
        );
        assert_eq!(array_literal(&rows, 1, 0), "{NaN,-1.5,-Infinity,t}");
        assert!(array_upsert_sql(&crate::dialect::Mysql, &table(), "totals").is_none());
    }

    #[test]
    fn types_and_limits() {
        let t = table();
        let types: Vec<&str> = t.columns.iter().map(|c| Postgres.column_type(c)).collect();
        assert_eq!(
            types,
            [
                "BIGINT",
                "BIGINT",
                "DOUBLE PRECISION",
                "TEXT",
                "TIMESTAMP(3)"
            ]
        );
        assert!(Postgres.max_params() <= 65535);
        assert!(Postgres.is_transient("40P01") && Postgres.is_transient("08006"));
        assert!(!Postgres.is_transient("42P01"));
    }
}
