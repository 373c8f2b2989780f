use std::io::{Read, Write};
use std::net::TcpStream;

use percent_encoding::{NON_ALPHANUMERIC, percent_encode};
use serde_json::{Value, json};

use super::*;
use crate::model::{CellOut, CellSetOut, RowOut};

/// An HTTP/1.1 answer, read whole from a `Connection: close` exchange.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        assert_eq!(self.header("content-type"), Some("application/json"));
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    fn cell_set(&self) -> CellSetOut {
        serde_json::from_value(self.json()).expect("a CellSet")
    }
}

fn send(
    server: &TestServer,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let addr = server.url().trim_start_matches("http://").to_string();
    let mut stream = TcpStream::connect(&addr).expect("connect to the gateway");
    let mut request = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();

    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.trim().to_string(), value.trim().to_string())
        })
        .collect();
    assert!(
        !headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked")),
        "bodies are sent with a length"
    );
    Reply {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

const ACCEPT_JSON: (&str, &str) = ("Accept", "application/json");
const SEND_JSON: (&str, &str) = ("Content-Type", "application/json");

fn get(server: &TestServer, target: &str) -> Reply {
    send(server, "GET", target, &[ACCEPT_JSON], b"")
}

fn put_json(server: &TestServer, method: &str, target: &str, body: &Value) -> Reply {
    send(
        server,
        method,
        target,
        &[SEND_JSON, ACCEPT_JSON],
        body.to_string().as_bytes(),
    )
}

fn b64(bytes: &[u8]) -> String {
    model::encode(bytes)
}

fn enc(bytes: &[u8]) -> String {
    percent_encode(bytes, NON_ALPHANUMERIC).to_string()
}

/// A row key and its `(column, value)` cells.
type RowCells<'a> = (&'a [u8], &'a [(&'a str, &'a [u8])]);

fn cell_set(rows: &[RowCells]) -> Value {
    let rows: Vec<Value> = rows
        .iter()
        .map(|(key, cells)| {
            let cells: Vec<Value> = cells
                .iter()
                .map(|(column, value)| json!({"column": b64(column.as_bytes()), "$": b64(value)}))
                .collect();
            json!({"key": b64(key), "Cell": cells})
        })
        .collect();
    json!({ "Row": rows })
}

/// The (key, column, value) triples of a CellSet answer, decoded.
fn triples(reply: &Reply) -> Vec<(Vec<u8>, String, Vec<u8>)> {
    let mut out = Vec::new();
    for row in reply.cell_set().rows {
        let key = model::decode(&row.key).unwrap();
        for cell in row.cells {
            assert!(cell.timestamp > 0, "cells carry their timestamp");
            let column = String::from_utf8(model::decode(&cell.column).unwrap()).unwrap();
            out.push((key.clone(), column, model::decode(&cell.value).unwrap()));
        }
    }
    out
}

fn assert_error(reply: &Reply, status: u16, first_line: &str) {
    assert_eq!(reply.status, status, "body: {}", reply.text());
    assert_eq!(reply.header("content-type"), Some("text/plain"));
    let text = reply.text();
    assert!(
        text.starts_with(&format!("{first_line}\r\n")),
        "expected {first_line:?}, got {text:?}"
    );
}

#[test]
fn create_with_post_then_read_schema() {
    let server = TestServer::start();
    assert_error(&get(&server, "/events/schema"), 404, "Not found");

    let created = put_json(
        &server,
        "POST",
        "/events/schema",
        &json!({"name": "events", "ColumnSchema": [{"name": "cf", "VERSIONS": "1"}]}),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    assert!(
        created
            .header("location")
            .unwrap()
            .ends_with("/events/schema")
    );

    let schema = get(&server, "/events/schema");
    assert_eq!(schema.status, 200);
    assert_eq!(
        schema.json(),
        json!({"name": "events", "ColumnSchema": [{"name": "cf"}]})
    );

    // POST on an existing table adds families and never removes any.
    let updated = put_json(
        &server,
        "POST",
        "/events/schema",
        &json!({"name": "events", "ColumnSchema": [{"name": "meta"}]}),
    );
    assert_eq!(updated.status, 200);
    assert_eq!(
        server.families("events"),
        Some(vec!["cf".to_string(), "meta".to_string()])
    );

    let malformed = send(
        &server,
        "POST",
        "/events/schema",
        &[SEND_JSON],
        b"{\"ColumnSchema\":",
    );
    assert_error(&malformed, 400, "Bad request");
    let bad_family = put_json(
        &server,
        "POST",
        "/other/schema",
        &json!({"ColumnSchema": [{"name": "a:b"}]}),
    );
    assert_error(&bad_family, 400, "Bad request");
    assert_eq!(server.families("other"), None);
    assert_eq!(server.requests().schema, 6);
}

#[test]
fn put_schema_replaces_families() {
    let server = TestServer::start();
    server.create_table("t", &["cf", "old"]);
    server.put("t", b"r1", "cf:a", b"kept");
    server.put("t", b"r1", "old:a", b"dropped");
    server.put("t", b"r2", "old:a", b"dropped");

    let replaced = put_json(
        &server,
        "PUT",
        "/t/schema",
        &json!({"ColumnSchema": [{"name": "cf"}, {"name": "new"}]}),
    );
    assert_eq!(replaced.status, 201, "{}", replaced.text());
    assert_eq!(server.families("t"), Some(vec!["cf".into(), "new".into()]));
    let rows = server.rows("t");
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[&b"r1".to_vec()],
        BTreeMap::from([("cf:a".to_string(), b"kept".to_vec())])
    );

    // PUT on a missing table creates it, as the gateway's replace does.
    let created = put_json(
        &server,
        "PUT",
        "/fresh/schema",
        &json!({"ColumnSchema": [{"name": "cf"}]}),
    );
    assert_eq!(created.status, 201);
    assert_eq!(server.families("fresh"), Some(vec!["cf".into()]));
}

#[test]
fn multi_row_put_then_get_and_multiget() {
    let server = TestServer::start();
    server.create_table("t", &["cf", "x"]);
    let body = cell_set(&[
        (b"r1", &[("cf:a", b"1"), ("cf:b", b"2"), ("x:z", b"9")]),
        (b"r2", &[("cf:a", b"3")]),
    ]);
    let put = put_json(&server, "PUT", "/t/fakerow", &body);
    assert_eq!(put.status, 200, "{}", put.text());
    assert!(put.body.is_empty());
    assert!(!server.rows("t").contains_key(b"fakerow".as_slice()));
    // POST stores the same way.
    let post = put_json(
        &server,
        "POST",
        "/t/fakerow",
        &cell_set(&[(b"r3", &[("cf:a", b"4")])]),
    );
    assert_eq!(post.status, 200);

    let whole = get(&server, "/t/r1");
    assert_eq!(whole.status, 200);
    assert_eq!(
        triples(&whole),
        vec![
            (b"r1".to_vec(), "cf:a".into(), b"1".to_vec()),
            (b"r1".to_vec(), "cf:b".into(), b"2".to_vec()),
            (b"r1".to_vec(), "x:z".into(), b"9".to_vec()),
        ]
    );
    assert_eq!(
        triples(&get(&server, "/t/r1/cf:b,x")),
        vec![
            (b"r1".to_vec(), "cf:b".into(), b"2".to_vec()),
            (b"r1".to_vec(), "x:z".into(), b"9".to_vec()),
        ]
    );
    assert_error(&get(&server, "/t/nope"), 404, "Not found");
    assert_error(&get(&server, "/t/r2/cf:b"), 404, "Not found");
    assert_error(&get(&server, "/missing/r1"), 404, "Not found");

    let multi = get(&server, "/t/multiget?row=r3&row=absent&row=r1/cf:a&row=r2");
    assert_eq!(multi.status, 200);
    assert_eq!(
        triples(&multi),
        vec![
            (b"r3".to_vec(), "cf:a".into(), b"4".to_vec()),
            (b"r1".to_vec(), "cf:a".into(), b"1".to_vec()),
            (b"r2".to_vec(), "cf:a".into(), b"3".to_vec()),
        ]
    );
    assert_error(
        &get(&server, "/t/multiget?row=absent&row=gone"),
        404,
        "No rows found.",
    );
    assert_error(&get(&server, "/missing/multiget?row=r1"), 404, "Not found");

    assert_eq!(
        server.requests(),
        Requests {
            puts: 2,
            gets: 5,
            multigets: 3,
            schema: 0,
            unavailable: 0,
        }
    );
}

#[test]
fn binary_row_key_round_trip() {
    let server = TestServer::start();
    server.create_table("t", &["cf"]);
    let key: &[u8] = &[0x00, 0x2F, 0xFF];
    let also: &[u8] = &[0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x2C]; // 300 as a big-endian long, holding ','
    let body = cell_set(&[(key, &[("cf:v", b"bin")]), (also, &[("cf:v", b"long")])]);
    assert_eq!(put_json(&server, "PUT", "/t/fakerow", &body).status, 200);
    assert_eq!(server.get("t", key, "cf:v"), Some(b"bin".to_vec()));

    let single = get(&server, &format!("/t/{}", enc(key)));
    assert_eq!(single.status, 200, "{}", single.text());
    assert_eq!(
        triples(&single),
        vec![(key.to_vec(), "cf:v".into(), b"bin".to_vec())]
    );
    assert_eq!(
        triples(&get(&server, &format!("/t/{}/{}", enc(also), enc(b"cf:v")))),
        vec![(also.to_vec(), "cf:v".into(), b"long".to_vec())]
    );

    let multi = get(
        &server,
        &format!(
            "/t/multiget?row={}/{}&row={}",
            enc(key),
            enc(b"cf:v"),
            enc(also)
        ),
    );
    assert_eq!(multi.status, 200, "{}", multi.text());
    assert_eq!(
        triples(&multi),
        vec![
            (key.to_vec(), "cf:v".into(), b"bin".to_vec()),
            (also.to_vec(), "cf:v".into(), b"long".to_vec()),
        ]
    );

    // The raw key in the path, too, when the body has no key.
    let keyless = json!({"Row": [{"Cell": [{"column": b64(b"cf:w"), "$": b64(b"path")}]}]});
    assert_eq!(
        put_json(&server, "PUT", &format!("/t/{}", enc(key)), &keyless).status,
        200
    );
    assert_eq!(server.get("t", key, "cf:w"), Some(b"path".to_vec()));
}

#[test]
fn undeclared_family_is_not_found() {
    let server = TestServer::start();
    server.create_table("t", &["cf"]);
    // One good cell, one in an undeclared family: nothing is stored.
    let body = cell_set(&[(b"r1", &[("cf:a", b"1")]), (b"r2", &[("nope:a", b"2")])]);
    let put = put_json(&server, "PUT", "/t/fakerow", &body);
    assert_error(&put, 404, "Not found");
    assert!(server.rows("t").is_empty());

    server.put("t", b"r1", "cf:a", b"1");
    assert_error(&get(&server, "/t/r1/nope"), 404, "Not found");
    assert_error(&get(&server, "/t/r1/cf:a,nope:a"), 404, "Not found");
    assert_error(
        &get(&server, "/t/multiget?row=r1/nope:a"),
        404,
        "No rows found.",
    );
    assert_error(
        &put_json(
            &server,
            "PUT",
            "/missing/fakerow",
            &cell_set(&[(b"r", &[("cf:a", b"1")])]),
        ),
        404,
        "Not found",
    );
}

#[test]
fn bad_bodies_are_bad_requests() {
    let server = TestServer::start();
    server.create_table("t", &["cf"]);
    let no_colon = cell_set(&[(b"r1", &[("cf:a", b"1")]), (b"r2", &[("cf", b"2")])]);
    assert_error(
        &put_json(&server, "PUT", "/t/fakerow", &no_colon),
        400,
        "Bad request",
    );
    let empty_family = cell_set(&[(b"r1", &[(":a", b"1")])]);
    assert_error(
        &put_json(&server, "PUT", "/t/fakerow", &empty_family),
        400,
        "Bad request",
    );
    let not_base64 =
        json!({"Row": [{"key": "***", "Cell": [{"column": b64(b"cf:a"), "$": b64(b"1")}]}]});
    assert_error(
        &put_json(&server, "PUT", "/t/fakerow", &not_base64),
        400,
        "Bad request",
    );
    let malformed = send(&server, "PUT", "/t/fakerow", &[SEND_JSON], b"{\"Row\": [");
    assert_error(&malformed, 400, "Bad request");
    assert!(server.rows("t").is_empty());
    assert_error(
        &get(&server, "/t/multiget?row=r1/cf,,cf:a"),
        400,
        "Bad request",
    );
    assert_error(&get(&server, "/t/r%zz"), 400, "Bad request");
}

#[test]
fn read_only_forbids_writes() {
    let server = TestServer::start();
    server.create_table("t", &["cf"]);
    server.put("t", b"r1", "cf:a", b"1");
    server.set_read_only(true);
    let body = cell_set(&[(b"r2", &[("cf:a", b"2")])]);
    assert_error(
        &put_json(&server, "PUT", "/t/fakerow", &body),
        403,
        "Forbidden",
    );
    assert_error(
        &put_json(&server, "POST", "/t/fakerow", &body),
        403,
        "Forbidden",
    );
    let schema = json!({"ColumnSchema": [{"name": "more"}]});
    assert_error(
        &put_json(&server, "POST", "/t/schema", &schema),
        403,
        "Forbidden",
    );
    assert_error(
        &put_json(&server, "PUT", "/u/schema", &schema),
        403,
        "Forbidden",
    );
    // Reads still work.
    assert_eq!(get(&server, "/t/r1").status, 200);
    assert_eq!(server.families("t"), Some(vec!["cf".into()]));

    server.set_read_only(false);
    assert_eq!(put_json(&server, "PUT", "/t/fakerow", &body).status, 200);
}

#[test]
fn fail_next_answers_unavailable_then_recovers() {
    let server = TestServer::start();
    server.create_table("t", &["cf"]);
    server.fail_next(2);
    let body = cell_set(&[(b"r1", &[("cf:a", b"1")])]);
    assert_error(
        &put_json(&server, "PUT", "/t/fakerow", &body),
        503,
        "Unavailable",
    );
    assert_error(&get(&server, "/t/schema"), 503, "Unavailable");
    assert!(server.rows("t").is_empty());
    assert_eq!(put_json(&server, "PUT", "/t/fakerow", &body).status, 200);
    assert_eq!(server.get("t", b"r1", "cf:a"), Some(b"1".to_vec()));
    assert_eq!(
        server.requests(),
        Requests {
            puts: 1,
            unavailable: 2,
            ..Requests::default()
        }
    );
}

/// The multi-value put from the reference guide's REST chapter, verbatim.
/// Its values were made with `echo … | base64`, so they end in a newline.
#[test]
fn reference_guide_put_example() {
    let server = TestServer::start();
    server.create_table("users", &["cf"]);
    let body =
        br#"{"Row":[{"key":"cm93NQo=", "Cell": [{"column":"Y2Y6ZQo=", "$":"dmFsdWU1Cg=="}]}]}"#;
    let put = send(
        &server,
        "PUT",
        "/users/fakerow",
        &[SEND_JSON, ACCEPT_JSON],
        body,
    );
    assert_eq!(put.status, 200, "{}", put.text());
    assert_eq!(
        server.get("users", b"row5\n", "cf:e\n"),
        Some(b"value5\n".to_vec())
    );
}

/// The CellSet for row "row1", column "cf:a", value "value1" survives a put
/// and a get unchanged, with the gateway's timestamp added.
#[test]
fn cell_set_fixture_round_trip() {
    let server = TestServer::start();
    server.create_table("t", &["cf"]);
    let fixture = r#"{"Row":[{"key":"cm93MQ==","Cell":[{"column":"Y2Y6YQ==","$":"dmFsdWUx"}]}]}"#;
    let put = send(
        &server,
        "PUT",
        "/t/fakerow",
        &[SEND_JSON],
        fixture.as_bytes(),
    );
    assert_eq!(put.status, 200, "{}", put.text());
    assert_eq!(server.get("t", b"row1", "cf:a"), Some(b"value1".to_vec()));

    let reply = get(&server, "/t/row1");
    assert_eq!(reply.status, 200);
    let mut answer = reply.cell_set();
    let timestamp = answer.rows[0].cells[0].timestamp;
    assert!(timestamp > 1_500_000_000_000, "server time in millis");
    let expected: CellSetOut = serde_json::from_str(
        fixture
            .replace(",\"$\"", &format!(",\"timestamp\":{timestamp},\"$\""))
            .as_str(),
    )
    .unwrap();
    assert_eq!(answer, expected);
    answer.rows[0].cells[0].timestamp = 0;
    assert_eq!(
        answer,
        CellSetOut {
            rows: vec![RowOut {
                key: "cm93MQ==".into(),
                cells: vec![CellOut {
                    column: "Y2Y6YQ==".into(),
                    timestamp: 0,
                    value: "dmFsdWUx".into(),
                }],
            }],
        }
    );
    // The exact wire form, keys in HBase's order.
    let wire = reply.text();
    assert_eq!(
        wire,
        format!(
            r#"{{"Row":[{{"key":"cm93MQ==","Cell":[{{"column":"Y2Y6YQ==","timestamp":{timestamp},"$":"dmFsdWUx"}}]}}]}}"#
        )
    );
}

#[test]
fn client_timestamps_keep_the_latest_version() {
    let server = TestServer::start();
    server.create_table("t", &["cf"]);
    let cell = |ts: u64, v: &[u8]| json!({"Row": [{"key": b64(b"r"), "Cell": [{"column": b64(b"cf:a"), "timestamp": ts, "$": b64(v)}]}]});
    assert_eq!(
        put_json(&server, "PUT", "/t/fakerow", &cell(20, b"new")).status,
        200
    );
    assert_eq!(
        put_json(&server, "PUT", "/t/fakerow", &cell(10, b"old")).status,
        200
    );
    let reply = get(&server, "/t/r/cf:a");
    assert_eq!(reply.cell_set().rows[0].cells[0].timestamp, 20);
    assert_eq!(server.get("t", b"r", "cf:a"), Some(b"new".to_vec()));
}

#[test]
fn negotiation_methods_and_unknown_paths() {
    let server = TestServer::start();
    server.create_table("t", &["cf"]);
    server.put("t", b"r", "cf:a", b"1");
    assert_eq!(send(&server, "GET", "/t/r", &[], b"").status, 406);
    assert_eq!(
        send(&server, "GET", "/t/r", &[("Accept", "*/*")], b"").status,
        406
    );
    assert_eq!(
        send(
            &server,
            "GET",
            "/t/r",
            &[("Accept", "text/xml, application/json;q=0.9")],
            b""
        )
        .status,
        200
    );
    let body = cell_set(&[(b"r", &[("cf:a", b"2")])]).to_string();
    let xml = send(
        &server,
        "PUT",
        "/t/fakerow",
        &[("Content-Type", "text/xml")],
        body.as_bytes(),
    );
    assert_eq!(xml.status, 415);
    let charset = send(
        &server,
        "PUT",
        "/t/fakerow",
        &[("Content-Type", "application/json; charset=UTF-8")],
        body.as_bytes(),
    );
    assert_eq!(charset.status, 200);
    assert_eq!(send(&server, "DELETE", "/t/r", &[], b"").status, 405);
    assert_eq!(
        send(&server, "PUT", "/t/multiget", &[SEND_JSON], b"{}").status,
        405
    );
    assert_eq!(get(&server, "/").status, 404);
    assert_eq!(get(&server, "/t").status, 404);
    assert_eq!(get(&server, "/t/scanner").status, 404);
    assert_eq!(get(&server, "/t/r/cf:a/12345").status, 404);
}

#[test]
fn stops_when_dropped() {
    let server = TestServer::start();
    let addr = server.url().trim_start_matches("http://").to_string();
    assert_eq!(get(&server, "/t/schema").status, 404);
    drop(server);
    assert!(TcpStream::connect(addr).is_err());
}
