//! Typed helpers: a fresh archive per test (own data directory, own PostgreSQL database,
//! own S3 key prefix), the real `pacs` binary started on ephemeral ports, and the real
//! peers (dcmtk, pynetdicom) driven as processes. Every wait is bounded.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use pacs_store::archive::Archive;
use pacs_store::config::StoreConfig;
use pacs_store::header::{FileMeta, IndexedAttributes};
use pacs_store::objects::ObjectKey;
use pacs_store::objects::s3::S3Config;

/// A user for [`TestArchive::users_with_tokens`]: name, role, clinic, subspecialties.
pub type NewUser<'a> = (
    &'a str,
    pacs_store::users::Role,
    Option<&'a str>,
    &'a [&'a str],
);

/// Index and object backends a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded default: SQLite + files under the data directory.
    SqliteFiles,
    /// The scale-out setup: a real PostgreSQL server + a real S3 server (Garage).
    PostgresS3,
}

pub fn pacs_bin() -> &'static str {
    env!("CARGO_BIN_EXE_pacs")
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where this test run keeps what the run-wide secret check reads (scripts/test.sh runs
/// `scripts/check-secrets-in-logs.sh` on it after the tests): `logs/` — the log output of
/// every `pacs` process the tests ran — and `secrets/` — every password, token, session
/// cookie and CSRF token the tests used or were given. `PACS_TEST_RUN_DIR`, else
/// `target/e2e-run`.
pub fn run_dir() -> PathBuf {
    std::env::var_os("PACS_TEST_RUN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/e2e-run"))
}

/// Keeps `text` (log output of a `pacs` process) for the run-wide secret check.
pub fn keep_log(kind: &str, text: &[u8]) {
    if text.is_empty() {
        return;
    }
    let dir = run_dir().join("logs");
    std::fs::create_dir_all(&dir).unwrap();
    let name = format!("{kind}-{}.log", uuid::Uuid::new_v4().simple());
    std::fs::write(dir.join(name), text).unwrap();
}

/// Records a secret the tests used or received: no log of the run may contain it.
pub fn note_secret(secret: &str) {
    let secret = secret.trim();
    if secret.is_empty() {
        return;
    }
    let dir = run_dir().join("secrets");
    std::fs::create_dir_all(&dir).unwrap();
    let name = format!("{}.txt", uuid::Uuid::new_v4().simple());
    std::fs::write(dir.join(name), format!("{secret}\n")).unwrap();
}

/// Notes the token secrets (`pacs_…` lines) a command printed on stdout.
fn note_printed_tokens(stdout: &[u8]) {
    for line in String::from_utf8_lossy(stdout).lines() {
        if line.starts_with("pacs_") && line.len() > 20 {
            note_secret(line);
        }
    }
}

pub fn sample_dir() -> PathBuf {
    repo_root().join("sample-dicom/files")
}

/// The committed sample files (sorted), without the manifest.
pub fn sample_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(sample_dir())
        .expect("sample-dicom/files")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .collect();
    v.sort();
    assert!(v.len() >= 20, "expected the committed sample set");
    v
}

/// The sample CT study's files (`ct_*.dcm`, sorted).
pub fn ct_sample_files() -> Vec<PathBuf> {
    sample_files()
        .into_iter()
        .filter(|f| f.file_name().unwrap().to_string_lossy().starts_with("ct_"))
        .collect()
}

/// A free TCP port on the loopback interface (for a peer to listen on).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One row of sample-dicom/files/MANIFEST.tsv.
#[derive(Debug, Clone)]
pub struct ManifestRow {
    pub file: String,
    pub transfer_syntax_uid: String,
    pub patient_id: String,
    pub patient_name: String,
    pub issuer: String,
}

