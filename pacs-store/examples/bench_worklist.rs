//! The store side of `bench/worklist`: fills an index with a region (clinics, radiologists
//! with subspecialties, credentials and shifts, clinic users, administrators) and studies
//! that become ready, then routes them with `Index::route_ready_studies` — the worklist
//! keeper's work — timing every call.
//!
//! ```text
//! bench_worklist route --database-url URL --studies N [--batch B]
//!                      [--instances-per-study K] --out FILE
//! bench_worklist fill  --database-url URL --studies N [--batch B] [--pool-share F]
//!                      [--clients C] [--password-env NAME] --credentials-out FILE --out FILE
//! ```
//!
//! - `route`: a fresh index (an SQLite file, or a PostgreSQL database: with
//!   `--postgres-admin-url URL` a database is created for the run and dropped after), N
//!   studies inserted through the index writer and marked ready (the outbox's
//!   `study_ready` events), then routed B of them per call (one transaction each), as the
//!   keeper does every second. The default routing rules, 20 radiologists. Each study has
//!   K instances (default 1): their `instance_stored` events lie between the `study_ready`
//!   ones, which the routing skips in SQL.
//! - `fill`: the same region with passwords (from the environment variable
//!   `--password-env`, default `BENCH_PASSWORD`) for `pacs serve` to run on: the first
//!   `--pool-share` of the studies are routed at a time when nobody is on shift (they wait
//!   in the pool), the others now. Then one API token per websocket client (`--clients`,
//!   a mix of radiologists, clinic users and administrators), written with their owners
//!   to `--credentials-out` (mode 0600; tab-separated: username, role, user id, clinic id,
//!   token).
//!
//! The timings go to `--out` as one JSON object. Synthetic data only: nothing is real
//! patient data.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::time::{Duration, Instant};

use pacs_store::ae_title::AeTitle;
use pacs_store::charset::PersonName;
use pacs_store::header::IndexedAttributes;
use pacs_store::index::{Index, NewInstance, now_micros};
use pacs_store::objects::ObjectKey;
use pacs_store::users::{Password, Role, Username};
use pacs_store::worklist::{ReadingProfile, Shift, WorklistPolicy, minute_of_week};

const WEEK: i64 = 7 * 24 * 60;
const RADIOLOGISTS: usize = 20;
const CLINICS: usize = 8;

/// (modality, body part, description, share in per mille)
const STUDY_MIX: &[(&str, &str, &str, u32)] = &[
    ("CT", "HEAD", "CT head without contrast", 120),
    ("MR", "HEAD", "MR head", 60),
    ("MR", "BRAIN", "MR brain with contrast", 30),
    ("CT", "CHEST", "CT chest", 120),
    ("DX", "CHEST", "Chest PA and lateral", 180),
    ("CR", "CHEST", "Chest X-ray", 100),
    ("MG", "BREAST", "Screening mammogram", 70),
    ("MR", "KNEE", "MR knee", 40),
    ("US", "ABDOMEN", "Ultrasound abdomen", 140),
    ("CT", "ABDOMEN", "CT abdomen and pelvis", 80),
    ("CR", "HAND", "Hand X-ray", 60),
];

