//! MySQL 8 and MariaDB 10.5 or later. Upserts with
//! `ON DUPLICATE KEY UPDATE`, where `VALUES(col)` is the incoming value.

use super::{Dialect, OwnTypes};
use crate::model::schema::ColumnSchema;
use crate::model::wit::types::ColumnType;

/// MySQL and MariaDB.
#[derive(Debug, Clone, Copy)]
pub struct Mysql;

impl Dialect for Mysql {
    fn name(&self) -> &'static str {
        "MySQL"
    }

    fn quote(&self, name: &str) -> String {
        format!("`{name}`")
    }

    fn column_type(&self, column: &ColumnSchema) -> &'static str {
        match column.ty {
            ColumnType::Int => "BIGINT",
            ColumnType::Boolean => "BOOLEAN",
            ColumnType::Float => "DOUBLE",
            // Key columns must have a length to be indexed.
            ColumnType::Text if column.key => "VARCHAR(255)",
            ColumnType::Text => "TEXT",
            ColumnType::Bytes if column.key => "VARBINARY(255)",
            ColumnType::Bytes => "LONGBLOB",
            ColumnType::Timestamp => "DATETIME(3)",
        }
    }

    fn max_text_bytes(&self) -> Option<usize> {
        Some(65_535)
    }

    fn statement_bytes_query(&self) -> Option<&'static str> {
        Some("SELECT CAST(@@max_allowed_packet AS SIGNED)")
    }

    fn own_types(&self) -> OwnTypes {
        OwnTypes {
            blob: "LONGBLOB",
            name: "VARCHAR(191)",
            id: "BIGINT AUTO_INCREMENT PRIMARY KEY",
            time: "DATETIME(3)",
        }
    }

    fn stored(&self, _table: &str, column: &str) -> String {
        column.to_owned()
    }

    fn incoming(&self, column: &str) -> String {
        format!("VALUES({column})")
    }

    fn upsert(&self, insert: String, _key: &str, updates: &[String]) -> String {
        if updates.is_empty() {
            insert.replacen("INSERT INTO", "INSERT IGNORE INTO", 1)
        } else {
            format!("{insert} ON DUPLICATE KEY UPDATE {}", updates.join(", "))
        }
    }

    fn columns_query(&self) -> &'static str {
        "SELECT CAST(c.COLUMN_NAME AS CHAR), CAST(c.COLUMN_TYPE AS CHAR), \
         CAST(COALESCE(k.ORDINAL_POSITION, 0) AS SIGNED), \
         CAST(c.IS_NULLABLE = 'NO' AS SIGNED) \
         FROM information_schema.COLUMNS c LEFT JOIN information_schema.KEY_COLUMN_USAGE k \
         ON k.TABLE_SCHEMA = c.TABLE_SCHEMA AND k.TABLE_NAME = c.TABLE_NAME \
         AND k.COLUMN_NAME = c.COLUMN_NAME AND k.CONSTRAINT_NAME = 'PRIMARY' \
         WHERE c.TABLE_SCHEMA = DATABASE() AND c.TABLE_NAME = ? \
         ORDER BY c.ORDINAL_POSITION"
    }

    fn index_query(&self) -> &'static str {
        "SELECT CAST(COUNT(*) AS SIGNED) FROM information_schema.STATISTICS \
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND INDEX_NAME = ?"
    }

    fn max_params(&self) -> usize {
        // MySQL allows 65535.
        30_000
    }

    fn is_transient(&self, code: &str) -> bool {
        // Lock wait timeout, deadlock, server gone / lost / shutting down,
        // too many connections, connection killed; SQLSTATE connection
        // errors and serialization failures.
        matches!(
            code,
            "1205" | "1213" | "2006" | "2013" | "1053" | "1040" | "1927"
        ) || code.starts_with("08")
            || code == "40001"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::tests::table;
    use crate::dialect::upsert_sql;

    #[test]
    fn upsert_merges_by_column_mode() {
        let sql = upsert_sql(&Mysql, &table(), "totals", 1);
        assert!(
            sql.starts_with(
                "INSERT INTO `totals` (`room`,`gifts`,`peak`,`title`,`at`) VALUES (?,?,?,?,?) \
                 ON DUPLICATE KEY UPDATE "
            ),
            "{sql}"
        );
        assert!(
            sql.contains("`peak` = COALESCE(GREATEST(`peak`, VALUES(`peak`))"),
            "{sql}"
        );
    }

    #[test]
    fn a_table_of_keys_only_ignores_duplicates() {
        let sql = Mysql.upsert("INSERT INTO `t` (`a`) VALUES (?)".into(), "`a`", &[]);
        assert_eq!(sql, "INSERT IGNORE INTO `t` (`a`) VALUES (?)");
    }

    #[test]
    fn types_and_limits() {
        let t = table();
        let types: Vec<&str> = t.columns.iter().map(|c| Mysql.column_type(c)).collect();
        assert_eq!(types, ["BIGINT", "BIGINT", "DOUBLE", "TEXT", "DATETIME(3)"]);
        assert!(Mysql.max_params() <= 65535);
        assert!(Mysql.is_transient("1213") && Mysql.is_transient("08S01"));
        assert!(!Mysql.is_transient("1146"));
    }
}
