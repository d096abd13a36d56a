//! The reading worklist against real databases: routing by rules, subspecialty, shift and
//! load; tasks made exactly once from the outbox; claims that exactly one radiologist wins,
//! also from two index handles (two nodes) at once; leases; deadlines and escalations on a
//! controlled clock; late images after the reading → an addendum-review task.

mod common;

use std::time::Duration;

use common::*;
use pacs_store::access::Scope;
use pacs_store::index::{Index, now_micros};
use pacs_store::worklist::{
    Claim, Priority, Sort, View, WorklistPolicy, WorklistQuery, minute_of_week,
};
use sqlx::Row as _;

/// The whole behaviour, on one database; `second` is another handle on the same database
/// (another node).
async fn contract(index: &Index, second: &Index) {
    let policy = WorklistPolicy::default();
    sqlx::query("INSERT INTO clinics (name, created_at) VALUES ('Township A', 0)")
        .execute(index_pool(index))
        .await
        .unwrap();
    let neuro = radiologist(index, "neuro", &["neuro"]).await;
    let chest = radiologist(index, "chest", &["chest"]).await;
    let general = radiologist(index, "general", &[]).await;
    // A neuroradiologist whose shift is not now: never routed to.
    let off = radiologist(index, "neuro-off", &["neuro"]).await;
    let now = now_micros();
    let m = minute_of_week(now);
    let (start, end) = ((m + 120) % 10080, (m + 240) % 10080);
    sqlx::query(
        "INSERT INTO radiologist_shifts (user_id, start_minute, end_minute) VALUES ($1, $2, $3)",
    )
    .bind(off)
    .bind(start)
    .bind(end)
    .execute(index_pool(index))
    .await
    .unwrap();

    store(
        index,
        &[
            StudySpec {
                n: 1,
                modality: "CT",
                body_part: "HEAD",
                priority: None,
            },
            StudySpec {
                n: 2,
                modality: "CT",
                body_part: "CHEST",
                priority: Some("STAT"),
            },
            StudySpec {
                n: 3,
                modality: "US",
                body_part: "ABDOMEN",
                priority: Some("HIGH"),
            },
        ],
    )
    .await;
    let created = index
        .route_ready_studies(&policy, now, 100)
        .await
        .unwrap()
        .created;
    assert_eq!(created.len(), 3);

    let head = task_of(index, 1).await;
    assert_eq!(head.assigned_to, Some(neuro), "{head:?}");
    assert_eq!(head.rule.as_deref(), Some("neuro-ct-head"));
    assert_eq!(head.priority, Priority::Routine);
    assert_eq!(head.due_at - head.ready_at, 24 * 60 * MIN);
    let chest_task = task_of(index, 2).await;
    assert_eq!(chest_task.assigned_to, Some(chest));
    assert_eq!(chest_task.priority, Priority::Stat);
    assert_eq!(chest_task.due_at - chest_task.ready_at, 30 * MIN);
    // No rule for US but "anyone": the least loaded eligible radiologist (general has none).
    let us = task_of(index, 3).await;
    assert_eq!(
        (us.assigned_to, us.priority),
        (Some(general), Priority::Urgent)
    );
    assert_eq!(us.rule.as_deref(), Some("anyone"));
    // Routing gave each radiologist the study (the access policy's assignment).
    assert_eq!(
        count(
            index,
            "SELECT COUNT(*) FROM study_assignments WHERE revoked_at IS NULL"
        )
        .await,
        3
    );

    // MR knee: no msk radiologist, so the msk rule gives way to "anyone", least loaded:
    // the off-shift radiologist is not eligible, the three others have one task each →
    // the lowest id.
    store(
        index,
        &[StudySpec {
            n: 4,
            modality: "MR",
            body_part: "KNEE",
            priority: None,
        }],
    )
    .await;
    // Exactly once: both nodes route the same events at once.
    let (a, b) = tokio::join!(
        index.route_ready_studies(&policy, now, 100),
        second.route_ready_studies(&policy, now, 100)
    );
    let (a, b) = (a.unwrap().created, b.unwrap().created);
    assert_eq!(a.len() + b.len(), 1, "{a:?} {b:?}");
    let knee = task_of(index, 4).await;
    assert_eq!(knee.assigned_to, Some(neuro), "{knee:?}");
    // The rule recorded is the one whose radiologist got it.
    assert_eq!(knee.rule.as_deref(), Some("anyone"));
    // A restart that lost the cursor makes no second task either.
    sqlx::query("DELETE FROM outbox_cursors")
        .execute(index_pool(index))
        .await
        .unwrap();
    let again = index.route_ready_studies(&policy, now, 100).await.unwrap();
    assert!(again.created.is_empty() && again.read > 0, "{again:?}");
    assert_eq!(count(index, "SELECT COUNT(*) FROM reading_tasks").await, 4);
    assert_eq!(index.tasks_of(neuro).await.unwrap().len(), 2);

    // A task routed to a colleague is not claimable.
    assert_eq!(
        index.claim_task(&policy, us.id, chest, now).await.unwrap(),
        Claim::RoutedToOther { user_id: general }
    );
    // Claims of a pool task: two radiologists on two nodes at once, exactly one wins.
    index.return_task_to_pool(us.id, now).await.unwrap();
    let (x, y) = tokio::join!(
        index.claim_task(&policy, us.id, general, now),
        second.claim_task(&policy, us.id, chest, now)
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    let held = [&x, &y]
        .iter()
        .filter(|c| matches!(c, Claim::Held { .. }))
        .count();
    assert_eq!(held, 1, "{x:?} {y:?}");
    let (winner, loser) = if matches!(x, Claim::Held { .. }) {
        (general, chest)
    } else {
        (chest, general)
    };
    let lease = now + policy.lease.as_micros() as i64;
    assert_eq!(
        index
            .claim_task(&policy, us.id, loser, now + MIN)
            .await
            .unwrap(),
        Claim::HeldByOther {
            user_id: winner,
            lease_expires_at: lease
        }
    );
    // The holder renews; the lease runs from the renewal.
    assert_eq!(
        index
            .claim_task(&policy, us.id, winner, now + 2 * MIN)
            .await
            .unwrap(),
        Claim::Held {
            lease_expires_at: lease + 2 * MIN
        }
    );
    // Not the holder: cannot release.
    assert!(
        !index
            .release_task(us.id, loser, now + 3 * MIN)
            .await
            .unwrap()
    );
    // The lease runs out: released, and the other can claim.
    let expired = index.expire_leases(lease + 2 * MIN).await.unwrap();
    assert_eq!(expired, vec![us.id]);
    assert!(matches!(
        index
            .claim_task(&policy, us.id, loser, lease + 3 * MIN)
            .await
            .unwrap(),
        Claim::Held { .. }
    ));
    // The claimer got the study.
    let assigned: i64 = sqlx::query(
        "SELECT COUNT(*) FROM study_assignments a JOIN studies s ON s.id = a.study_ref \
         WHERE s.study_instance_uid = $1 AND a.user_id = $2 AND a.revoked_at IS NULL",
    )
    .bind(uid(3))
    .bind(loser)
    .fetch_one(index_pool(index))
    .await
    .unwrap()
    .try_get(0)
    .unwrap();
    assert_eq!(assigned, 1);
    assert!(
        index
            .release_task(us.id, loser, lease + 4 * MIN)
            .await
            .unwrap()
    );
    // Reassign and back to the pool.
    index.reassign_task(head.id, general, now).await.unwrap();
    assert_eq!(
        index.task(head.id).await.unwrap().unwrap().assigned_to,
        Some(general)
    );
    assert!(index.reassign_task(head.id, 999_999, now).await.is_err());
    index.return_task_to_pool(head.id, now).await.unwrap();
    assert_eq!(
        index.task(head.id).await.unwrap().unwrap().assigned_to,
        None
    );

    // Deadlines on a controlled clock: the STAT chest CT, due 30 min after ready.
    let ready = chest_task.ready_at;
    let (soon, overdue) = index
        .escalate_tasks(&policy, ready + 10 * MIN)
        .await
        .unwrap();
    assert!(!soon.contains(&chest_task.id) && overdue.is_empty());
    let (soon, _) = index
        .escalate_tasks(&policy, ready + 23 * MIN)
        .await
        .unwrap();
    assert_eq!(soon, vec![chest_task.id]);
    let (soon, overdue) = index
        .escalate_tasks(&policy, ready + 24 * MIN)
        .await
        .unwrap();
    assert!(soon.is_empty() && overdue.is_empty(), "raised twice");
    let (_, overdue) = index
        .escalate_tasks(&policy, ready + 31 * MIN)
        .await
        .unwrap();
    assert_eq!(overdue, vec![chest_task.id]);
    let (_, overdue) = index
        .escalate_tasks(&policy, ready + 40 * MIN)
        .await
        .unwrap();
    assert!(overdue.is_empty(), "raised twice");
    let kinds: Vec<String> =
        sqlx::query("SELECT kind FROM events WHERE kind LIKE 'task_%' ORDER BY id")
            .fetch_all(index_pool(index))
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get(0).unwrap())
            .collect();
    for k in [
        "task_created",
        "task_claimed",
        "task_released",
        "task_reassigned",
        "task_due_soon",
        "task_overdue",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} missing from {kinds:?}");
    }

    // Late images after the reading is done: an addendum-review task; before it is done,
    // none (the open task covers them).
    sqlx::query("UPDATE reading_tasks SET state = 'done' WHERE id = $1")
        .bind(knee.id)
        .execute(index_pool(index))
        .await
        .unwrap();
    index
        .insert_instance(instance(4, 2, "MR", "KNEE", None))
        .await
        .unwrap();
    index
        .insert_instance(instance(1, 2, "CT", "HEAD", None))
        .await
        .unwrap();
    index.mark_ready_studies(Duration::ZERO).await.unwrap();
    let created = index
        .route_ready_studies(&policy, now, 100)
        .await
        .unwrap()
        .created;
    assert_eq!(created.len(), 1);
    let review = index.task(created[0]).await.unwrap().unwrap();
    assert_eq!(
        (review.kind.as_str(), review.study_instance_uid.as_str()),
        ("addendum-review", uid(4).as_str())
    );

    // Worklist views, through the access policy.
    let q = |view| WorklistQuery {
        view,
        modality: None,
        priority: None,
        clinic_id: None,
        sort: Sort::Priority,
        limit: 100,
        offset: 0,
    };
    let list = |scope, user, query: WorklistQuery| async move {
        index
            .worklist(scope, user, &query, now)
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.study_instance_uid)
            .collect::<Vec<_>>()
    };
    // The returned CT head and the released US are in the pool.
    let pool = list(Scope::AssignedTo(chest), chest, q(View::Pool)).await;
    // The US task, released to the pool, comes first: urgent before routine.
    assert_eq!(pool, [uid(3), uid(1)]);
    let mine = list(Scope::AssignedTo(chest), chest, q(View::Mine)).await;
    assert!(
        mine.contains(&uid(2)) && !mine.contains(&uid(1)),
        "{mine:?}"
    );
    // A radiologist's "all" is theirs and the pool, never a colleague's.
    let seen = index
        .worklist(Scope::AssignedTo(chest), chest, &q(View::All), now)
        .await
        .unwrap();
    assert!(!seen.is_empty());
    for item in &seen {
        let theirs = item.assigned_to.as_deref() == Some("chest")
            || item.claimed_by.as_deref() == Some("chest")
            || item.assigned_to.is_none();
        assert!(theirs, "{item:?}");
    }
    let everyone = index
        .worklist(Scope::All, 0, &q(View::All), now)
        .await
        .unwrap();
    assert!(everyone.len() > seen.len());
    // Most urgent first: the STAT chest CT heads the list.
    let everything = list(Scope::All, 0, q(View::All)).await;
    assert_eq!(everything.first(), Some(&uid(2)));
    assert_eq!(
        list(Scope::Clinic(1), 0, q(View::All)).await.len(),
        everything.len()
    );
    assert!(list(Scope::Clinic(2), 0, q(View::All)).await.is_empty());
    assert!(list(Scope::Nothing, 0, q(View::All)).await.is_empty());
    let mut us_only = q(View::All);
    us_only.modality = Some("us".into());
    assert_eq!(list(Scope::All, 0, us_only).await, [uid(3)]);
    let mut stat_only = q(View::All);
    stat_only.priority = Some(Priority::Stat);
    assert_eq!(list(Scope::All, 0, stat_only).await, [uid(2)]);
    // Overdue at `now`: nothing yet; a day later everything routine is.
    assert!(list(Scope::All, 0, q(View::Overdue)).await.is_empty());
    let later = index
        .worklist(Scope::All, 0, &q(View::Overdue), now + 25 * 60 * MIN)
        .await
        .unwrap();
    assert_eq!(later.len(), everything.len());
    assert!(later.iter().all(|i| i.overdue));

    // Pages past the first hold each task once, in every order, when a study has two
    // series of the modality filtered on (the filter is an EXISTS closed by
    // `query::END_EXISTS`, whose SQLite OFFSET bug query.rs's name tests reproduce).
    for n in [1, 2] {
        let mut another = instance(n, 9, "CT", "HEAD", None);
        another.attrs.series_instance_uid.push_str(".2");
        index.insert_instance(another).await.unwrap();
    }
    for sort in [Sort::Priority, Sort::Due, Sort::Ready] {
        let ct = |limit, offset| WorklistQuery {
            modality: Some("ct".into()),
            sort,
            limit,
            offset,
            ..q(View::All)
        };
        let all_ct = list(Scope::All, 0, ct(100, 0)).await;
        assert!(all_ct.len() >= 2, "{all_ct:?}");
        for (i, task) in all_ct.iter().enumerate() {
            let page = list(Scope::All, 0, ct(1, i as i64)).await;
            assert_eq!(page, std::slice::from_ref(task), "{sort:?}, page {i}");
        }
        assert!(
            list(Scope::All, 0, ct(1, all_ct.len() as i64))
                .await
                .is_empty()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn worklist_on_sqlite() {
    on_sqlite(|a, b| async move {
        contract(&a, &b).await;
        (a, b)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn worklist_on_postgres() {
    on_postgres("worklist", |a, b| async move {
        contract(&a, &b).await;
        (a, b)
    })
    .await;
}

/// A batch of ready studies routed in one call spreads over the eligible radiologists by
/// their open tasks, counting the tasks the same batch gave them; a batch reads only the
/// events that make tasks, and each task's `task_created` event follows in task order.
async fn batch_spreads_by_load(index: &Index) {
    let policy = WorklistPolicy::default();
    sqlx::query("INSERT INTO clinics (name, created_at) VALUES ('Township B', 0)")
        .execute(index_pool(index))
        .await
        .unwrap();
    let readers = [
        radiologist(index, "general-1", &[]).await,
        radiologist(index, "general-2", &[]).await,
        radiologist(index, "general-3", &[]).await,
    ];
    // US abdomen: only the "anyone" rule matches. Nine studies, three instances each (so
    // the outbox holds 27 instance_stored events among the 9 study_ready ones).
    for n in 1..=9 {
        for i in 1..=3 {
            index
                .insert_instance(instance(n, i, "US", "ABDOMEN", None))
                .await
                .unwrap();
        }
    }
    index.mark_ready_studies(Duration::ZERO).await.unwrap();
    let now = now_micros();
    let first = index.route_ready_studies(&policy, now, 4).await.unwrap();
    assert_eq!((first.read, first.created.len()), (4, 4), "{first:?}");
    let second = index.route_ready_studies(&policy, now, 100).await.unwrap();
    assert_eq!((second.read, second.created.len()), (5, 5), "{second:?}");
    let done = index.route_ready_studies(&policy, now, 100).await.unwrap();
    assert_eq!((done.read, done.created.len()), (0, 0), "{done:?}");
    for r in readers {
        assert_eq!(index.tasks_of(r).await.unwrap().len(), 3, "radiologist {r}");
    }
    let created: Vec<i64> = first.created.into_iter().chain(second.created).collect();
    let events = index.events_after(0, 1000).await.unwrap();
    let announced: Vec<i64> = events
        .iter()
        .filter(|e| e.kind == "task_created")
        .map(|e| e.payload["task_id"].as_i64().unwrap())
        .collect();
    assert_eq!(announced, created);
    for e in events.iter().filter(|e| e.kind == "task_created") {
        let task = index
            .task(e.payload["task_id"].as_i64().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(e.study_instance_uid, task.study_instance_uid);
        assert_eq!(e.payload["assigned_to"].as_i64(), task.assigned_to);
        assert_eq!(e.payload["due_at"].as_i64(), Some(task.due_at));
        assert_eq!(e.payload["priority"].as_str(), Some(task.priority.as_str()));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_spreads_by_load_on_sqlite() {
    on_sqlite(|a, b| async move {
        batch_spreads_by_load(&a).await;
        (a, b)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_spreads_by_load_on_postgres() {
    on_postgres("worklist_batch", |a, b| async move {
        batch_spreads_by_load(&a).await;
        (a, b)
    })
    .await;
}
