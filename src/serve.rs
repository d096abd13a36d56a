//! `pacs serve`: the archive with its DICOM listener and HTTP server.

use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::PrometheusBuilder;
use pacs_store::ae_title::AeTitle;
use pacs_store::archive::{Archive, Source};
use pacs_store::audit::{Action, AuditEvent, EventId, EventType, local_operator, roles};
use pacs_store::index::Index;
use pacs_store::users::{Password, Role, Username};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::settings::Settings;

/// The clinic and AE title `--demo` registers, so that a newcomer can send at once.
pub const DEMO_CLINIC: &str = "Demo Township Clinic";
pub const DEMO_AE_TITLE: &str = "DEMO_MODALITY";

pub async fn serve(settings: Settings, demo: bool) -> anyhow::Result<()> {
    let audit_forwarding = settings.audit_forwarding()?;
    let archive = settings
        .store()
        .open()
        .await
        .context("cannot open the archive")?;
    let leftovers = archive.recover_staging().await?;
    if leftovers > 0 {
        tracing::warn!(
            leftovers,
            "removed unacknowledged staging files left by an earlier stop"
        );
    }
    // Configuration errors first, before anything listens.
    let dicom_tls = settings.dicom_tls()?;
    let metrics = metrics_recorder()?;
    let dicom = TcpListener::bind((settings.dicom_bind, settings.dicom_port))
        .await
        .with_context(|| {
            format!(
                "cannot listen for DICOM on {}:{}",
                settings.dicom_bind, settings.dicom_port
            )
        })?;
    let http = TcpListener::bind((settings.http_bind, settings.http_port))
        .await
        .with_context(|| {
            format!(
                "cannot listen for HTTP on {}:{}",
                settings.http_bind, settings.http_port
            )
        })?;
    let dicom_tls = match (dicom_tls, settings.dicom_tls_port) {
        (Some(config), Some(port)) => {
            let listener = TcpListener::bind((settings.dicom_bind, port))
                .await
                .with_context(|| {
                    format!(
                        "cannot listen for DICOM TLS on {}:{port} (dicom_tls_port)",
                        settings.dicom_bind
                    )
                })?;
            Some(dicom_scp::TlsListener { listener, config })
        }
        _ => None,
    };
    let dicom_addr = dicom.local_addr()?;
    let dicom_tls_addr = match &dicom_tls {
        Some(t) => Some(t.listener.local_addr()?),
        None => None,
    };
    let http_addr = http.local_addr()?;
    if demo {
        let demo_archive = archive.clone().with_audit_command("pacs serve --demo");
        load_demo(&demo_archive, &settings, dicom_addr.port()).await?;
    }
    let http_tls = settings.http_tls()?;
    let session_ttl = settings.session_ttl()?;
    let worklist_policy = settings.worklist_policy()?;
    let report_key = std::sync::Arc::new(
        pacs_store::reports::signing::ReportKey::load_or_create(&settings.report_key_path())
            .context("cannot load the report signing key (report_key_file)")?,
    );
    let scheme = if http_tls.is_some() { "https" } else { "http" };
    if !settings.http_bind.is_loopback() && http_tls.is_none() {
        tracing::warn!(%http_addr, "HTTP listens beyond loopback without TLS: configure http_tls_cert/http_tls_key or put it behind a TLS proxy");
    }
    println!(
        "pacs: archive    {} ; index {}",
        archive.objects().describe(),
        pacs_store::index::redact_url(&settings.store().database_url())
    );
    println!(
        "pacs: DICOM      {dicom_addr} as AE title {} (calling AE titles must be registered: pacs clinic add --name NAME --ae-title AE)",
        settings.ae_title
    );
    if let Some(addr) = dicom_tls_addr {
        let clients = match &settings.dicom_tls_client_ca {
            Some(ca) => format!("client certificates verified against {}", ca.display()),
            None => "no client certificates requested (dicom_tls_client_ca unset)".to_owned(),
        };
        println!(
            "pacs: DICOM TLS  {addr} as AE title {} (TLS 1.2/1.3; {clients}; AE titles registered with --tls-only are accepted only here)",
            settings.ae_title
        );
    }
    warn_about_unreachable_aes(&archive, &settings, dicom_tls_addr.is_some()).await;
    println!(
        "pacs: HTTP       {scheme}://{http_addr}/  (DICOMweb {scheme}://{http_addr}/dicom-web, API docs /api/openapi.json, health /healthz, metrics /metrics)"
    );
    if reading_workstation_api::viewer::is_built(&settings.viewer_dir) {
        println!(
            "pacs: viewer     {scheme}://{http_addr}/  (open it in a browser; files from {})",
            settings.viewer_dir.display()
        );
    } else {
        println!(
            "pacs: viewer     not built: no index.html in {} (run `npm ci && npm run build` in viewer-web, or set viewer_dir / PACS_VIEWER_DIR)",
            settings.viewer_dir.display()
        );
    }
    if let Some(f) = &audit_forwarding {
        println!(
            "pacs: audit      forwarded to {} (syslog over TLS, IHE ATNA)",
            f.destination
        );
    }
    if demo {
        let users = demo_users(&archive, &settings).await?;
        let (name, password) = &users[0];
        let names = users
            .iter()
            .map(|(u, _)| u.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let kept = demo_credentials_path(&settings);
        // The password is shown to a person at a terminal only: when standard output goes
        // to a file or a journal, it would be a password in a log.
        let password = if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            password.to_string()
        } else {
            format!("<see {}>", kept.display())
        };
        println!(
            "pacs: log in     at {scheme}://{http_addr}/ as {name}, password {password} (demo users {names}; passwords kept in {}; API clients POST /api/login)",
            kept.display()
        );
    }
    // Audit trail: the application started.
    let started = match dicom_tls_addr {
        Some(tls) => format!("DICOM {dicom_addr}, DICOM TLS {tls}, HTTP {http_addr}"),
        None => format!("DICOM {dicom_addr}, HTTP {http_addr}"),
    };
    let event = application_event(&settings, EventType::ApplicationStart, &started);
    archive.audit_or_log(event).await;
    println!(
        "PACS_READY dicom_port={} http_port={}{}",
        dicom_addr.port(),
        http_addr.port(),
        dicom_tls_addr
            .map(|a| format!(" dicom_tls_port={}", a.port()))
            .unwrap_or_default()
    );

    // The forwarder stops after the stop event is written, so that it goes out too.
    let (finish_forwarding, forwarding_stop) = watch::channel(false);
    let forwarder = audit_forwarding.map(|f| {
        tokio::spawn(crate::audit_forward::run(
            archive.index().clone(),
            f,
            forwarding_stop,
        ))
    });

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: refusing new associations, finishing stores in flight");
        let _ = stop_tx.send(true);
    });

    let (warm_tx, warm_rx) = tokio::sync::mpsc::channel(1024);
    let warmer = tokio::spawn(metadata_warmer(archive.clone(), warm_rx, stop_rx.clone()));
    let follower = tokio::spawn(ingest_follower(
        archive.index().clone(),
        warm_tx.clone(),
        stop_rx.clone(),
    ));
    let sweeper = tokio::spawn(ready_sweeper(
        archive.index().clone(),
        settings.store().study_quiet_period(),
        warm_tx,
        stop_rx.clone(),
    ));
    let worklist = tokio::spawn(worklist_keeper(
        archive.index().clone(),
        worklist_policy.clone(),
        stop_rx.clone(),
    ));
    let delivery = tokio::spawn(delivery_keeper(
        archive.clone(),
        dicom_scp::deliver::DeliveryConfig {
            policy: settings.delivery_policy()?,
            calling_ae: settings.ae_title.clone(),
            institution: settings.report_institution.clone(),
            font_paths: settings.report_fonts.clone(),
            key_images: Some(std::sync::Arc::new(render_key_image)),
        },
        stop_rx.clone(),
    ));
    let scp = dicom_scp::run_with_tls(
        dicom,
        dicom_tls,
        archive.clone(),
        settings.scp(),
        stopped(stop_rx.clone()),
    );
    let api = reading_workstation_api::run(
        http,
        reading_workstation_api::ApiState {
            archive: archive.clone(),
            metrics: Some(metrics),
            https: http_tls.is_some(),
            session_ttl,
            viewer_dir: settings.viewer_dir.clone(),
            worklist: worklist_policy.clone(),
            report_key,
            live: reading_workstation_api::live::LiveFeed::start(archive.index().clone())
                .await
                .context("cannot start the live event feed")?,
        },
        http_tls,
        stopped(stop_rx.clone()),
    );
    let (a, b) = tokio::join!(scp, api);
    a.context("DICOM listener failed")?;
    b.context("HTTP server failed")?;
    let _ = sweeper.await;
    let _ = follower.await;
    let _ = worklist.await;
    let _ = delivery.await;
    let _ = warmer.await;
    // Audit trail: the application stopped (after the last store in flight).
    let event = application_event(&settings, EventType::ApplicationStop, &started);
    archive.audit_or_log(event).await;
    let _ = finish_forwarding.send(true);
    if let Some(f) = forwarder {
        let _ = tokio::time::timeout(Duration::from_secs(15), f).await;
    }
    archive.index().close().await;
    tracing::info!("stopped");
    Ok(())
}

