//! The HTTP side: routing HBase REST paths by hand (row keys are arbitrary
//! bytes, so paths are split and percent-decoded here rather than by axum),
//! and answering with HBase's status codes and plain-text error bodies.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use percent_encoding::percent_decode;
use serde::Serialize;

use crate::Shared;
use crate::model::{self, CellOut, CellSetIn, CellSetOut, ColumnSchema, RowOut, TableSchema};
use crate::store::{self, Cell, ColumnKey, Selector, State, Table};

const JSON: &str = "application/json";

/// A failed request: a status and HBase's text body for it.
struct Failure {
    status: StatusCode,
    text: &'static str,
    detail: Option<String>,
}

impl Failure {
    fn new(status: StatusCode, text: &'static str) -> Failure {
        Failure {
            status,
            text,
            detail: None,
        }
    }

    fn detail(mut self, detail: impl Into<String>) -> Failure {
        self.detail = Some(detail.into());
        self
    }

    fn bad_request() -> Failure {
        Failure::new(StatusCode::BAD_REQUEST, "Bad request")
    }

    fn not_found() -> Failure {
        Failure::new(StatusCode::NOT_FOUND, "Not found")
    }

    fn forbidden() -> Failure {
        Failure::new(StatusCode::FORBIDDEN, "Forbidden")
    }

    fn unavailable() -> Failure {
        Failure::new(StatusCode::SERVICE_UNAVAILABLE, "Unavailable")
    }

    fn method_not_allowed() -> Failure {
        Failure::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
    }

    fn into_response(self) -> Response {
        let mut body = format!("{}\r\n", self.text);
        if let Some(detail) = self.detail {
            body.push_str(&detail);
            body.push_str("\r\n");
        }
        reply(self.status, Some("text/plain"), body.into_bytes())
    }
}

type Outcome = Result<Response, Failure>;

fn reply(status: StatusCode, content_type: Option<&'static str>, body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    if let Some(content_type) = content_type {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    response
}

fn json(value: &impl Serialize) -> Response {
    let body = serde_json::to_vec(value).expect("models serialize");
    reply(StatusCode::OK, Some(JSON), body)
}

fn empty(status: StatusCode) -> Response {
    reply(status, None, Vec::new())
}

/// The axum handler for every request.
pub(crate) async fn handle(
    AxumState(shared): AxumState<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut state = shared.lock();
    if state.fail_next > 0 {
        state.fail_next -= 1;
        state.requests.unavailable += 1;
        return Failure::unavailable().into_response();
    }
    let request = Request {
        method: &method,
        uri: &uri,
        headers: &headers,
        body: &body,
    };
    route(&mut state, &request).unwrap_or_else(Failure::into_response)
}

struct Request<'a> {
    method: &'a Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
    body: &'a [u8],
}

fn route(state: &mut State, request: &Request) -> Outcome {
    let path = request.uri.path();
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    let [table, rest @ ..] = segments.as_slice() else {
        return Err(Failure::not_found());
    };
    if table.is_empty() || rest.is_empty() {
        return Err(Failure::not_found());
    }
    let table = String::from_utf8(percent_decode_strict(table)?)
        .map_err(|_| Failure::not_found().detail("table name is not UTF-8"))?;
    match rest {
        ["schema"] => schema(state, &table, request),
        ["multiget"] => multiget(state, &table, request),
        // Resources of the real gateway that this one does not implement.
        ["schema" | "multiget" | "scanner" | "regions" | "exists", ..] => {
            Err(Failure::not_found().detail("not implemented by this gateway"))
        }
        [row] | [row, _] => {
            let columns = rest.get(1).copied();
            match *request.method {
                Method::GET => get_row(state, &table, row, columns, request),
                Method::PUT | Method::POST => put_rows(state, &table, row, columns, request),
                _ => Err(Failure::method_not_allowed()),
            }
        }
        _ => Err(Failure::not_found().detail("timestamps in paths are not implemented")),
    }
}

