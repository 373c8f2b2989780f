//! A small HBase REST client: batched puts, gets and multi-gets, table
//! creation, and HBase's status codes mapped to errors that say what to do.

use std::collections::HashMap;
use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_encode};
use reqwest::StatusCode;

use super::model::CellSet;

/// Row keys and columns travel in the URL: everything but unreserved
/// characters is escaped, notably `/`, `:` and `,`, which the gateway's
/// row specs use as separators.
const IN_URL: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The cells of one row: `family:qualifier` → value.
pub type RowCells = HashMap<String, Vec<u8>>;

/// Why an HBase request failed.
#[derive(Debug, thiserror::Error)]
pub enum HBaseError {
    /// 404: the table, or a column family the request names, does not exist.
    #[error("HBase {what}: not found (404): {detail}")]
    NotFound {
        /// The request.
        what: String,
        /// The gateway's message.
        detail: String,
    },
    /// 400: the gateway refused the request, e.g. a column without a family.
    #[error("HBase {what}: bad request (400): {detail}")]
    BadRequest {
        /// The request.
        what: String,
        /// The gateway's message.
        detail: String,
    },
    /// 403: the gateway runs read-only (`hbase.rest.readonly`).
    #[error("HBase {what}: the REST gateway is read-only (403)")]
    ReadOnly {
        /// The request.
        what: String,
    },
    /// 503 or no answer, still so after every retry.
    #[error("HBase {what}: gateway unavailable after {attempts} attempts: {detail}")]
    Unavailable {
        /// The request.
        what: String,
        /// Attempts made.
        attempts: u32,
        /// The last status or transport error.
        detail: String,
    },
    /// Any other answer.
    #[error("HBase {what}: unexpected {status}: {detail}")]
    Other {
        /// The request.
        what: String,
        /// The status.
        status: StatusCode,
        /// The gateway's message.
        detail: String,
    },
}

impl HBaseError {
    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// A client of one REST gateway.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    max_retries: u32,
    backoff: Duration,
}

impl Client {
    /// A client of the gateway at `url` (`http://host:8080`); 503s and
    /// unanswered requests are retried `max_retries` times, waiting
    /// `backoff`, doubled each time.
    pub fn new(
        url: &str,
        timeout: Duration,
        max_retries: u32,
        backoff: Duration,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .build()?;
        Ok(Self {
            http,
            base: url.trim_end_matches('/').to_owned(),
            max_retries,
            backoff,
        })
    }

    /// The gateway's URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Writes every row of `cells` in one request (`PUT /<table>/fakerow`:
    /// the keys inside the CellSet name the rows).
    pub async fn put(&self, table: &str, cells: &CellSet) -> Result<(), HBaseError> {
        let url = format!("{}/{}/fakerow", self.base, encode(table.as_bytes()));
        let body = serde_json::to_vec(cells).expect("a CellSet serializes");
        let what = format!("put of {} rows into `{table}`", cells.rows.len());
        self.send(&what, || {
            self.http
                .put(&url)
                .header("Content-Type", "application/json")
                .body(body.clone())
        })
        .await
        .map(drop)
    }

    /// The `columns` (`family:qualifier`, or a whole `family`) of one row;
    /// `None` when the row has none of them.
    pub async fn get(
        &self,
        table: &str,
        row: &[u8],
        columns: &[String],
    ) -> Result<Option<RowCells>, HBaseError> {
        let mut url = format!("{}/{}/{}", self.base, encode(table.as_bytes()), encode(row));
        if !columns.is_empty() {
            url.push('/');
            url.push_str(&encode_columns(columns));
        }
        let what = format!("get from `{table}`");
        let set = self.get_json::<CellSet>(&what, &url).await?;
        Ok(set
            .and_then(|s| s.rows.into_iter().next())
            .map(|r| cells_of(r.cells)))
    }

    /// The `columns` of many rows in one request (`GET
    /// /<table>/multiget?row=…`); rows that have none are left out.
    pub async fn multi_get(
        &self,
        table: &str,
        rows: &[Vec<u8>],
        columns: &[String],
    ) -> Result<HashMap<Vec<u8>, RowCells>, HBaseError> {
        let mut url = format!("{}/{}/multiget?", self.base, encode(table.as_bytes()));
        let suffix = if columns.is_empty() {
            String::new()
        } else {
            format!("/{}", encode_columns(columns))
        };
        for (i, row) in rows.iter().enumerate() {
            if i > 0 {
                url.push('&');
            }
            url.push_str("row=");
            url.push_str(&encode(row));
            url.push_str(&suffix);
        }
        let what = format!("multi-get of {} rows from `{table}`", rows.len());
        let set = self
            .get_json::<CellSet>(&what, &url)
            .await?
            .unwrap_or_default();
        Ok(set
            .rows
            .into_iter()
            .map(|r| (r.key, cells_of(r.cells)))
            .collect())
    }

