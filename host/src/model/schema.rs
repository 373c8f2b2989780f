//! Output tables as the host sees them: a rule's `output-schema`, validated.

use crate::model::wit::types::{ColumnType, MergeMode, OutputSchema, Value};

/// One column of an output table.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSchema {
    /// Column name.
    pub name: String,
    /// Its type.
    pub ty: ColumnType,
    /// How a new value merges into the stored one (`Replace` for keys).
    pub merge: MergeMode,
    /// Whether it may hold null.
    pub nullable: bool,
    /// Whether it is part of the primary key.
    pub key: bool,
}

/// An output table: name, columns and primary key.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSchema {
    /// Table name in the database, or its template (`totals_{yyyyMM}`).
    pub table: String,
    /// For a time-partitioned table, how a row's time picks its table.
    pub partition: Option<TimePartition>,
    /// Name the rule uses for the output.
    pub output: String,
    /// The rule that declares it.
    pub plugin: String,
    /// Columns in declaration order (the order of a row's cells).
    pub columns: Vec<ColumnSchema>,
    /// Indices into `columns` of the primary-key columns, in key order.
    pub key: Vec<usize>,
}

impl TableSchema {
    /// A row as a JSON object, columns in declaration order.
    pub fn row_json(&self, row: &[Value]) -> serde_json::Value {
        let object = self
            .columns
            .iter()
            .zip(row)
            .map(|(column, value)| (column.name.clone(), value_json(value)))
            .collect();
        serde_json::Value::Object(object)
    }

    /// Validates an output declared by `plugin`.
    pub fn from_output(plugin: &str, output: &OutputSchema) -> Result<Self, String> {
        let table = output.table.clone().unwrap_or_else(|| output.name.clone());
        check_identifier("output", &output.name)?;
        let template = TimePartition::split(&table)?;
        let sample = match &template {
            Some((prefix, pattern, _, suffix)) => {
                format!("{prefix}{}{suffix}", "0".repeat(pattern.len()))
            }
            None => table.clone(),
        };
        check_identifier("table", &sample)?;
        check_not_reserved(&table)?;
        if output.columns.is_empty() {
            return Err(format!("output `{}` declares no columns", output.name));
        }
        let mut columns = Vec::with_capacity(output.columns.len());
        for (i, c) in output.columns.iter().enumerate() {
            check_identifier("column", &c.name)?;
            if output.columns[..i].iter().any(|o| o.name == c.name) {
                return Err(format!(
                    "output `{}` declares column `{}` twice",
                    output.name, c.name
                ));
            }
            let numeric = matches!(c.type_, ColumnType::Int | ColumnType::Float);
            let ordered = numeric || matches!(c.type_, ColumnType::Timestamp | ColumnType::Text);
            let fits = match c.merge {
                MergeMode::Replace => true,
                MergeMode::Add => numeric,
                MergeMode::Max | MergeMode::Min => ordered,
            };
            if !fits {
                return Err(format!(
                    "output `{}` column `{}`: merge mode {} does not apply to type {}",
                    output.name, c.name, c.merge, c.type_
                ));
            }
            columns.push(ColumnSchema {
                name: c.name.clone(),
                ty: c.type_,
                merge: c.merge,
                nullable: c.nullable,
                key: false,
            });
        }
        if output.primary_key.is_empty() {
            return Err(format!("output `{}` declares no primary key", output.name));
        }
        let mut key = Vec::with_capacity(output.primary_key.len());
        for name in &output.primary_key {
            let i = columns
                .iter()
                .position(|c| &c.name == name)
                .ok_or_else(|| {
                    format!(
                        "output `{}`: primary-key column `{name}` is not among its columns",
                        output.name
                    )
                })?;
            if key.contains(&i) {
                return Err(format!(
                    "output `{}`: primary-key column `{name}` listed twice",
                    output.name
                ));
            }
            let column = &mut columns[i];
            column.key = true;
            column.nullable = false;
            column.merge = MergeMode::Replace;
            key.push(i);
        }
        let partition = match template {
            None => None,
            Some((prefix, pattern, column, suffix)) => {
                let time_columns: Vec<usize> = (0..columns.len())
                    .filter(|&i| columns[i].ty == ColumnType::Timestamp)
                    .collect();
                let column = match column {
                    Some(name) => columns.iter().position(|c| c.name == name).ok_or_else(|| {
                        format!("table `{table}` is partitioned by `{name}`, which is not a column")
                    })?,
                    None if time_columns.len() == 1 => time_columns[0],
                    None => {
                        return Err(format!(
                            "table `{table}`: name the time column, e.g. {{{pattern}:column}}, \
                             as the output has {} timestamp columns",
                            time_columns.len()
                        ));
                    }
                };
                let c = &columns[column];
                if c.ty != ColumnType::Timestamp || c.nullable {
                    return Err(format!(
                        "table `{table}` is partitioned by `{}`, which must be a NOT NULL timestamp",
                        c.name
                    ));
                }
                Some(TimePartition {
                    prefix,
                    pattern,
                    suffix,
                    column,
                })
            }
        };
        Ok(Self {
            table,
            partition,
            output: output.name.clone(),
            plugin: plugin.to_owned(),
            columns,
            key,
        })
    }

