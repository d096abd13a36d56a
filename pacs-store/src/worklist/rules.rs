//! What administrators configure for routing: the ordered rules and each radiologist's
//! reading profile (credentials and shifts). The routing itself is in the parent module.

use sqlx::Row as _;

use super::Priority;
use crate::index::{Index, is_unique_violation};
use crate::{Result, StoreError};

/// A routing rule as administrators see and write it. Empty conditions match anything.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RoutingRule {
    /// Assigned by the archive (ignored when writing).
    #[serde(default)]
    pub id: i64,
    /// Rules are tried in increasing position.
    pub position: i64,
    /// Unique, 1–64 characters.
    pub name: String,
    /// A modality the study must contain (CT, MR…).
    #[serde(default)]
    pub modality: Option<String>,
    /// A body part the study must contain (HEAD, CHEST…).
    #[serde(default)]
    pub body_part: Option<String>,
    /// Words the study description must contain (case-insensitive).
    #[serde(default)]
    pub description_contains: Option<String>,
    /// The sending clinic's name.
    #[serde(default)]
    pub clinic: Option<String>,
    /// The study's priority: stat, urgent or routine.
    #[serde(default)]
    pub priority: Option<String>,
    /// Who is eligible: radiologists with this subspecialty (none: any radiologist).
    #[serde(default)]
    pub subspecialty: Option<String>,
    /// The priority the rule gives (none: the study's own).
    #[serde(default)]
    pub set_priority: Option<String>,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
}

fn enabled_by_default() -> bool {
    true
}

/// The longest value of a rule's text fields.
const MAX_FIELD_CHARS: usize = 64;

impl RoutingRule {
    fn check(&self) -> Result<()> {
        let bad = |why: String| Err(StoreError::Invalid(why));
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > MAX_FIELD_CHARS {
            return bad(format!(
                "a rule needs a name of 1–{MAX_FIELD_CHARS} characters"
            ));
        }
        for (field, v) in [
            ("priority", &self.priority),
            ("set_priority", &self.set_priority),
        ] {
            if let Some(v) = blank_to_none(v)
                && Priority::parse(&v).is_none()
            {
                return bad(format!(
                    "{field} must be stat, urgent or routine, not {v:?}"
                ));
            }
        }
        for (field, v) in [
            ("modality", &self.modality),
            ("body_part", &self.body_part),
            ("description_contains", &self.description_contains),
            ("clinic", &self.clinic),
            ("subspecialty", &self.subspecialty),
        ] {
            if v.as_deref()
                .is_some_and(|v| v.chars().count() > MAX_FIELD_CHARS)
            {
                return bad(format!(
                    "{field} is longer than {MAX_FIELD_CHARS} characters"
                ));
            }
        }
        Ok(())
    }
}

pub(super) fn blank_to_none(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// A radiologist's reading profile: the modalities they are credentialed for (none: all)
/// and their shifts (none: always on).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReadingProfile {
    #[serde(default)]
    pub credentials: Vec<String>,
    #[serde(default)]
    pub shifts: Vec<Shift>,
}

/// A weekly shift in UTC minutes of the week (0 = Monday 00:00, 10080 = the next Monday);
/// a shift whose end is before its start runs over the end of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Shift {
    pub start_minute: i64,
    pub end_minute: i64,
}

const WEEK_MINUTES: i64 = 7 * 24 * 60;

