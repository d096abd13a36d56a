//! The administrators' dashboard: how much arrives and how fast it is read, computed in
//! SQL on either backend.
//!
//! - **Studies received per clinic per UTC day** for the last `days` days (today
//!   included): a study counts on the day of its first instance (`first_received_at`).
//!   Days are bucketed in SQL by integer division of microseconds since the first day's
//!   midnight, so no date function (which differ between SQLite and PostgreSQL) is used.
//!   Every clinic is listed, also one that sent nothing (a clinic gone quiet is news);
//!   studies without a clinic (imported without `--clinic`) are a row of their own.
//! - **Reading turnaround** per priority, ready → done, of the tasks done in the window:
//!   nearest-rank percentiles p50, p90, p95 (the smallest time such that at least that
//!   share of tasks took no longer) and the longest, with window functions
//!   (`ROW_NUMBER`/`COUNT … OVER`), which both backends have.
//! - **Backlog** per priority: open and claimed tasks now, and how many of them are past
//!   their deadline (**overdue**).
//! - **Discrepancy rates** per clinic: [`Index::discrepancy_rates`] (all signed reports,
//!   not only the window's).
//!
//! Times are passed in (Unix microseconds), so tests control the clock. Every value is
//! bound.

use sqlx::Row as _;

use crate::Result;
use crate::index::Index;
use crate::reports::ClinicDiscrepancies;
use crate::worklist::Priority;

const DAY: i64 = 86_400_000_000;

/// The longest window the dashboard covers, in days.
pub const MAX_DAYS: u32 = 366;

/// Studies received from one clinic, one count per day of [`Dashboard::day_labels`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClinicDays {
    /// None: studies imported without a clinic.
    pub clinic_id: Option<i64>,
    /// The clinic's name; none for studies without a clinic.
    pub clinic: Option<String>,
    /// One count per day, oldest first.
    pub counts: Vec<i64>,
    pub total: i64,
}

/// Reading turnaround (ready → done) of one priority's tasks done in the window.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Turnaround {
    /// `stat`, `urgent` or `routine`.
    pub priority: String,
    /// Tasks done in the window.
    pub count: i64,
    /// Seconds; none without tasks. Nearest-rank percentiles.
    pub p50_seconds: Option<f64>,
    pub p90_seconds: Option<f64>,
    pub p95_seconds: Option<f64>,
    pub max_seconds: Option<f64>,
}

/// Tasks waiting for a radiologist, of one priority.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Backlog {
    /// `stat`, `urgent` or `routine`.
    pub priority: String,
    /// Not claimed (routed to someone, or in the pool).
    pub open: i64,
    /// Claimed by a radiologist.
    pub claimed: i64,
    /// Of those, past their deadline.
    pub overdue: i64,
}

/// What `GET /api/admin/dashboard` answers.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Dashboard {
    /// The number of days covered (today, UTC, included).
    pub days: u32,
    /// The window: from the first day's midnight (UTC), Unix microseconds, inclusive…
    pub from: i64,
    /// …to the moment of the answer, exclusive.
    pub until: i64,
    /// The days, `YYYY-MM-DD` (UTC), oldest first.
    pub day_labels: Vec<String>,
    /// Studies received per clinic and day.
    pub studies: Vec<ClinicDays>,
    /// Per priority: stat, urgent, routine.
    pub turnaround: Vec<Turnaround>,
    /// Per priority: stat, urgent, routine.
    pub backlog: Vec<Backlog>,
    /// Open or claimed tasks past their deadline.
    pub overdue: i64,
    /// Per clinic, of all signed reports with a verdict on a preliminary impression.
    pub discrepancies: Vec<ClinicDiscrepancies>,
}

const PRIORITIES: [Priority; 3] = [Priority::Stat, Priority::Urgent, Priority::Routine];

fn seconds(micros: Option<i64>) -> Option<f64> {
    micros.map(|m| m as f64 / 1e6)
}

