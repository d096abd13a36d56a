//! Users, roles and credentials: who may log in, as what, for which clinic.
//!
//! - [`Role`], [`Username`], [`Password`]: parsed at the edge; a clinic is required for the
//!   per-clinic roles and refused for the central ones.
//! - Passwords are stored as Argon2id PHC strings and verified with argon2's constant-time
//!   comparison, on the blocking pool and a few at a time (each hash takes 19 MiB and tens
//!   of milliseconds of CPU).
//! - [`Index::authenticate`] answers the same [`AuthFailure::BadCredentials`] for an unknown
//!   user and a wrong password, after the same amount of work, and throttles failures per
//!   username and per client address in the database (so the limits hold across nodes and
//!   restarts).
//! - API tokens and browser sessions are 32 random bytes shown once; only a BLAKE3 hash of
//!   them is stored, so a copy of the database logs nobody in.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::index::{Backend, Index, is_unique_violation, now_micros};
use crate::{Result, StoreError};

// ---------------------------------------------------------------------------------------
// Roles

/// What a user is. Per-clinic roles carry their clinic; central roles have none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Role {
    /// Administers users, clinics and AE titles; sees everything (audited).
    Admin,
    /// Central radiologist, with subspecialties (neuro, chest, msk…).
    Radiologist,
    /// Township doctor of one clinic: writes preliminary impressions.
    TownshipDoctor,
    /// Clinician of one clinic: reads results.
    Clinician,
    /// A machine account (API tokens); optionally bound to a clinic.
    Service,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Radiologist,
        Role::TownshipDoctor,
        Role::Clinician,
        Role::Service,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Radiologist => "radiologist",
            Role::TownshipDoctor => "township-doctor",
            Role::Clinician => "clinician",
            Role::Service => "service",
        }
    }

    /// "an admin", "a radiologist"…, for messages.
    pub fn with_article(self) -> &'static str {
        match self {
            Role::Admin => "an admin",
            Role::Radiologist => "a radiologist",
            Role::TownshipDoctor => "a township-doctor",
            Role::Clinician => "a clinician",
            Role::Service => "a service account",
        }
    }

    /// Township doctors and clinicians act for exactly one clinic.
    pub fn requires_clinic(self) -> bool {
        matches!(self, Role::TownshipDoctor | Role::Clinician)
    }

    /// Central roles (admin, radiologist) work for the whole region and have no clinic.
    pub fn allows_clinic(self) -> bool {
        !matches!(self, Role::Admin | Role::Radiologist)
    }

    /// Only radiologists are routed studies by subspecialty.
    pub fn allows_subspecialties(self) -> bool {
        self == Role::Radiologist
    }

    /// Whether `clinic` (present or not) and `subspecialties` fit this role.
    pub fn check_assignment(self, has_clinic: bool, subspecialties: &[String]) -> Result<()> {
        if self.requires_clinic() && !has_clinic {
            return Err(StoreError::Invalid(format!(
                "{} belongs to exactly one clinic: give its clinic",
                self.with_article()
            )));
        }
        if has_clinic && !self.allows_clinic() {
            return Err(StoreError::Invalid(format!(
                "{} works for the whole region and has no clinic",
                self.with_article()
            )));
        }
        if !subspecialties.is_empty() && !self.allows_subspecialties() {
            return Err(StoreError::Invalid(format!(
                "subspecialties are for radiologists, not for {}",
                self.with_article()
            )));
        }
        Ok(())
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self> {
        let wanted = s.trim().to_ascii_lowercase();
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == wanted)
            .ok_or_else(|| {
                StoreError::Invalid(format!(
                    "unknown role {:?}: one of admin, radiologist, township-doctor, clinician, service",
                    truncate_for_message(s)
                ))
            })
    }
}

// ---------------------------------------------------------------------------------------
// Usernames, passwords, subspecialties

pub const USERNAME_MAX_CHARS: usize = 64;

/// A login name: 1–64 of `[a-z0-9._-]`, lowercased on parse, not starting with `.` or `-`
/// (so it is never mistaken for a hidden file or a command-line option).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Username(String);

impl Username {
    pub fn parse(s: &str) -> Result<Self> {
        // Length first: the checks below allocate.
        if s.is_empty() || s.len() > USERNAME_MAX_CHARS {
            return Err(StoreError::Invalid(format!(
                "a username must be 1–{USERNAME_MAX_CHARS} characters"
            )));
        }
        let lower = s.to_ascii_lowercase();
        if !lower
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        {
            return Err(StoreError::Invalid(format!(
                "username {:?}: only letters a–z, digits, '.', '_' and '-' are allowed",
                truncate_for_message(s)
            )));
        }
        if lower.starts_with(['.', '-']) {
            return Err(StoreError::Invalid(format!(
                "username {lower:?} must not start with '.' or '-'"
            )));
        }
        Ok(Username(lower))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Username {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self> {
        Username::parse(s)
    }
}

pub const PASSWORD_MIN_BYTES: usize = 12;
/// Argon2 hashes any length, but a megabyte password costs memory and CPU for nothing:
/// longer input is refused before it is hashed.
pub const PASSWORD_MAX_BYTES: usize = 1024;

/// A new password that meets the policy. `Debug` never shows it.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub fn parse(s: &str) -> Result<Self> {
        if s.len() > PASSWORD_MAX_BYTES {
            return Err(StoreError::Invalid(format!(
                "the password is too long: at most {PASSWORD_MAX_BYTES} bytes"
            )));
        }
        if s.len() < PASSWORD_MIN_BYTES {
            return Err(StoreError::Invalid(format!(
                "the password is too short: at least {PASSWORD_MIN_BYTES} bytes"
            )));
        }
        if s.chars().all(char::is_whitespace) {
            return Err(StoreError::Invalid(
                "the password must not be only whitespace".into(),
            ));
        }
        Ok(Password(s.to_owned()))
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

const SUBSPECIALTY_MAX_CHARS: usize = 32;
const SUBSPECIALTIES_MAX: usize = 16;

/// Normalises subspecialties ("Neuro" → "neuro"), sorted and without duplicates.
pub fn parse_subspecialties(list: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for s in list {
        let s = s.trim();
        let ok = !s.is_empty()
            && s.len() <= SUBSPECIALTY_MAX_CHARS
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !ok {
            return Err(StoreError::Invalid(format!(
                "subspecialty {:?}: 1–{SUBSPECIALTY_MAX_CHARS} letters, digits or '-' (like neuro, chest, msk)",
                truncate_for_message(s)
            )));
        }
        out.push(s.to_ascii_lowercase());
    }
    out.sort();
    out.dedup();
    if out.len() > SUBSPECIALTIES_MAX {
        return Err(StoreError::Invalid(format!(
            "at most {SUBSPECIALTIES_MAX} subspecialties"
        )));
    }
    Ok(out)
}

/// Quotes at most 80 characters of user input in an error message.
fn truncate_for_message(s: &str) -> String {
    match s.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

// ---------------------------------------------------------------------------------------
// What callers get back

/// A user as listed; the password hash never leaves this module.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct User {
    pub id: i64,
    pub username: Username,
    pub role: Role,
    pub clinic_id: Option<i64>,
    pub clinic_name: Option<String>,
    pub subspecialties: Vec<String>,
    pub disabled: bool,
    /// False for service accounts that log in with API tokens only.
    pub has_password: bool,
    /// Unix microseconds.
    pub created_at: i64,
}

/// Who is calling, once authenticated: what the access policy decides on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Principal {
    pub user_id: i64,
    pub username: Username,
    pub role: Role,
    pub clinic_id: Option<i64>,
    pub clinic_name: Option<String>,
    pub subspecialties: Vec<String>,
}

impl From<User> for Principal {
    fn from(u: User) -> Self {
        Principal {
            user_id: u.id,
            username: u.username,
            role: u.role,
            clinic_id: u.clinic_id,
            clinic_name: u.clinic_name,
            subspecialties: u.subspecialties,
        }
    }
}

/// Why a login, token or session was refused. The messages are safe to show to the
/// caller: none tells whether a username exists.
#[derive(Debug, thiserror::Error)]
pub enum AuthFailure {
    /// Unknown user, wrong password, unknown or revoked token or session: one answer.
    #[error("invalid credentials")]
    BadCredentials,
    /// The credentials were right but the account is disabled.
    #[error("the account is disabled")]
    Disabled,
    /// A token or session that was valid has expired.
    #[error("the credentials have expired; log in again")]
    Expired,
    /// Too many failures for this username or from this address.
    #[error("too many failed logins; try again in {retry_after_secs} s")]
    Throttled { retry_after_secs: u64 },
    /// The index could not answer (not the caller's fault).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for AuthFailure {
    fn from(e: sqlx::Error) -> Self {
        AuthFailure::Store(e.into())
    }
}

/// Identifies an API token (for listing and revoking; not a credential).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenId(pub i64);

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for TokenId {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().parse::<i64>() {
            Ok(n) if n > 0 => Ok(TokenId(n)),
            _ => Err(StoreError::Invalid(format!(
                "token id {:?}: a positive number (see `pacs user token list USER`)",
                truncate_for_message(s)
            ))),
        }
    }
}