    /// The column families of `table`, or `None` if it does not exist.
    pub async fn families(&self, table: &str) -> Result<Option<Vec<String>>, HBaseError> {
        #[derive(serde::Deserialize)]
        struct Schema {
            #[serde(rename = "ColumnSchema", default)]
            families: Vec<Family>,
        }
        #[derive(serde::Deserialize)]
        struct Family {
            name: String,
        }
        let url = format!("{}/{}/schema", self.base, encode(table.as_bytes()));
        let schema: Option<Schema> = self.get_json(&format!("schema of `{table}`"), &url).await?;
        Ok(schema.map(|s| s.families.into_iter().map(|f| f.name).collect()))
    }

    /// Makes sure `table` exists with `families`, creating the table or
    /// adding the families it lacks. `POST /<table>/schema` never drops
    /// what a table has (`PUT` would replace its schema).
    pub async fn ensure_table(&self, table: &str, families: &[&str]) -> Result<(), HBaseError> {
        if let Some(existing) = self.families(table).await?
            && families.iter().all(|f| existing.iter().any(|e| e == f))
        {
            return Ok(());
        }
        let url = format!("{}/{}/schema", self.base, encode(table.as_bytes()));
        let schema = serde_json::json!({
            "name": table,
            "ColumnSchema": families.iter().map(|f| serde_json::json!({"name": f})).collect::<Vec<_>>(),
        });
        let body = schema.to_string();
        self.send(&format!("creation of table `{table}`"), || {
            self.http
                .post(&url)
                .header("Content-Type", "application/json")
                .body(body.clone())
        })
        .await
        .map(drop)
    }

    /// A JSON document read, `None` on 404 (no such table, row, or none
    /// of the rows asked for).
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        url: &str,
    ) -> Result<Option<T>, HBaseError> {
        let response = self
            .send(what, || {
                self.http.get(url).header("Accept", "application/json")
            })
            .await;
        let bytes = match response {
            Ok(bytes) => bytes,
            Err(HBaseError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| HBaseError::Other {
                what: what.to_owned(),
                status: StatusCode::OK,
                detail: format!("unreadable answer: {e}"),
            })
    }

    /// Sends the request `build` makes, retrying 503s and transport errors
    /// with exponential backoff; returns the body of a 2xx answer.
    async fn send(
        &self,
        what: &str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Vec<u8>, HBaseError> {
        let mut wait = self.backoff;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let detail = match build().send().await {
                Ok(response) => {
                    let status = response.status();
                    let body = response.bytes().await.unwrap_or_default();
                    if status.is_success() {
                        return Ok(body.to_vec());
                    }
                    let detail = String::from_utf8_lossy(&body).trim().replace("\r\n", " ");
                    let what = what.to_owned();
                    match status {
                        StatusCode::NOT_FOUND => return Err(HBaseError::NotFound { what, detail }),
                        StatusCode::BAD_REQUEST => {
                            return Err(HBaseError::BadRequest { what, detail });
                        }
                        StatusCode::FORBIDDEN => return Err(HBaseError::ReadOnly { what }),
                        StatusCode::SERVICE_UNAVAILABLE => format!("503 {detail}"),
                        status => {
                            return Err(HBaseError::Other {
                                what,
                                status,
                                detail,
                            });
                        }
                    }
                }
                Err(e) => format!("cannot reach {}: {e}", self.base),
            };
            if attempt > self.max_retries {
                return Err(HBaseError::Unavailable {
                    what: what.to_owned(),
                    attempts: attempt,
                    detail,
                });
            }
            tracing::warn!(attempt, "HBase {what}: {detail}; retrying in {wait:?}");
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }
}

fn encode(bytes: &[u8]) -> String {
    percent_encode(bytes, IN_URL).to_string()
}

fn encode_columns(columns: &[String]) -> String {
    columns
        .iter()
        .map(|c| {
            // The family separator stays literal: the gateway splits on it.
            match c.split_once(':') {
                Some((family, qualifier)) => {
                    format!(
                        "{}:{}",
                        encode(family.as_bytes()),
                        encode(qualifier.as_bytes())
                    )
                }
                None => encode(c.as_bytes()),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn cells_of(cells: Vec<super::model::Cell>) -> RowCells {
    cells
        .into_iter()
        .map(|c| (String::from_utf8_lossy(&c.column).into_owned(), c.value))
        .collect()
}