    /// The table a row goes to: the name, or the template filled from the
    /// row's time in the sink's time zone (`offset_secs` east of UTC).
    pub fn table_for(&self, row: &[Value], offset_secs: i32) -> String {
        match &self.partition {
            None => self.table.clone(),
            Some(p) => {
                let millis = match row[p.column] {
                    Value::Timestamp(ms) => ms,
                    _ => 0, // rows are validated: the column is a NOT NULL timestamp
                };
                let digits: String = crate::time::format_millis(millis, offset_secs)
                    .chars()
                    .filter(char::is_ascii_digit)
                    .take(p.pattern.len())
                    .collect();
                format!("{}{digits}{}", p.prefix, p.suffix)
            }
        }
    }

    /// Position of the column named `name`.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
}

/// A table name template with one time placeholder: `{yyyy}`, `{yyyyMM}`,
/// `{yyyyMMdd}` or `{yyyyMMddHH}`, optionally naming its column
/// (`{yyyyMM:create_time}`).
#[derive(Debug, Clone, PartialEq)]
pub struct TimePartition {
    prefix: String,
    pattern: &'static str,
    suffix: String,
    /// Index of the timestamp column the placeholder is filled from.
    pub column: usize,
}

impl TimePartition {
    const PATTERNS: [&'static str; 4] = ["yyyyMMddHH", "yyyyMMdd", "yyyyMM", "yyyy"];

    /// `(prefix, pattern, column, suffix)` of a template, or `None` for a
    /// plain name.
    #[allow(clippy::type_complexity)]
    fn split(name: &str) -> Result<Option<(String, &'static str, Option<String>, String)>, String> {
        let Some(open) = name.find('{') else {
            return Ok(None);
        };
        let close = name[open..]
            .find('}')
            .map(|i| open + i)
            .ok_or_else(|| format!("table `{name}`: unclosed `{{`"))?;
        let inner = &name[open + 1..close];
        let (pattern, column) = match inner.split_once(':') {
            Some((p, c)) => (p, Some(c.to_owned())),
            None => (inner, None),
        };
        let pattern = Self::PATTERNS.into_iter().find(|p| *p == pattern).ok_or_else(|| {
            format!("table `{name}`: `{{{inner}}}` is not one of {{yyyy}}, {{yyyyMM}}, {{yyyyMMdd}}, {{yyyyMMddHH}}")
        })?;
        let suffix = &name[close + 1..];
        if suffix.contains('{') {
            return Err(format!(
                "table `{name}`: only one time placeholder is allowed"
            ));
        }
        Ok(Some((
            name[..open].to_owned(),
            pattern,
            column,
            suffix.to_owned(),
        )))
    }
}

/// Prefix of the host's own tables (`apiary_offsets`, `apiary_state`,
/// `apiary_timers`, `apiary_dead_letter`, indexes `apiary_idx_*`): no
/// output may use it, in any letter case.
pub const RESERVED_PREFIX: &str = "apiary_";

/// Refuses a table name (or template) in the host's reserved namespace.
fn check_not_reserved(table: &str) -> Result<(), String> {
    let lower = table.to_ascii_lowercase();
    if lower.starts_with(RESERVED_PREFIX) {
        return Err(format!(
            "table name `{table}` is reserved: names starting with `{RESERVED_PREFIX}` (in any \
             letter case) belong to Apiary's own tables"
        ));
    }
    Ok(())
}

/// Whether two table names (or templates) name the same table: databases
/// compare them without letter case (SQLite always, MySQL on case-folding
/// file systems or with `lower_case_table_names`), so ownership does too.
pub fn same_table(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Names become SQL identifiers: letters, digits and `_`, not starting with
/// a digit, at most 64 characters (MySQL's limit).
fn check_identifier(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.as_bytes()[0].is_ascii_digit()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} name `{name}` is not a plain identifier (letters, digits, `_`; at most 64)"
        ))
    }
}