/// A token just created: the secret is shown to its owner now and never again.
#[derive(Clone)]
pub struct NewToken {
    pub id: TokenId,
    pub secret: String,
    pub expires_at: Option<i64>,
}

impl fmt::Debug for NewToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewToken")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A token as listed (no secret, no hash).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenInfo {
    pub id: TokenId,
    pub username: Username,
    pub label: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// How long a browser session lives: at most `absolute` after login, and until `idle`
/// passes without a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTtl {
    pub absolute: Duration,
    pub idle: Duration,
}

impl Default for SessionTtl {
    /// A reading shift, logged out after half an hour away from the workstation.
    fn default() -> Self {
        SessionTtl {
            absolute: Duration::from_secs(12 * 3600),
            idle: Duration::from_secs(30 * 60),
        }
    }
}

/// A session just created: the secret goes into the cookie, the CSRF token into the page.
#[derive(Clone)]
pub struct NewSession {
    pub secret: String,
    pub csrf_token: String,
    /// Absolute expiry, Unix microseconds (for the cookie's Max-Age).
    pub expires_at: i64,
}

impl fmt::Debug for NewSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewSession")
            .field("secret", &"<redacted>")
            .field("csrf_token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

// ---------------------------------------------------------------------------------------
// Password hashing

/// Argon2id, version 0x13, m = 19 MiB, t = 2, p = 1 (argon2's defaults, OWASP's first
/// recommendation). Verification reads the parameters from the stored PHC string, so
/// raising them later still verifies old hashes.
fn hasher() -> Argon2<'static> {
    if cfg!(test) {
        // Unit tests are built without optimisation, where one default hash takes ~0.6 s;
        // they hash with small parameters. The e2e tests run the real ones.
        let params = argon2::Params::new(256, 1, 1, None).expect("valid argon2 parameters");
        Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
    } else {
        Argon2::default()
    }
}

/// At most this many hashes at once: each takes 19 MiB, and a burst of logins must not
/// take all the memory or every blocking thread.
static HASH_PERMITS: LazyLock<tokio::sync::Semaphore> = LazyLock::new(|| {
    let n = std::thread::available_parallelism().map_or(2, |n| n.get());
    tokio::sync::Semaphore::new(n.clamp(2, 8))
});

/// Runs CPU-heavy hashing on the blocking pool, a bounded number at a time.
async fn run_hashing<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    // The semaphore is never closed.
    let _permit = HASH_PERMITS
        .acquire()
        .await
        .expect("the hashing semaphore is never closed");
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Only when the runtime shuts down, which ends this task too.
        Err(e) => panic!("password hashing task cancelled: {e}"),
    }
}

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b)
        .map_err(|e| StoreError::Config(format!("the OS random number generator failed: {e}")))?;
    Ok(b)
}

fn hash_password_blocking(password: &str) -> Result<String> {
    let salt = SaltString::encode_b64(&random_bytes::<16>()?)
        .map_err(|e| StoreError::Config(format!("password salt: {e}")))?;
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| StoreError::Config(format!("password hashing failed: {e}")))
}

async fn hash_password(password: &Password) -> Result<String> {
    let pw = password.expose().to_owned();
    run_hashing(move || hash_password_blocking(&pw)).await
}

/// A hash of a random password with the current parameters, verified against when the
/// user does not exist so that the answer takes as long as for a wrong password.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let pw = hex::encode(random_bytes::<16>().unwrap_or([7; 16]));
        hash_password_blocking(&pw).unwrap_or_default()
    })
}

/// Whether `password` matches `phc` (or, with `None`, does the same work and says no).
async fn verify_password(phc: Option<String>, password: &str) -> bool {
    let pw = password.to_owned();
    run_hashing(move || {
        let (phc, real) = match &phc {
            Some(p) => (p.as_str(), true),
            None => (dummy_hash(), false),
        };
        let parsed = match PasswordHash::new(phc) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!("a stored password hash cannot be parsed ({e}): login refused");
                return false;
            }
        };
        // argon2 compares the outputs in constant time.
        let matches = hasher().verify_password(pw.as_bytes(), &parsed).is_ok();
        matches && real
    })
    .await
}

// ---------------------------------------------------------------------------------------
// Secrets (API tokens, sessions)

const TOKEN_PREFIX: &str = "pacs_";
const SECRET_BYTES: usize = 32;

// BLAKE3 key-derivation contexts: one per use, so a hash of one kind is never valid as
// another.
const TOKEN_HASH_CONTEXT: &str = "regional-pacs 2025 api token hash";
const SESSION_HASH_CONTEXT: &str = "regional-pacs 2025 session secret hash";
const CSRF_CONTEXT: &str = "regional-pacs 2025 session csrf token";

/// `len` hex digits → bytes; anything else (including odd encodings) → None.
fn decode_secret(hex_part: &str) -> Option<[u8; SECRET_BYTES]> {
    if hex_part.len() != SECRET_BYTES * 2 {
        return None;
    }
    let mut out = [0u8; SECRET_BYTES];
    hex::decode_to_slice(hex_part, &mut out).ok()?;
    Some(out)
}

fn secret_hash(context: &str, secret: &[u8; SECRET_BYTES]) -> String {
    hex::encode(blake3::derive_key(context, secret))
}

/// The CSRF token of a session: derived from its secret, so nothing more is stored and it
/// cannot be computed from the database.
fn csrf_token(secret: &[u8; SECRET_BYTES]) -> String {
    hex::encode(blake3::derive_key(CSRF_CONTEXT, secret))
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

// ---------------------------------------------------------------------------------------
// Login throttling

/// Limits on failed logins. Failures are counted per username (also names that do not
/// exist) and per client address until a quiet period of `window` without failures or
/// lock; from `max_failures` on, every failure locks the key for a back-off that doubles
/// from `base_backoff` up to `max_backoff`. A successful login clears the username's
/// count (not the address's: one valid account must not unlock guessing at others).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    pub max_failures_per_user: i64,
    /// Higher than per user: a township clinic's staff share one NAT address.
    pub max_failures_per_address: i64,
    pub window: Duration,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        ThrottlePolicy {
            max_failures_per_user: 5,
            max_failures_per_address: 20,
            window: Duration::from_secs(15 * 60),
            base_backoff: Duration::from_secs(30),
            max_backoff: Duration::from_secs(15 * 60),
        }
    }
}

impl ThrottlePolicy {
    /// The lock after the `failures`-th failure in a row (0 below the limit).
    fn backoff_micros(&self, failures: i64, max_failures: i64) -> i64 {
        if failures < max_failures {
            return 0;
        }
        let doublings = (failures - max_failures).min(20) as u32;
        micros(self.base_backoff)
            .saturating_mul(1 << doublings)
            .min(micros(self.max_backoff))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    User,
    Address,
}

impl Scope {
    fn as_str(self) -> &'static str {
        match self {
            Scope::User => "user",
            Scope::Address => "address",
        }
    }
}

/// The throttling key of a client address: IPv4 (also IPv4-mapped IPv6) as is, IPv6 by
/// /64 — one subscriber gets a whole /64 and could otherwise rotate through it.
fn address_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// Throttle rows untouched this long are forgotten.
const THROTTLE_RETENTION: Duration = Duration::from_secs(24 * 3600);

impl Index {
    /// Microseconds until `subject` may try again (0: now).
    async fn locked_for(&self, scope: Scope, subject: &str, now: i64) -> Result<i64> {
        let row = sqlx::query(
            "SELECT locked_until FROM login_throttle WHERE scope = $1 AND subject = $2",
        )
        .bind(scope.as_str())
        .bind(subject)
        .fetch_optional(self.pool())
        .await?;
        let until: i64 = match row {
            Some(r) => r.try_get(0)?,
            None => 0,
        };
        Ok((until - now).max(0))
    }

