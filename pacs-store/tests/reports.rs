//! Reports against real databases: the township doctor's preliminary impression, a draft
//! only by the radiologist holding the claim, the agreement verdict required before
//! signing, Ed25519 signatures that verify untouched and fail after any stored byte
//! changes, signed addenda, critical findings in the outbox, discrepancy rates per clinic.

mod common;

use common::*;
use pacs_store::StoreError;
use pacs_store::access::Scope;
use pacs_store::index::{Index, now_micros};
use std::time::Duration;

use pacs_store::reports::delivery::DeliveryPolicy;
use pacs_store::reports::signing::ReportKey;
use pacs_store::reports::{Agreement, ReportContent};
use pacs_store::users::{Principal, Role, Username};
use pacs_store::worklist::{Claim, Priority, WorklistPolicy};
use sqlx::Row as _;

async fn township_doctor(index: &Index, name: &str) -> Principal {
    let now = now_micros();
    let id: i64 = sqlx::query(
        "INSERT INTO users (username, role, clinic_id, created_at, updated_at) \
         VALUES ($1, 'township-doctor', 1, $2, $2) RETURNING id",
    )
    .bind(name)
    .bind(now)
    .fetch_one(index_pool(index))
    .await
    .unwrap()
    .try_get(0)
    .unwrap();
    Principal {
        user_id: id,
        username: Username::parse(name).unwrap(),
        role: Role::TownshipDoctor,
        clinic_id: Some(1),
        clinic_name: Some("Township A".into()),
        subspecialties: Vec::new(),
    }
}