fn usage() -> ! {
    eprintln!(
        "usage: bench_worklist route --database-url URL [--postgres-admin-url URL] --studies N \
         [--batch B] [--instances-per-study K] --out FILE\n       bench_worklist fill --database-url URL --studies N \
         [--batch B] [--pool-share F] [--clients C] [--password-env NAME] \
         --credentials-out FILE --out FILE"
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
        if mode != "route" && mode != "fill" {
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

    fn get(&self, name: &str) -> Option<&str> {
        self.options.get(name).map(String::as_str)
    }

    fn required(&self, name: &str) -> &str {
        self.get(name).unwrap_or_else(|| {
            eprintln!("--{name} is required");
            usage()
        })
    }

    fn number<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        match self.get(name) {
            None => default,
            Some(v) => v.parse().unwrap_or_else(|_| {
                eprintln!("--{name}: {v:?} is not a number");
                usage()
            }),
        }
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args).await {
        eprintln!("bench_worklist: {e}");
        std::process::exit(1);
    }
}

type Failure = Box<dyn std::error::Error + Send + Sync>;

async fn run(args: &Args) -> Result<(), Failure> {
    let studies: usize = args.number("studies", 2000);
    let batch: i64 = args.number("batch", if args.mode == "route" { 25 } else { 500 });
    if studies == 0 || batch <= 0 {
        return Err("--studies and --batch must be positive".into());
    }
    let (url, scratch) = match args.get("postgres-admin-url") {
        Some(admin) => {
            let name = format!("pacs_bench_worklist_{}", std::process::id());
            create_database(admin, &name).await?;
            let base = admin
                .rsplit_once('/')
                .ok_or("--postgres-admin-url must name a database")?
                .0;
            (format!("{base}/{name}"), Some((admin.to_owned(), name)))
        }
        None => (args.required("database-url").to_owned(), None),
    };
    let result = match args.mode.as_str() {
        "route" => route(args, &url, studies, batch).await,
        _ => fill(args, &url, studies, batch).await,
    };
    if let Some((admin, name)) = scratch {
        drop_database(&admin, &name).await?;
    }
    let out = result?;
    std::fs::write(args.required("out"), serde_json::to_vec_pretty(&out)?)?;
    Ok(())
}

async fn route(
    args: &Args,
    url: &str,
    studies: usize,
    batch: i64,
) -> Result<serde_json::Value, Failure> {
    let index = Index::open(url).await?;
    // Nobody logs in: a password nobody knows.
    let password = Password::parse(&format!("bench-{}", uuid::Uuid::new_v4().simple()))?;
    let region = Region::make(&index, &password).await?;
    let per_study: usize = args.number("instances-per-study", 1).max(1);
    let stored = store_studies(&index, &region, 0, studies, per_study).await?;
    let now = now_micros();
    let routing = route_all(&index, now, batch).await?;
    let (open, pool) = open_tasks(&index).await?;
    index.close().await;
    Ok(serde_json::json!({
        "backend": backend_of(url),
        "studies": studies,
        "instances_per_study": per_study,
        "batch": batch,
        "radiologists": RADIOLOGISTS,
        "on_shift": region.on_shift,
        "store_seconds": stored.0,
        "mark_ready_seconds": stored.1,
        "routing": routing,
        "open_tasks": open,
        "pool_tasks": pool,
    }))
}

async fn fill(
    args: &Args,
    url: &str,
    studies: usize,
    batch: i64,
) -> Result<serde_json::Value, Failure> {
    let pool_share: f64 = args.number("pool-share", 0.2);
    let clients: usize = args.number("clients", 1000);
    let password_env = args.get("password-env").unwrap_or("BENCH_PASSWORD");
    let password = std::env::var(password_env)
        .map_err(|_| format!("the password is read from ${password_env}, which is not set"))?;
    let password = Password::parse(&password)?;
    let index = Index::open(url).await?;
    let region = Region::make(&index, &password).await?;
    let night = ((studies as f64) * pool_share.clamp(0.0, 1.0)).round() as usize;
    let now = now_micros();
    // Four hours ago nobody was on shift (shifts start two hours ago): those tasks wait in
    // the pool.
    let mut routing = Vec::new();
    let mut stored = (0.0, 0.0);
    for (from, to, when) in [
        (0, night, now - 4 * 3600 * 1_000_000),
        (night, studies, now),
    ] {
        if from == to {
            continue;
        }
        let s = store_studies(&index, &region, from, to, 1).await?;
        stored = (stored.0 + s.0, stored.1 + s.1);
        routing.extend(route_all(&index, when, batch).await?);
    }
    let (open, pool) = open_tasks(&index).await?;
    let per_radiologist = tasks_per_radiologist(&index).await?;
    let t = Instant::now();
    let lines = client_tokens(&index, &region, clients).await?;
    let token_seconds = t.elapsed().as_secs_f64();
    write_private(args.required("credentials-out"), &lines)?;
    index.close().await;
    Ok(serde_json::json!({
        "backend": backend_of(url),
        "studies": studies,
        "batch": batch,
        "radiologists": RADIOLOGISTS,
        "on_shift": region.on_shift,
        "store_seconds": stored.0,
        "mark_ready_seconds": stored.1,
        "routing": routing,
        "open_tasks": open,
        "pool_tasks": pool,
        "tasks_per_radiologist": per_radiologist,
        "clients": clients,
        "token_seconds": token_seconds,
    }))
}

fn backend_of(url: &str) -> &'static str {
    if url.starts_with("sqlite:") {
        "sqlite"
    } else {
        "postgres"
    }
}