impl Index {
    /// The dashboard of the last `days` UTC days (1–[`MAX_DAYS`]), as of `now`.
    pub async fn dashboard(&self, days: u32, now: i64) -> Result<Dashboard> {
        let days = days.clamp(1, MAX_DAYS);
        let today = now.div_euclid(DAY);
        let first_day = today - i64::from(days) + 1;
        let from = first_day * DAY;
        let day_labels = (first_day..=today)
            .map(|d| {
                let (y, m, dd) = crate::audit::civil_from_days(d);
                format!("{y:04}-{m:02}-{dd:02}")
            })
            .collect::<Vec<_>>();

        // Every clinic, in name order; then the counts per clinic and day.
        let clinics = sqlx::query("SELECT id, name FROM clinics ORDER BY name, id")
            .fetch_all(self.pool())
            .await?;
        let mut studies: Vec<ClinicDays> = clinics
            .iter()
            .map(|r| {
                Ok(ClinicDays {
                    clinic_id: Some(r.try_get(0)?),
                    clinic: Some(r.try_get(1)?),
                    counts: vec![0; days as usize],
                    total: 0,
                })
            })
            .collect::<Result<_>>()?;
        let rows = sqlx::query(
            "SELECT clinic_id, (first_received_at - $1) / $2, COUNT(*) FROM studies \
             WHERE first_received_at >= $1 AND first_received_at < $3 GROUP BY 1, 2",
        )
        .bind(from)
        .bind(DAY)
        .bind(now)
        .fetch_all(self.pool())
        .await?;
        for r in &rows {
            let clinic: Option<i64> = r.try_get(0)?;
            let day: i64 = r.try_get(1)?;
            let n: i64 = r.try_get(2)?;
            let Ok(day) = usize::try_from(day) else {
                continue;
            };
            if day >= days as usize {
                continue;
            }
            let at = match studies.iter().position(|c| c.clinic_id == clinic) {
                Some(i) => i,
                None => {
                    studies.push(ClinicDays {
                        clinic_id: clinic,
                        clinic: None,
                        counts: vec![0; days as usize],
                        total: 0,
                    });
                    studies.len() - 1
                }
            };
            studies[at].counts[day] += n;
            studies[at].total += n;
        }

        // Turnaround: nearest-rank percentiles; rank k of n for p% is ceil(p·n/100).
        let rows = sqlx::query(
            "WITH d AS ( \
               SELECT priority, done_at - ready_at AS took, \
                 ROW_NUMBER() OVER (PARTITION BY priority ORDER BY done_at - ready_at, id) AS k, \
                 COUNT(*) OVER (PARTITION BY priority) AS n \
               FROM reading_tasks \
               WHERE state = 'done' AND done_at IS NOT NULL AND done_at >= $1 AND done_at < $2 \
             ) \
             SELECT priority, n, \
               MAX(CASE WHEN k = (50 * n + 99) / 100 THEN took END), \
               MAX(CASE WHEN k = (90 * n + 99) / 100 THEN took END), \
               MAX(CASE WHEN k = (95 * n + 99) / 100 THEN took END), \
               MAX(took) \
             FROM d GROUP BY priority, n",
        )
        .bind(from)
        .bind(now)
        .fetch_all(self.pool())
        .await?;
        let mut turnaround: Vec<Turnaround> = PRIORITIES
            .iter()
            .map(|p| Turnaround {
                priority: p.as_str().to_owned(),
                count: 0,
                p50_seconds: None,
                p90_seconds: None,
                p95_seconds: None,
                max_seconds: None,
            })
            .collect();
        for r in &rows {
            let priority: String = r.try_get(0)?;
            let Some(t) = turnaround.iter_mut().find(|t| t.priority == priority) else {
                continue;
            };
            t.count = r.try_get(1)?;
            t.p50_seconds = seconds(r.try_get(2)?);
            t.p90_seconds = seconds(r.try_get(3)?);
            t.p95_seconds = seconds(r.try_get(4)?);
            t.max_seconds = seconds(r.try_get(5)?);
        }

        // Backlog and overdue, now.
        let rows = sqlx::query(
            "SELECT priority, \
               SUM(CASE WHEN state = 'open' THEN 1 ELSE 0 END), \
               SUM(CASE WHEN state = 'claimed' THEN 1 ELSE 0 END), \
               SUM(CASE WHEN due_at <= $1 THEN 1 ELSE 0 END) \
             FROM reading_tasks WHERE state IN ('open', 'claimed') GROUP BY priority",
        )
        .bind(now)
        .fetch_all(self.pool())
        .await?;
        let mut backlog: Vec<Backlog> = PRIORITIES
            .iter()
            .map(|p| Backlog {
                priority: p.as_str().to_owned(),
                open: 0,
                claimed: 0,
                overdue: 0,
            })
            .collect();
        for r in &rows {
            let priority: String = r.try_get(0)?;
            let Some(b) = backlog.iter_mut().find(|b| b.priority == priority) else {
                continue;
            };
            b.open = r.try_get(1)?;
            b.claimed = r.try_get(2)?;
            b.overdue = r.try_get(3)?;
        }
        let overdue = backlog.iter().map(|b| b.overdue).sum();

        Ok(Dashboard {
            days,
            from,
            until: now,
            day_labels,
            studies,
            turnaround,
            backlog,
            overdue,
            discrepancies: self.discrepancy_rates().await?,
        })
    }
}
