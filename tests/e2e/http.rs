//! A small HTTP/1.1 client for the end-to-end tests: requests written byte by byte (so that
//! malformed ones can be sent too), answers read until the server closes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::note_secret;

/// An HTTP/1.1 answer: status, head (status line and headers) and body.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub head: String,
    /// The body as text (lossy).
    pub body: String,
    /// The body's bytes (chunked transfer coding removed).
    pub raw: Vec<u8>,
}

impl Resp {
    pub fn headers(&self, name: &str) -> Vec<String> {
        self.head
            .lines()
            .skip(1)
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_owned())
            })
            .collect()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{e}: not JSON:\n{}\n{}", self.head, self.body))
    }

    /// The `error` of a JSON error body.
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error in {}", self.body))
            .to_owned()
    }

    /// Status and the security headers every answer carries.
    pub fn expect(&self, status: u16, what: &str) -> &Self {
        assert_eq!(self.status, status, "{what}:\n{}\n{}", self.head, self.body);
        let h = self.head.to_ascii_lowercase();
        for needle in [
            "content-security-policy:",
            "x-content-type-options: nosniff",
        ] {
            assert!(h.contains(needle), "{what}: no {needle} in\n{}", self.head);
        }
        self
    }
}

/// Sends `request` as is and reads the answer until the server closes.
pub fn send_raw(port: u16, request: &[u8]) -> Resp {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_nodelay(true).unwrap();
    // The server may answer (413) before it has read everything: keep what it said.
    let _ = s.write_all(request);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) if !buf.is_empty() => break,
            Err(e) => panic!("no answer: {e}"),
        }
    }
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(buf.len());
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let mut raw = buf.get(split + 4..).unwrap_or_default().to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        raw = dechunk(&raw);
    }
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    let resp = Resp {
        status,
        body: String::from_utf8_lossy(&raw).into_owned(),
        head,
        raw,
    };
    note_secrets_given(&resp);
    resp
}

/// A `Transfer-Encoding: chunked` body decoded; panics on a malformed one (the test
/// should see that).
fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size_text = std::str::from_utf8(&b[..line]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size {size_text:?}"));
        b = &b[line + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

/// The parts of a `multipart/related` answer: (headers, body) each.
pub fn multipart_parts(r: &Resp) -> Vec<(String, Vec<u8>)> {
    let ct = r.headers("content-type").join(",");
    let boundary = ct
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .unwrap_or_else(|| panic!("no boundary in {ct}"))
        .trim_matches('"')
        .to_owned();
    let delimiter = format!("--{boundary}");
    let d = delimiter.as_bytes();
    let mut parts = Vec::new();
    let mut rest = &r.raw[..];
    // Up to the first delimiter: preamble.
    let start = find(rest, d).expect("first boundary");
    rest = &rest[start + d.len()..];
    loop {
        if rest.starts_with(b"--") {
            return parts;
        }
        rest = rest.strip_prefix(b"\r\n").expect("CRLF after the boundary");
        let head_end = find(rest, b"\r\n\r\n").expect("part headers");
        let headers = String::from_utf8_lossy(&rest[..head_end]).into_owned();
        rest = &rest[head_end + 4..];
        let next = find(rest, format!("\r\n{delimiter}").as_bytes()).expect("next boundary");
        parts.push((headers, rest[..next].to_vec()));
        rest = &rest[next + 2 + d.len()..];
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Notes every credential the server hands out (session cookies, CSRF tokens, API tokens)
/// for the run-wide check that no log contains one.
fn note_secrets_given(r: &Resp) {
    for cookie in r.headers("set-cookie") {
        if let Some(v) = cookie.strip_prefix("pacs_session=") {
            note_secret(v.split(';').next().unwrap_or(""));
        }
    }
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&r.body) {
        for key in ["csrf_token", "token"] {
            if let Some(s) = v.get(key).and_then(|s| s.as_str()) {
                note_secret(s);
            }
        }
    }
}

/// The credentials in the JSON body of a request (a login's or a new user's password).
fn note_secrets_sent(body: Option<&str>) {
    let Some(v) = body.and_then(|b| serde_json::from_str::<serde_json::Value>(b).ok()) else {
        return;
    };
    if let Some(p) = v.get("password").and_then(|p| p.as_str()) {
        note_secret(p);
    }
}

pub fn request_bytes(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        && body.is_some()
    {
        r.push_str("Content-Type: application/json\r\n");
    }
    let body = body.unwrap_or("");
    if method != "GET" {
        r.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    r.push_str("\r\n");
    r.push_str(body);
    r.into_bytes()
}

pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Resp {
    note_secrets_sent(body);
    for (k, v) in headers {
        if k.eq_ignore_ascii_case("authorization") {
            note_secret(v.split_once(' ').map_or(*v, |(_, c)| c));
        }
    }
    send_raw(port, &request_bytes(method, path, headers, body))
}

pub fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> Resp {
    request(port, "GET", path, headers, None)
}

pub fn login(port: u16, username: &str, password: &str) -> Resp {
    let body = serde_json::json!({ "username": username, "password": password }).to_string();
    request(port, "POST", "/api/login", &[], Some(&body))
}

/// The session cookie a login set (its value).
pub fn session_of(r: &Resp) -> String {
    let set = r.headers("set-cookie");
    assert_eq!(set.len(), 1, "{}", r.head);
    set[0]
        .strip_prefix("pacs_session=")
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("{}", set[0]))
        .to_owned()
}

/// Standard base64 (HTTP Basic credentials).
pub fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
