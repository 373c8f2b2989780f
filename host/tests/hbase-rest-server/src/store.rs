//! The tables behind the gateway: families, rows and the latest version of
//! each cell.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::Requests;

/// Everything the gateway knows, behind one lock.
#[derive(Default)]
pub(crate) struct State {
    pub tables: HashMap<String, Table>,
    pub read_only: bool,
    pub fail_next: usize,
    pub requests: Requests,
}

/// A cell's coordinates within a row: family, then qualifier bytes. Ordered
/// the way HBase returns cells (by family, then qualifier), which differs from
/// ordering the joined `family:qualifier` bytes when one family prefixes
/// another.
pub(crate) type ColumnKey = (String, Vec<u8>);

/// One stored cell version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Cell {
    pub timestamp: u64,
    pub value: Vec<u8>,
}

/// A table: its declared families and its rows.
#[derive(Default)]
pub(crate) struct Table {
    pub families: BTreeSet<String>,
    pub rows: BTreeMap<Vec<u8>, BTreeMap<ColumnKey, Cell>>,
}

impl Table {
    pub fn new(families: BTreeSet<String>) -> Table {
        Table {
            families,
            rows: BTreeMap::new(),
        }
    }

    /// Replaces the family list; cells of dropped families go with them, as
    /// they do when HBase modifies a table descriptor.
    pub fn replace_families(&mut self, families: BTreeSet<String>) {
        self.families = families;
        let families = &self.families;
        self.rows.retain(|_, cells| {
            cells.retain(|(family, _), _| families.contains(family));
            !cells.is_empty()
        });
    }

    /// Stores a cell version, keeping whichever version has the higher
    /// timestamp (the later write on a tie), as a one-version family does.
    pub fn store(&mut self, row: Vec<u8>, column: ColumnKey, cell: Cell) {
        let cells = self.rows.entry(row).or_default();
        match cells.get(&column) {
            Some(existing) if existing.timestamp > cell.timestamp => {}
            _ => {
                cells.insert(column, cell);
            }
        }
    }

    /// Whether `family` (raw bytes, as it arrives over the wire) is declared.
    pub fn has_family(&self, family: &[u8]) -> bool {
        std::str::from_utf8(family).is_ok_and(|f| self.families.contains(f))
    }

    /// The cells of `row` matched by `selectors` (all cells when empty), in
    /// HBase's order. `None` when a selector names an undeclared family: HBase
    /// then fails the whole Get and the gateway reports the row as not found.
    pub fn select(&self, row: &[u8], selectors: &[Selector]) -> Option<Vec<(&ColumnKey, &Cell)>> {
        if selectors.iter().any(|s| !self.has_family(s.family())) {
            return None;
        }
        let Some(cells) = self.rows.get(row) else {
            return Some(Vec::new());
        };
        Some(
            cells
                .iter()
                .filter(|((family, qualifier), _)| {
                    selectors.is_empty()
                        || selectors.iter().any(|s| match s {
                            Selector::Family(f) => f == family.as_bytes(),
                            Selector::Column(f, q) => f == family.as_bytes() && q == qualifier,
                        })
                })
                .collect(),
        )
    }
}

/// One entry of a column list in a path or row spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Selector {
    /// `family`: every cell of the family.
    Family(Vec<u8>),
    /// `family:qualifier`: one cell (the qualifier may be empty).
    Column(Vec<u8>, Vec<u8>),
}

impl Selector {
    /// Parses `family` or `family:qualifier`, splitting on the first ':' as
    /// HBase's `CellUtil.parseColumn` does.
    pub fn parse(spec: &[u8]) -> Selector {
        match split_column(spec) {
            Some((family, qualifier)) => Selector::Column(family.to_vec(), qualifier.to_vec()),
            None => Selector::Family(spec.to_vec()),
        }
    }

    fn family(&self) -> &[u8] {
        match self {
            Selector::Family(f) | Selector::Column(f, _) => f,
        }
    }
}