    /// Counts one failure and locks `subject` when it reaches the limit. Each statement
    /// is atomic on its row, so concurrent failures on several nodes all count.
    async fn record_failure(
        &self,
        scope: Scope,
        subject: &str,
        now: i64,
        policy: &ThrottlePolicy,
    ) -> Result<()> {
        let max_failures = match scope {
            Scope::User => policy.max_failures_per_user,
            Scope::Address => policy.max_failures_per_address,
        };
        sqlx::query(
            "INSERT INTO login_throttle (scope, subject, failures, last_failure_at, locked_until) \
             VALUES ($1, $2, 0, 0, 0) ON CONFLICT (scope, subject) DO NOTHING",
        )
        .bind(scope.as_str())
        .bind(subject)
        .execute(self.pool())
        .await?;
        // A quiet window (no failure, no lock) starts the count again.
        let failures: i64 = sqlx::query(
            "UPDATE login_throttle SET \
               failures = CASE WHEN $1 - last_failure_at > $2 AND $1 - locked_until > $2 \
                          THEN 1 ELSE failures + 1 END, \
               last_failure_at = $1 \
             WHERE scope = $3 AND subject = $4 RETURNING failures",
        )
        .bind(now)
        .bind(micros(policy.window))
        .bind(scope.as_str())
        .bind(subject)
        .fetch_one(self.pool())
        .await?
        .try_get(0)?;
        let backoff = policy.backoff_micros(failures, max_failures);
        if backoff > 0 {
            // Never shortens a longer lock set concurrently.
            sqlx::query(
                "UPDATE login_throttle SET locked_until = $1 \
                 WHERE scope = $2 AND subject = $3 AND locked_until < $1",
            )
            .bind(now.saturating_add(backoff))
            .bind(scope.as_str())
            .bind(subject)
            .execute(self.pool())
            .await?;
        }
        sqlx::query("DELETE FROM login_throttle WHERE last_failure_at < $1 AND locked_until < $1")
            .bind(now - micros(THROTTLE_RETENTION))
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn clear_failures(&self, scope: Scope, subject: &str) -> Result<()> {
        sqlx::query("DELETE FROM login_throttle WHERE scope = $1 AND subject = $2")
            .bind(scope.as_str())
            .bind(subject)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Users

/// The columns [`user_from_row`] reads (a macro so that `concat!` keeps queries static).
macro_rules! select_users {
    () => {
        "SELECT u.id, u.username, u.role, u.clinic_id, c.name, \
         CASE WHEN u.disabled_at IS NULL THEN 0 ELSE 1 END, \
         CASE WHEN u.password_hash IS NULL THEN 0 ELSE 1 END, u.created_at \
         FROM users u LEFT JOIN clinics c ON c.id = u.clinic_id"
    };
}

fn user_from_row(r: &AnyRow, subspecialties: Vec<String>) -> Result<User> {
    let username: String = r.try_get(1)?;
    let role: String = r.try_get(2)?;
    let disabled: i64 = r.try_get(5)?;
    let has_password: i64 = r.try_get(6)?;
    Ok(User {
        id: r.try_get(0)?,
        username: Username::parse(&username)?,
        role: role.parse()?,
        clinic_id: r.try_get(3)?,
        clinic_name: r.try_get(4)?,
        subspecialties,
        disabled: disabled != 0,
        has_password: has_password != 0,
        created_at: r.try_get(7)?,
    })
}

impl Index {
    /// Creates a user. `clinic` is a registered clinic's name (required for township
    /// doctors and clinicians, refused for admins and radiologists); `subspecialties` only
    /// for radiologists. Every role but `service` needs a password; a service account
    /// without one logs in with API tokens only.
    pub async fn create_user(
        &self,
        username: &Username,
        role: Role,
        clinic: Option<&str>,
        subspecialties: &[String],
        password: Option<&Password>,
    ) -> Result<User> {
        let subspecialties = parse_subspecialties(subspecialties)?;
        role.check_assignment(clinic.is_some(), &subspecialties)?;
        if password.is_none() && role != Role::Service {
            return Err(StoreError::Invalid(format!(
                "{} needs a password (only service accounts may have none)",
                role.with_article()
            )));
        }
        if self.find_user(username).await?.is_some() {
            return Err(StoreError::AlreadyExists(format!("user {username}")));
        }
        // Clinics are never deleted, so looking it up before the transaction is safe.
        let clinic_id = match clinic {
            None => None,
            Some(name) => Some(self.clinic_id_by_name(name).await?),
        };
        let hash = match password {
            Some(p) => Some(hash_password(p).await?),
            None => None,
        };
        let now = now_micros();
        // The INSERT comes first so that SQLite takes the write lock at once (a read that
        // upgrades to a write can fail with "database is locked" without waiting).
        let mut tx = self.pool().begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO users (username, role, clinic_id, password_hash, created_at, updated_at, \
             password_changed_at) VALUES ($1, $2, $3, $4, $5, $5, $6) RETURNING id",
        )
        .bind(username.as_str())
        .bind(role.as_str())
        .bind(clinic_id)
        .bind(hash)
        .bind(now)
        .bind(password.map(|_| now))
        .fetch_one(&mut *tx)
        .await;
        let id: i64 = match inserted {
            Ok(row) => row.try_get(0)?,
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::AlreadyExists(format!("user {username}")));
            }
            Err(e) => return Err(e.into()),
        };
        for s in &subspecialties {
            sqlx::query("INSERT INTO user_subspecialties (user_id, subspecialty) VALUES ($1, $2)")
                .bind(id)
                .bind(s)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.user_by_id(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("user {username} just created")))
    }

    async fn clinic_id_by_name(&self, name: &str) -> Result<i64> {
        let row = sqlx::query("SELECT id FROM clinics WHERE name = $1")
            .bind(name.trim())
            .fetch_optional(self.pool())
            .await?;
        match row {
            Some(r) => Ok(r.try_get(0)?),
            None => Err(StoreError::NotFound(format!(
                "no clinic named {:?}",
                truncate_for_message(name)
            ))),
        }
    }

    async fn subspecialties_of(&self, user_id: i64) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT subspecialty FROM user_subspecialties WHERE user_id = $1 ORDER BY subspecialty",
        )
        .bind(user_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(StoreError::from))
            .collect()
    }

    /// The username of user `id`.
    pub async fn username_of(&self, id: i64) -> Result<Option<String>> {
        let row = sqlx::query("SELECT username FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    pub async fn find_user(&self, username: &Username) -> Result<Option<User>> {
        let row = sqlx::query(concat!(select_users!(), " WHERE u.username = $1"))
            .bind(username.as_str())
            .fetch_optional(self.pool())
            .await?;
        match row {
            None => Ok(None),
            Some(r) => {
                let id: i64 = r.try_get(0)?;
                Ok(Some(user_from_row(&r, self.subspecialties_of(id).await?)?))
            }
        }
    }

    async fn user_by_id(&self, id: i64) -> Result<Option<User>> {
        let row = sqlx::query(concat!(select_users!(), " WHERE u.id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some(user_from_row(&r, self.subspecialties_of(id).await?)?)),
        }
    }

    /// All users, by username.
    pub async fn list_users(&self) -> Result<Vec<User>> {
        let rows = sqlx::query(concat!(select_users!(), " ORDER BY u.username"))
            .fetch_all(self.pool())
            .await?;
        let subs = sqlx::query(
            "SELECT user_id, subspecialty FROM user_subspecialties ORDER BY user_id, subspecialty",
        )
        .fetch_all(self.pool())
        .await?;
        let mut by_user: std::collections::HashMap<i64, Vec<String>> = Default::default();
        for r in &subs {
            by_user
                .entry(r.try_get(0)?)
                .or_default()
                .push(r.try_get(1)?);
        }
        rows.iter()
            .map(|r| {
                let id: i64 = r.try_get(0)?;
                user_from_row(r, by_user.remove(&id).unwrap_or_default())
            })
            .collect()
    }

    /// Disables or re-enables a user. Disabling also ends their browser sessions; their API
    /// tokens are refused while disabled and work again once enabled.
    pub async fn set_user_disabled(&self, username: &Username, disabled: bool) -> Result<User> {
        let now = now_micros();
        let mut tx = self.pool().begin().await?;
        let done = if disabled {
            // COALESCE keeps the first time it was disabled.
            sqlx::query(
                "UPDATE users SET disabled_at = COALESCE(disabled_at, $1), updated_at = $1 \
                 WHERE username = $2",
            )
            .bind(now)
            .bind(username.as_str())
            .execute(&mut *tx)
            .await?
        } else {
            sqlx::query("UPDATE users SET disabled_at = NULL, updated_at = $1 WHERE username = $2")
                .bind(now)
                .bind(username.as_str())
                .execute(&mut *tx)
                .await?
        };
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("user {username}")));
        }
        if disabled {
            revoke_sessions_of(&mut tx, username, now).await?;
        }
        tx.commit().await?;
        self.find_user(username)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("user {username}")))
    }

    /// Sets a new password, ends the user's browser sessions and lifts a login lock on the
    /// username (an administrator has vouched for the person).
    pub async fn reset_password(&self, username: &Username, new: &Password) -> Result<()> {
        if self.find_user(username).await?.is_none() {
            return Err(StoreError::NotFound(format!("user {username}")));
        }
        let hash = hash_password(new).await?;
        let now = now_micros();
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query(
            "UPDATE users SET password_hash = $1, password_changed_at = $2, updated_at = $2 \
             WHERE username = $3",
        )
        .bind(hash)
        .bind(now)
        .bind(username.as_str())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("user {username}")));
        }
        revoke_sessions_of(&mut tx, username, now).await?;
        tx.commit().await?;
        self.clear_failures(Scope::User, username.as_str()).await
    }
}

