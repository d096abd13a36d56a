//! One contract for every [`ObjectStore`] adapter, run against the filesystem store in a
//! temporary directory and against a real S3 server (Garage, see `scripts/garage-start.sh`).
//!
//! The S3 run reads `PACS_TEST_S3_ENDPOINT`, `PACS_TEST_S3_REGION`, `PACS_TEST_S3_BUCKET`,
//! `PACS_TEST_S3_ACCESS_KEY`, `PACS_TEST_S3_SECRET_KEY` (and optional
//! `PACS_TEST_S3_PATH_STYLE`, default true). Without them it fails, unless
//! `PACS_TEST_ALLOW_NO_S3=1` says that skipping is intended. To run everything:
//!
//! ```sh
//! eval "$(scripts/garage-start.sh /tmp/pacs-garage PACS_TEST_S3)"
//! cargo test -p pacs-store --test object_store_contract
//! ```

use std::path::{Path, PathBuf};

use futures::StreamExt;
use pacs_store::StoreError;
use pacs_store::objects::fs::FsObjectStore;
use pacs_store::objects::s3::{S3Config, S3ObjectStore};
use pacs_store::objects::{ObjectKey, ObjectStore};

const MIB: usize = 1024 * 1024;

// ---- helpers ----

/// Deterministic pseudo-random bytes (xorshift64*): incompressible, differs per seed.
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes and fsyncs a staging file, as the ingest path does.
fn stage(dir: &Path, bytes: &[u8]) -> PathBuf {
    use std::io::Write;
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(format!("{}.staging", uuid::Uuid::new_v4().simple()));
    let mut file = std::fs::File::create(&path).unwrap();
    file.write_all(bytes).unwrap();
    file.sync_all().unwrap();
    path
}

async fn put(store: &dyn ObjectStore, staging: &Path, bytes: &[u8]) -> ObjectKey {
    let key = ObjectKey::generate();
    let staged = stage(staging, bytes);
    store
        .put_file(&key, &staged)
        .await
        .unwrap_or_else(|e| panic!("{}: put {key}: {e}", store.describe()));
    assert!(
        staged.exists(),
        "{}: put_file must leave the staging file to the caller",
        store.describe()
    );
    std::fs::remove_file(&staged).unwrap();
    key
}

async fn stream_all(store: &dyn ObjectStore, key: &ObjectKey) -> Vec<u8> {
    let mut stream = store.get_stream(key).await.unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

/// Compares without printing megabytes on failure.
fn assert_same(what: &str, got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "{what}: length differs");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!("{what}: first difference at byte {i}");
    }
}

// ---- the contract ----

async fn contract(store: &dyn ObjectStore, staging: &Path) {
    eprintln!("object store contract against {}", store.describe());
    roundtrip(store, staging, 1000, "small object").await;
    roundtrip(store, staging, 0, "empty object").await;
    // Above 8 MiB: the S3 adapter uses a multipart upload (three parts).
    roundtrip(store, staging, 20 * MIB + 123, "20 MiB object").await;
    exists_list_delete(store, staging).await;
    no_overwrite(store, staging).await;
    missing_staging_file(store, staging).await;
}

async fn roundtrip(store: &dyn ObjectStore, staging: &Path, len: usize, what: &str) {
    let bytes = pseudo_random(len, len as u64 + 7);
    let key = put(store, staging, &bytes).await;
    assert_same(
        &format!("{what} get"),
        &store.get(&key).await.unwrap(),
        &bytes,
    );
    assert_same(
        &format!("{what} get_stream"),
        &stream_all(store, &key).await,
        &bytes,
    );
    ranges(store, &key, &bytes, what).await;
    store.delete(&key).await.unwrap();
}