fn invalid<T: std::fmt::Debug>(r: Result<T, StoreError>) -> String {
    match r {
        Err(StoreError::Invalid(why)) => why,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn contract(index: &Index) {
    let policy = WorklistPolicy::default();
    let key = ReportKey::from_bytes(&[9; 32]);
    sqlx::query("INSERT INTO clinics (name, created_at) VALUES ('Township A', 0)")
        .execute(index_pool(index))
        .await
        .unwrap();
    let chest = radiologist(index, "chest", &["chest"]).await;
    let other = radiologist(index, "other", &["neuro"]).await;
    let doctor = township_doctor(index, "doc-a").await;
    store(
        index,
        &[StudySpec {
            n: 1,
            modality: "CT",
            body_part: "CHEST",
            priority: None,
        }],
    )
    .await;
    let now = now_micros();
    index.route_ready_studies(&policy, now, 100).await.unwrap();
    let task = task_of(index, 1).await;
    assert_eq!(
        (task.assigned_to, task.priority),
        (Some(chest), Priority::Routine)
    );

    // The township doctor's impression, flagged urgent: the task becomes urgent.
    index
        .save_preliminary(
            &doctor,
            &uid(1),
            "Right lower lobe consolidation?",
            true,
            now,
        )
        .await
        .unwrap();
    assert_eq!(
        index.task(task.id).await.unwrap().unwrap().priority,
        Priority::Urgent
    );
    assert_eq!(index.preliminaries(&uid(1)).await.unwrap().len(), 1);

    // No draft without the claim; the claimer writes it on the study's template.
    let mut content = ReportContent {
        clinical_information: "Cough and fever for a week.".into(),
        technique: "Axial CT of the chest without contrast.".into(),
        findings: "Consolidation of the right lower lobe with air bronchograms.".into(),
        impression: "Right lower lobe pneumonia.".into(),
        ..Default::default()
    };
    assert!(invalid(index.save_draft(task.id, chest, &content, now).await).contains("not claimed"));
    assert!(matches!(
        index
            .claim_task(&policy, task.id, chest, now)
            .await
            .unwrap(),
        Claim::Held { .. }
    ));
    let draft = index
        .save_draft(task.id, chest, &content, now)
        .await
        .unwrap();
    assert_eq!(
        (draft.state.as_str(), draft.template.as_str()),
        ("draft", "ct-chest")
    );
    assert!(invalid(index.save_draft(task.id, other, &content, now).await).contains("not claimed"));
    // Signing needs the verdict on the preliminary impression.
    assert!(
        invalid(index.sign_report(&key, &policy, draft.id, chest, now).await).contains("agreement")
    );
    content.agreement = Some(Agreement::Minor);
    content.agreement_comment = Some("Pneumonia, but also a small effusion.".into());
    content.critical = true;
    index
        .save_draft(task.id, chest, &content, now)
        .await
        .unwrap();
    // Not by someone else, not after the lease ran out.
    assert!(
        invalid(index.sign_report(&key, &policy, draft.id, other, now).await)
            .contains("not claimed")
    );
    let late = now + policy.lease.as_micros() as i64 + 1;
    assert!(
        invalid(
            index
                .sign_report(&key, &policy, draft.id, chest, late)
                .await
        )
        .contains("not claimed")
    );
    let signed = index
        .sign_report(&key, &policy, draft.id, chest, now + 1)
        .await
        .unwrap();
    assert_eq!(signed.state, "final");
    assert_eq!(signed.content, content);
    assert_eq!(index.task(task.id).await.unwrap().unwrap().state, "done");
    // Signed is signed: no second signature, no new draft, no late preliminary.
    assert!(
        invalid(
            index
                .sign_report(&key, &policy, draft.id, chest, now + 2)
                .await
        )
        .contains("already signed")
    );
    assert!(
        invalid(index.save_draft(task.id, chest, &content, now + 2).await).contains("not claimed")
    );
    assert!(
        invalid(
            index
                .save_preliminary(&doctor, &uid(1), "again", false, now)
                .await
        )
        .contains("reported")
    );
    let kinds: Vec<String> = sqlx::query("SELECT kind FROM events ORDER BY id")
        .fetch_all(index_pool(index))
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get(0).unwrap())
        .collect();
    assert!(
        kinds.iter().any(|k| k == "report_signed") && kinds.iter().any(|k| k == "critical_finding"),
        "{kinds:?}"
    );

    // The critical finding: a notice to the clinic, open until one of its doctors
    // acknowledges it; escalated once when the deadline passes first.
    let open = index
        .critical_notices(Scope::Clinic(1), true)
        .await
        .unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(
        (open[0].report_id, open[0].signer.as_str()),
        (draft.id, "chest")
    );
    assert!(
        index
            .critical_notices(Scope::Clinic(2), false)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        index
            .critical_notices(Scope::AssignedTo(chest), true)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        index
            .critical_notices(Scope::AssignedTo(other), true)
            .await
            .unwrap()
            .is_empty()
    );
    let portal = index.portal_studies(Scope::Clinic(1), 10, 0).await.unwrap();
    assert_eq!(
        (portal[0].state.as_str(), portal[0].report_id),
        ("critical", Some(draft.id))
    );
    let due = open[0].ack_due_at;
    assert_eq!(
        due - open[0].notified_at,
        policy.critical_ack.as_micros() as i64
    );
    assert!(index.escalate_critical(due - 1).await.unwrap().is_empty());
    assert_eq!(index.escalate_critical(due).await.unwrap(), vec![draft.id]);
    assert!(
        index.escalate_critical(due + 1).await.unwrap().is_empty(),
        "escalated twice"
    );
    // Radiologists and other clinics cannot acknowledge; the clinic's doctor can, once.
    let chest_principal = Principal {
        user_id: chest,
        username: Username::parse("chest").unwrap(),
        role: Role::Radiologist,
        clinic_id: None,
        clinic_name: None,
        subspecialties: vec!["chest".into()],
    };
    assert!(matches!(
        index
            .acknowledge_critical(&chest_principal, draft.id, due)
            .await,
        Err(StoreError::Invalid(_))
    ));
    let mut elsewhere = doctor.clone();
    elsewhere.clinic_id = Some(2);
    assert!(matches!(
        index.acknowledge_critical(&elsewhere, draft.id, due).await,
        Err(StoreError::NotFound(_))
    ));
    let acked = index
        .acknowledge_critical(&doctor, draft.id, due + 5)
        .await
        .unwrap();
    assert_eq!(
        (acked.acknowledged_by.as_deref(), acked.acknowledged_at),
        (Some("doc-a"), Some(due + 5))
    );
    let again = index
        .acknowledge_critical(&doctor, draft.id, due + 9)
        .await
        .unwrap();
    assert_eq!(
        again.acknowledged_at,
        Some(due + 5),
        "the first acknowledgement stands"
    );
    assert!(
        index
            .critical_notices(Scope::Clinic(1), true)
            .await
            .unwrap()
            .is_empty()
    );
    let portal = index.portal_studies(Scope::Clinic(1), 10, 0).await.unwrap();
    assert_eq!(portal[0].state, "reported");

    // Verification: valid untouched.
    let v = index.verify_report(draft.id).await.unwrap().unwrap();
    assert!(v.valid, "{v:?}");
    assert_eq!(v.signer.as_deref(), Some("chest"));
    // An addendum by the signer, signed; by someone else, refused.
    assert!(
        invalid(
            index
                .add_addendum(&key, draft.id, other, "x", now + 3)
                .await
        )
        .contains("signer")
    );
    let addendum = index
        .add_addendum(
            &key,
            draft.id,
            chest,
            "Small right pleural effusion also present.",
            now + 3,
        )
        .await
        .unwrap();
    let amended = index.report(draft.id).await.unwrap().unwrap();
    assert_eq!(
        (amended.state.as_str(), amended.addenda.len()),
        ("amended", 1)
    );
    let v = index.verify_report(draft.id).await.unwrap().unwrap();
    assert!(v.valid && v.addenda == vec![(addendum.id, true)], "{v:?}");

    // Any stored byte changed afterwards fails verification: each column in turn.
    for (sql, back) in [
        (
            "UPDATE reports SET findings = findings || ' ' WHERE id = $1",
            "UPDATE reports SET findings = SUBSTR(findings, 1, LENGTH(findings) - 1) WHERE id = $1",
        ),
        (
            "UPDATE reports SET critical = 0 WHERE id = $1",
            "UPDATE reports SET critical = 1 WHERE id = $1",
        ),
        (
            "UPDATE reports SET agreement = 'agree' WHERE id = $1",
            "UPDATE reports SET agreement = 'minor' WHERE id = $1",
        ),
        (
            "UPDATE reports SET signed_at = signed_at + 1 WHERE id = $1",
            "UPDATE reports SET signed_at = signed_at - 1 WHERE id = $1",
        ),
        (
            "UPDATE report_addenda SET text = 'No effusion.' WHERE report_id = $1",
            "UPDATE report_addenda SET text = 'Small right pleural effusion also present.' WHERE report_id = $1",
        ),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(draft.id)
            .execute(index_pool(index))
            .await
            .unwrap();
        let v = index.verify_report(draft.id).await.unwrap().unwrap();
        assert!(!v.valid && v.problem.is_some(), "{sql}: {v:?}");
        sqlx::query(sqlx::AssertSqlSafe(back))
            .bind(draft.id)
            .execute(index_pool(index))
            .await
            .unwrap();
        assert!(
            index.verify_report(draft.id).await.unwrap().unwrap().valid,
            "{back}"
        );
    }
    // The study identity is signed too.
    sqlx::query("UPDATE patients SET patient_id = 'SOMEONE-ELSE'")
        .execute(index_pool(index))
        .await
        .unwrap();
    assert!(!index.verify_report(draft.id).await.unwrap().unwrap().valid);

    // Another report key cannot sign with the stored keys.
    store(
        index,
        &[StudySpec {
            n: 2,
            modality: "CT",
            body_part: "CHEST",
            priority: None,
        }],
    )
    .await;
    index.route_ready_studies(&policy, now, 100).await.unwrap();
    let t2 = task_of(index, 2).await;
    index.claim_task(&policy, t2.id, chest, now).await.unwrap();
    let d2 = index.save_draft(t2.id, chest, &content, now).await.unwrap();
    let wrong = ReportKey::from_bytes(&[1; 32]);
    assert!(matches!(
        index.sign_report(&wrong, &policy, d2.id, chest, now).await,
        Err(StoreError::Corrupt(_))
    ));
    assert_eq!(index.report(d2.id).await.unwrap().unwrap().state, "draft");

    let portal = index.portal_studies(Scope::Clinic(1), 10, 0).await.unwrap();
    let states: Vec<(&str, &str)> = portal
        .iter()
        .map(|p| (p.study_instance_uid.as_str(), p.state.as_str()))
        .collect();
    assert_eq!(
        states,
        [
            (uid(2).as_str(), "in reading"),
            (uid(1).as_str(), "reported")
        ]
    );

    // Discrepancy rates per clinic (signed reports with a verdict).
    let rates = index.discrepancy_rates().await.unwrap();
    assert_eq!(rates.len(), 1);
    assert_eq!(
        (rates[0].reviewed, rates[0].minor, rates[0].major),
        (1, 1, 0)
    );
}

/// The delivery outbox that signing fills: one row per signed version, leased by one node
/// at a time, retried with backoff, failed after the last attempt, retried by hand,
/// delivered once. And the archive's own documents join the study without reopening it.
async fn delivery_contract(index: &Index) {
    let policy = DeliveryPolicy {
        retry_first: Duration::from_secs(30),
        retry_max: Duration::from_secs(60),
        max_attempts: 3,
        lease: Duration::from_secs(300),
    };
    let s = |secs: i64| secs * 1_000_000;
    let all = index.deliveries(None, 100).await.unwrap();
    assert!(!all.is_empty());
    assert!(all.iter().all(|d| d.state == "pending" && d.attempts == 0));
    // The contract signed report 1 and then one addendum: versions 0 and 1.
    let report = all.iter().map(|d| d.report_id).min().unwrap();
    let versions: Vec<i64> = index
        .report_deliveries(report)
        .await
        .unwrap()
        .iter()
        .map(|d| d.version)
        .collect();
    assert_eq!(versions, [0, 1]);
    let mut uids: Vec<&str> = all
        .iter()
        .flat_map(|d| [d.sr_instance_uid.as_str(), d.pdf_instance_uid.as_str()])
        .collect();
    uids.sort();
    uids.dedup();
    assert_eq!(uids.len(), 2 * all.len(), "every document has its own UID");

    let now = now_micros() + 10 * MIN;
    let leased = index.claim_due_deliveries(now, &policy, 100).await.unwrap();
    assert_eq!(leased.len(), all.len());
    // Leased: another node gets nothing until the lease runs out.
    assert!(
        index
            .claim_due_deliveries(now + s(299), &policy, 100)
            .await
            .unwrap()
            .is_empty()
    );
    let d = &leased[0];
    assert!(
        index
            .delivery_failed(d, Some("CLINIC_RIS"), "connection refused", &policy, now)
            .await
            .unwrap()
    );
    let after = index.delivery(d.id).await.unwrap().unwrap();
    assert_eq!(
        (after.state.as_str(), after.attempts, after.next_attempt_at),
        ("pending", 1, now + s(30))
    );
    assert_eq!(after.last_error.as_deref(), Some("connection refused"));
    assert!(
        index
            .claim_due_deliveries(now + s(29), &policy, 100)
            .await
            .unwrap()
            .is_empty(),
        "retried only after the backoff"
    );
    let again = index
        .claim_due_deliveries(now + s(30), &policy, 100)
        .await
        .unwrap();
    assert_eq!(again.iter().map(|d| d.id).collect::<Vec<_>>(), [d.id]);
    assert!(
        index
            .delivery_failed(&again[0], None, "refused", &policy, now + s(30))
            .await
            .unwrap()
    );
    let third = index
        .claim_due_deliveries(now + s(90), &policy, 100)
        .await
        .unwrap();
    assert_eq!(third.len(), 1);
    assert!(
        !index
            .delivery_failed(&third[0], None, "refused", &policy, now + s(90))
            .await
            .unwrap(),
        "the last attempt gives up"
    );
    assert_eq!(index.delivery(d.id).await.unwrap().unwrap().state, "failed");
    assert!(
        index
            .claim_due_deliveries(now + s(10_000), &policy, 100)
            .await
            .unwrap()
            .iter()
            .all(|x| x.id != d.id),
        "a failed delivery waits for an administrator"
    );
    // By hand: pending again with a fresh count; a pending one cannot be retried.
    let retried = index.retry_delivery(d.id, now + s(100)).await.unwrap();
    assert_eq!((retried.state.as_str(), retried.attempts), ("pending", 0));
    assert!(matches!(
        index.retry_delivery(d.id, now + s(100)).await,
        Err(StoreError::Invalid(_))
    ));
    let ready = index
        .claim_due_deliveries(now + s(100), &policy, 100)
        .await
        .unwrap();
    assert_eq!(ready.len(), 1);
    index
        .delivery_succeeded(&ready[0], "CLINIC_RIS", now + s(101))
        .await
        .unwrap();
    // A node whose lease had run out reports success too late: nothing changes.
    index
        .delivery_succeeded(&ready[0], "CLINIC_RIS", now + s(102))
        .await
        .unwrap();
    let done = index.delivery(d.id).await.unwrap().unwrap();
    assert_eq!(done.state, "delivered");
    assert_eq!(done.delivered_at, Some(now + s(101)));
    // The other version: the clinic has no receiver.
    let other = &leased[1];
    index
        .delivery_without_destination(other, now)
        .await
        .unwrap();
    assert_eq!(
        index.delivery(other.id).await.unwrap().unwrap().state,
        "no_destination"
    );
    let kinds: Vec<String> = sqlx::query(
        "SELECT kind FROM events WHERE kind LIKE 'delivery\\_%' ESCAPE '\\' ORDER BY id",
    )
    .fetch_all(index.pool_for_tests())
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect();
    assert_eq!(
        kinds,
        [
            "delivery_failed",
            "delivery_failed",
            "delivery_failed",
            "delivery_completed",
            "delivery_failed"
        ]
    );

    // The archive's own document joins the reported study without reopening it.
    let state = |uid: String| async move {
        sqlx::query("SELECT state FROM studies WHERE study_instance_uid = $1")
            .bind(uid)
            .fetch_one(index.pool_for_tests())
            .await
            .unwrap()
            .get::<String, _>(0)
    };
    assert_eq!(state(uid(1)).await, "ready");
    let mut own = instance(1, 900, "SR", "", None);
    own.archive_authored = true;
    index.insert_instance(own).await.unwrap();
    assert_eq!(state(uid(1)).await, "ready");
    assert!(
        index
            .mark_ready_studies(Duration::ZERO)
            .await
            .unwrap()
            .is_empty()
    );
    // A late image from the modality does reopen it.
    index
        .insert_instance(instance(1, 901, "CT", "CHEST", None))
        .await
        .unwrap();
    assert_eq!(state(uid(1)).await, "receiving");
}

#[tokio::test(flavor = "multi_thread")]
async fn reports_on_sqlite() {
    on_sqlite(|a, b| async move {
        contract(&a).await;
        delivery_contract(&a).await;
        (a, b)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reports_on_postgres() {
    on_postgres("reports", |a, b| async move {
        contract(&a).await;
        delivery_contract(&a).await;
        (a, b)
    })
    .await;
}
