//! The administrators' dashboard against real databases: studies per clinic per UTC day
//! (edges of days and of the window), turnaround percentiles per priority, backlog and
//! overdue, discrepancy rates — with known numbers on a fixed clock.

#![allow(clippy::type_complexity)]

mod common;

use common::*;
use pacs_store::index::Index;
use sqlx::Row as _;

const DAY: i64 = 86_400_000_000;
const HOUR: i64 = 3_600_000_000;
/// 2024-10-04 (day 20000 of the Unix epoch), 10:00 UTC.
const NOW: i64 = 20_000 * DAY + 10 * HOUR;

async fn exec(index: &Index, sql: &'static str) {
    sqlx::query(sql).execute(index_pool(index)).await.unwrap();
}

/// Study `n` of `clinic` (None: imported without one), first received at `at`.
async fn study(index: &Index, n: u32, clinic: Option<(i64, &str)>, at: i64) -> i64 {
    let mut i = instance(n, 1, "CT", "CHEST", None);
    i.clinic_id = clinic.map(|c| c.0);
    i.clinic_name = clinic.map(|c| c.1.to_owned());
    i.source_ae = None;
    i.received_at = at;
    index.insert_instance(i).await.unwrap();
    sqlx::query("SELECT id FROM studies WHERE study_instance_uid = $1")
        .bind(uid(n))
        .fetch_one(index_pool(index))
        .await
        .unwrap()
        .try_get(0)
        .unwrap()
}

/// A reading task of `study` as the worklist would have left it.
#[allow(clippy::too_many_arguments)]
async fn task(
    index: &Index,
    event: i64,
    study: i64,
    priority: &str,
    state: &str,
    ready_at: i64,
    due_at: i64,
    done_at: Option<i64>,
) -> i64 {
    sqlx::query(
        "INSERT INTO reading_tasks (source_event_id, study_ref, clinic_id, kind, priority, state, \
           ready_at, due_at, created_at, updated_at, done_at) \
         VALUES ($1, $2, NULL, 'read', $3, $4, $5, $6, $5, $5, $7) RETURNING id",
    )
    .bind(event)
    .bind(study)
    .bind(priority)
    .bind(state)
    .bind(ready_at)
    .bind(due_at)
    .bind(done_at)
    .fetch_one(index_pool(index))
    .await
    .unwrap()
    .try_get(0)
    .unwrap()
}

async fn report(index: &Index, task: i64, study: i64, author: i64, state: &str, agreement: &str) {
    sqlx::query(
        "INSERT INTO reports (task_id, study_ref, author_id, template, state, agreement, \
           created_at, updated_at) VALUES ($1, $2, $3, 'default', $4, $5, 0, 0)",
    )
    .bind(task)
    .bind(study)
    .bind(author)
    .bind(state)
    .bind(agreement)
    .execute(index_pool(index))
    .await
    .unwrap();
}