async fn range_all(store: &dyn ObjectStore, key: &ObjectKey, start: u64, len: u64) -> Vec<u8> {
    let mut stream = store.get_range(key, start, len).await.unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

/// `get_range`: any slice, empty ranges, and a range past the end fails.
async fn ranges(store: &dyn ObjectStore, key: &ObjectKey, bytes: &[u8], what: &str) {
    let n = bytes.len() as u64;
    let mut cases = vec![(0, n), (0, 0), (n, 0)];
    if n > 10 {
        cases.extend([(1, 1), (3, n - 5), (n - 1, 1), (n / 2, n / 2)]);
    }
    for (start, len) in cases {
        assert_same(
            &format!("{what} get_range {start}+{len}"),
            &range_all(store, key, start, len).await,
            &bytes[start as usize..(start + len) as usize],
        );
    }
    // Past the end: an error, from the call or while streaming.
    let failed = match store.get_range(key, n.saturating_sub(2), 5).await {
        Err(_) => true,
        Ok(mut past) => {
            let mut failed = false;
            while let Some(chunk) = past.next().await {
                if chunk.is_err() {
                    failed = true;
                    break;
                }
            }
            failed
        }
    };
    assert!(failed, "{what}: a range past the end must fail");
    assert!(
        matches!(
            store.get_range(&ObjectKey::generate(), 0, 1).await,
            Err(StoreError::ObjectNotFound(_))
        ),
        "{what}: get_range of a missing object"
    );
}

async fn exists_list_delete(store: &dyn ObjectStore, staging: &Path) {
    let a = put(store, staging, b"first object").await;
    let b = put(store, staging, b"second object").await;
    let never = ObjectKey::generate();

    assert!(store.exists(&a).await.unwrap());
    assert!(store.exists(&b).await.unwrap());
    assert!(!store.exists(&never).await.unwrap());

    let listed = store.list().await.unwrap();
    assert!(
        listed.contains(&a) && listed.contains(&b),
        "list misses a stored key"
    );
    assert!(!listed.contains(&never));

    store.delete(&a).await.unwrap();
    assert!(!store.exists(&a).await.unwrap());
    assert!(
        matches!(store.get(&a).await, Err(StoreError::ObjectNotFound(_))),
        "get after delete"
    );
    assert!(
        matches!(
            store.get_stream(&a).await,
            Err(StoreError::ObjectNotFound(_))
        ),
        "get_stream after delete"
    );
    assert!(
        !store.list().await.unwrap().contains(&a),
        "deleted key still listed"
    );
    assert_eq!(
        &store.get(&b).await.unwrap()[..],
        b"second object",
        "delete touched another object"
    );

    // Deleting what is not there is not an error (twice, and a key never stored).
    store.delete(&a).await.unwrap();
    store.delete(&never).await.unwrap();
    store.delete(&b).await.unwrap();
}

async fn no_overwrite(store: &dyn ObjectStore, staging: &Path) {
    let key = put(store, staging, b"the original").await;
    let second = stage(staging, b"an impostor");
    match store.put_file(&key, &second).await {
        Err(StoreError::AlreadyExists(_)) => {}
        other => panic!(
            "{}: put on an existing key gave {other:?}",
            store.describe()
        ),
    }
    assert_eq!(&store.get(&key).await.unwrap()[..], b"the original");
    std::fs::remove_file(second).ok();
    store.delete(&key).await.unwrap();
}

async fn missing_staging_file(store: &dyn ObjectStore, staging: &Path) {
    let key = ObjectKey::generate();
    let missing = staging.join("never-written.staging");
    let err = store
        .put_file(&key, &missing)
        .await
        .expect_err("put of a missing staging file");
    assert!(
        matches!(err, StoreError::Io { .. }),
        "unexpected error {err:?}"
    );
    assert!(
        !store.exists(&key).await.unwrap(),
        "something was stored under the key"
    );
    assert!(matches!(
        store.get(&key).await,
        Err(StoreError::ObjectNotFound(_))
    ));
}

// ---- filesystem ----

#[tokio::test(flavor = "multi_thread")]
async fn filesystem_store_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsObjectStore::open(dir.path().join("store")).await.unwrap();
    contract(&store, &store.staging_dir()).await;

    // Reopening an existing store is fine and sees the same objects.
    let key = put(&store, &store.staging_dir(), b"kept").await;
    let reopened = FsObjectStore::open(dir.path().join("store")).await.unwrap();
    assert_eq!(&reopened.get(&key).await.unwrap()[..], b"kept");
}

