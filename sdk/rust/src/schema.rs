//! Declaring outputs and filling their rows.

use crate::{Column, ColumnType, MergeMode, OutputRows, OutputSchema, Value};

/// A table a rule writes, built column by column:
///
/// ```
/// use apiary_sdk::{ColumnType::Int, Output};
/// let out = Output::new("gift_type_totals").key("gift_type", Int).add("gift_total_amount", Int);
/// assert_eq!(out.width(), 2);
/// ```
///
/// Columns are cells in declaration order; key columns identify the row
/// (and merge by `replace`), the others merge as their method says.
#[derive(Debug, Clone)]
pub struct Output(OutputSchema);

impl Output {
    /// An output named `name`, written to the table of the same name.
    pub fn new(name: impl Into<String>) -> Self {
        Self(OutputSchema {
            name: name.into(),
            table: None,
            columns: Vec::new(),
            primary_key: Vec::new(),
        })
    }

    /// Writes to `table` (a name or a time template such as
    /// `gifts_{yyyyMM}`) instead of the output's name.
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.0.table = Some(table.into());
        self
    }

    /// A primary-key column.
    pub fn key(mut self, name: impl Into<String>, ty: ColumnType) -> Self {
        let name = name.into();
        self.0.primary_key.push(name.clone());
        self.push(name, ty, MergeMode::Replace, false)
    }

    /// A non-null column merged with `merge`.
    pub fn column(self, name: impl Into<String>, ty: ColumnType, merge: MergeMode) -> Self {
        self.push(name.into(), ty, merge, false)
    }

    /// A nullable column merged with `merge`.
    pub fn nullable(self, name: impl Into<String>, ty: ColumnType, merge: MergeMode) -> Self {
        self.push(name.into(), ty, merge, true)
    }

    /// A non-null column whose values are added to the stored ones.
    pub fn add(self, name: impl Into<String>, ty: ColumnType) -> Self {
        self.column(name, ty, MergeMode::Add)
    }

    /// A non-null column whose new value replaces the stored one.
    pub fn replace(self, name: impl Into<String>, ty: ColumnType) -> Self {
        self.column(name, ty, MergeMode::Replace)
    }

    /// A non-null column keeping the larger value.
    pub fn max(self, name: impl Into<String>, ty: ColumnType) -> Self {
        self.column(name, ty, MergeMode::Max)
    }

    /// A non-null column keeping the smaller value.
    pub fn min(self, name: impl Into<String>, ty: ColumnType) -> Self {
        self.column(name, ty, MergeMode::Min)
    }

    /// The output's name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// Its number of columns: the cells of one row.
    pub fn width(&self) -> usize {
        self.0.columns.len()
    }

    /// An empty set of rows for this output.
    pub fn rows(&self) -> Rows {
        Rows::new(self.0.name.clone(), self.width())
    }

    /// The schema the contract carries.
    pub fn schema(&self) -> &OutputSchema {
        &self.0
    }

    fn push(mut self, name: String, ty: ColumnType, merge: MergeMode, nullable: bool) -> Self {
        self.0.columns.push(Column {
            name,
            type_: ty,
            merge,
            nullable,
        });
        self
    }
}

impl From<Output> for OutputSchema {
    fn from(output: Output) -> Self {
        output.0
    }
}

/// Rows of one output, as the flat cell list the contract carries.
#[derive(Debug, Clone)]
pub struct Rows {
    output: String,
    width: usize,
    cells: Vec<Value>,
}

impl Rows {
    /// No rows yet for `output`, whose rows have `width` cells.
    pub fn new(output: impl Into<String>, width: usize) -> Self {
        Self {
            output: output.into(),
            width,
            cells: Vec::new(),
        }
    }

    /// Appends one row, its cells in column order.
    ///
    /// # Panics
    ///
    /// When the row does not have the output's width: a bug in the rule
    /// that the host would otherwise refuse the whole batch for.
    pub fn push_row<const N: usize>(&mut self, row: [Value; N]) {
        assert_eq!(
            N, self.width,
            "a row of `{}` has {} cells",
            self.output, self.width
        );
        self.cells.extend(row);
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.cells.len().checked_div(self.width).unwrap_or(0)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// The rows' cells, row after row.
    pub fn cells(&self) -> &[Value] {
        &self.cells
    }

    /// Into the contract's form; `None` when empty.
    pub fn finish(self) -> Option<OutputRows> {
        if self.cells.is_empty() {
            return None;
        }
        Some(OutputRows {
            output: self.output,
            cells: self.cells,
        })
    }

    /// The non-empty ones, in the contract's form.
    pub fn collect(rows: impl IntoIterator<Item = Rows>) -> Vec<OutputRows> {
        rows.into_iter().filter_map(Rows::finish).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ColumnType::{Int, Timestamp};

    #[test]
    fn builds_schema_and_rows() {
        let out = Output::new("gifts_6h")
            .key("window_end", Timestamp)
            .add("gift_total_amount", Int);
        let schema = out.schema();
        assert_eq!(schema.primary_key, ["window_end"]);
        assert!(matches!(schema.columns[1].merge, MergeMode::Add));
        assert!(!schema.columns[0].nullable);
        let mut rows = out.rows();
        assert!(rows.clone().finish().is_none());
        rows.push_row([Value::Timestamp(5), 7i64.into()]);
        rows.push_row([Value::Timestamp(6), Value::from(Some(1i64))]);
        assert_eq!(rows.len(), 2);
        let rows = rows.finish().expect("rows");
        assert_eq!(rows.cells.len(), 4);
    }

    #[test]
    #[should_panic(expected = "has 2 cells")]
    fn a_row_of_the_wrong_width_is_a_bug() {
        Rows::new("x", 2).push_row([Value::Null]);
    }
}
