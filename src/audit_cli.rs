//! `pacs audit …`: verify the hash chain of the audit trail, search it.

use std::process::ExitCode;

use anyhow::Context;
use pacs_store::audit::{
    self, Action, AuditEvent, AuditFilter, AuditRecord, EventId, EventType, Outcome,
    local_operator, roles,
};

use crate::settings::Settings;

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Recompute the hash chain; exit 1 naming the first altered or missing entry. Prints the
    /// last id and hash: keep them elsewhere and pass them to a later run as --anchor (a
    /// deleted tail is invisible to the chain alone).
    Verify {
        /// `ID:HASH` printed by an earlier run: also fail if that entry is gone or changed.
        #[arg(long, value_name = "ID:HASH")]
        anchor: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Search the audit trail: the most recent matching entries, shown oldest first.
    Search {
        /// Patient ID (exact).
        #[arg(long)]
        patient: Option<String>,
        /// User name or AE title (exact).
        #[arg(long)]
        user: Option<String>,
        /// From this time on: RFC 3339 (2025-03-01T08:00:00+08:00) or a UTC day (2025-03-01).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Up to this time (a day: to its end), same forms as --since.
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// PS3.15 audit event ID, 110100 to 110114 (110104 = DICOM Instances Transferred).
        #[arg(long, value_name = "CODE")]
        event: Option<i64>,
        /// At most this many entries (at most 10000).
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(settings: &Settings, cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    let archive = settings
        .store()
        .open()
        .await
        .context("cannot open the archive")?;
    let code = match cmd {
        AuditCommand::Verify { anchor, json } => {
            let anchor = anchor.as_deref().map(parse_anchor).transpose()?;
            let v = archive
                .index()
                .verify_audit_anchored(anchor.as_ref().map(|(id, h)| (*id, h.as_str())))
                .await?;
            let last = match (&v.last_id, &v.last_hash) {
                (Some(id), Some(h)) => format!("last id {id} hash {h}"),
                _ => "no entries".to_owned(),
            };
            let verdict = match &v.problem {
                None => format!(
                    "audit trail intact: {} events, {last}{}",
                    v.intact_events,
                    anchor
                        .as_ref()
                        .map(|(id, _)| format!(" (anchor {id} matches)"))
                        .unwrap_or_default()
                ),
                Some(p) => format!(
                    "AUDIT TRAIL BROKEN: {p}\n  {} entries before it are intact ({last})",
                    v.intact_events
                ),
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{verdict}");
            }
            // Reading the audit log is itself audited (PS3.15 A.5.3.2).
            let mut event = AuditEvent::new(
                EventId::AuditLogUsed,
                Action::Read,
                local_operator(),
                roles::OPERATOR,
            )
            .with_detail(format!("pacs audit verify: {verdict}"));
            if let Some(p) = &v.problem {
                event = event.with_outcome(
                    Outcome::MinorFailure,
                    format!("chain broken at entry {}", p.first_bad_id()),
                );
            }
            archive.audit_or_log(event).await;
            if v.is_intact() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        AuditCommand::Search {
            patient,
            user,
            since,
            until,
            event,
            limit,
            json,
        } => {
            let filter = AuditFilter {
                patient,
                user,
                since: since
                    .as_deref()
                    .map(|s| audit::parse_time(s, false))
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("--since: {e}"))?,
                until: until
                    .as_deref()
                    .map(|s| audit::parse_time(s, true))
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("--until: {e}"))?,
                event_id: event
                    .map(|c| {
                        EventId::from_code(c).with_context(|| {
                            format!("--event {c} is not a PS3.15 audit event ID (110100 to 110114)")
                        })
                    })
                    .transpose()?,
                limit: Some(limit.clamp(1, 10_000)),
                ..Default::default()
            };
            let records = archive.index().search_audit(&filter).await?;
            if json {
                let v: Vec<serde_json::Value> = records.iter().map(AuditRecord::to_json).collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else if records.is_empty() {
                println!("no matching audit entries");
            } else {
                for r in &records {
                    println!("{}", one_line(r));
                }
            }
            // Searching the audit log is itself audited, under the patient searched for.
            let event = AuditEvent::new(
                EventId::AuditLogUsed,
                Action::Read,
                local_operator(),
                roles::OPERATOR,
            )
            .with_patient(filter.patient.clone(), None)
            .with_detail(format!(
                "pacs audit search: {}; {} entries",
                describe(&filter),
                records.len()
            ));
            archive.audit_or_log(event).await;
            ExitCode::SUCCESS
        }
    };
    archive.index().close().await;
    Ok(code)
}

fn parse_anchor(s: &str) -> anyhow::Result<(i64, String)> {
    let (id, hash) = s
        .split_once(':')
        .context("--anchor is ID:HASH, as printed by `pacs audit verify`")?;
    let id: i64 = id
        .trim()
        .parse()
        .context("--anchor: the id before ':' is a number")?;
    let hash = hash.trim();
    anyhow::ensure!(
        hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
        "--anchor: the hash after ':' is 64 hexadecimal digits"
    );
    Ok((id, hash.to_ascii_lowercase()))
}

fn describe(f: &AuditFilter) -> String {
    let mut parts = Vec::new();
    if let Some(p) = &f.patient {
        parts.push(format!("patient {p:?}"));
    }
    if let Some(u) = &f.user {
        parts.push(format!("user {u:?}"));
    }
    if let Some(s) = f.since {
        parts.push(format!("since {}", audit::format_micros(s)));
    }
    if let Some(u) = f.until {
        parts.push(format!("until {}", audit::format_micros(u)));
    }
    if let Some(e) = f.event_id {
        parts.push(format!("event {e}"));
    }
    if let Some(l) = f.limit {
        parts.push(format!("limit {l}"));
    }
    parts.join(", ")
}

/// One entry per line (text was cleaned of control characters when it was stored; new
/// lines are folded here).
fn one_line(r: &AuditRecord) -> String {
    let event_type = r
        .event_type
        .map(|t| {
            let meaning = EventType::from_code(t).map_or("unknown type", EventType::meaning);
            format!(" / {t} {meaning}")
        })
        .unwrap_or_default();
    let mut line = format!(
        "{:>6}  {}  {} {}{event_type}  {}  {}",
        r.id,
        audit::format_micros(r.occurred_at),
        r.event_id,
        r.event_meaning(),
        r.action,
        Outcome::meaning(r.outcome),
    );
    if let Some(d) = &r.outcome_description {
        line.push_str(&format!(" ({d})"));
    }
    line.push_str(&format!("  by {} ({})", r.user, r.user_role));
    if let Some(ip) = &r.source_ip {
        line.push_str(&format!(" from {ip}"));
    }
    if let Some(p) = &r.patient_id {
        match &r.patient_issuer {
            Some(i) => line.push_str(&format!("  patient {p} [{i}]")),
            None => line.push_str(&format!("  patient {p}")),
        }
    }
    if let Some(s) = &r.study_instance_uid {
        line.push_str(&format!("  study {s}"));
    }
    match r.instance_uids().as_slice() {
        [] if r.instance_count == 0 => {}
        [one] if r.instance_count == 1 => line.push_str(&format!("  instance {one}")),
        _ => line.push_str(&format!("  {} instances", r.instance_count)),
    }
    if let Some(d) = &r.detail {
        line.push_str(&format!("  — {}", d.replace(['\n', '\t'], " ")));
    }
    line
}
