//! The client side of `bench/worklist`, against a running `pacs serve` on 127.0.0.1 (see
//! `pacs-store/examples/bench_worklist.rs` for the index it serves).
//!
//! ```text
//! bench_worklist_client worklist --port P --radiologist U --admin U --clinic-user U
//!     [--password-env NAME] [--runs R] [--warmup W] --out FILE
//! bench_worklist_client live --port P --credentials FILE [--events E] [--interval-ms I]
//!     [--grace-ms G] --out FILE
//! ```
//!
//! - `worklist`: logs in (`POST /api/login`, the password from `$BENCH_PASSWORD` or
//!   `--password-env`) and times `GET /api/worklist` over a kept-alive connection per user:
//!   the radiologist's `view=mine` and `view=pool`, an administrator's `view=all`, a clinic
//!   user's default view — round robin, `--runs` each after `--warmup` each. Every answer
//!   must be 200 with a JSON array.
//! - `live`: opens one websocket (`/api/events`) per line of `--credentials` (username,
//!   role, user id, clinic id, token; tab-separated), then claims and releases tasks over
//!   HTTP as their radiologists (`--events` events, one every `--interval-ms`) and records
//!   when each client receives each of those events. The latency of a delivery is from the
//!   moment the triggering request was sent; also given from its answer and from the
//!   event's `created_at` (the server's clock: same machine). Each client's deliveries are
//!   checked against who may see the event (administrators all; a clinic's users their
//!   clinic's; a radiologist those routed to or claimed by them and the pool's): missing
//!   and unexpected deliveries are counted.
//!
//! Results go to `--out` as one JSON object. Timing uses a monotonic clock.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt as _;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

type Failure = Box<dyn std::error::Error + Send + Sync>;

fn usage() -> ! {
    eprintln!(
        "usage: bench_worklist_client worklist --port P --radiologist U --admin U --clinic-user U \
         [--password-env NAME] [--runs R] [--warmup W] --out FILE\n       \
         bench_worklist_client live --port P --credentials FILE [--events E] [--interval-ms I] \
         [--grace-ms G] --out FILE"
    );
    std::process::exit(2)
}

struct Args {
    mode: String,
    options: BTreeMap<String, String>,
}

impl Args {
    fn parse() -> Args {
        let mut it = std::env::args().skip(1);
        let mode = it.next().unwrap_or_else(|| usage());
        if mode != "worklist" && mode != "live" {
            usage();
        }
        let mut options = BTreeMap::new();
        while let Some(k) = it.next() {
            let Some(name) = k.strip_prefix("--") else {
                eprintln!("unexpected argument {k:?}");
                usage();
            };
            let v = it.next().unwrap_or_else(|| {
                eprintln!("--{name} needs a value");
                usage()
            });
            options.insert(name.to_owned(), v);
        }
        Args { mode, options }
    }

    fn required(&self, name: &str) -> &str {
        self.options
            .get(name)
            .map(String::as_str)
            .unwrap_or_else(|| {
                eprintln!("--{name} is required");
                usage()
            })
    }

    fn number<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        match self.options.get(name) {
            None => default,
            Some(v) => v.parse().unwrap_or_else(|_| {
                eprintln!("--{name}: {v:?} is not a number");
                usage()
            }),
        }
    }
}

