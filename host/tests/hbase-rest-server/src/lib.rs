//! An in-memory HBase REST gateway for integration tests and benchmarks.
//!
//! No real HBase can run on the machines this project builds and tests on, so
//! this crate stands in for the gateway that `hbase rest start` serves (port
//! 8080 by default): the same paths, JSON representations, status codes and
//! plain-text error bodies, over real HTTP on 127.0.0.1, with the tables kept
//! in memory.
//!
//! The specification of the implemented subset is the REST chapter of the
//! Apache HBase Reference Guide, <https://hbase.apache.org/book.html#_rest>,
//! with the gateway's own behaviour where the guide is silent:
//!
//! - `GET /{table}/schema`; `POST /{table}/schema` creates a table (201) or
//!   adds families to it (200); `PUT /{table}/schema` creates or replaces the
//!   whole family list (201).
//! - `PUT` or `POST /{table}/{row}[/{columns}]` with a JSON CellSet stores
//!   every cell of every row in the body; the body's row keys win over the
//!   path's (clients send a placeholder such as `fakerow`).
//! - `GET /{table}/{row}[/{columns}]` answers one row as a CellSet.
//! - `GET /{table}/multiget?row={rowspec}&row=…` answers the rows found, in
//!   request order.
//!
//! Only JSON is spoken (`Accept` and `Content-Type: application/json`); XML,
//! protobuf and raw-value bodies, scanners, deletes and timestamp paths are
//! not implemented. Each cell keeps only its latest version.
//!
//! ```
//! let server = hbase_rest_server::TestServer::start();
//! server.create_table("events", &["cf"]);
//! server.put("events", b"row1", "cf:a", b"value1");
//! assert_eq!(server.get("events", b"row1", "cf:a").as_deref(), Some(&b"value1"[..]));
//! assert!(server.url().starts_with("http://127.0.0.1:"));
//! ```

#![warn(missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tokio::sync::oneshot;

mod model;
mod rest;
mod store;

use store::{Cell, State, Table};

/// The state shared by the HTTP handlers and the [`TestServer`] handle.
#[derive(Default)]
struct Shared(Mutex<State>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A test that panicked mid-call must not take every later call with it.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running in-memory HBase REST gateway. It stops when dropped.
pub struct TestServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// How many requests of each kind the gateway has served.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Requests {
    /// Row writes: `PUT` or `POST /{table}/{row}`.
    pub puts: u64,
    /// Single-row reads: `GET /{table}/{row}`.
    pub gets: u64,
    /// `GET /{table}/multiget`.
    pub multigets: u64,
    /// Any request to `/{table}/schema`.
    pub schema: u64,
    /// Requests answered 503 because of [`TestServer::fail_next`].
    pub unavailable: u64,
}

impl TestServer {
    /// Starts on 127.0.0.1 with an OS-chosen port, on its own thread and tokio
    /// runtime (so sync tests and other runtimes can use it). Stops when
    /// dropped.
    pub fn start() -> TestServer {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1 for the gateway");
        listener
            .set_nonblocking(true)
            .expect("make the gateway's listener non-blocking");
        let addr = listener.local_addr().expect("the gateway's address");
        let shared = Arc::new(Shared::default());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("hbase-rest-server")
            .enable_all()
            .build()
            .expect("build the gateway's runtime");
        let (shutdown, stopped) = oneshot::channel::<()>();
        let app = Router::new()
            .fallback(rest::handle)
            // Batched puts from benchmarks can be large; the real gateway
            // does not cap them at axum's 2 MB default either.
            .layer(DefaultBodyLimit::disable())
            .with_state(Arc::clone(&shared));
        let thread = std::thread::Builder::new()
            .name("hbase-rest-server".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("register the gateway's listener");
                    let serve = axum::serve(listener, app).into_future();
                    tokio::select! {
                        result = serve => result.expect("serve the gateway"),
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime here cuts any open connections.
            })
            .expect("spawn the gateway's thread");
        TestServer {
            addr,
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// The gateway's base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Creates a table with these column families (no-op for families that
    /// exist). Panics on a name HBase would refuse.
    pub fn create_table(&self, table: &str, families: &[&str]) {
        assert!(store::legal_table(table), "illegal table name {table:?}");
        for family in families {
            assert!(
                store::legal_family(family),
                "illegal column family name {family:?}"
            );
        }
        let mut state = self.shared.lock();
        let entry = state
            .tables
            .entry(table.to_string())
            .or_insert_with(|| Table::new(BTreeSet::new()));
        entry
            .families
            .extend(families.iter().map(|f| f.to_string()));
    }

    /// Stores one cell (column is "family:qualifier"), stamped with the current
    /// time; panics if the table or family is missing.
    pub fn put(&self, table: &str, row: &[u8], column: &str, value: &[u8]) {
        let (family, qualifier) = column
            .split_once(':')
            .unwrap_or_else(|| panic!("column {column:?} is not family:qualifier"));
        let mut state = self.shared.lock();
        let Some(target) = state.tables.get_mut(table) else {
            drop(state);
            panic!("no table {table:?}");
        };
        if !target.families.contains(family) {
            drop(state);
            panic!("table {table:?} has no column family {family:?}");
        }
        target.store(
            row.to_vec(),
            (family.to_string(), qualifier.as_bytes().to_vec()),
            Cell {
                timestamp: store::now_millis(),
                value: value.to_vec(),
            },
        );
    }

    /// One cell's latest value (column is "family:qualifier"); `None` if the
    /// table, row or cell does not exist.
    pub fn get(&self, table: &str, row: &[u8], column: &str) -> Option<Vec<u8>> {
        let (family, qualifier) = column.split_once(':')?;
        let state = self.shared.lock();
        let cells = state.tables.get(table)?.rows.get(row)?;
        cells
            .get(&(family.to_string(), qualifier.as_bytes().to_vec()))
            .map(|cell| cell.value.clone())
    }

    /// Every row of a table: row key -> (column -> value), columns as
    /// "family:qualifier" (a qualifier that is not UTF-8 is shown lossily).
    /// Empty if the table does not exist.
    pub fn rows(&self, table: &str) -> BTreeMap<Vec<u8>, BTreeMap<String, Vec<u8>>> {
        let state = self.shared.lock();
        let Some(found) = state.tables.get(table) else {
            return BTreeMap::new();
        };
        found
            .rows
            .iter()
            .map(|(key, cells)| {
                let cells = cells
                    .iter()
                    .map(|((family, qualifier), cell)| {
                        let column = format!("{family}:{}", String::from_utf8_lossy(qualifier));
                        (column, cell.value.clone())
                    })
                    .collect();
                (key.clone(), cells)
            })
            .collect()
    }

    /// Whether the table exists and its families: `None` if it does not,
    /// otherwise the family names in order.
    pub fn families(&self, table: &str) -> Option<Vec<String>> {
        let state = self.shared.lock();
        let found = state.tables.get(table)?;
        Some(found.families.iter().cloned().collect())
    }

    /// Read-only mode (`hbase.rest.readonly`): every write answers 403.
    pub fn set_read_only(&self, on: bool) {
        self.shared.lock().read_only = on;
    }

    /// The next `n` requests answer 503 Service Unavailable (as a busy gateway
    /// does), whatever they ask, without touching any table.
    pub fn fail_next(&self, n: usize) {
        self.shared.lock().fail_next = n;
    }

    /// Requests served so far, by kind.
    pub fn requests(&self) -> Requests {
        self.shared.lock().requests
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            // A panic on the gateway's thread must not become a double panic
            // while a failing test unwinds.
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests;
