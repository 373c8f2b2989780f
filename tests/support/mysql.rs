//! MariaDB helpers for the tests: a fresh database per test on the local
//! server (root, empty password, started by `scripts/services start`).

use std::collections::BTreeMap;

use sqlx::Row as _;

/// The server, without a database.
pub fn server() -> String {
    std::env::var("APIARY_TEST_MYSQL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Creates an empty database named after `prefix` and returns its URL.
pub fn fresh_database(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let name = format!(
        "apiary_{prefix}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000
    );
    runtime().block_on(async {
        let pool = sqlx::MySqlPool::connect(&server())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot reach MariaDB at {} (run scripts/services start): {e}",
                    server()
                )
            });
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&pool)
            .await
            .unwrap();
    });
    format!("{}/{name}", server())
}

/// Runs SQL statements against a database.
pub fn execute(url: &str, statements: &[&str]) {
    runtime().block_on(async {
        let pool = sqlx::MySqlPool::connect(url).await.unwrap();
        for statement in statements {
            sqlx::query(statement).execute(&pool).await.unwrap();
        }
    });
}

/// Rows of a two-integer query, e.g. totals per key.
pub fn pairs(url: &str, sql: &str) -> BTreeMap<i64, i64> {
    runtime().block_on(async {
        let pool = sqlx::MySqlPool::connect(url).await.unwrap();
        let rows = sqlx::query(sql).fetch_all(&pool).await.unwrap();
        rows.iter()
            .map(|r| (r.get::<i64, _>(0), r.get::<i64, _>(1)))
            .collect()
    })
}

/// A one-number query (CAST sums AS SIGNED); 0 if the database cannot
/// answer (yet).
pub fn count(url: &str, sql: &str) -> i64 {
    runtime().block_on(async {
        let Ok(pool) = sqlx::MySqlPool::connect(url).await else {
            return 0;
        };
        match sqlx::query(sql).fetch_one(&pool).await {
            // Sums are DECIMAL in MySQL: queries CAST them AS SIGNED.
            Ok(row) => row.try_get::<i64, _>(0).unwrap_or(0),
            Err(_) => 0,
        }
    })
}