pub fn manifest() -> Vec<ManifestRow> {
    let text = std::fs::read_to_string(sample_dir().join("MANIFEST.tsv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("column {name}"))
    };
    let (f, ts, pid, pn, iss) = (
        col("file"),
        col("transfer_syntax_uid"),
        col("patient_id"),
        col("patient_name"),
        col("issuer_of_patient_id"),
    );
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            ManifestRow {
                file: c[f].into(),
                transfer_syntax_uid: c[ts].into(),
                patient_id: c[pid].into(),
                patient_name: c[pn].into(),
                issuer: c.get(iss).copied().unwrap_or("").into(),
            }
        })
        .collect()
}

/// The data set bytes of a Part 10 file (everything after its meta group).
pub fn dataset_bytes(bytes: &[u8]) -> Vec<u8> {
    let meta =
        pacs_store::header::read_file_meta(&mut std::io::Cursor::new(bytes)).expect("file meta");
    bytes[meta.dataset_offset as usize..].to_vec()
}

/// SOP Instance UID from a file's meta group.
pub fn sop_instance_uid(path: &Path) -> String {
    let mut f = std::fs::File::open(path).unwrap();
    pacs_store::header::read_file_meta(&mut f)
        .expect("file meta")
        .media_storage_sop_instance_uid
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: this test needs the real server behind it. Run the suite with \
             scripts/test.sh, which installs and starts PostgreSQL and Garage."
        )
    })
}

/// A fresh archive (data directory, database, S3 prefix) for one test.
pub struct TestArchive {
    pub backend: Backend,
    pub dir: tempfile::TempDir,
    pub database_url: Option<String>,
    pub s3: Option<S3Config>,
    pub extra_env: Vec<(String, String)>,
}

impl TestArchive {
    pub fn new(backend: Backend) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("pacs-e2e-")
            .tempdir()
            .unwrap();
        let (database_url, s3) = match backend {
            Backend::SqliteFiles => (None, None),
            Backend::PostgresS3 => {
                let admin = required_env("PACS_TEST_POSTGRES_URL");
                let name = format!("pacs_t_{}", uuid::Uuid::new_v4().simple());
                runtime().block_on(async {
                    use sqlx::Executor;
                    sqlx::any::install_default_drivers();
                    let pool = sqlx::AnyPool::connect(&admin)
                        .await
                        .expect("connect to PostgreSQL");
                    pool.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                        .await
                        .expect("create test database");
                    pool.close().await;
                });
                let base = admin.rsplit_once('/').expect("URL with a database").0;
                let s3 = S3Config {
                    endpoint: required_env("PACS_TEST_S3_ENDPOINT"),
                    region: required_env("PACS_TEST_S3_REGION"),
                    bucket: required_env("PACS_TEST_S3_BUCKET"),
                    access_key: required_env("PACS_TEST_S3_ACCESS_KEY"),
                    secret_key: required_env("PACS_TEST_S3_SECRET_KEY"),
                    path_style: true,
                    prefix: Some(format!("t-{}", uuid::Uuid::new_v4().simple())),
                };
                (Some(format!("{base}/{name}")), Some(s3))
            }
        };
        TestArchive {
            backend,
            dir,
            database_url,
            s3,
            extra_env: Vec::new(),
        }
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Adds an environment variable for every `pacs` process of this archive.
    pub fn with_env(mut self, k: &str, v: &str) -> Self {
        self.extra_env.push((k.into(), v.into()));
        self
    }