/// A cell as JSON: timestamps as UTC `YYYY-MM-DD HH:MM:SS.mmm` text, bytes
/// as an array of numbers.
pub fn value_json(value: &Value) -> serde_json::Value {
    use serde_json::json;
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Int(v) => json!(v),
        Value::Float(v) => json!(v),
        Value::Text(v) => json!(v),
        Value::Bytes(v) => json!(v),
        Value::Timestamp(ms) => json!(crate::time::format_millis(*ms, 0)),
        Value::Boolean(v) => json!(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::wit::types::Column;

    fn column(name: &str, ty: ColumnType, merge: MergeMode) -> Column {
        Column {
            name: name.into(),
            type_: ty,
            merge,
            nullable: true,
        }
    }

    fn totals() -> OutputSchema {
        OutputSchema {
            name: "gift_type_totals".into(),
            table: None,
            columns: vec![
                column("gift_type", ColumnType::Int, MergeMode::Replace),
                column("total", ColumnType::Int, MergeMode::Add),
            ],
            primary_key: vec!["gift_type".into()],
        }
    }

    #[test]
    fn valid_output_marks_key_columns() {
        let t = TableSchema::from_output("p", &totals()).unwrap();
        assert_eq!(t.table, "gift_type_totals");
        assert_eq!(t.key, vec![0]);
        assert!(t.columns[0].key && !t.columns[0].nullable);
        assert!(!t.columns[1].key);
    }

    #[test]
    fn time_partitioned_tables_follow_the_row_time() {
        let mut o = totals();
        o.columns.push(Column {
            name: "day".into(),
            type_: ColumnType::Timestamp,
            merge: MergeMode::Replace,
            nullable: false,
        });
        o.table = Some("totals_{yyyyMMdd}".into());
        let t = TableSchema::from_output("p", &o).unwrap();
        let row = [
            Value::Int(1),
            Value::Int(5),
            Value::Timestamp(1_628_820_000_000),
        ];
        assert_eq!(t.table_for(&row, 0), "totals_20210813");
        assert_eq!(t.table_for(&row, -3 * 3600), "totals_20210812");
        o.table = Some("totals_{yyyyMM:day}_v2".into());
        let t = TableSchema::from_output("p", &o).unwrap();
        assert_eq!(t.table_for(&row, 0), "totals_202108_v2");
        o.table = Some("totals_{yyyyMM:gift_type}".into());
        assert!(
            TableSchema::from_output("p", &o)
                .unwrap_err()
                .contains("NOT NULL timestamp")
        );
        o.table = Some("totals_{week}".into());
        assert!(
            TableSchema::from_output("p", &o)
                .unwrap_err()
                .contains("{week}")
        );
        o.table = Some("totals_{yyyyMM}".into());
        o.columns[2].nullable = true;
        assert!(
            TableSchema::from_output("p", &o)
                .unwrap_err()
                .contains("NOT NULL")
        );
    }

    #[test]
    fn invalid_outputs_are_explained() {
        let mut o = totals();
        o.primary_key = vec!["nope".into()];
        assert!(
            TableSchema::from_output("p", &o)
                .unwrap_err()
                .contains("`nope`")
        );
        let mut o = totals();
        o.columns[1] = column("total", ColumnType::Text, MergeMode::Add);
        assert!(
            TableSchema::from_output("p", &o)
                .unwrap_err()
                .contains("merge mode")
        );
        let mut o = totals();
        o.name = "drop table;".into();
        assert!(
            TableSchema::from_output("p", &o)
                .unwrap_err()
                .contains("identifier")
        );
        for reserved in ["apiary_offsets", "Apiary_State", "APIARY_{yyyy}"] {
            let mut o = totals();
            o.columns
                .push(column("day", ColumnType::Timestamp, MergeMode::Replace));
            o.columns[2].nullable = false;
            o.table = Some(reserved.into());
            let e = TableSchema::from_output("p", &o).unwrap_err();
            assert!(e.contains("reserved"), "{reserved}: {e}");
        }
        assert!(same_table("gift_type_totals", "Gift_Type_Totals"));
        let mut o = totals();
        o.primary_key.clear();
        assert!(
            TableSchema::from_output("p", &o)
                .unwrap_err()
                .contains("no primary key")
        );
    }
}