// ---------------------------------------------------------------------------------------
// The region

struct Person {
    name: String,
    role: Role,
    id: i64,
    clinic_id: Option<i64>,
}

struct Region {
    /// (clinic id, name, AE title)
    clinics: Vec<(i64, String, String)>,
    radiologists: Vec<Person>,
    clinic_users: Vec<Person>,
    admins: Vec<Person>,
    on_shift: usize,
}

impl Region {
    /// 8 clinics; 20 radiologists (4 neuro, 4 chest, 3 breast, 3 msk, 6 general) with
    /// credentials, three in four of them on a shift that started two hours ago, the others
    /// on one that starts in twelve hours; per clinic two township doctors and a clinician;
    /// two administrators.
    async fn make(index: &Index, password: &Password) -> Result<Region, Failure> {
        let mut clinics = Vec::new();
        for c in 1..=CLINICS {
            let name = format!("Township Clinic {c}");
            let ae = format!("TOWNSHIP_{c}");
            let reg = index
                .add_clinic_ae(&name, &AeTitle::parse(&ae)?, None)
                .await?;
            clinics.push((reg.clinic_id, name, ae));
        }
        let minute = minute_of_week(now_micros());
        let window = |from: i64, to: i64| Shift {
            start_minute: (minute + from).rem_euclid(WEEK),
            end_minute: match (minute + to).rem_euclid(WEEK) {
                0 => WEEK,
                m => m,
            },
        };
        let mut radiologists = Vec::new();
        let mut on_shift = 0;
        for i in 0..RADIOLOGISTS {
            let (sub, credentials): (&[&str], &[&str]) = match i {
                0..=3 => (&["neuro"], &["CT", "MR"]),
                4..=7 => (&["chest"], &["CT", "DX", "CR"]),
                8..=10 => (&["breast"], &["MG", "US"]),
                11..=13 => (&["msk"], &["MR", "CT", "DX", "CR"]),
                14..=16 => (&[], &[]),
                _ => (&[], &["CT", "DX", "CR", "US"]),
            };
            let name = format!("rad-{:02}", i + 1);
            let subs: Vec<String> = sub.iter().map(|s| s.to_string()).collect();
            let user = index
                .create_user(
                    &Username::parse(&name)?,
                    Role::Radiologist,
                    None,
                    &subs,
                    Some(password),
                )
                .await?;
            let shift = if i % 4 == 3 {
                window(12 * 60, 20 * 60)
            } else {
                on_shift += 1;
                window(-2 * 60, 10 * 60)
            };
            let profile = ReadingProfile {
                credentials: credentials.iter().map(|c| c.to_string()).collect(),
                shifts: vec![shift],
            };
            index.set_reading_profile(&name, &profile).await?;
            radiologists.push(Person {
                name,
                role: Role::Radiologist,
                id: user.id,
                clinic_id: None,
            });
        }
        let mut clinic_users = Vec::new();
        for (n, (clinic_id, clinic, _)) in clinics.iter().enumerate() {
            for (suffix, role) in [
                ("doc1", Role::TownshipDoctor),
                ("doc2", Role::TownshipDoctor),
                ("nurse", Role::Clinician),
            ] {
                let name = format!("c{}-{suffix}", n + 1);
                let user = index
                    .create_user(
                        &Username::parse(&name)?,
                        role,
                        Some(clinic),
                        &[],
                        Some(password),
                    )
                    .await?;
                clinic_users.push(Person {
                    name,
                    role,
                    id: user.id,
                    clinic_id: Some(*clinic_id),
                });
            }
        }
        let mut admins = Vec::new();
        for n in 1..=2 {
            let name = format!("admin-{n}");
            let user = index
                .create_user(
                    &Username::parse(&name)?,
                    Role::Admin,
                    None,
                    &[],
                    Some(password),
                )
                .await?;
            admins.push(Person {
                name,
                role: Role::Admin,
                id: user.id,
                clinic_id: None,
            });
        }
        Ok(Region {
            clinics,
            radiologists,
            clinic_users,
            admins,
            on_shift,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Studies

/// A deterministic pseudo-random number for study `n` (splitmix64).
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn study_instance(region: &Region, n: usize, k: usize) -> NewInstance {
    const FAMILY: &[&str] = &[
        "Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao",
    ];
    const GIVEN: &[&str] = &["Wei", "Fang", "Min", "Jing", "Qiang", "Lei", "Jun", "Yan"];
    let r = mix(n as u64);
    let mut pick = (r % 1000) as u32;
    let (modality, body_part, description) = STUDY_MIX
        .iter()
        .find_map(|&(m, b, d, share)| {
            if pick < share {
                Some((m, b, d))
            } else {
                pick -= share;
                None
            }
        })
        .unwrap_or(("CR", "HAND", "Hand X-ray"));
    let priority = match (r >> 16) % 100 {
        0..=2 => "STAT",
        3..=14 => "HIGH",
        _ => "ROUTINE",
    };
    let (clinic_id, clinic, ae) = &region.clinics[n % region.clinics.len()];
    let root = "1.2.826.0.1.3680043.10.543.77";
    NewInstance {
        attrs: IndexedAttributes {
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
            sop_instance_uid: format!("{root}.3.{n}.{}", k + 1),
            study_instance_uid: format!("{root}.1.{n}"),
            series_instance_uid: format!("{root}.2.{n}"),
            patient_id: Some(format!("BW{n:07}")),
            patient_name: Some(PersonName {
                alphabetic: format!(
                    "{}^{}",
                    FAMILY[(r >> 24) as usize % FAMILY.len()],
                    GIVEN[(r >> 32) as usize % GIVEN.len()]
                ),
                ..Default::default()
            }),
            patient_sex: Some(if r & 1 == 0 { "F" } else { "M" }.into()),
            study_date: Some("20261123".into()),
            study_time: Some("101500".into()),
            accession_number: Some(format!("BW{n:08}")),
            study_description: Some(description.into()),
            modality: Some(modality.into()),
            body_part_examined: Some(body_part.into()),
            requested_procedure_priority: Some(priority.into()),
            series_number: Some(1),
            instance_number: Some(k as i64 + 1),
            has_pixel_data: true,
            ..Default::default()
        },
        transfer_syntax_uid: "1.2.840.10008.1.2.1".into(),
        object_key: ObjectKey::generate(),
        size_bytes: 1000,
        dataset_offset: 0,
        content_hash: format!("{:048x}{k:016x}", u128::from(r) << 64 | n as u128),
        clinic_id: Some(*clinic_id),
        clinic_name: Some(clinic.clone()),
        source_ae: Some(ae.clone()),
        received_at: now_micros(),
        archive_authored: false,
    }
}

/// Inserts studies `from..to` (`per_study` instances each, through the index writer, many
/// at once as associations would) and marks them ready: the `study_ready` events routing
/// reads. Returns the seconds of both steps.
async fn store_studies(
    index: &Index,
    region: &Region,
    from: usize,
    to: usize,
    per_study: usize,
) -> Result<(f64, f64), Failure> {
    let t = Instant::now();
    let all: Vec<(usize, usize)> = (from..to)
        .flat_map(|n| (0..per_study).map(move |k| (n, k)))
        .collect();
    for chunk in all.chunks(256) {
        let inserts = chunk
            .iter()
            .map(|&(n, k)| index.insert_instance(study_instance(region, n, k)));
        for r in futures::future::join_all(inserts).await {
            r?;
        }
    }
    let stored = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let ready = index.mark_ready_studies(Duration::ZERO).await?;
    if ready.len() != to - from {
        return Err(format!(
            "{} studies became ready, expected {}",
            ready.len(),
            to - from
        )
        .into());
    }
    Ok((stored, t.elapsed().as_secs_f64()))
}

/// Routes every ready study, `batch` events per call; one record per call.
async fn route_all(index: &Index, now: i64, batch: i64) -> Result<Vec<serde_json::Value>, Failure> {
    let policy = WorklistPolicy::default();
    let mut calls = Vec::new();
    loop {
        let t = Instant::now();
        let routed = index.route_ready_studies(&policy, now, batch).await?;
        let seconds = t.elapsed().as_secs_f64();
        if routed.read == 0 {
            break;
        }
        calls.push(serde_json::json!({
            "events": routed.read,
            "created": routed.created.len(),
            "seconds": seconds,
        }));
        if (routed.read as i64) < batch {
            break;
        }
    }
    Ok(calls)
}

/// (open tasks, of which in the pool), as the administrators' worklist counts them.
async fn open_tasks(index: &Index) -> Result<(usize, usize), Failure> {
    use pacs_store::access::Scope;
    use pacs_store::worklist::{Sort, View, WorklistQuery};
    let mut counts = [0usize; 2];
    for (i, view) in [View::All, View::Pool].into_iter().enumerate() {
        let mut offset = 0;
        loop {
            let q = WorklistQuery {
                view,
                modality: None,
                priority: None,
                clinic_id: None,
                sort: Sort::Priority,
                limit: 1000,
                offset,
            };
            let page = index.worklist(Scope::All, 0, &q, now_micros()).await?;
            counts[i] += page.len();
            if page.len() < 1000 {
                break;
            }
            offset += 1000;
        }
    }
    Ok((counts[0], counts[1]))
}

/// Open tasks routed to each radiologist.
async fn tasks_per_radiologist(index: &Index) -> Result<BTreeMap<String, usize>, Failure> {
    use pacs_store::access::Scope;
    use pacs_store::worklist::{Sort, View, WorklistQuery};
    let mut out = BTreeMap::new();
    let mut offset = 0;
    loop {
        let q = WorklistQuery {
            view: View::All,
            modality: None,
            priority: None,
            clinic_id: None,
            sort: Sort::Ready,
            limit: 1000,
            offset,
        };
        let page = index.worklist(Scope::All, 0, &q, now_micros()).await?;
        for item in &page {
            if let Some(who) = &item.assigned_to {
                *out.entry(who.clone()).or_insert(0) += 1;
            }
        }
        if page.len() < 1000 {
            break;
        }
        offset += 1000;
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Websocket clients' credentials

/// One token per client: six in ten radiologists (in turn), three in ten clinic users,
/// one in ten administrators. Tab-separated lines.
async fn client_tokens(
    index: &Index,
    region: &Region,
    clients: usize,
) -> Result<Vec<String>, Failure> {
    let mut lines = Vec::with_capacity(clients);
    for i in 0..clients {
        let person = match i % 10 {
            0..=5 => &region.radiologists[(i / 10 * 6 + i % 10) % region.radiologists.len()],
            6..=8 => &region.clinic_users[(i / 10 * 3 + i % 10 - 6) % region.clinic_users.len()],
            _ => &region.admins[(i / 10) % region.admins.len()],
        };
        let token = index
            .create_token(
                &Username::parse(&person.name)?,
                &format!("bench client {i}"),
                None,
            )
            .await?;
        lines.push(format!(
            "{}\t{}\t{}\t{}\t{}",
            person.name,
            person.role.as_str(),
            person.id,
            person.clinic_id.map_or(String::new(), |c| c.to_string()),
            token.secret
        ));
    }
    Ok(lines)
}

/// Writes `lines` to a new file only its owner can read.
fn write_private(path: &str, lines: &[String]) -> Result<(), Failure> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut f = options
        .open(path)
        .map_err(|e| format!("cannot create {path}: {e}"))?;
    for l in lines {
        writeln!(f, "{l}")?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// PostgreSQL scratch databases

async fn create_database(admin: &str, name: &str) -> Result<(), Failure> {
    use sqlx::Executor as _;
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(admin).await?;
    pool.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await?;
    pool.close().await;
    Ok(())
}

async fn drop_database(admin: &str, name: &str) -> Result<(), Failure> {
    use sqlx::Executor as _;
    let pool = sqlx::AnyPool::connect(admin).await?;
    pool.execute(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .await?;
    pool.close().await;
    Ok(())
}