    /// The environment that points `pacs` at this archive.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut v = vec![(
            "PACS_DATA_DIR".to_string(),
            self.data_dir().display().to_string(),
        )];
        if let Some(u) = &self.database_url {
            v.push(("PACS_DATABASE_URL".into(), u.clone()));
        }
        if let Some(s3) = &self.s3 {
            v.push(("PACS_S3_ENDPOINT".into(), s3.endpoint.clone()));
            v.push(("PACS_S3_REGION".into(), s3.region.clone()));
            v.push(("PACS_S3_BUCKET".into(), s3.bucket.clone()));
            v.push(("PACS_S3_ACCESS_KEY".into(), s3.access_key.clone()));
            v.push(("PACS_S3_SECRET_KEY".into(), s3.secret_key.clone()));
            v.push(("PACS_S3_PATH_STYLE".into(), "true".into()));
            v.push(("PACS_S3_PREFIX".into(), s3.prefix.clone().unwrap()));
        }
        v.extend(self.extra_env.iter().cloned());
        v
    }

    fn command(&self) -> Command {
        let mut c = Command::new(pacs_bin());
        for (k, _) in std::env::vars() {
            if k.starts_with("PACS_") {
                c.env_remove(k);
            }
        }
        c.envs(self.env()).env("RUST_LOG", "info,sqlx=warn");
        c
    }

    /// Runs a one-shot `pacs` command against this archive.
    pub fn pacs(&self, args: &[&str]) -> Output {
        let out = self
            .command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run pacs");
        keep_log("cli", &out.stderr);
        note_printed_tokens(&out.stdout);
        out
    }

    /// Runs a one-shot `pacs` command with `stdin` piped in (passwords). `pacs` may stop
    /// reading early (one line, 1 KiB): a broken pipe while writing is expected.
    pub fn pacs_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        use std::io::Write;
        let mut child = self
            .command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pacs");
        let mut input = child.stdin.take().unwrap();
        let data = stdin.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
        let out = child.wait_with_output().expect("wait for pacs");
        writer.join().unwrap();
        // What is piped in is a password.
        note_secret(&String::from_utf8_lossy(stdin));
        keep_log("cli", &out.stderr);
        note_printed_tokens(&out.stdout);
        out
    }

    /// Runs `pacs` and asserts success, returning stdout.
    pub fn pacs_ok(&self, args: &[&str]) -> String {
        let out = self.pacs(args);
        assert!(
            out.status.success(),
            "pacs {args:?} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn add_clinic(&self, name: &str, ae: &str, host: Option<&str>) {
        let mut args = vec!["clinic", "add", "--name", name, "--ae-title", ae];
        if let Some(h) = host {
            args.extend(["--host", h]);
        }
        self.pacs_ok(&args);
    }

    /// Registers `ae` for `clinic` as a destination listening on 127.0.0.1:`port` (C-MOVE).
    pub fn add_destination(&self, clinic: &str, ae: &str, port: u16) {
        let port = port.to_string();
        self.pacs_ok(&[
            "clinic",
            "add",
            "--name",
            clinic,
            "--ae-title",
            ae,
            "--host",
            "127.0.0.1",
            "--port",
            &port,
        ]);
    }

    /// `pacs stats --json`.
    pub fn stats(&self) -> serde_json::Value {
        serde_json::from_str(&self.pacs_ok(&["stats", "--json"])).unwrap()
    }

    pub fn instance_count(&self) -> i64 {
        self.stats()["instances"].as_i64().unwrap()
    }

    /// Starts `pacs serve` on ephemeral ports and waits until it listens.
    pub fn start(&self) -> Server {
        self.start_with(&[])
    }

    pub fn start_with(&self, args: &[&str]) -> Server {
        let log_path = self
            .data_dir()
            .join(format!("serve-{}.log", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(self.data_dir()).unwrap();
        let log = std::fs::File::create(&log_path).unwrap();
        let mut child = self
            .command()
            .args([
                "serve",
                "--dicom-port",
                "0",
                "--http-port",
                "0",
                "--dicom-bind",
                "127.0.0.1",
            ])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn pacs serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let printed = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let keep = printed.clone();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref() {
                let Ok(line) = line else { break };
                keep.lock().unwrap().push_str(&format!("{line}\n"));
                if let Some(rest) = line.strip_prefix("PACS_READY ") {
                    let _ = tx.send(rest.to_owned());
                }
            }
        });
        let ready = match rx.recv_timeout(Duration::from_secs(90)) {
            Ok(r) => r,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "pacs serve did not become ready; log:\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
        };
        let port = |name: &str| -> u16 {
            ready
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in {ready:?}"))
        };
        Server {
            child: Some(child),
            dicom_port: port("dicom_port"),
            http_port: port("http_port"),
            log_path,
            printed,
            ready,
        }
    }

    /// Opens the archive in this process (while a server may run: SQLite WAL and
    /// PostgreSQL both allow it).
    pub async fn open(&self) -> Archive {
        StoreConfig {
            data_dir: self.data_dir().to_owned(),
            database_url: self.database_url.clone(),
            s3: self.s3.clone(),
            ..StoreConfig::default()
        }
        .open()
        .await
        .expect("open the archive")
    }

    /// Makes `users` — (name, role, clinic, subspecialties) — in this archive, each with
    /// an API token labelled `label`, and returns the tokens' secrets in the same order.
    /// Every user but a service account (which has no password) gets `password` when one
    /// is given. The secrets are noted for the log check (`note_secret`).
    pub fn users_with_tokens(
        &self,
        users: &[NewUser<'_>],
        password: Option<&str>,
        label: &str,
    ) -> Vec<String> {
        use pacs_store::users::{Password, Role, Username};
        runtime().block_on(async {
            let a = self.open().await;
            let password = password.map(|pw| {
                note_secret(pw);
                Password::parse(pw).expect("a valid test password")
            });
            let mut secrets = Vec::new();
            for &(name, role, clinic, subspecialties) in users {
                let name = Username::parse(name).unwrap();
                let subspecialties: Vec<String> =
                    subspecialties.iter().map(|s| s.to_string()).collect();
                let pw = password.as_ref().filter(|_| role != Role::Service);
                a.index()
                    .create_user(&name, role, clinic, &subspecialties, pw)
                    .await
                    .unwrap();
                let t = a.index().create_token(&name, label, None).await.unwrap();
                note_secret(&t.secret);
                secrets.push(t.secret);
            }
            a.index().close().await;
            secrets
        })
    }

    /// The stored data set bytes and the indexed patient of an instance, if archived.
    pub fn stored(&self, sop_instance_uid: &str) -> Option<StoredInstance> {
        runtime().block_on(async {
            let archive = self.open().await;
            let rec = archive
                .index()
                .find_instance(sop_instance_uid)
                .await
                .unwrap()?;
            let key = ObjectKey::parse(&rec.object_key).unwrap();
            let bytes = archive
                .objects()
                .get(&key)
                .await
                .expect("object of an indexed instance");
            let patient = archive
                .index()
                .patient_of_instance(sop_instance_uid)
                .await
                .unwrap()
                .unwrap();
            archive.index().close().await;
            Some(StoredInstance {
                dataset: bytes[rec.dataset_offset as usize..].to_vec(),
                whole: bytes.to_vec(),
                transfer_syntax_uid: rec.transfer_syntax_uid,
                issuer: patient.0,
                patient_id: patient.1,
                patient_name: patient.2,
            })
        })
    }

    /// Files currently in the staging area.
    pub fn staging_files(&self) -> usize {
        std::fs::read_dir(self.data_dir().join("staging"))
            .map(|rd| rd.count())
            .unwrap_or(0)
    }
}

/// Every `pacs` command a test ran, with what it printed, for the "never printed"
/// checks (passwords, token secrets).
#[derive(Default)]
pub struct Transcript(pub Vec<(String, String)>);

impl Transcript {
    /// Runs `pacs ARGS` against `archive` (with `stdin` as one line, else no standard
    /// input) and records stdout and stderr.
    pub fn run(&mut self, archive: &TestArchive, args: &[&str], stdin: Option<&str>) -> Output {
        let out = match stdin {
            Some(s) => archive.pacs_with_stdin(args, format!("{s}\n").as_bytes()),
            None => archive.pacs(args),
        };
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        self.0.push((args.join(" "), text));
        out
    }

    /// [`Transcript::run`], asserting success; returns stdout.
    pub fn run_ok(&mut self, archive: &TestArchive, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(archive, args, stdin);
        assert!(
            out.status.success(),
            "pacs {args:?} failed:\n{}",
            self.0.last().map(|(_, t)| t.as_str()).unwrap_or("")
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The commands whose output contains `needle`.
    pub fn commands_printing(&self, needle: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(_, text)| text.contains(needle))
            .map(|(cmd, _)| cmd.as_str())
            .collect()
    }
}

impl Drop for TestArchive {
    fn drop(&mut self) {
        if let (Some(url), Ok(admin)) =
            (&self.database_url, std::env::var("PACS_TEST_POSTGRES_URL"))
        {
            let name = url.rsplit('/').next().unwrap().to_owned();
            let _ = runtime().block_on(async {
                use sqlx::Executor;
                let pool = sqlx::AnyPool::connect(&admin).await?;
                pool.execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .await?;
                pool.close().await;
                Ok::<_, sqlx::Error>(())
            });
        }
    }
}

#[derive(Debug)]
pub struct StoredInstance {
    pub dataset: Vec<u8>,
    pub whole: Vec<u8>,
    pub transfer_syntax_uid: String,
    pub issuer: String,
    pub patient_id: String,
    pub patient_name: Option<String>,
}

/// A running `pacs serve`.
pub struct Server {
    child: Option<Child>,
    pub dicom_port: u16,
    pub http_port: u16,
    pub log_path: PathBuf,
    /// What the server printed on stdout.
    printed: std::sync::Arc<std::sync::Mutex<String>>,
    /// The `PACS_READY …` line's `name=port` pairs (see [`Server::ready_port`]).
    ready: String,
}

impl Server {
    /// A port announced on the `PACS_READY` line, e.g. `dicom_tls_port` (only there when
    /// that listener is configured).
    pub fn ready_port(&self, name: &str) -> Option<u16> {
        self.ready
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|p| p.parse().ok())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().unwrap().try_wait(), Ok(None))
    }

    /// SIGTERM, then wait (bounded) for a graceful exit.
    pub fn stop(mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        // SAFETY-free: kill(2) through the libc crate's safe-to-call signature.
        send_signal(child.id(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("pacs serve did not stop within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: the crash test.
    pub fn kill9(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// GET on the HTTP port: (status, headers, body).
    pub fn http_get(&self, path: &str) -> (u16, String, String) {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.http_port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, head.to_owned(), body.to_owned())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Its whole output, for the run-wide secret check.
        let mut all = std::fs::read(&self.log_path).unwrap_or_default();
        all.extend_from_slice(self.printed.lock().unwrap().as_bytes());
        keep_log("serve", &all);
    }
}

fn send_signal(pid: u32, sig: i32) {
    let r = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(r.success(), "kill -{sig} {pid}");
}

/// A dcmtk tool from Debian's package (installed by scripts/test.sh; the test fails if it is
/// missing). Called by absolute path: pynetdicom installs Python apps with the same names
/// (storescu, echoscu, findscu…) that would shadow dcmtk's on PATH.
pub fn dcmtk(tool: &str) -> Command {
    let path = Path::new("/usr/bin").join(tool);
    assert!(
        path.is_file(),
        "{} (dcmtk) is not installed: run scripts/test.sh, which installs it",
        path.display()
    );
    let mut c = Command::new(path);
    c.stdin(Stdio::null());
    c
}

/// Runs a command with a time limit, returning its output.
pub fn run_bounded(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

/// One result line of tests/peers/store_scu.py.
#[derive(Debug, Clone)]
pub struct StoreResult {
    pub file: String,
    pub sop_instance_uid: Option<String>,
    pub status: Option<u16>,
    pub comment: Option<String>,
}

/// The pynetdicom sender's result: whether the association was established, and per file.
#[derive(Debug)]
pub struct ScuRun {
    pub association: Option<String>,
    pub results: Vec<StoreResult>,
    pub exit: ExitStatus,
    pub stderr: String,
}

pub fn parse_scu_output(stdout: &[u8]) -> (Option<String>, Vec<StoreResult>) {
    let mut association = None;
    let mut results = Vec::new();
    for line in String::from_utf8_lossy(stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if let Some(a) = v.get("association") {
            association = a.as_str().map(str::to_owned);
        } else if v.get("file").is_some() {
            results.push(StoreResult {
                file: v["file"].as_str().unwrap().to_owned(),
                sop_instance_uid: v["sop_instance_uid"].as_str().map(str::to_owned),
                status: v["status"].as_u64().map(|s| s as u16),
                comment: v["comment"].as_str().map(str::to_owned),
            });
        }
    }
    (association, results)
}

/// Runs the pynetdicom sender (tests/peers/store_scu.py): each file's data set as it is in
/// the file, in its own transfer syntax.
pub fn pynetdicom_store(port: u16, aet: &str, files: &[PathBuf], extra: &[&str]) -> ScuRun {
    let out = run_bounded(
        store_scu_command(port, aet, files, extra),
        Duration::from_secs(300),
    );
    let (association, results) = parse_scu_output(&out.stdout);
    ScuRun {
        association,
        results,
        exit: out.status,
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

// ---------------------------------------------------------------------------------
// Helpers for bad_input.rs and cli.rs.

/// The command line of tests/peers/store_scu.py, for tests that watch it while it runs.
pub fn store_scu_command(port: u16, aet: &str, files: &[PathBuf], extra: &[&str]) -> Command {
    let mut c = Command::new("python3");
    c.arg(repo_root().join("tests/peers/store_scu.py"))
        .args([
            "--port",
            &port.to_string(),
            "--aet",
            aet,
            "--aec",
            "REGIONAL_PACS",
        ])
        .args(extra)
        .args(files)
        .stdin(Stdio::null());
    c
}

/// Every regular file under `dir`, recursively (empty when `dir` does not exist).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                Ok(_) => out.push(p),
                Err(_) => {}
            }
        }
    }
    out.sort();
    out
}

/// Files under `<data_dir>/objects` (the filesystem object store).
pub fn object_files(archive: &TestArchive) -> Vec<PathBuf> {
    files_under(&archive.data_dir().join("objects"))
}

/// Keys the archive's object store lists (files or S3), sorted.
pub fn stored_object_keys(archive: &TestArchive) -> Vec<String> {
    runtime().block_on(async {
        let a = archive.open().await;
        let mut keys: Vec<String> = a
            .objects()
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|k| k.to_string())
            .collect();
        a.index().close().await;
        keys.sort();
        keys
    })
}

/// The outbox events of the archive, oldest first.
pub fn events(archive: &TestArchive) -> Vec<pacs_store::index::EventRecord> {
    runtime().block_on(async {
        let a = archive.open().await;
        let ev = a.index().events_after(0, 100_000).await.unwrap();
        a.index().close().await;
        ev
    })
}

/// Calls `f` every 100 ms until it gives `Some`, for at most `limit`.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A DICOM Part 10 file: `preamble` (128 bytes), `DICM`, a file meta group (explicit VR
/// LE) declaring these UIDs, then `dataset` as given.
pub fn part10_with_preamble(
    preamble: &[u8; 128],
    sop_class: &str,
    sop_instance: &str,
    transfer_syntax: &str,
    dataset: &[u8],
) -> Vec<u8> {
    fn el(out: &mut Vec<u8>, element: u16, vr: &[u8; 2], value: &[u8], pad: u8) {
        let mut v = value.to_vec();
        if v.len() % 2 == 1 {
            v.push(pad);
        }
        out.extend_from_slice(&0x0002u16.to_le_bytes());
        out.extend_from_slice(&element.to_le_bytes());
        out.extend_from_slice(vr);
        if vr == b"OB" {
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        } else {
            out.extend_from_slice(&(v.len() as u16).to_le_bytes());
        }
        out.extend_from_slice(&v);
    }
    let mut group = Vec::new();
    el(&mut group, 0x0001, b"OB", &[0, 1], 0);
    el(&mut group, 0x0002, b"UI", sop_class.as_bytes(), 0);
    el(&mut group, 0x0003, b"UI", sop_instance.as_bytes(), 0);
    el(&mut group, 0x0010, b"UI", transfer_syntax.as_bytes(), 0);
    el(&mut group, 0x0012, b"UI", b"2.25.1234567890123456789", 0);
    el(&mut group, 0x0013, b"SH", b"PACS_E2E", b' ');
    let mut out = preamble.to_vec();
    out.extend_from_slice(b"DICM");
    out.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0]);
    out.extend_from_slice(&(group.len() as u32).to_le_bytes());
    out.extend_from_slice(&group);
    out.extend_from_slice(dataset);
    out
}