async fn contract(index: &Index) {
    exec(
        index,
        "INSERT INTO clinics (name, created_at) VALUES ('Township A', 0), ('Township B', 0), \
         ('Quiet <b>Clinic</b>', 0)",
    )
    .await;
    let id_of = |name: &'static str| async move {
        let id: i64 = sqlx::query("SELECT id FROM clinics WHERE name = $1")
            .bind(name)
            .fetch_one(index_pool(index))
            .await
            .unwrap()
            .try_get(0)
            .unwrap();
        id
    };
    let a = (id_of("Township A").await, "Township A");
    let b = (id_of("Township B").await, "Township B");
    let quiet = id_of("Quiet <b>Clinic</b>").await;

    // A window of three UTC days: 2024-10-02, -03, -04 (today, until 10:00).
    let s1 = study(index, 1, Some(a), 19_998 * DAY).await; // first microsecond of day 1
    let s2 = study(index, 2, Some(a), 20_000 * DAY + 9 * HOUR).await;
    let s3 = study(index, 3, Some(a), 20_000 * DAY + 9 * HOUR + 30 * 60_000_000).await;
    let s4 = study(index, 4, Some(b), 20_000 * DAY - 1).await; // last microsecond of day 2
    let s5 = study(index, 5, Some(b), 19_998 * DAY - 1).await; // the day before: outside
    study(index, 6, None, 19_999 * DAY + 12 * HOUR).await;
    study(index, 7, Some(b), NOW + 1).await; // after now: outside
    // More instances of a study on a later day do not count it again.
    let mut again = instance(1, 2, "CT", "CHEST", None);
    again.clinic_id = Some(a.0);
    again.received_at = 20_000 * DAY + HOUR;
    index.insert_instance(again).await.unwrap();

    // Done tasks: ten STAT ones that took 10, 20, …, 100 minutes; one urgent of 2 h; an
    // urgent one done before the window; nothing routine.
    let mut event = 1000;
    let mut stat_tasks = Vec::new();
    for i in 1..=10 {
        event += 1;
        let done = NOW - HOUR - i * 60_000_000;
        let took = i * 10 * MIN;
        stat_tasks.push(
            task(
                index,
                event,
                s1,
                "stat",
                "done",
                done - took,
                done - took + 30 * MIN,
                Some(done),
            )
            .await,
        );
    }
    let urgent_done = task(
        index,
        2001,
        s2,
        "urgent",
        "done",
        NOW - 3 * HOUR,
        NOW,
        Some(NOW - HOUR),
    )
    .await;
    task(
        index,
        2002,
        s5,
        "urgent",
        "done",
        19_990 * DAY,
        19_990 * DAY + 4 * HOUR,
        Some(19_990 * DAY + HOUR),
    )
    .await;
    // The backlog: a STAT task open and not yet due; two urgent claimed, one overdue;
    // three routine open, two overdue (one due exactly now); cancelled ones do not count.
    task(
        index,
        3001,
        s3,
        "stat",
        "open",
        NOW - MIN,
        NOW + 29 * MIN,
        None,
    )
    .await;
    task(
        index,
        3002,
        s3,
        "urgent",
        "claimed",
        NOW - HOUR,
        NOW + HOUR,
        None,
    )
    .await;
    task(
        index,
        3003,
        s4,
        "urgent",
        "claimed",
        NOW - 5 * HOUR,
        NOW - HOUR,
        None,
    )
    .await;
    task(
        index,
        3004,
        s4,
        "routine",
        "open",
        NOW - 2 * DAY,
        NOW - DAY,
        None,
    )
    .await;
    task(index, 3005, s4, "routine", "open", NOW - DAY, NOW, None).await;
    task(
        index,
        3006,
        s4,
        "routine",
        "open",
        NOW - HOUR,
        NOW + 23 * HOUR,
        None,
    )
    .await;
    task(
        index,
        3007,
        s4,
        "routine",
        "cancelled",
        NOW - DAY,
        NOW - HOUR,
        None,
    )
    .await;

    // Verdicts on preliminary impressions: Township A agree + minor, Township B major; a
    // draft's verdict is not counted.
    let rad = radiologist(index, "rad", &[]).await;
    report(index, stat_tasks[0], s1, rad, "final", "agree").await;
    report(index, stat_tasks[1], s2, rad, "amended", "minor").await;
    report(index, urgent_done, s4, rad, "final", "major").await;
    report(index, stat_tasks[2], s5, rad, "draft", "major").await;

    let d = index.dashboard(3, NOW).await.unwrap();
    assert_eq!(d.days, 3);
    assert_eq!(d.from, 19_998 * DAY);
    assert_eq!(d.until, NOW);
    assert_eq!(d.day_labels, ["2024-10-02", "2024-10-03", "2024-10-04"]);
    let rows: Vec<(Option<i64>, Option<&str>, &[i64], i64)> = d
        .studies
        .iter()
        .map(|c| {
            (
                c.clinic_id,
                c.clinic.as_deref(),
                c.counts.as_slice(),
                c.total,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (Some(quiet), Some("Quiet <b>Clinic</b>"), &[0, 0, 0][..], 0),
            (Some(a.0), Some("Township A"), &[1, 0, 2][..], 3),
            (Some(b.0), Some("Township B"), &[0, 1, 0][..], 1),
            (None, None, &[0, 1, 0][..], 1),
        ]
    );

    let t: Vec<(
        &str,
        i64,
        Option<f64>,
        Option<f64>,
        Option<f64>,
        Option<f64>,
    )> = d
        .turnaround
        .iter()
        .map(|t| {
            (
                t.priority.as_str(),
                t.count,
                t.p50_seconds,
                t.p90_seconds,
                t.p95_seconds,
                t.max_seconds,
            )
        })
        .collect();
    assert_eq!(
        t,
        [
            // Nearest rank of 10: p50 the 5th, p90 the 9th, p95 the 10th.
            (
                "stat",
                10,
                Some(3000.0),
                Some(5400.0),
                Some(6000.0),
                Some(6000.0)
            ),
            (
                "urgent",
                1,
                Some(7200.0),
                Some(7200.0),
                Some(7200.0),
                Some(7200.0)
            ),
            ("routine", 0, None, None, None, None),
        ]
    );

    let backlog: Vec<(&str, i64, i64, i64)> = d
        .backlog
        .iter()
        .map(|b| (b.priority.as_str(), b.open, b.claimed, b.overdue))
        .collect();
    assert_eq!(
        backlog,
        [("stat", 1, 0, 0), ("urgent", 0, 2, 1), ("routine", 3, 0, 2)]
    );
    assert_eq!(d.overdue, 3);

    let disc: Vec<(&str, i64, i64, i64, i64)> = d
        .discrepancies
        .iter()
        .map(|c| (c.clinic.as_str(), c.reviewed, c.agree, c.minor, c.major))
        .collect();
    assert_eq!(
        disc,
        [("Township A", 2, 1, 1, 0), ("Township B", 1, 0, 0, 1)]
    );

    // One day: today only; the window bounds the turnaround too (all done today here).
    let today = index.dashboard(1, NOW).await.unwrap();
    assert_eq!(today.day_labels, ["2024-10-04"]);
    let a_row = today
        .studies
        .iter()
        .find(|c| c.clinic_id == Some(a.0))
        .unwrap();
    assert_eq!(a_row.counts, [2]);
    assert_eq!(today.turnaround[0].count, 10);
    // A window long before any of it: nothing received, nothing done, no deadline passed.
    let earlier = index.dashboard(2, 19_000 * DAY).await.unwrap();
    assert!(earlier.studies.iter().all(|c| c.total == 0));
    assert!(earlier.turnaround.iter().all(|t| t.count == 0));
    assert_eq!(earlier.overdue, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_on_sqlite() {
    on_sqlite(|a, b| async move {
        contract(&a).await;
        (a, b)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_on_postgres() {
    on_postgres("dashboard", |a, b| async move {
        contract(&a).await;
        (a, b)
    })
    .await;
}