#[tokio::test(flavor = "multi_thread")]
async fn filesystem_store_lists_only_objects() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsObjectStore::open(dir.path()).await.unwrap();
    let key = put(&store, &store.staging_dir(), b"object").await;
    // Foreign files: a stray note, a leftover temp file, a file outside the key shape.
    std::fs::write(dir.path().join("objects/README"), "not an object").unwrap();
    std::fs::create_dir_all(dir.path().join("objects/zz")).unwrap();
    std::fs::write(dir.path().join("objects/zz/.tmp-123"), "partial").unwrap();
    std::fs::write(dir.path().join("objects/zz/Upper.dcm"), "bad name").unwrap();
    assert_eq!(store.list().await.unwrap(), vec![key]);
}

/// A staging file on another filesystem (tmpfs under /dev/shm, when there is one) is copied
/// instead of linked, with the same contract.
#[tokio::test(flavor = "multi_thread")]
async fn filesystem_store_accepts_staging_on_another_filesystem() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let store = FsObjectStore::open(dir.path()).await.unwrap();
    let Ok(other) = tempfile::tempdir_in("/dev/shm") else {
        eprintln!("no /dev/shm: the cross-filesystem copy path runs on the same filesystem");
        let key = put(&store, &store.staging_dir(), b"same fs").await;
        assert_eq!(&store.get(&key).await.unwrap()[..], b"same fs");
        return;
    };
    let crosses = std::fs::metadata(other.path()).unwrap().dev()
        != std::fs::metadata(dir.path()).unwrap().dev();
    eprintln!(
        "staging on {} (another filesystem: {crosses})",
        other.path().display()
    );
    let bytes = pseudo_random(3 * MIB + 5, 42);
    let key = put(&store, other.path(), &bytes).await;
    assert_same(
        "cross-filesystem put",
        &store.get(&key).await.unwrap(),
        &bytes,
    );
    let second = stage(other.path(), b"impostor");
    assert!(matches!(
        store.put_file(&key, &second).await,
        Err(StoreError::AlreadyExists(_))
    ));
    assert_same(
        "after refused overwrite",
        &store.get(&key).await.unwrap(),
        &bytes,
    );
    // No temporary file left beside the object.
    assert_eq!(store.list().await.unwrap(), vec![key]);
}

// ---- S3 ----

/// The S3 connection from the environment; `None` only when skipping is explicitly allowed.
fn s3_config_from_env() -> Option<S3Config> {
    let names = [
        "PACS_TEST_S3_ENDPOINT",
        "PACS_TEST_S3_REGION",
        "PACS_TEST_S3_BUCKET",
        "PACS_TEST_S3_ACCESS_KEY",
        "PACS_TEST_S3_SECRET_KEY",
    ];
    let values: Vec<Option<String>> = names
        .iter()
        .map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
        .collect();
    let missing: Vec<&str> = names
        .iter()
        .zip(&values)
        .filter(|(_, v)| v.is_none())
        .map(|(n, _)| *n)
        .collect();
    if !missing.is_empty() {
        if std::env::var("PACS_TEST_ALLOW_NO_S3").as_deref() == Ok("1") {
            eprintln!(
                "SKIPPED: S3 object store contract ({} not set; PACS_TEST_ALLOW_NO_S3=1)",
                missing.join(", ")
            );
            return None;
        }
        panic!(
            "the S3 object store contract needs a real S3 server: {} not set. Start Garage with \
             `eval \"$(scripts/garage-start.sh /tmp/pacs-garage PACS_TEST_S3)\"` (it prints \
             the PACS_TEST_S3_* exports), or set PACS_TEST_ALLOW_NO_S3=1 to skip on purpose.",
            missing.join(", ")
        );
    }
    let mut values = values.into_iter().map(Option::unwrap);
    let mut next = || values.next().unwrap();
    Some(S3Config {
        endpoint: next(),
        region: next(),
        bucket: next(),
        access_key: next(),
        secret_key: next(),
        path_style: std::env::var("PACS_TEST_S3_PATH_STYLE")
            .map_or(true, |v| v != "false" && v != "0"),
        // A prefix of its own: other tests share the bucket, and the prefix mapping is part
        // of the contract (keys come back from `list` without it).
        prefix: Some(format!("contract-{}", uuid::Uuid::new_v4().simple())),
    })
}