async fn revoke_sessions_of(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    username: &Username,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE sessions SET revoked_at = $1 WHERE revoked_at IS NULL \
         AND user_id = (SELECT id FROM users WHERE username = $2)",
    )
    .bind(now)
    .bind(username.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Login

impl Index {
    /// Checks a username and password from `from`. Unknown user and wrong password give the
    /// same [`AuthFailure::BadCredentials`] after the same work; a disabled account is
    /// reported only to someone who knows its password. See [`ThrottlePolicy`].
    pub async fn authenticate(
        &self,
        username: &str,
        password: &str,
        from: IpAddr,
    ) -> Result<Principal, AuthFailure> {
        self.authenticate_at(
            username,
            password,
            from,
            now_micros(),
            &ThrottlePolicy::default(),
        )
        .await
    }

    async fn authenticate_at(
        &self,
        username: &str,
        password: &str,
        from: IpAddr,
        now: i64,
        policy: &ThrottlePolicy,
    ) -> Result<Principal, AuthFailure> {
        let address = address_key(from);
        // A name that cannot exist is throttled by address only (and keeps junk out of the
        // throttle table).
        let user = Username::parse(username).ok();

        let mut wait = self.locked_for(Scope::Address, &address, now).await?;
        if let Some(u) = &user {
            wait = wait.max(self.locked_for(Scope::User, u.as_str(), now).await?);
        }
        if wait > 0 {
            return Err(AuthFailure::Throttled {
                retry_after_secs: (wait as u64).div_ceil(1_000_000),
            });
        }

        let candidate = match &user {
            Some(u) => self.credentials_of(u).await?,
            None => None,
        };
        // An over-long password cannot match (the policy refused it when it was set) and is
        // not hashed: its length is no secret.
        let matches = password.len() <= PASSWORD_MAX_BYTES
            && verify_password(
                candidate.as_ref().and_then(|c| c.password_hash.clone()),
                password,
            )
            .await;
        let (Some(user), Some(candidate), true) = (&user, candidate, matches) else {
            self.record_failure(Scope::Address, &address, now, policy)
                .await?;
            if let Some(u) = &user {
                self.record_failure(Scope::User, u.as_str(), now, policy)
                    .await?;
            }
            return Err(AuthFailure::BadCredentials);
        };
        if candidate.disabled {
            return Err(AuthFailure::Disabled);
        }
        self.clear_failures(Scope::User, user.as_str()).await?;
        self.principal(candidate.user_id).await
    }

    async fn credentials_of(&self, username: &Username) -> Result<Option<Credentials>> {
        let row = sqlx::query(
            "SELECT id, password_hash, CASE WHEN disabled_at IS NULL THEN 0 ELSE 1 END \
             FROM users WHERE username = $1",
        )
        .bind(username.as_str())
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            let disabled: i64 = r.try_get(2)?;
            Ok(Credentials {
                user_id: r.try_get(0)?,
                password_hash: r.try_get(1)?,
                disabled: disabled != 0,
            })
        })
        .transpose()
    }

    /// The principal of an existing user (a token's or session's owner).
    async fn principal(&self, user_id: i64) -> Result<Principal, AuthFailure> {
        match self.user_by_id(user_id).await? {
            Some(u) if u.disabled => Err(AuthFailure::Disabled),
            Some(u) => Ok(u.into()),
            None => Err(AuthFailure::BadCredentials),
        }
    }

    /// A token's or session's row with its owner, in one query: every authenticated request
    /// runs this, and three queries (credential, user, subspecialties) cost three trips to
    /// the database where one does. `credential_columns` are read first (from `t`), then
    /// the owner's columns that [`owner_from_row`] reads after them.
    async fn credential_with_owner(
        &self,
        table: &'static str,
        credential_columns: &'static str,
        hash_column: &'static str,
        hash: &str,
    ) -> Result<Option<AnyRow>> {
        let subspecialties = match self.backend() {
            Backend::Sqlite => "group_concat(us.subspecialty, ',')",
            Backend::Postgres => "string_agg(us.subspecialty, ',')",
        };
        let sql = format!(
            "SELECT {credential_columns}, u.id, u.username, u.role, u.clinic_id, c.name, \
             CASE WHEN u.disabled_at IS NULL THEN 0 ELSE 1 END, \
             (SELECT {subspecialties} FROM user_subspecialties us WHERE us.user_id = u.id) \
             FROM {table} t JOIN users u ON u.id = t.user_id \
             LEFT JOIN clinics c ON c.id = u.clinic_id WHERE t.{hash_column} = $1"
        );
        // Built from this module's constants only; the hash is bound.
        self.fetch_optional_alone(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(hash))
            .await
    }
}

/// The owner read by [`Index::credential_with_owner`], its columns from `at` on; a disabled
/// owner is [`AuthFailure::Disabled`].
fn owner_from_row(r: &AnyRow, at: usize) -> Result<Principal, AuthFailure> {
    let username: String = r.try_get(at + 1)?;
    let role: String = r.try_get(at + 2)?;
    let disabled: i64 = r.try_get(at + 5)?;
    let subspecialties: Option<String> = r.try_get(at + 6)?;
    if disabled != 0 {
        return Err(AuthFailure::Disabled);
    }
    // Subspecialties are letters, digits and '-' (`parse_subspecialties`): a comma cannot
    // be part of one.
    let mut subspecialties: Vec<String> = subspecialties
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    subspecialties.sort();
    Ok(Principal {
        user_id: r.try_get(at)?,
        username: Username::parse(&username)?,
        role: role.parse()?,
        clinic_id: r.try_get(at + 3)?,
        clinic_name: r.try_get(at + 4)?,
        subspecialties,
    })
}

/// What a login is checked against; stays inside this module.
struct Credentials {
    user_id: i64,
    password_hash: Option<String>,
    disabled: bool,
}

// ---------------------------------------------------------------------------------------
// API tokens

/// A token that holds, as [`Index::valid_token_at`] found it.
struct ValidToken {
    id: i64,
    last_used: Option<i64>,
    principal: Principal,
}

const TOKEN_LABEL_MAX_CHARS: usize = 100;
const TOKEN_TTL_MAX: Duration = Duration::from_secs(10 * 366 * 24 * 3600);
/// `last_used_at` is written at most this often per token (not on every request).
const TOKEN_LAST_USED_GRANULARITY: Duration = Duration::from_secs(60);

impl Index {
    /// Creates an API token for `username`: `pacs_` and 64 hex digits (32 random bytes).
    /// Only its hash is stored; the secret is in the answer and nowhere else. `ttl`: none
    /// means until revoked.
    pub async fn create_token(
        &self,
        username: &Username,
        label: &str,
        ttl: Option<Duration>,
    ) -> Result<NewToken> {
        let label = label.trim();
        if label.chars().count() > TOKEN_LABEL_MAX_CHARS || label.chars().any(char::is_control) {
            return Err(StoreError::Invalid(format!(
                "a token label must be at most {TOKEN_LABEL_MAX_CHARS} printable characters"
            )));
        }
        if ttl.is_some_and(|t| t.is_zero() || t > TOKEN_TTL_MAX) {
            return Err(StoreError::Invalid(
                "a token lifetime must be between one second and ten years".into(),
            ));
        }
        let user = self
            .find_user(username)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("user {username}")))?;
        if user.disabled {
            return Err(StoreError::Invalid(format!(
                "user {username} is disabled: enable it before creating a token"
            )));
        }
        let bytes = random_bytes::<SECRET_BYTES>()?;
        let now = now_micros();
        let expires_at = ttl.map(|t| now.saturating_add(micros(t)));
        let id: i64 = sqlx::query(
            "INSERT INTO api_tokens (user_id, label, token_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(user.id)
        .bind(label)
        .bind(secret_hash(TOKEN_HASH_CONTEXT, &bytes))
        .bind(now)
        .bind(expires_at)
        .fetch_one(self.pool())
        .await?
        .try_get(0)?;
        Ok(NewToken {
            id: TokenId(id),
            secret: format!("{TOKEN_PREFIX}{}", hex::encode(bytes)),
            expires_at,
        })
    }

    /// The principal of a bearer token. Malformed, unknown and revoked tokens are
    /// [`AuthFailure::BadCredentials`]; an expired one [`AuthFailure::Expired`]; a disabled
    /// owner [`AuthFailure::Disabled`].
    pub async fn verify_token(&self, secret: &str) -> Result<Principal, AuthFailure> {
        self.verify_token_at(secret, now_micros()).await
    }

    async fn verify_token_at(&self, secret: &str, now: i64) -> Result<Principal, AuthFailure> {
        let token = self.valid_token_at(secret, now).await?;
        let stale = now - micros(TOKEN_LAST_USED_GRANULARITY);
        // Written only when due (see `session_principal_at`: no write lock per request).
        if token.last_used.is_none_or(|t| t < stale) {
            sqlx::query(
                "UPDATE api_tokens SET last_used_at = $1 WHERE id = $2 \
                 AND (last_used_at IS NULL OR last_used_at < $3)",
            )
            .bind(now)
            .bind(token.id)
            .bind(stale)
            .execute(self.pool())
            .await?;
        }
        Ok(token.principal)
    }

    /// Whether a bearer token accepted earlier still holds (not revoked, not expired, its
    /// owner not disabled), with the same answers as [`Index::verify_token`] but without
    /// recording a use: for connections that outlive the request that opened them (the live
    /// feed's websockets), re-checked every few seconds.
    pub async fn recheck_token(&self, secret: &str) -> Result<Principal, AuthFailure> {
        self.valid_token_at(secret, now_micros())
            .await
            .map(|t| t.principal)
    }

    /// The token, if it holds at `now`.
    async fn valid_token_at(&self, secret: &str, now: i64) -> Result<ValidToken, AuthFailure> {
        let Some(bytes) = secret.strip_prefix(TOKEN_PREFIX).and_then(decode_secret) else {
            return Err(AuthFailure::BadCredentials);
        };
        let row = self
            .credential_with_owner(
                "api_tokens",
                "t.id, t.expires_at, t.revoked_at, t.last_used_at",
                "token_hash",
                &secret_hash(TOKEN_HASH_CONTEXT, &bytes),
            )
            .await?;
        let Some(row) = row else {
            return Err(AuthFailure::BadCredentials);
        };
        let id: i64 = row.try_get(0)?;
        let expires_at: Option<i64> = row.try_get(1)?;
        let revoked_at: Option<i64> = row.try_get(2)?;
        let last_used: Option<i64> = row.try_get(3)?;
        if revoked_at.is_some() {
            return Err(AuthFailure::BadCredentials);
        }
        if expires_at.is_some_and(|e| e <= now) {
            return Err(AuthFailure::Expired);
        }
        Ok(ValidToken {
            id,
            last_used,
            principal: owner_from_row(&row, 4)?,
        })
    }

    /// Revokes a token for good. Revoking it again is not an error.
    pub async fn revoke_token(&self, id: TokenId) -> Result<()> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2",
        )
        .bind(now_micros())
        .bind(id.0)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("token {id}")));
        }
        Ok(())
    }

    /// The tokens of a user (revoked and expired ones too), oldest first.
    pub async fn list_tokens(&self, username: &Username) -> Result<Vec<TokenInfo>> {
        if self.find_user(username).await?.is_none() {
            return Err(StoreError::NotFound(format!("user {username}")));
        }
        let rows = sqlx::query(
            "SELECT t.id, t.label, t.created_at, t.expires_at, t.last_used_at, t.revoked_at \
             FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE u.username = $1 \
             ORDER BY t.id",
        )
        .bind(username.as_str())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TokenInfo {
                    id: TokenId(r.try_get(0)?),
                    username: username.clone(),
                    label: r.try_get(1)?,
                    created_at: r.try_get(2)?,
                    expires_at: r.try_get(3)?,
                    last_used_at: r.try_get(4)?,
                    revoked_at: r.try_get(5)?,
                })
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// Browser sessions