fn main() {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let result = rt.block_on(async {
        let out = match args.mode.as_str() {
            "worklist" => worklist(&args).await?,
            _ => live(&args).await?,
        };
        std::fs::write(args.required("out"), serde_json::to_vec_pretty(&out)?)?;
        Ok::<_, Failure>(())
    });
    if let Err(e) = result {
        eprintln!("bench_worklist_client: {e}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------
// A small HTTP/1.1 client with one kept-alive connection

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

struct Http {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
}

impl Http {
    fn new(port: u16) -> Http {
        Http {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            conn: None,
        }
    }

    /// Sends a request on the kept-alive connection (a new one if there is none, or if the
    /// server closed it before this request was read).
    async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Result<Answer, Failure> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.addr);
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(b) = body {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        } else if method != "GET" {
            head.push_str("Content-Length: 0\r\n");
        }
        head.push_str("\r\n");
        head.push_str(body.unwrap_or(""));
        for attempt in 0..2 {
            let reused = self.conn.is_some();
            if self.conn.is_none() {
                let s = TcpStream::connect(self.addr).await?;
                s.set_nodelay(true)?;
                self.conn = Some(BufReader::new(s));
            }
            let conn = self.conn.as_mut().expect("connected");
            let result = async {
                conn.get_mut().write_all(head.as_bytes()).await?;
                read_answer(conn).await
            }
            .await;
            match result {
                Ok(a) => {
                    if a.header("connection")
                        .is_some_and(|c| c.eq_ignore_ascii_case("close"))
                    {
                        self.conn = None;
                    }
                    return Ok(a);
                }
                Err(e) => {
                    self.conn = None;
                    if !(reused && attempt == 0) {
                        return Err(e);
                    }
                }
            }
        }
        Err("unreachable".into())
    }
}

async fn read_answer(conn: &mut BufReader<TcpStream>) -> Result<Answer, Failure> {
    let mut line = String::new();
    if conn.read_line(&mut line).await? == 0 {
        return Err("the server closed the connection".into());
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {line:?}"))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        conn.read_line(&mut line).await?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if status == 204 || status == 304 || status < 200 {
        // No body, whatever the headers say.
    } else if find("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        loop {
            line.clear();
            conn.read_line(&mut line).await?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| format!("bad chunk size {line:?}"))?;
            let mut chunk = vec![0; size + 2];
            conn.read_exact(&mut chunk).await?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(n) = find("content-length") {
        let n: usize = n.parse().map_err(|_| "bad Content-Length")?;
        body.resize(n, 0);
        conn.read_exact(&mut body).await?;
    } else {
        conn.read_to_end(&mut body).await?;
    }
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// Logs in; returns the `Cookie` header value of the session.
async fn login(http: &mut Http, username: &str, password: &str) -> Result<String, Failure> {
    let body = serde_json::json!({ "username": username, "password": password }).to_string();
    let a = http.request("POST", "/api/login", &[], Some(&body)).await?;
    if a.status != 200 {
        return Err(format!("login of {username}: {} {}", a.status, a.text()).into());
    }
    let cookie = a
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .ok_or("login answered without a session cookie")?;
    Ok(cookie.to_owned())
}

// ---------------------------------------------------------------------------------------
// Percentiles

/// Nearest-rank percentile of sorted values.
fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn summary(mut v: Vec<f64>) -> serde_json::Value {
    v.sort_by(f64::total_cmp);
    let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
    serde_json::json!({
        "n": v.len(),
        "mean": mean,
        "p50": pct(&v, 0.50),
        "p90": pct(&v, 0.90),
        "p99": pct(&v, 0.99),
        "p999": pct(&v, 0.999),
        "max": v.last().copied().unwrap_or(f64::NAN),
        "min": v.first().copied().unwrap_or(f64::NAN),
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

// ---------------------------------------------------------------------------------------
// Worklist queries

async fn worklist(args: &Args) -> Result<serde_json::Value, Failure> {
    let port: u16 = args.number("port", 0);
    let runs: usize = args.number("runs", 300);
    let warmup: usize = args.number("warmup", 10);
    let password_env = args
        .options
        .get("password-env")
        .map_or("BENCH_PASSWORD", String::as_str);
    let password = std::env::var(password_env)
        .map_err(|_| format!("the password is read from ${password_env}, which is not set"))?;
    let queries = [
        (
            "mine",
            args.required("radiologist"),
            "/api/worklist?view=mine",
        ),
        (
            "pool",
            args.required("radiologist"),
            "/api/worklist?view=pool",
        ),
        (
            "all (administrator)",
            args.required("admin"),
            "/api/worklist?view=all",
        ),
        (
            "clinic (township doctor)",
            args.required("clinic-user"),
            "/api/worklist",
        ),
    ];
    let mut sessions: HashMap<&str, (Http, String)> = HashMap::new();
    for (_, user, _) in &queries {
        if !sessions.contains_key(user) {
            let mut http = Http::new(port);
            let cookie = login(&mut http, user, &password).await?;
            sessions.insert(user, (http, cookie));
        }
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); queries.len()];
    let mut items = vec![0usize; queries.len()];
    let mut bytes = vec![0usize; queries.len()];
    for round in 0..warmup + runs {
        for (i, (label, user, path)) in queries.iter().enumerate() {
            let (http, cookie) = sessions.get_mut(user).expect("logged in");
            let t = Instant::now();
            let a = http
                .request("GET", path, &[("Cookie", cookie)], None)
                .await?;
            let elapsed = ms(t.elapsed());
            if a.status != 200 {
                return Err(format!("{label}: {} {}", a.status, a.text()).into());
            }
            let list: serde_json::Value = serde_json::from_slice(&a.body)?;
            let n = list
                .as_array()
                .ok_or_else(|| format!("{label}: not a JSON array"))?
                .len();
            if round >= warmup {
                times[i].push(elapsed);
                items[i] = n;
                bytes[i] = a.body.len();
            }
        }
    }
    let out: Vec<serde_json::Value> = queries
        .iter()
        .enumerate()
        .map(|(i, (label, user, path))| {
            serde_json::json!({
                "label": label,
                "user": user,
                "path": path,
                "items": items[i],
                "bytes": bytes[i],
                "ms": summary(times[i].clone()),
            })
        })
        .collect();
    Ok(serde_json::json!({ "runs": runs, "warmup": warmup, "queries": out }))
}

// ---------------------------------------------------------------------------------------
// Live feed

#[derive(Clone)]
struct Client {
    username: String,
    role: String,
    user_id: i64,
    clinic_id: Option<i64>,
    token: String,
}

impl Client {
    /// Whether the audience rules admit this client to a task event with `payload`.
    fn admitted(&self, payload: &serde_json::Value) -> bool {
        match self.role.as_str() {
            "admin" => true,
            "radiologist" => {
                let assigned = payload["assigned_to"].as_i64();
                assigned.is_none()
                    || assigned == Some(self.user_id)
                    || payload["claimed_by"].as_i64() == Some(self.user_id)
            }
            _ => self.clinic_id.is_some() && payload["clinic_id"].as_i64() == self.clinic_id,
        }
    }
}

struct Delivery {
    kind: String,
    task_id: Option<i64>,
    created_at: i64,
    payload: serde_json::Value,
    at: Instant,
    wall_micros: i64,
}

fn wall_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

fn read_credentials(path: &str) -> Result<Vec<Client>, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            if f.len() != 5 {
                return Err(format!("{path}: expected 5 tab-separated fields").into());
            }
            Ok(Client {
                username: f[0].to_owned(),
                role: f[1].to_owned(),
                user_id: f[2].parse()?,
                clinic_id: if f[3].is_empty() {
                    None
                } else {
                    Some(f[3].parse()?)
                },
                token: f[4].to_owned(),
            })
        })
        .collect()
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open_feed(port: u16, token: &str) -> Result<Ws, Failure> {
    let mut req = format!("ws://127.0.0.1:{port}/api/events").into_client_request()?;
    req.headers_mut()
        .insert("Authorization", format!("Bearer {token}").parse()?);
    let (ws, _) = tokio_tungstenite::connect_async(req).await?;
    Ok(ws)
}

/// Receives until `stop`; returns what came and whether the server closed the connection.
async fn receive(
    mut ws: Ws,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> (Vec<Delivery>, Option<String>) {
    let mut got = Vec::new();
    loop {
        tokio::select! {
            () = async { let _ = stop.wait_for(|s| *s).await; } => {
                let _ = ws.close(None).await;
                return (got, None);
            }
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    let at = Instant::now();
                    let wall = wall_micros();
                    let Ok(v) = serde_json::from_str::<serde_json::Value>(&t) else {
                        return (got, Some("a message that is not JSON".into()));
                    };
                    got.push(Delivery {
                        kind: v["kind"].as_str().unwrap_or_default().to_owned(),
                        task_id: v["payload"]["task_id"].as_i64(),
                        created_at: v["created_at"].as_i64().unwrap_or(0),
                        payload: v["payload"].clone(),
                        at,
                        wall_micros: wall,
                    });
                }
                Some(Ok(Message::Close(f))) => {
                    return (got, Some(format!("closed by the server: {f:?}")));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return (got, Some(format!("connection failed: {e}"))),
                None => return (got, Some("connection ended".into())),
            },
        }
    }
}

struct Trigger {
    kind: &'static str,
    task_id: i64,
    sent: Instant,
    answered: Instant,
}

async fn live(args: &Args) -> Result<serde_json::Value, Failure> {
    let port: u16 = args.number("port", 0);
    let events: usize = args.number("events", 400);
    let interval = Duration::from_millis(args.number("interval-ms", 100));
    let grace = Duration::from_millis(args.number("grace-ms", 3000));
    let clients = read_credentials(args.required("credentials"))?;
    if clients.is_empty() {
        return Err("no clients in the credentials file".into());
    }

    // Connect everyone, a few at a time (every upgrade is audited).
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let gate = Arc::new(tokio::sync::Semaphore::new(16));
    let t = Instant::now();
    let mut connecting = Vec::new();
    for c in &clients {
        let (gate, token) = (gate.clone(), c.token.clone());
        connecting.push(tokio::spawn(async move {
            let _permit = gate.acquire().await;
            open_feed(port, &token).await
        }));
    }
    let mut receivers = Vec::new();
    for (c, j) in clients.iter().zip(connecting) {
        let ws = j
            .await?
            .map_err(|e| format!("websocket of {}: {e}", c.username))?;
        receivers.push(tokio::spawn(receive(ws, stop_rx.clone())));
    }
    let connect_seconds = t.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The tasks to claim and release: open ones, some routed (claimed by their radiologist),
    // some in the pool (claimed by radiologists in turn).
    let token_of: HashMap<&str, &str> = clients
        .iter()
        .map(|c| (c.username.as_str(), c.token.as_str()))
        .collect();
    let admin = clients
        .iter()
        .find(|c| c.role == "admin")
        .ok_or("no administrator among the clients")?;
    let radiologists: Vec<&str> = {
        let mut r: Vec<&str> = clients
            .iter()
            .filter(|c| c.role == "radiologist")
            .map(|c| c.username.as_str())
            .collect();
        r.sort_unstable();
        r.dedup();
        r
    };
    if radiologists.is_empty() {
        return Err("no radiologist among the clients".into());
    }
    let mut http_admin = Http::new(port);
    let auth = format!("Bearer {}", admin.token);
    let cycles = events.div_ceil(2);
    let (mut pool, mut routed) = (Vec::new(), Vec::new());
    for page in 0..50 {
        let path = format!(
            "/api/worklist?view=all&sort=ready&limit=1000&offset={}",
            page * 1000
        );
        let a = http_admin
            .request("GET", &path, &[("Authorization", &auth)], None)
            .await?;
        if a.status != 200 {
            return Err(format!("worklist: {} {}", a.status, a.text()).into());
        }
        let tasks = serde_json::from_slice::<serde_json::Value>(&a.body)?
            .as_array()
            .cloned()
            .unwrap_or_default();
        let n = tasks.len();
        for t in tasks.into_iter().filter(|t| t["state"] == "open") {
            if t["assigned_to"].is_null() {
                pool.push(t);
            } else {
                routed.push(t);
            }
        }
        if n < 1000 || (pool.len() >= cycles && routed.len() >= cycles) {
            break;
        }
    }
    let cycles = events.div_ceil(2);
    let want_pool = (cycles * 3 / 10).min(pool.len());
    let want_routed = cycles - want_pool;
    if routed.len() < want_routed {
        return Err(format!("{} routed open tasks, {want_routed} needed", routed.len()).into());
    }
    let mut plan: Vec<(i64, String)> = Vec::new();
    let (mut p, mut r) = (0, 0);
    for i in 0..cycles {
        // Pool tasks spread through the run.
        if p < want_pool && (i * want_pool / cycles) >= p {
            let t = &pool[p];
            plan.push((
                t["task_id"].as_i64().ok_or("a task without id")?,
                radiologists[i % radiologists.len()].to_owned(),
            ));
            p += 1;
        } else {
            let t = &routed[r];
            plan.push((
                t["task_id"].as_i64().ok_or("a task without id")?,
                t["assigned_to"].as_str().ok_or("no assignee")?.to_owned(),
            ));
            r += 1;
        }
    }

    // Trigger: claim, release, one request every `interval`.
    let mut http_of: HashMap<String, Http> = HashMap::new();
    let mut triggers: Vec<Trigger> = Vec::new();
    let start = Instant::now();
    let mut slot = 0u32;
    for (task_id, who) in &plan {
        let token = format!(
            "Bearer {}",
            token_of
                .get(who.as_str())
                .ok_or_else(|| format!("no token of {who}"))?
        );
        for (kind, action, expected) in [
            ("task_claimed", "claim", 200u16),
            ("task_released", "release", 204),
        ] {
            tokio::time::sleep_until((start + interval * slot).into()).await;
            slot += 1;
            let http = http_of
                .entry(who.clone())
                .or_insert_with(|| Http::new(port));
            let path = format!("/api/worklist/tasks/{task_id}/{action}");
            let sent = Instant::now();
            let a = http
                .request("POST", &path, &[("Authorization", &token)], None)
                .await?;
            let answered = Instant::now();
            if a.status != expected {
                return Err(format!(
                    "{action} of task {task_id} by {who}: {} {}",
                    a.status,
                    a.text()
                )
                .into());
            }
            triggers.push(Trigger {
                kind,
                task_id: *task_id,
                sent,
                answered,
            });
        }
    }
    let trigger_seconds = start.elapsed().as_secs_f64();
    tokio::time::sleep(grace).await;
    stop_tx.send_replace(true);
    let mut received = Vec::new();
    let mut ended = Vec::new();
    for (c, j) in clients.iter().zip(receivers) {
        let (got, end) = j.await?;
        if let Some(e) = end {
            ended.push(format!("{}: {e}", c.username));
        }
        received.push(got);
    }

    // Each trigger's event as the administrators saw it (the payload decides who may see it).
    let key = |kind: &str, task: i64| (kind.to_owned(), task);
    let by_key: HashMap<(String, i64), &Trigger> = triggers
        .iter()
        .map(|t| (key(t.kind, t.task_id), t))
        .collect();
    let mut payload_of: HashMap<(String, i64), serde_json::Value> = HashMap::new();
    for (c, got) in clients.iter().zip(&received) {
        if c.role == "admin" {
            for d in got {
                if let Some(task) = d.task_id {
                    payload_of
                        .entry(key(&d.kind, task))
                        .or_insert_with(|| d.payload.clone());
                }
            }
        }
    }
    let mut from_request = Vec::new();
    let mut from_answer = Vec::new();
    let mut from_created = Vec::new();
    let mut by_role: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut last_per_event: HashMap<(String, i64), f64> = HashMap::new();
    let (mut missing, mut unexpected, mut duplicates, mut other) = (0usize, 0usize, 0usize, 0usize);
    let mut never_seen = 0usize;
    for (c, got) in clients.iter().zip(&received) {
        let mut seen: HashSet<(String, i64)> = HashSet::new();
        for d in got {
            let Some(k) = d.task_id.map(|t| key(&d.kind, t)) else {
                other += 1;
                continue;
            };
            let Some(t) = by_key.get(&k) else {
                other += 1;
                continue;
            };
            if !seen.insert(k.clone()) {
                duplicates += 1;
                continue;
            }
            if !c.admitted(&d.payload) {
                unexpected += 1;
            }
            let l = ms(d.at.duration_since(t.sent));
            from_request.push(l);
            // Negative when the event came before the answer.
            from_answer.push(
                ms(d.at.saturating_duration_since(t.answered))
                    - ms(t.answered.saturating_duration_since(d.at)),
            );
            from_created.push((d.wall_micros - d.created_at) as f64 / 1000.0);
            by_role.entry(c.role.clone()).or_default().push(l);
            let last = last_per_event.entry(k).or_insert(0.0);
            *last = last.max(l);
        }
        for t in &triggers {
            let k = key(t.kind, t.task_id);
            match payload_of.get(&k) {
                Some(p) if c.admitted(p) && !seen.contains(&k) => missing += 1,
                _ => {}
            }
        }
    }
    for t in &triggers {
        if !payload_of.contains_key(&key(t.kind, t.task_id)) {
            never_seen += 1;
        }
    }
    let http: Vec<f64> = triggers
        .iter()
        .map(|t| ms(t.answered.duration_since(t.sent)))
        .collect();
    let roles: BTreeMap<&str, usize> = clients.iter().fold(BTreeMap::new(), |mut m, c| {
        *m.entry(c.role.as_str()).or_insert(0) += 1;
        m
    });
    let users: HashSet<&str> = clients.iter().map(|c| c.username.as_str()).collect();
    Ok(serde_json::json!({
        "clients": clients.len(),
        "clients_by_role": roles,
        "users": users.len(),
        "connect_seconds": connect_seconds,
        "events": triggers.len(),
        "pool_tasks": want_pool,
        "routed_tasks": want_routed,
        "interval_ms": ms(interval),
        "trigger_seconds": trigger_seconds,
        "deliveries": from_request.len(),
        "missing": missing,
        "unexpected": unexpected,
        "duplicates": duplicates,
        "other_events": other,
        "events_no_administrator_got": never_seen,
        "connections_ended_early": ended.len(),
        "connections_ended_first": ended.iter().take(5).collect::<Vec<_>>(),
        "latency_from_request_ms": summary(from_request),
        "latency_from_answer_ms": summary(from_answer),
        "latency_from_created_ms": summary(from_created),
        "latency_by_role_ms": by_role
            .into_iter()
            .map(|(r, v)| (r, summary(v)))
            .collect::<BTreeMap<_, _>>(),
        "last_delivery_per_event_ms": summary(last_per_event.into_values().collect()),
        "trigger_http_ms": summary(http),
    }))
}