/// No server at all: a clear, bounded failure (needs no S3 server, always runs).
#[tokio::test(flavor = "multi_thread")]
async fn s3_connect_to_nothing_fails_clearly() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = S3Config {
        endpoint: format!("http://127.0.0.1:{port}"),
        region: "garage".into(),
        bucket: "pacs".into(),
        access_key: "GK0123456789abcdef01234567".into(),
        secret_key: "0123456789abcdef0123456789abcdef".into(),
        path_style: true,
        prefix: None,
    };
    let started = std::time::Instant::now();
    let msg = S3ObjectStore::connect(&cfg)
        .await
        .expect_err("nothing listens there")
        .to_string();
    eprintln!("no server: {msg} (after {:?})", started.elapsed());
    assert!(
        msg.contains("cannot reach S3 bucket pacs") && msg.contains(&cfg.endpoint),
        "unclear error: {msg}"
    );
    assert!(!msg.contains(&cfg.secret_key), "secret leaked: {msg}");

    let empty = S3Config {
        secret_key: String::new(),
        ..cfg
    };
    assert!(matches!(
        S3ObjectStore::connect(&empty).await,
        Err(StoreError::Config(_))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_store_meets_the_contract() {
    let Some(cfg) = s3_config_from_env() else {
        return;
    };
    let store = S3ObjectStore::connect(&cfg)
        .await
        .unwrap_or_else(|e| panic!("connect to {cfg:?}: {e}"));
    let staging = tempfile::tempdir().unwrap();
    contract(&store, staging.path()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_store_refuses_bad_configuration_clearly() {
    let Some(good) = s3_config_from_env() else {
        return;
    };

    let wrong_secret = S3Config {
        secret_key: format!("{}0", &good.secret_key[..good.secret_key.len() - 1]),
        ..good.clone()
    };
    let wrong_secret = if wrong_secret.secret_key == good.secret_key {
        S3Config {
            secret_key: format!("{}1", &good.secret_key[..good.secret_key.len() - 1]),
            ..good.clone()
        }
    } else {
        wrong_secret
    };
    let err = S3ObjectStore::connect(&wrong_secret)
        .await
        .expect_err("a wrong secret key must be refused");
    let msg = err.to_string();
    eprintln!("wrong secret: {msg}");
    assert!(
        msg.contains("cannot reach S3 bucket") && msg.contains(&good.bucket),
        "unclear error: {msg}"
    );
    assert!(msg.contains("403"), "expected the server's 403 in: {msg}");
    assert!(
        !msg.contains(&wrong_secret.secret_key) && !msg.contains(&good.secret_key),
        "secret leaked: {msg}"
    );
    assert!(
        !format!("{wrong_secret:?}").contains(&wrong_secret.secret_key),
        "Debug prints the secret"
    );

    let wrong_bucket = S3Config {
        bucket: "no-such-bucket-pacs".into(),
        ..good.clone()
    };
    let msg = S3ObjectStore::connect(&wrong_bucket)
        .await
        .expect_err("a missing bucket")
        .to_string();
    eprintln!("wrong bucket: {msg}");
    assert!(msg.contains("no-such-bucket-pacs"), "unclear error: {msg}");

    let wrong_region = S3Config {
        region: "us-east-1".into(),
        ..good.clone()
    };
    if wrong_region.region != good.region {
        let msg = S3ObjectStore::connect(&wrong_region)
            .await
            .expect_err("a wrong region")
            .to_string();
        eprintln!("wrong region: {msg}");
        assert!(msg.contains("region"), "unclear error: {msg}");
    }

    let store = S3ObjectStore::connect(&good).await.unwrap();
    assert!(
        !format!("{store:?}").contains(&good.secret_key),
        "Debug prints the secret"
    );
}