/// `last_seen_at` is written at most every tenth of the idle timeout (and at least every
/// minute), not on every request; the idle expiry is that much early at worst.
fn touch_granularity(idle: i64) -> i64 {
    (idle / 10).min(60_000_000)
}

/// A session that holds, as found by its secret.
struct ValidSession {
    id: i64,
    /// Its idle timeout, microseconds.
    idle: i64,
    /// When it was last marked as used.
    last_seen: i64,
    principal: Principal,
}

impl Index {
    /// Starts a browser session for an enabled user (after [`Index::authenticate`]).
    pub async fn create_session(&self, user_id: i64, ttl: SessionTtl) -> Result<NewSession> {
        self.create_session_at(user_id, ttl, now_micros()).await
    }

    async fn create_session_at(
        &self,
        user_id: i64,
        ttl: SessionTtl,
        now: i64,
    ) -> Result<NewSession> {
        if ttl.absolute.is_zero() || ttl.idle.is_zero() {
            return Err(StoreError::Invalid(
                "session lifetimes must be positive".into(),
            ));
        }
        match self.user_by_id(user_id).await? {
            None => return Err(StoreError::NotFound(format!("user id {user_id}"))),
            Some(u) if u.disabled => {
                return Err(StoreError::Invalid(format!(
                    "user {} is disabled",
                    u.username
                )));
            }
            Some(_) => {}
        }
        let bytes = random_bytes::<SECRET_BYTES>()?;
        let expires_at = now.saturating_add(micros(ttl.absolute));
        // Expired sessions are of no use to anyone: dropped as new ones are made.
        sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
            .bind(now)
            .execute(self.pool())
            .await?;
        sqlx::query(
            "INSERT INTO sessions (user_id, secret_hash, created_at, expires_at, idle_timeout, \
             last_seen_at) VALUES ($1, $2, $3, $4, $5, $3)",
        )
        .bind(user_id)
        .bind(secret_hash(SESSION_HASH_CONTEXT, &bytes))
        .bind(now)
        .bind(expires_at)
        .bind(micros(ttl.idle))
        .execute(self.pool())
        .await?;
        Ok(NewSession {
            secret: hex::encode(bytes),
            csrf_token: csrf_token(&bytes),
            expires_at,
        })
    }

    /// The principal and CSRF token of a session cookie, and marks the session as used.
    /// Forged, unknown and revoked secrets are [`AuthFailure::BadCredentials`]; past the
    /// absolute or idle limit [`AuthFailure::Expired`].
    pub async fn session_principal(
        &self,
        secret: &str,
    ) -> Result<(Principal, String), AuthFailure> {
        self.session_principal_at(secret, now_micros()).await
    }

    async fn session_principal_at(
        &self,
        secret: &str,
        now: i64,
    ) -> Result<(Principal, String), AuthFailure> {
        let (session, bytes) = self.valid_session_at(secret, now).await?;
        let stale = now - touch_granularity(session.idle);
        // Written only when due: an UPDATE, even one that changes nothing, takes SQLite's
        // one write lock, and every request of a page (a series' frames) would queue
        // behind the ingest and audit commits for it.
        if session.last_seen < stale {
            sqlx::query(
                "UPDATE sessions SET last_seen_at = $1 WHERE id = $2 AND last_seen_at < $3",
            )
            .bind(now)
            .bind(session.id)
            .bind(stale)
            .execute(self.pool())
            .await?;
        }
        Ok((session.principal, csrf_token(&bytes)))
    }

    /// Whether a session accepted earlier still holds (not logged out, within its absolute
    /// and idle limits, its user not disabled), with the same answers as
    /// [`Index::session_principal`] but without marking the session as used: an open
    /// connection (the live feed's websocket) is not activity, and re-checking it every few
    /// seconds must not keep an idle session alive.
    pub async fn recheck_session(&self, secret: &str) -> Result<Principal, AuthFailure> {
        self.recheck_session_at(secret, now_micros()).await
    }

    async fn recheck_session_at(&self, secret: &str, now: i64) -> Result<Principal, AuthFailure> {
        self.valid_session_at(secret, now)
            .await
            .map(|(s, _)| s.principal)
    }

    /// The session of `secret` (and the secret's bytes), if it holds at `now`.
    async fn valid_session_at(
        &self,
        secret: &str,
        now: i64,
    ) -> Result<(ValidSession, [u8; SECRET_BYTES]), AuthFailure> {
        let Some(bytes) = decode_secret(secret) else {
            return Err(AuthFailure::BadCredentials);
        };
        let row = self
            .credential_with_owner(
                "sessions",
                "t.id, t.expires_at, t.idle_timeout, t.last_seen_at, t.revoked_at",
                "secret_hash",
                &secret_hash(SESSION_HASH_CONTEXT, &bytes),
            )
            .await?;
        let Some(row) = row else {
            return Err(AuthFailure::BadCredentials);
        };
        let id: i64 = row.try_get(0)?;
        let expires_at: i64 = row.try_get(1)?;
        let idle: i64 = row.try_get(2)?;
        let last_seen: i64 = row.try_get(3)?;
        let revoked_at: Option<i64> = row.try_get(4)?;
        if revoked_at.is_some() {
            return Err(AuthFailure::BadCredentials);
        }
        if expires_at <= now || last_seen.saturating_add(idle) <= now {
            return Err(AuthFailure::Expired);
        }
        let principal = owner_from_row(&row, 5)?;
        Ok((
            ValidSession {
                id,
                idle,
                last_seen,
                principal,
            },
            bytes,
        ))
    }