fn schema(state: &mut State, table: &str, request: &Request) -> Outcome {
    state.requests.schema += 1;
    match *request.method {
        Method::GET => {
            accepts_json(request.headers)?;
            let found = state.tables.get(table).ok_or_else(Failure::not_found)?;
            Ok(json(&TableSchema {
                name: Some(table.to_string()),
                columns: found
                    .families
                    .iter()
                    .map(|name| ColumnSchema { name: name.clone() })
                    .collect(),
            }))
        }
        Method::PUT | Method::POST => {
            sends_json(request.headers)?;
            let model: TableSchema = serde_json::from_slice(request.body)
                .map_err(|e| Failure::bad_request().detail(e.to_string()))?;
            if state.read_only {
                return Err(Failure::forbidden());
            }
            if !store::legal_table(table) {
                return Err(Failure::bad_request().detail(format!("illegal table name {table:?}")));
            }
            let mut families = BTreeSet::new();
            for column in model.columns {
                if !store::legal_family(&column.name) {
                    return Err(Failure::bad_request()
                        .detail(format!("illegal column family name {:?}", column.name)));
                }
                families.insert(column.name);
            }
            let replace = *request.method == Method::PUT;
            match state.tables.get_mut(table) {
                // POST on an existing table adds (or modifies) families only.
                Some(existing) if !replace => {
                    existing.families.extend(families);
                    Ok(empty(StatusCode::OK))
                }
                // PUT, or POST on a missing table: the body is the whole schema.
                existing => {
                    if families.is_empty() {
                        return Err(Failure::bad_request()
                            .detail("a table needs at least one column family"));
                    }
                    match existing {
                        Some(existing) => existing.replace_families(families),
                        None => {
                            state.tables.insert(table.to_string(), Table::new(families));
                        }
                    }
                    Ok(created(request))
                }
            }
        }
        _ => Err(Failure::method_not_allowed()),
    }
}

/// 201 with the schema's own address, as JAX-RS `Response.created` gives.
fn created(request: &Request) -> Response {
    let mut response = empty(StatusCode::CREATED);
    let host = request
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    if let Ok(location) = HeaderValue::from_str(&format!("http://{host}{}", request.uri.path())) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

fn get_row(
    state: &mut State,
    table: &str,
    row: &str,
    columns: Option<&str>,
    request: &Request,
) -> Outcome {
    state.requests.gets += 1;
    accepts_json(request.headers)?;
    let key = percent_decode_strict(row)?;
    let selectors = parse_selectors(columns.unwrap_or(""))?;
    let found = state.tables.get(table).ok_or_else(Failure::not_found)?;
    match found.select(&key, &selectors) {
        Some(cells) if !cells.is_empty() => Ok(json(&CellSetOut {
            rows: vec![row_out(&key, cells)],
        })),
        _ => Err(Failure::not_found()),
    }
}

fn multiget(state: &mut State, table: &str, request: &Request) -> Outcome {
    if *request.method != Method::GET {
        return Err(Failure::method_not_allowed());
    }
    state.requests.multigets += 1;
    accepts_json(request.headers)?;
    let mut specs = Vec::new();
    for pair in request.uri.query().unwrap_or("").split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if percent_decode_strict(name)? != b"row" {
            continue;
        }
        // Key and columns are encoded separately; the literal '/' between
        // them is the RowSpec separator.
        let (key, columns) = value.split_once('/').unwrap_or((value, ""));
        let key = percent_decode_strict(key)?;
        if key.is_empty() {
            return Err(Failure::bad_request().detail("empty row key in row spec"));
        }
        specs.push((key, parse_selectors(columns)?));
    }
    if specs.is_empty() {
        return Err(Failure::bad_request().detail("no row parameter"));
    }
    let found = state.tables.get(table).ok_or_else(Failure::not_found)?;
    let rows: Vec<RowOut> = specs
        .iter()
        .filter_map(|(key, selectors)| {
            let cells = found.select(key, selectors)?;
            (!cells.is_empty()).then(|| row_out(key, cells))
        })
        .collect();
    if rows.is_empty() {
        // MultiRowResource's own wording, not ResourceBase's "Not found".
        return Err(Failure::new(StatusCode::NOT_FOUND, "No rows found."));
    }
    Ok(json(&CellSetOut { rows }))
}

/// One validated cell of a put, ready to store.
struct Write {
    row: Vec<u8>,
    family: Vec<u8>,
    qualifier: Vec<u8>,
    timestamp: Option<u64>,
    value: Vec<u8>,
}