/// [`part10_with_preamble`] with the usual all-zero preamble.
pub fn part10(
    sop_class: &str,
    sop_instance: &str,
    transfer_syntax: &str,
    dataset: &[u8],
) -> Vec<u8> {
    part10_with_preamble(
        &[0u8; 128],
        sop_class,
        sop_instance,
        transfer_syntax,
        dataset,
    )
}

/// dcmtk's echoscu against the archive (bounded), with calling/called AE titles.
pub fn echoscu(port: u16, calling: &str, called: &str) -> Output {
    let mut c = dcmtk("echoscu");
    c.args([
        "-aet",
        calling,
        "-aec",
        called,
        "-to",
        "10",
        "-ta",
        "10",
        "-td",
        "10",
        "127.0.0.1",
        &port.to_string(),
    ]);
    run_bounded(c, Duration::from_secs(30))
}

/// The index row of an instance, if indexed.
pub fn instance_record(
    archive: &TestArchive,
    sop_instance_uid: &str,
) -> Option<pacs_store::index::InstanceRecord> {
    runtime().block_on(async {
        let a = archive.open().await;
        let r = a.index().find_instance(sop_instance_uid).await.unwrap();
        a.index().close().await;
        r
    })
}

/// A DICOM file's meta group and the attributes the archive indexes, read with the
/// archive's own scanner (what the tests compare the archive's answers with).
pub fn file_attrs(path: &Path) -> (FileMeta, IndexedAttributes) {
    let mut f = std::fs::File::open(path).unwrap();
    let meta = pacs_store::header::read_file_meta(&mut f).unwrap();
    let attrs = pacs_store::header::scan_complete_file(
        std::fs::File::open(path).unwrap(),
        meta.dataset_offset,
        &meta.transfer_syntax_uid,
    )
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (meta, attrs)
}

/// dcmtk's storescp listening as a clinic workstation (or a clinic's report receiver),
/// writing what it receives into `dir`; killed when dropped.
pub struct Workstation {
    child: std::process::Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Workstation {
    pub fn start(aet: &str) -> Workstation {
        Self::start_on(aet, free_port())
    }

    /// On `port` (chosen earlier, e.g. registered for an AE title before it listens).
    pub fn start_on(aet: &str, port: u16) -> Workstation {
        Self::start_with(aet, port, &[])
    }

    /// With more storescp options (e.g. `+xi`: implicit VR little endian only).
    pub fn start_with(aet: &str, port: u16, options: &[&str]) -> Workstation {
        let dir = tempfile::tempdir().unwrap();
        let child = dcmtk("storescp")
            .args(options)
            .args(["-aet", aet, "-od"])
            .arg(dir.path())
            .arg(port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("storescp");
        // Listening once echoscu gets through.
        let ok = wait_for(Duration::from_secs(20), || {
            echoscu(port, "PROBE", aet).status.success().then_some(())
        });
        assert!(ok.is_some(), "storescp did not start");
        Workstation { child, port, dir }
    }

    /// The files received so far.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
    }
}

impl Drop for Workstation {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