/// AE titles whose requirements this configuration cannot meet (TLS-only without a TLS
/// listener, a client certificate without client CAs to verify it) can never connect: say
/// so at start rather than leave the operator to find "calling AE title not recognized" in
/// a modality's log.
async fn warn_about_unreachable_aes(archive: &Archive, settings: &Settings, tls: bool) {
    let Ok(clinics) = archive.index().list_clinics().await else {
        return;
    };
    let aes: Vec<_> = clinics.iter().flat_map(|c| &c.ae_titles).collect();
    let names = |f: &dyn Fn(&pacs_store::index::AeRegistration) -> bool| {
        aes.iter()
            .filter(|a| f(a))
            .map(|a| a.ae_title.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !tls {
        let tls_only = names(&|a| a.tls_only || a.require_client_cert);
        if !tls_only.is_empty() {
            tracing::warn!(ae_titles = %tls_only,
                "these AE titles are TLS-only but no DICOM TLS listener is configured, so they will be refused: set dicom_tls_port, dicom_tls_cert and dicom_tls_key");
        }
    } else if settings.dicom_tls_client_ca.is_none() {
        let cert = names(&|a| a.require_client_cert);
        if !cert.is_empty() {
            tracing::warn!(ae_titles = %cert,
                "these AE titles require a client certificate but dicom_tls_client_ca is not set, so none is requested and they will be refused: set dicom_tls_client_ca to the PEM bundle of the CAs that sign their certificates");
        }
    }
}

/// Prometheus exporter with real histograms (buckets), not rolling summaries: they add up
/// across nodes and their quantiles agree with `_sum`/`_count`.
fn metrics_recorder() -> anyhow::Result<metrics_exporter_prometheus::PrometheusHandle> {
    use metrics_exporter_prometheus::Matcher;
    const SECONDS: &[f64] = &[
        0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0,
    ];
    const BATCH: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full("pacs_ingest_seconds".into()), SECONDS)?
        .set_buckets_for_metric(Matcher::Full("pacs_index_batch_size".into()), BATCH)?
        .install_recorder()
        .context("cannot install the metrics recorder")
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Marks studies ready after their quiet period, writing the outbox events (and waking the
/// live feed), and hands each ready study to the metadata warmer.
async fn ready_sweeper(
    index: Index,
    quiet: Duration,
    warm: tokio::sync::mpsc::Sender<String>,
    mut stop: watch::Receiver<bool>,
) {
    let every = (quiet / 4).clamp(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        match index.mark_ready_studies(quiet).await {
            Ok(ready) => {
                if !ready.is_empty() {
                    index.notify_events();
                }
                for s in ready {
                    tracing::info!(study = %s.study_instance_uid, instances = s.number_of_instances,
                        updated = s.updated, "study ready to read");
                    // Best effort: when the warmer is behind, the first viewer builds it.
                    let _ = warm.try_send(s.study_instance_uid);
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot mark studies ready"),
        }
    }
}

/// Feeds the metadata warmer while studies arrive, not only once they are ready: every
/// 250 ms the studies of the `instance_stored` events since the last look (read from the
/// outbox, from its newest event at start) are sent once each, so a viewer that opens a
/// study during or right after its transfer finds its metadata cached. The warmer builds
/// only the instances not cached yet.
async fn ingest_follower(
    index: Index,
    warm: tokio::sync::mpsc::Sender<String>,
    mut stop: watch::Receiver<bool>,
) {
    const BATCH: i64 = 5000;
    let mut after = match index.last_event_id().await {
        Ok(id) => id,
        Err(e) => {
            tracing::warn!(error = %e, "metadata warmer: cannot read the outbox; warming at study ready only");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let mut studies = std::collections::BTreeSet::new();
        loop {
            match index.events_after(after, BATCH).await {
                Ok(events) => {
                    let n = events.len() as i64;
                    for e in events {
                        after = e.id;
                        if e.kind == "instance_stored" {
                            studies.insert(e.study_instance_uid);
                        }
                    }
                    if n < BATCH {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metadata warmer: cannot read the outbox");
                    break;
                }
            }
        }
        for study in studies {
            // Best effort: when the warmer is behind, the first viewer builds it.
            let _ = warm.try_send(study);
        }
    }
}

/// Keeps the worklist current: a task for every study that became ready (from the
/// outbox, so none is missed across restarts), claims whose lease ran out released, and
/// deadline escalations raised. Whatever wrote outbox events wakes the live feed
/// (`Index::notify_events`).
async fn worklist_keeper(
    index: Index,
    policy: pacs_store::worklist::WorklistPolicy,
    mut stop: watch::Receiver<bool>,
) {
    const BATCH: i64 = 500;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = pacs_store::index::now_micros();
        loop {
            match index.route_ready_studies(&policy, now, BATCH).await {
                Ok(routed) => {
                    if !routed.created.is_empty() {
                        index.notify_events();
                    }
                    for id in &routed.created {
                        tracing::info!(task = id, "reading task created");
                    }
                    if (routed.read as i64) < BATCH {
                        break;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "worklist: cannot create reading tasks");
                    break;
                }
            }
        }
        match index.expire_leases(now).await {
            Ok(released) if !released.is_empty() => index.notify_events(),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "worklist: cannot release expired claims"),
        }
        match index.escalate_tasks(&policy, now).await {
            Ok((soon, overdue)) => {
                if !soon.is_empty() || !overdue.is_empty() {
                    index.notify_events();
                }
                for id in soon {
                    tracing::warn!(task = id, "reading task due soon");
                }
                for id in overdue {
                    tracing::warn!(task = id, "reading task overdue");
                }
            }
            Err(e) => tracing::error!(error = %e, "worklist: cannot raise escalations"),
        }
        match index.escalate_critical(now).await {
            Ok(reports) => {
                if !reports.is_empty() {
                    index.notify_events();
                }
                for id in reports {
                    tracing::warn!(report = id, "critical finding not acknowledged in time");
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot escalate critical findings"),
        }
    }
}

/// A key image of a report for its PDF: the frame as the viewer's renderer draws it, in
/// the object's own window, as a JPEG.
fn render_key_image(object: &[u8], frame: u32) -> Result<(Vec<u8>, u32, u32), String> {
    use reading_workstation_api::render::{OutputFormat, RenderParams, render};
    let params = RenderParams {
        frame,
        format: OutputFormat::Jpeg { quality: 90 },
        ..RenderParams::default()
    };
    render(object, &params)
        .map(|r| (r.bytes, r.width, r.height))
        .map_err(|e| e.reason())
}

/// Sends signed reports to their clinics (`dicom_scp::deliver`): a round every second.
async fn delivery_keeper(
    archive: Archive,
    config: dicom_scp::deliver::DeliveryConfig,
    mut stop: watch::Receiver<bool>,
) {
    let mut fonts = dicom_scp::deliver::FontCache::default();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        // A full batch: more may be due at once.
        loop {
            let attempted = dicom_scp::deliver::run_round(&archive, &config, &mut fonts).await;
            if attempted > 0 {
                // Their delivery_* events go to the live feed now.
                archive.index().notify_events();
            }
            if (attempted as i64) < dicom_scp::deliver::BATCH || *stop.borrow() {
                break;
            }
        }
    }
}

/// Builds the WADO-RS metadata cache of studies that became ready, one at a time, so that
/// the first viewer to open a study does not wait for its objects to be read
/// (`pacs_store::metadata`). Late instances are picked up when the study is ready again.
async fn metadata_warmer(
    archive: Archive,
    mut studies: tokio::sync::mpsc::Receiver<String>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let uid = tokio::select! {
            uid = studies.recv() => match uid {
                Some(uid) => uid,
                None => return,
            },
            _ = stop.wait_for(|s| *s) => return,
        };
        let started = std::time::Instant::now();
        let warmed = tokio::select! {
            r = archive.warm_metadata(&uid) => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        match warmed {
            Ok(0) => {}
            Ok(n) => tracing::info!(study = %uid, instances = n,
                ms = started.elapsed().as_millis() as u64, "metadata cached"),
            Err(e) => tracing::warn!(study = %uid, error = %e,
                "cannot cache the study's metadata; it is built on first request"),
        }
    }
}

/// The demo users: an administrator, a central radiologist and a clinician of the demo
/// clinic.
const DEMO_USERS: &[(&str, Role)] = &[
    ("demo-admin", Role::Admin),
    ("demo-radiologist", Role::Radiologist),
    ("demo-clinician", Role::Clinician),
];

fn demo_credentials_path(settings: &Settings) -> std::path::PathBuf {
    settings.data_dir.join("demo-credentials.txt")
}

/// Creates the demo users with random passwords the first time, keeping the passwords in a
/// file readable by the owner only so that later `--demo` runs can show them again.
/// Returns (username, password) for each.
async fn demo_users(
    archive: &Archive,
    settings: &Settings,
) -> anyhow::Result<Vec<(String, String)>> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = demo_credentials_path(settings);
    let mut known: Vec<(String, String)> = std::fs::read_to_string(&path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(u, p)| (u.to_owned(), p.to_owned())))
        .collect();
    for (name, role) in DEMO_USERS {
        let username = Username::parse(name)?;
        if archive.index().find_user(&username).await?.is_some() {
            anyhow::ensure!(
                known.iter().any(|(u, _)| u == name),
                "demo user {name} exists but its password is not in {}; reset it with `pacs user reset-password {name} --password-stdin`",
                path.display()
            );
            continue;
        }
        let password = uuid::Uuid::new_v4().simple().to_string();
        let clinic = role.requires_clinic().then_some(DEMO_CLINIC);
        archive
            .index()
            .create_user(
                &username,
                *role,
                clinic,
                &[],
                Some(&Password::parse(&password)?),
            )
            .await?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        writeln!(f, "{name} {password}")?;
        known.retain(|(u, _)| u != name);
        known.push(((*name).to_owned(), password));
    }
    Ok(DEMO_USERS
        .iter()
        .filter_map(|(name, _)| known.iter().find(|(u, _)| u == name).cloned())
        .collect())
}

/// Registers the demo clinic and imports the synthetic sample studies.
async fn load_demo(archive: &Archive, settings: &Settings, dicom_port: u16) -> anyhow::Result<()> {
    let ae = AeTitle::parse(DEMO_AE_TITLE)?;
    let reg = match archive.index().find_ae(&ae).await? {
        Some(r) => r,
        None => {
            archive
                .index()
                .add_clinic_ae(DEMO_CLINIC, &ae, None)
                .await?
        }
    };
    let dir = settings.data_dir.join("demo-samples");
    let files = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || sample_dicom::write_sample_set(&dir)).await??
    };
    let source = Source {
        clinic_id: Some(reg.clinic_id),
        clinic_name: Some(reg.clinic_name.clone()),
        ae_title: Some(DEMO_AE_TITLE.into()),
        uploader: None,
        archive_authored: false,
    };
    let s =
        crate::commands::import_paths(archive, std::slice::from_ref(&dir), &source, true).await?;
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "pacs: demo       {} sample files: {} new, {} already there; clinic {:?} sends as AE {} (e.g. storescu -aec {} -aet {} 127.0.0.1 {} FILE)",
        files.len(),
        s.stored,
        s.duplicates,
        reg.clinic_name,
        DEMO_AE_TITLE,
        settings.ae_title,
        DEMO_AE_TITLE,
        dicom_port
    );
    Ok(())
}

/// Audit trail: 110100 Application Activity (start or stop) by the archive's AE title,
/// naming who launched it.
fn application_event(settings: &Settings, ty: EventType, listening: &str) -> AuditEvent {
    AuditEvent::new(
        EventId::ApplicationActivity,
        Action::Execute,
        settings.ae_title.as_str(),
        roles::APPLICATION,
    )
    .with_type(ty)
    .with_detail(format!(
        "pacs {} serve ({listening}); launched by {}",
        env!("CARGO_PKG_VERSION"),
        local_operator()
    ))
}