fn put_rows(
    state: &mut State,
    table: &str,
    row: &str,
    columns: Option<&str>,
    request: &Request,
) -> Outcome {
    state.requests.puts += 1;
    sends_json(request.headers)?;
    let model: CellSetIn = serde_json::from_slice(request.body)
        .map_err(|e| Failure::bad_request().detail(e.to_string()))?;
    let base64 = |field: &str, text: &str| {
        model::decode(text).map_err(|e| Failure::bad_request().detail(format!("{field}: {e}")))
    };
    if state.read_only {
        return Err(Failure::forbidden());
    }
    let path_row = percent_decode_strict(row)?;
    let path_columns: Vec<Vec<u8>> = match columns {
        Some(columns) => columns
            .split(',')
            .filter(|c| !c.is_empty())
            .map(percent_decode_strict)
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
    };

    // Everything is checked before anything is stored: the whole body lands
    // or none of it does.
    let mut writes = Vec::new();
    for row in &model.rows {
        let key = match &row.key {
            Some(key) => base64("key", key)?,
            None => path_row.clone(),
        };
        if key.is_empty() {
            return Err(Failure::bad_request().detail("row key is empty"));
        }
        let mut path_columns = path_columns.iter();
        for cell in &row.cells {
            let column = match &cell.column {
                Some(column) => base64("column", column)?,
                None => path_columns
                    .next()
                    .cloned()
                    .ok_or_else(|| Failure::bad_request().detail("Column found to be null."))?,
            };
            let (family, qualifier) = store::split_column(&column)
                .filter(|(family, _)| !family.is_empty())
                .ok_or_else(|| Failure::bad_request().detail("column is not family:qualifier"))?;
            let timestamp =
                match cell.timestamp {
                    // Long.MAX_VALUE is HBase's LATEST_TIMESTAMP: "stamp it now".
                    None | Some(i64::MAX) => None,
                    Some(t) => Some(u64::try_from(t).map_err(|_| {
                        Failure::bad_request().detail("timestamp cannot be negative")
                    })?),
                };
            let value = match &cell.value {
                Some(value) => base64("$", value)?,
                None => return Err(Failure::bad_request().detail("cell has no value")),
            };
            writes.push(Write {
                row: key.clone(),
                family: family.to_vec(),
                qualifier: qualifier.to_vec(),
                timestamp,
                value,
            });
        }
    }
    let target = state.tables.get_mut(table).ok_or_else(Failure::not_found)?;
    if let Some(write) = writes.iter().find(|w| !target.has_family(&w.family)) {
        return Err(Failure::not_found().detail(format!(
            "NoSuchColumnFamilyException: column family {} does not exist in table {table}",
            String::from_utf8_lossy(&write.family)
        )));
    }
    let now = store::now_millis();
    for write in writes {
        let family = String::from_utf8(write.family).expect("declared families are UTF-8");
        target.store(
            write.row,
            (family, write.qualifier),
            Cell {
                timestamp: write.timestamp.unwrap_or(now),
                value: write.value,
            },
        );
    }
    Ok(empty(StatusCode::OK))
}

fn row_out(key: &[u8], cells: Vec<(&ColumnKey, &Cell)>) -> RowOut {
    RowOut {
        key: model::encode(key),
        cells: cells
            .into_iter()
            .map(|(column, cell)| CellOut {
                column: model::encode(&store::join_column(column)),
                timestamp: cell.timestamp,
                value: model::encode(&cell.value),
            })
            .collect(),
    }
}

/// A comma-separated column list; each entry is percent-decoded after
/// splitting, as RowSpec does, so an encoded ',' stays inside its entry.
fn parse_selectors(columns: &str) -> Result<Vec<Selector>, Failure> {
    if columns.is_empty() {
        return Ok(Vec::new());
    }
    let entries: Vec<&str> = columns.split(',').collect();
    let last = entries.len() - 1;
    let mut selectors = Vec::new();
    for (i, entry) in entries.into_iter().enumerate() {
        if entry.is_empty() {
            // RowSpec tolerates only a trailing empty entry.
            if i == last {
                continue;
            }
            return Err(Failure::bad_request().detail("invalid path: empty column"));
        }
        selectors.push(Selector::parse(&percent_decode_strict(entry)?));
    }
    Ok(selectors)
}

/// Percent-decodes into bytes, refusing malformed escapes as Java's
/// `URLDecoder` does. '+' stays '+'.
fn percent_decode_strict(text: &str) -> Result<Vec<u8>, Failure> {
    let bytes = text.as_bytes();
    let malformed = bytes.iter().enumerate().any(|(i, &b)| {
        b == b'%'
            && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    });
    if malformed {
        return Err(
            Failure::bad_request().detail(format!("malformed percent-encoding in {text:?}"))
        );
    }
    Ok(percent_decode(bytes).collect())
}

fn media_types(headers: &HeaderMap, name: header::HeaderName) -> impl Iterator<Item = String> + '_ {
    headers
        .get_all(name)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
}

/// The gateway picks its representation from Accept; only JSON is offered
/// here, and `*/*` does not select it (the real gateway would answer XML).
fn accepts_json(headers: &HeaderMap) -> Result<(), Failure> {
    if media_types(headers, header::ACCEPT).any(|t| t == JSON) {
        Ok(())
    } else {
        Err(Failure::new(StatusCode::NOT_ACCEPTABLE, "Not acceptable")
            .detail("this gateway answers only Accept: application/json"))
    }
}

fn sends_json(headers: &HeaderMap) -> Result<(), Failure> {
    if media_types(headers, header::CONTENT_TYPE).any(|t| t == JSON) {
        Ok(())
    } else {
        Err(
            Failure::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Unsupported media type")
                .detail("this gateway reads only Content-Type: application/json"),
        )
    }
}