impl Index {
    /// The routing rules, in the order they are tried.
    pub async fn routing_rules(&self) -> Result<Vec<RoutingRule>> {
        let rows = sqlx::query(
            "SELECT r.id, r.position, r.name, r.modality, r.body_part, r.description_contains, \
               c.name, r.priority, r.subspecialty, r.set_priority, r.enabled \
             FROM routing_rules r LEFT JOIN clinics c ON c.id = r.clinic_id \
             ORDER BY r.position, r.id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RoutingRule {
                    id: r.try_get(0)?,
                    position: r.try_get(1)?,
                    name: r.try_get(2)?,
                    modality: r.try_get(3)?,
                    body_part: r.try_get(4)?,
                    description_contains: r.try_get(5)?,
                    clinic: r.try_get(6)?,
                    priority: r.try_get(7)?,
                    subspecialty: r.try_get(8)?,
                    set_priority: r.try_get(9)?,
                    enabled: r.try_get::<i64, _>(10)? != 0,
                })
            })
            .collect()
    }

    async fn rule_clinic_id(&self, rule: &RoutingRule) -> Result<Option<i64>> {
        let Some(name) = blank_to_none(&rule.clinic) else {
            return Ok(None);
        };
        let row = sqlx::query("SELECT id FROM clinics WHERE name = $1")
            .bind(&name)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::Invalid(format!("no clinic named {name:?}")))?;
        Ok(Some(row.try_get(0)?))
    }

    /// Adds a rule; returns it with its id.
    pub async fn create_routing_rule(&self, rule: &RoutingRule, now: i64) -> Result<RoutingRule> {
        self.write_routing_rule(None, rule, now).await
    }

    /// Replaces rule `id`.
    pub async fn update_routing_rule(&self, id: i64, rule: &RoutingRule) -> Result<RoutingRule> {
        self.write_routing_rule(Some(id), rule, 0).await
    }

    async fn write_routing_rule(
        &self,
        id: Option<i64>,
        rule: &RoutingRule,
        now: i64,
    ) -> Result<RoutingRule> {
        rule.check()?;
        let clinic_id = self.rule_clinic_id(rule).await?;
        let upper = |v: &Option<String>| blank_to_none(v).map(|v| v.to_ascii_uppercase());
        let lower = |v: &Option<String>| blank_to_none(v).map(|v| v.to_ascii_lowercase());
        let q = match id {
            None => sqlx::query(
                "INSERT INTO routing_rules (position, name, modality, body_part, \
                   description_contains, clinic_id, priority, subspecialty, set_priority, \
                   enabled, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
            ),
            Some(_) => sqlx::query(
                "UPDATE routing_rules SET position = $1, name = $2, modality = $3, \
                   body_part = $4, description_contains = $5, clinic_id = $6, priority = $7, \
                   subspecialty = $8, set_priority = $9, enabled = $10 \
                 WHERE id = $11 RETURNING id",
            ),
        };
        let row = q
            .bind(rule.position)
            .bind(rule.name.trim().to_owned())
            .bind(upper(&rule.modality))
            .bind(upper(&rule.body_part))
            .bind(blank_to_none(&rule.description_contains))
            .bind(clinic_id)
            .bind(lower(&rule.priority))
            .bind(lower(&rule.subspecialty))
            .bind(lower(&rule.set_priority))
            .bind(i64::from(rule.enabled))
            // $11: created_at of a new rule, the id of the one replaced.
            .bind(id.unwrap_or(now))
            .fetch_optional(self.pool())
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::AlreadyExists(format!("a rule named {:?}", rule.name.trim()))
                } else {
                    e.into()
                }
            })?
            .ok_or_else(|| StoreError::NotFound(format!("routing rule {}", id.unwrap_or(0))))?;
        let id: i64 = row.try_get(0)?;
        self.routing_rules()
            .await?
            .into_iter()
            .find(|r| r.id == id)
            .ok_or_else(|| StoreError::NotFound(format!("routing rule {id}")))
    }

    /// Removes rule `id` (tasks it routed keep their radiologist).
    pub async fn delete_routing_rule(&self, id: i64) -> Result<()> {
        let n = sqlx::query("DELETE FROM routing_rules WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(format!("routing rule {id}")));
        }
        Ok(())
    }

    /// Replaces the reading profile of radiologist `username`.
    pub async fn set_reading_profile(
        &self,
        username: &str,
        profile: &ReadingProfile,
    ) -> Result<()> {
        for s in &profile.shifts {
            if !(0..WEEK_MINUTES).contains(&s.start_minute)
                || !(0..=WEEK_MINUTES).contains(&s.end_minute)
                || s.start_minute == s.end_minute
            {
                return Err(StoreError::Invalid(format!(
                    "a shift runs between two different minutes of the week (0–{WEEK_MINUTES}), \
                     got {}–{}",
                    s.start_minute, s.end_minute
                )));
            }
        }
        if profile
            .credentials
            .iter()
            .any(|c| c.trim().is_empty() || c.trim().len() > 16)
        {
            return Err(StoreError::Invalid(
                "credentials are modality codes (CT, MR…)".into(),
            ));
        }
        let mut tx = self.begin_write().await?;
        let user: i64 =
            sqlx::query("SELECT id FROM users WHERE username = $1 AND role = 'radiologist'")
                .bind(username)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("radiologist {username:?}")))?
                .try_get(0)?;
        sqlx::query("DELETE FROM radiologist_credentials WHERE user_id = $1")
            .bind(user)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM radiologist_shifts WHERE user_id = $1")
            .bind(user)
            .execute(&mut *tx)
            .await?;
        let credentials: std::collections::BTreeSet<String> = profile
            .credentials
            .iter()
            .map(|c| c.trim().to_ascii_uppercase())
            .collect();
        for c in credentials {
            sqlx::query("INSERT INTO radiologist_credentials (user_id, modality) VALUES ($1, $2)")
                .bind(user)
                .bind(c)
                .execute(&mut *tx)
                .await?;
        }
        for s in &profile.shifts {
            sqlx::query(
                "INSERT INTO radiologist_shifts (user_id, start_minute, end_minute) \
                 VALUES ($1, $2, $3)",
            )
            .bind(user)
            .bind(s.start_minute)
            .bind(s.end_minute)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