/// Splits `family:qualifier` at the first ':'.
pub(crate) fn split_column(column: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = column.iter().position(|&b| b == b':')?;
    Some((&column[..at], &column[at + 1..]))
}

/// Joins a column key back into `family:qualifier` bytes.
pub(crate) fn join_column((family, qualifier): &ColumnKey) -> Vec<u8> {
    let mut column = Vec::with_capacity(family.len() + 1 + qualifier.len());
    column.extend_from_slice(family.as_bytes());
    column.push(b':');
    column.extend_from_slice(qualifier);
    column
}

/// Server time in milliseconds since the epoch, which HBase stamps on cells
/// written without a timestamp.
pub(crate) fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Whether HBase would accept `name` as a column family name
/// (`ColumnFamilyDescriptorBuilder.isLegalColumnFamilyName`).
pub(crate) fn legal_family(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.chars().any(|c| c == ':' || c.is_control())
}

/// Whether HBase would accept `name` as a table name, optionally qualified by a
/// namespace (`namespace:table`).
pub(crate) fn legal_table(name: &str) -> bool {
    let (namespace, table) = match name.split_once(':') {
        Some((ns, t)) => (Some(ns), t),
        None => (None, name),
    };
    let word = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
    };
    word(table)
        && !table.starts_with(['.', '-'])
        && namespace.is_none_or(|ns| word(ns) && ns.chars().all(|c| c != '.' && c != '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        Table::new(["a".to_string(), "a0".to_string()].into())
    }

    #[test]
    fn cells_order_by_family_then_qualifier() {
        let mut t = table();
        let cell = |v: &[u8]| Cell {
            timestamp: 1,
            value: v.to_vec(),
        };
        t.store(b"r".to_vec(), ("a0".into(), b"y".to_vec()), cell(b"2"));
        t.store(b"r".to_vec(), ("a".into(), b"x".to_vec()), cell(b"1"));
        let got: Vec<_> = t
            .select(b"r", &[])
            .unwrap()
            .into_iter()
            .map(|(k, _)| join_column(k))
            .collect();
        assert_eq!(got, vec![b"a:x".to_vec(), b"a0:y".to_vec()]);
    }

    #[test]
    fn higher_timestamp_wins() {
        let mut t = table();
        let key: ColumnKey = ("a".into(), b"q".to_vec());
        t.store(
            b"r".to_vec(),
            key.clone(),
            Cell {
                timestamp: 5,
                value: b"new".to_vec(),
            },
        );
        t.store(
            b"r".to_vec(),
            key.clone(),
            Cell {
                timestamp: 4,
                value: b"old".to_vec(),
            },
        );
        assert_eq!(t.rows[&b"r".to_vec()][&key].value, b"new");
        t.store(
            b"r".to_vec(),
            key.clone(),
            Cell {
                timestamp: 5,
                value: b"same time, later write".to_vec(),
            },
        );
        assert_eq!(
            t.rows[&b"r".to_vec()][&key].value,
            b"same time, later write"
        );
    }

    #[test]
    fn selectors() {
        assert_eq!(Selector::parse(b"cf"), Selector::Family(b"cf".to_vec()));
        assert_eq!(
            Selector::parse(b"cf:q:r"),
            Selector::Column(b"cf".to_vec(), b"q:r".to_vec())
        );
        assert_eq!(
            Selector::parse(b"cf:"),
            Selector::Column(b"cf".to_vec(), Vec::new())
        );
        assert!(table().select(b"r", &[Selector::parse(b"zz")]).is_none());
    }

    #[test]
    fn names() {
        assert!(legal_table("events"));
        assert!(legal_table("ns:events.v2"));
        assert!(!legal_table(""));
        assert!(!legal_table(".meta"));
        assert!(!legal_table("a b"));
        assert!(legal_family("cf"));
        assert!(!legal_family("c:f"));
        assert!(!legal_family(""));
    }
}