    /// Ends a session (logout). Unknown or malformed secrets are ignored: logging out twice
    /// is not an error.
    pub async fn revoke_session(&self, secret: &str) -> Result<()> {
        let Some(bytes) = decode_secret(secret) else {
            return Ok(());
        };
        sqlx::query(
            "UPDATE sessions SET revoked_at = $1 WHERE secret_hash = $2 AND revoked_at IS NULL",
        )
        .bind(now_micros())
        .bind(secret_hash(SESSION_HASH_CONTEXT, &bytes))
        .execute(self.pool())
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::ae_title::AeTitle;

    const GOOD: &str = "correct horse battery";
    const MINUTE: i64 = 60_000_000;

    async fn index() -> (tempfile::TempDir, Index) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("index.db").display());
        let index = Index::open(&url).await.unwrap();
        (dir, index)
    }

    async fn clinic(index: &Index, name: &str, ae: &str) -> i64 {
        index
            .add_clinic_ae(name, &AeTitle::parse(ae).unwrap(), None)
            .await
            .unwrap()
            .clinic_id
    }

    fn name(s: &str) -> Username {
        Username::parse(s).unwrap()
    }

    fn pw(s: &str) -> Password {
        Password::parse(s).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A user with the password [`GOOD`].
    async fn user(index: &Index, username: &str, role: Role, clinic: Option<&str>) -> User {
        index
            .create_user(&name(username), role, clinic, &[], Some(&pw(GOOD)))
            .await
            .unwrap()
    }

    /// Every byte of the database files (main file and WAL), for "not stored in clear".
    fn database_bytes(dir: &tempfile::TempDir) -> Vec<u8> {
        let mut all = Vec::new();
        for e in std::fs::read_dir(dir.path()).unwrap() {
            all.extend(std::fs::read(e.unwrap().path()).unwrap());
        }
        all
    }

    fn contains(haystack: &[u8], needle: &str) -> bool {
        haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    }

    #[test]
    fn roles_parse_and_display() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
            assert_eq!(r.to_string(), r.as_str());
            assert_eq!(
                serde_json::to_value(r).unwrap(),
                serde_json::json!(r.as_str())
            );
        }
        assert_eq!(
            "Township-Doctor".parse::<Role>().unwrap(),
            Role::TownshipDoctor
        );
        for bad in ["", "doctor", "township_doctor", "root"] {
            let e = bad.parse::<Role>().unwrap_err().to_string();
            assert!(e.contains("township-doctor"), "{e}");
        }
    }

    #[test]
    fn usernames() {
        assert_eq!(name("dr.aung_1-x").as_str(), "dr.aung_1-x");
        assert_eq!(name("Alice").as_str(), "alice");
        assert_eq!(name(&"a".repeat(64)).as_str().len(), 64);
        for bad in [
            "",
            &"a".repeat(65),
            ".hidden",
            "-rf",
            "a b",
            "äbc",
            "a/b",
            "a\0b",
            "a@b",
        ] {
            assert!(
                matches!(Username::parse(bad), Err(StoreError::Invalid(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn password_policy() {
        assert!(Password::parse("short-11byt").is_err());
        assert!(Password::parse("exactly-12by").is_ok());
        assert!(Password::parse(&"x".repeat(PASSWORD_MAX_BYTES)).is_ok());
        assert!(Password::parse(&"x".repeat(PASSWORD_MAX_BYTES + 1)).is_err());
        assert!(Password::parse(" \t            \n").is_err());
        // 12 bytes, 4 characters: the limit is in bytes.
        assert!(Password::parse("ääää").is_err());
        assert!(Password::parse("ääääää").is_ok());
        assert_eq!(format!("{:?}", pw(GOOD)), "Password(<redacted>)");

        let huge = "p".repeat(1 << 20);
        let t = Instant::now();
        let e = Password::parse(&huge).unwrap_err().to_string();
        assert!(t.elapsed() < Duration::from_millis(50), "{:?}", t.elapsed());
        assert!(e.contains("too long") && e.len() < 200, "{e}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn roles_and_clinics_are_validated() {
        let (_dir, index) = index().await;
        let tmc = clinic(&index, "Tamu Clinic", "TAMU_US").await;
        clinic(&index, "Kalay Clinic", "KALAY_CR").await;

        let doc = user(&index, "doc", Role::TownshipDoctor, Some("Tamu Clinic")).await;
        assert_eq!(doc.clinic_id, Some(tmc));
        assert_eq!(doc.clinic_name.as_deref(), Some("Tamu Clinic"));
        let cl = user(&index, "nurse", Role::Clinician, Some("Kalay Clinic")).await;
        assert_eq!(cl.clinic_name.as_deref(), Some("Kalay Clinic"));
        assert!(
            user(&index, "root", Role::Admin, None)
                .await
                .clinic_id
                .is_none()
        );
        user(&index, "bridge", Role::Service, Some("Tamu Clinic")).await;
        let svc = index
            .create_user(&name("router"), Role::Service, None, &[], None)
            .await
            .unwrap();
        assert!(!svc.has_password && svc.clinic_id.is_none());
        let rad = index
            .create_user(
                &name("rad"),
                Role::Radiologist,
                None,
                &["Neuro".into(), "chest".into(), "neuro".into()],
                Some(&pw(GOOD)),
            )
            .await
            .unwrap();
        assert_eq!(rad.subspecialties, ["chest", "neuro"]);
        assert!(rad.has_password && !rad.disabled);

        let invalid = |r: Result<User>| match r {
            Err(StoreError::Invalid(m)) => m,
            other => panic!("expected Invalid, got {other:?}"),
        };
        let p = pw(GOOD);
        let m = invalid(
            index
                .create_user(&name("x1"), Role::TownshipDoctor, None, &[], Some(&p))
                .await,
        );
        assert!(m.contains("clinic"), "{m}");
        invalid(
            index
                .create_user(&name("x2"), Role::Clinician, None, &[], Some(&p))
                .await,
        );
        invalid(
            index
                .create_user(&name("x3"), Role::Admin, Some("Tamu Clinic"), &[], Some(&p))
                .await,
        );
        invalid(
            index
                .create_user(
                    &name("x4"),
                    Role::Radiologist,
                    Some("Tamu Clinic"),
                    &[],
                    Some(&p),
                )
                .await,
        );
        invalid(
            index
                .create_user(
                    &name("x5"),
                    Role::Clinician,
                    Some("Tamu Clinic"),
                    &["neuro".into()],
                    Some(&p),
                )
                .await,
        );
        invalid(
            index
                .create_user(
                    &name("x6"),
                    Role::Radiologist,
                    None,
                    &["neu ro".into()],
                    Some(&p),
                )
                .await,
        );
        invalid(
            index
                .create_user(&name("x7"), Role::Admin, None, &[], None)
                .await,
        );
        match index
            .create_user(&name("x8"), Role::Clinician, Some("Nowhere"), &[], Some(&p))
            .await
        {
            Err(StoreError::NotFound(m)) => assert!(m.contains("Nowhere"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            index
                .create_user(&name("DOC"), Role::Admin, None, &[], Some(&p))
                .await,
            Err(StoreError::AlreadyExists(_))
        ));

        let all = index.list_users().await.unwrap();
        let names: Vec<&str> = all.iter().map(|u| u.username.as_str()).collect();
        assert_eq!(names, ["bridge", "doc", "nurse", "rad", "root", "router"]);
        assert_eq!(all[3].subspecialties, ["chest", "neuro"]);
        assert_eq!(
            index.find_user(&name("Doc")).await.unwrap().unwrap().role,
            Role::TownshipDoctor
        );
        assert!(index.find_user(&name("x1")).await.unwrap().is_none());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn password_hash_is_not_stored_in_clear() {
        let (dir, index) = index().await;
        let u = user(&index, "alice", Role::Admin, None).await;
        let stored: String = sqlx::query("SELECT password_hash FROM users WHERE id = $1")
            .bind(u.id)
            .fetch_one(index.pool())
            .await
            .unwrap()
            .try_get(0)
            .unwrap();
        assert!(stored.starts_with("$argon2id$v=19$"), "{stored}");
        assert!(!stored.contains(GOOD));
        let listed = serde_json::to_string(&index.list_users().await.unwrap()).unwrap();
        assert!(
            !listed.contains("argon2") && !listed.contains(GOOD),
            "{listed}"
        );
        index.close().await;
        let bytes = database_bytes(&dir);
        assert!(contains(&bytes, "alice"), "the scan sees the database");
        assert!(!contains(&bytes, GOOD));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn login() {
        let (_dir, index) = index().await;
        clinic(&index, "Tamu Clinic", "TAMU_US").await;
        let doc = user(&index, "doc", Role::TownshipDoctor, Some("Tamu Clinic")).await;
        index
            .create_user(&name("router"), Role::Service, None, &[], None)
            .await
            .unwrap();
        let from = ip("10.1.2.3");

        let p = index.authenticate("Doc", GOOD, from).await.unwrap();
        assert_eq!(p.user_id, doc.id);
        assert_eq!(p.username.as_str(), "doc");
        assert_eq!(p.role, Role::TownshipDoctor);
        assert_eq!(p.clinic_id, doc.clinic_id);
        assert_eq!(p.clinic_name.as_deref(), Some("Tamu Clinic"));

        let wrong = index
            .authenticate("doc", "wrong password!", from)
            .await
            .unwrap_err();
        let unknown = index.authenticate("nobody", GOOD, from).await.unwrap_err();
        assert!(matches!(wrong, AuthFailure::BadCredentials));
        assert!(matches!(unknown, AuthFailure::BadCredentials));
        assert_eq!(wrong.to_string(), unknown.to_string());
        assert_eq!(format!("{wrong:?}"), format!("{unknown:?}"));
        // Names that cannot exist, and an account without a password.
        for (u, p) in [
            ("../etc", GOOD),
            ("", GOOD),
            ("router", ""),
            ("router", GOOD),
        ] {
            assert!(matches!(
                index.authenticate(u, p, from).await,
                Err(AuthFailure::BadCredentials)
            ));
        }
        // Refused without hashing a megabyte.
        let t = Instant::now();
        assert!(matches!(
            index.authenticate("doc", &"p".repeat(1 << 20), from).await,
            Err(AuthFailure::BadCredentials)
        ));
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());

        index.set_user_disabled(&name("doc"), true).await.unwrap();
        assert!(matches!(
            index.authenticate("doc", GOOD, from).await,
            Err(AuthFailure::Disabled)
        ));
        // Only someone with the password learns that the account is disabled.
        assert!(matches!(
            index.authenticate("doc", "wrong password!", from).await,
            Err(AuthFailure::BadCredentials)
        ));
        assert!(index.list_users().await.unwrap()[0].disabled);
        index.set_user_disabled(&name("doc"), false).await.unwrap();
        assert!(index.authenticate("doc", GOOD, from).await.is_ok());
        assert!(matches!(
            index.set_user_disabled(&name("ghost"), true).await,
            Err(StoreError::NotFound(_))
        ));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn reset_password() {
        let (_dir, index) = index().await;
        let u = user(&index, "alice", Role::Admin, None).await;
        let session = index
            .create_session(u.id, SessionTtl::default())
            .await
            .unwrap();
        let new = "a new and longer passphrase";
        index
            .reset_password(&name("alice"), &pw(new))
            .await
            .unwrap();
        let from = ip("10.0.0.1");
        assert!(matches!(
            index.authenticate("alice", GOOD, from).await,
            Err(AuthFailure::BadCredentials)
        ));
        assert!(index.authenticate("alice", new, from).await.is_ok());
        // Sessions opened with the old password end.
        assert!(matches!(
            index.session_principal(&session.secret).await,
            Err(AuthFailure::BadCredentials)
        ));
        assert!(matches!(
            index.reset_password(&name("bob"), &pw(new)).await,
            Err(StoreError::NotFound(_))
        ));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn throttling_per_user_grows_and_resets_on_success() {
        let (_dir, index) = index().await;
        user(&index, "alice", Role::Admin, None).await;
        let policy = ThrottlePolicy::default();
        let t0 = now_micros();
        // Five failures from five addresses: the username is locked wherever it comes from.
        for i in 0..5 {
            let from = ip(&format!("10.0.0.{i}"));
            let r = index
                .authenticate_at("alice", "wrong password!", from, t0, &policy)
                .await;
            assert!(matches!(r, Err(AuthFailure::BadCredentials)), "{r:?}");
        }
        let r = index
            .authenticate_at("alice", GOOD, ip("10.9.9.9"), t0 + 1, &policy)
            .await;
        assert!(
            matches!(
                r,
                Err(AuthFailure::Throttled {
                    retry_after_secs: 30
                })
            ),
            "{r:?}"
        );
        // Each further failure doubles the back-off.
        let t1 = t0 + 31_000_000;
        assert!(matches!(
            index
                .authenticate_at("alice", "wrong password!", ip("10.0.0.1"), t1, &policy)
                .await,
            Err(AuthFailure::BadCredentials)
        ));
        let r = index
            .authenticate_at("alice", GOOD, ip("10.0.0.1"), t1 + 59_000_000, &policy)
            .await;
        assert!(
            matches!(
                r,
                Err(AuthFailure::Throttled {
                    retry_after_secs: 1
                })
            ),
            "{r:?}"
        );
        // After the back-off the right password works and clears the count…
        let t2 = t1 + 61_000_000;
        assert!(
            index
                .authenticate_at("alice", GOOD, ip("10.0.0.1"), t2, &policy)
                .await
                .is_ok()
        );
        // …so four more failures do not lock.
        for _ in 0..4 {
            let _ = index
                .authenticate_at("alice", "wrong password!", ip("10.0.0.1"), t2, &policy)
                .await;
        }
        assert!(
            index
                .authenticate_at("alice", GOOD, ip("10.0.0.1"), t2, &policy)
                .await
                .is_ok()
        );

        // An unknown username is throttled the same way: locking does not tell either.
        for _ in 0..5 {
            let _ = index
                .authenticate_at("nobody", GOOD, ip("10.0.1.1"), t2, &policy)
                .await;
        }
        assert!(matches!(
            index
                .authenticate_at("nobody", GOOD, ip("10.0.1.2"), t2, &policy)
                .await,
            Err(AuthFailure::Throttled { .. })
        ));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn back_off_is_capped_and_forgotten_after_a_quiet_window() {
        let (_dir, index) = index().await;
        let p = ThrottlePolicy::default();
        let mut now = now_micros();
        let mut last_lock = 0;
        // Fail every time the lock ends: 30 s, 60 s, … up to the 15 min cap.
        for i in 0..12 {
            index
                .record_failure(Scope::User, "eve", now, &p)
                .await
                .unwrap();
            let lock = index.locked_for(Scope::User, "eve", now).await.unwrap();
            if i < 4 {
                assert_eq!(lock, 0, "failure {i}");
            } else {
                assert!(lock >= last_lock && lock <= 15 * MINUTE, "{i}: {lock}");
                last_lock = lock;
            }
            now += lock + 1;
        }
        assert_eq!(last_lock, 15 * MINUTE);
        // Four failures, then a quiet quarter-hour: counting starts again.
        index
            .record_failure(Scope::User, "amy", now, &p)
            .await
            .unwrap();
        for _ in 0..3 {
            index
                .record_failure(Scope::User, "amy", now, &p)
                .await
                .unwrap();
        }
        now += 16 * MINUTE;
        for _ in 0..4 {
            index
                .record_failure(Scope::User, "amy", now, &p)
                .await
                .unwrap();
        }
        assert_eq!(index.locked_for(Scope::User, "amy", now).await.unwrap(), 0);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn throttling_per_address() {
        let (_dir, index) = index().await;
        user(&index, "alice", Role::Admin, None).await;
        let policy = ThrottlePolicy::default();
        let t0 = now_micros();
        let from = ip("192.0.2.7");
        // 19 failures over several names (each under the per-user limit), then a success:
        // a valid account does not clear the address's count.
        for i in 0..19 {
            let _ = index
                .authenticate_at(&format!("guess{}", i % 5), GOOD, from, t0, &policy)
                .await;
        }
        assert!(
            index
                .authenticate_at("alice", GOOD, from, t0, &policy)
                .await
                .is_ok()
        );
        let _ = index
            .authenticate_at("guess9", GOOD, from, t0, &policy)
            .await;
        assert!(matches!(
            index
                .authenticate_at("alice", GOOD, from, t0, &policy)
                .await,
            Err(AuthFailure::Throttled { .. })
        ));
        // The same address written as IPv4-mapped IPv6 is the same address.
        assert!(matches!(
            index
                .authenticate_at("alice", GOOD, ip("::ffff:192.0.2.7"), t0, &policy)
                .await,
            Err(AuthFailure::Throttled { .. })
        ));
        // Another address is not affected.
        assert!(
            index
                .authenticate_at("alice", GOOD, ip("192.0.2.8"), t0, &policy)
                .await
                .is_ok()
        );
    }

    #[test]
    fn address_keys() {
        assert_eq!(address_key(ip("10.0.0.1")), "10.0.0.1");
        assert_eq!(address_key(ip("::ffff:10.0.0.1")), "10.0.0.1");
        assert_eq!(
            address_key(ip("2001:db8:1:2:aaaa::1")),
            address_key(ip("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(
            address_key(ip("2001:db8:1:2::1")),
            address_key(ip("2001:db8:1:3::1"))
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn tokens() {
        let (dir, index) = index().await;
        clinic(&index, "Tamu Clinic", "TAMU_US").await;
        let svc = index
            .create_user(
                &name("bridge"),
                Role::Service,
                Some("Tamu Clinic"),
                &[],
                None,
            )
            .await
            .unwrap();
        let t = index
            .create_token(&name("bridge"), "modality bridge", None)
            .await
            .unwrap();
        assert!(t.secret.starts_with("pacs_") && t.secret.len() == 5 + 64);
        assert!(!format!("{t:?}").contains(&t.secret));
        let p = index.verify_token(&t.secret).await.unwrap();
        assert_eq!((p.user_id, p.role), (svc.id, Role::Service));
        assert_eq!(p.clinic_name.as_deref(), Some("Tamu Clinic"));

        let listed = index.list_tokens(&name("bridge")).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, t.id);
        assert_eq!(listed[0].label, "modality bridge");
        assert!(listed[0].last_used_at.is_some() && listed[0].revoked_at.is_none());
        assert!(
            !serde_json::to_string(&listed)
                .unwrap()
                .contains(&t.secret[5..])
        );

        // Malformed and forged tokens.
        let mut forged = t.secret.clone();
        forged.replace_range(10..11, if &t.secret[10..11] == "0" { "1" } else { "0" });
        let long = "pacs_".to_string() + &"a".repeat(1 << 20);
        for bad in [
            "",
            "pacs_",
            "Bearer x",
            &t.secret[5..],
            &t.secret.to_uppercase(),
            &format!("{}0", t.secret),
            &forged,
            &long,
        ] {
            assert!(
                matches!(
                    index.verify_token(bad).await,
                    Err(AuthFailure::BadCredentials)
                ),
                "{bad:.20}"
            );
        }

        // Disabled owner: refused, and accepted again once enabled.
        index
            .set_user_disabled(&name("bridge"), true)
            .await
            .unwrap();
        assert!(matches!(
            index.verify_token(&t.secret).await,
            Err(AuthFailure::Disabled)
        ));
        assert!(matches!(
            index.recheck_token(&t.secret).await,
            Err(AuthFailure::Disabled)
        ));
        assert!(matches!(
            index.create_token(&name("bridge"), "", None).await,
            Err(StoreError::Invalid(_))
        ));
        index
            .set_user_disabled(&name("bridge"), false)
            .await
            .unwrap();
        assert!(index.verify_token(&t.secret).await.is_ok());

        // Expiry.
        let short = index
            .create_token(&name("bridge"), "", Some(Duration::from_secs(3600)))
            .await
            .unwrap();
        let now = now_micros();
        assert!(index.verify_token_at(&short.secret, now).await.is_ok());
        assert!(matches!(
            index
                .verify_token_at(&short.secret, now + 61 * MINUTE)
                .await,
            Err(AuthFailure::Expired)
        ));

        // Re-checking records no use.
        let fresh = index
            .create_token(&name("bridge"), "watched", None)
            .await
            .unwrap();
        assert!(index.recheck_token(&fresh.secret).await.is_ok());
        let tokens = index.list_tokens(&name("bridge")).await.unwrap();
        let fresh_info = tokens.iter().find(|i| i.id == fresh.id).unwrap();
        assert_eq!(fresh_info.last_used_at, None);

        // Revocation.
        index.revoke_token(t.id).await.unwrap();
        assert!(matches!(
            index.recheck_token(&t.secret).await,
            Err(AuthFailure::BadCredentials)
        ));
        index.revoke_token(t.id).await.unwrap();
        assert!(matches!(
            index.verify_token(&t.secret).await,
            Err(AuthFailure::BadCredentials)
        ));
        assert!(
            index.list_tokens(&name("bridge")).await.unwrap()[0]
                .revoked_at
                .is_some()
        );
        assert!(matches!(
            index.revoke_token(TokenId(9999)).await,
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            index.create_token(&name("ghost"), "", None).await,
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            index
                .create_token(&name("bridge"), "bad\nlabel", None)
                .await,
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            index
                .create_token(&name("bridge"), "", Some(Duration::ZERO))
                .await,
            Err(StoreError::Invalid(_))
        ));

        index.close().await;
        let bytes = database_bytes(&dir);
        assert!(contains(&bytes, "modality bridge"));
        assert!(!contains(&bytes, &t.secret[5..]));
        assert!(!contains(&bytes, &short.secret[5..]));
    }

    /// A token's and a session's principal (read with its owner in one query) is the
    /// owner as `user_by_id` reads it: role, clinic and subspecialties, with or without
    /// any; a disabled owner is refused. On both databases (the subspecialties are
    /// aggregated in each one's own SQL).
    async fn credential_principals(index: &Index) {
        clinic(index, "Tamu Clinic", "TAMU_US").await;
        let rad = index
            .create_user(
                &name("rad"),
                Role::Radiologist,
                None,
                &["neuro".into(), "chest".into(), "msk".into()],
                Some(&pw(GOOD)),
            )
            .await
            .unwrap();
        let doc = user(index, "doc", Role::TownshipDoctor, Some("Tamu Clinic")).await;
        let ttl = SessionTtl {
            absolute: Duration::from_secs(3600),
            idle: Duration::from_secs(600),
        };
        for u in [&rad, &doc] {
            let want: Principal = index.user_by_id(u.id).await.unwrap().unwrap().into();
            let t = index.create_token(&u.username, "t", None).await.unwrap();
            assert_eq!(index.verify_token(&t.secret).await.unwrap(), want);
            assert_eq!(index.recheck_token(&t.secret).await.unwrap(), want);
            let s = index.create_session(u.id, ttl).await.unwrap();
            assert_eq!(index.session_principal(&s.secret).await.unwrap().0, want);
            assert_eq!(index.recheck_session(&s.secret).await.unwrap(), want);
        }
        assert_eq!(
            index
                .verify_token(
                    &index
                        .create_token(&name("rad"), "t", None)
                        .await
                        .unwrap()
                        .secret
                )
                .await
                .unwrap()
                .subspecialties,
            ["chest", "msk", "neuro"]
        );
        let t = index.create_token(&name("doc"), "t", None).await.unwrap();
        index.set_user_disabled(&name("doc"), true).await.unwrap();
        assert!(matches!(
            index.verify_token(&t.secret).await,
            Err(AuthFailure::Disabled)
        ));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn credential_principals_sqlite() {
        let (_dir, index) = index().await;
        credential_principals(&index).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn credential_principals_postgres() {
        let Some(url) = crate::test_postgres::fresh_database("credential principals").await else {
            return;
        };
        let index = Index::open(&url).await.unwrap();
        credential_principals(&index).await;
        index.close().await;
        crate::test_postgres::drop_database(&url).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn sessions() {
        let (dir, index) = index().await;
        let u = user(&index, "rad", Role::Radiologist, None).await;
        let ttl = SessionTtl {
            absolute: Duration::from_secs(3600),
            idle: Duration::from_secs(600),
        };
        let now = now_micros();
        let s = index.create_session_at(u.id, ttl, now).await.unwrap();
        assert_eq!(s.secret.len(), 64);
        assert_ne!(s.secret, s.csrf_token);
        assert!(!format!("{s:?}").contains(&s.secret));
        let (p, csrf) = index.session_principal_at(&s.secret, now).await.unwrap();
        assert_eq!((p.user_id, p.role), (u.id, Role::Radiologist));
        assert_eq!(csrf, s.csrf_token);

        // Activity keeps it alive past the idle limit, never past the absolute one.
        for m in [8, 16, 24, 32, 40, 48, 56] {
            assert!(
                index
                    .session_principal_at(&s.secret, now + m * MINUTE)
                    .await
                    .is_ok(),
                "{m} min"
            );
        }
        assert!(matches!(
            index
                .session_principal_at(&s.secret, now + 61 * MINUTE)
                .await,
            Err(AuthFailure::Expired)
        ));
        // Re-checking (an open websocket) is not activity: it answers like a request but
        // does not keep an idle session alive.
        let watched = index.create_session_at(u.id, ttl, now).await.unwrap();
        for m in [3, 6, 9] {
            let p = index
                .recheck_session_at(&watched.secret, now + m * MINUTE)
                .await
                .unwrap();
            assert_eq!(p.user_id, u.id);
        }
        assert!(matches!(
            index
                .recheck_session_at(&watched.secret, now + 11 * MINUTE)
                .await,
            Err(AuthFailure::Expired)
        ));
        assert!(matches!(
            index.recheck_session_at(&s.secret, now + 61 * MINUTE).await,
            Err(AuthFailure::Expired)
        ));
        // Idle for longer than the idle limit.
        let idle = index.create_session_at(u.id, ttl, now).await.unwrap();
        assert!(matches!(
            index
                .session_principal_at(&idle.secret, now + 11 * MINUTE)
                .await,
            Err(AuthFailure::Expired)
        ));

        // Logout.
        let s2 = index.create_session(u.id, ttl).await.unwrap();
        assert!(index.session_principal(&s2.secret).await.is_ok());
        index.revoke_session(&s2.secret).await.unwrap();
        assert!(matches!(
            index.recheck_session(&s2.secret).await,
            Err(AuthFailure::BadCredentials)
        ));
        index.revoke_session(&s2.secret).await.unwrap();
        index.revoke_session("not a session").await.unwrap();
        assert!(matches!(
            index.session_principal(&s2.secret).await,
            Err(AuthFailure::BadCredentials)
        ));
        // Forged cookies.
        for bad in ["", "x", &"0".repeat(64), &s2.csrf_token, &"é".repeat(32)] {
            assert!(matches!(
                index.session_principal(bad).await,
                Err(AuthFailure::BadCredentials)
            ));
        }

        // Disabling a user ends their sessions for good.
        let s3 = index.create_session(u.id, ttl).await.unwrap();
        index.set_user_disabled(&name("rad"), true).await.unwrap();
        assert!(matches!(
            index.create_session(u.id, ttl).await,
            Err(StoreError::Invalid(_))
        ));
        index.set_user_disabled(&name("rad"), false).await.unwrap();
        assert!(matches!(
            index.session_principal(&s3.secret).await,
            Err(AuthFailure::BadCredentials)
        ));
        assert!(matches!(
            index.create_session(9999, ttl).await,
            Err(StoreError::NotFound(_))
        ));

        index.close().await;
        let bytes = database_bytes(&dir);
        for secret in [&s.secret, &s2.secret, &s3.secret, &s.csrf_token] {
            assert!(!contains(&bytes, secret));
        }
    }
}
