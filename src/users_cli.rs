//! `pacs user …`: users, roles, passwords and API tokens from the command line.
//!
//! Passwords come only from standard input (never from arguments, which other users see in
//! `ps`), and nothing here prints a password or a stored hash; a token's secret is printed
//! once, when it is created.

use std::io::{BufRead, IsTerminal, Read};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use pacs_store::admin::{Actor, Admin};
use pacs_store::archive::Archive;
use pacs_store::users::{PASSWORD_MAX_BYTES, Password, Role, TokenId, TokenInfo, User, Username};

use crate::settings::Settings;

#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    /// Create a user: admin, radiologist, township-doctor, clinician or service.
    Add(AddArgs),
    /// List users (never their passwords).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Disable a user: logins and tokens are refused and sessions end, until enabled again.
    Disable { username: String },
    /// Enable a disabled user again.
    Enable { username: String },
    /// Set a new password, read from standard input; ends the user's sessions.
    ResetPassword {
        username: String,
        /// Read the new password from standard input (one line). Required.
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// API tokens for service accounts and API clients.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// 1–64 of a–z, 0–9, '.', '_', '-' (lowercased).
    #[arg(long)]
    pub username: String,
    /// admin, radiologist, township-doctor, clinician or service.
    #[arg(long)]
    pub role: String,
    /// The registered clinic (see `pacs clinic list`): required for township-doctor and
    /// clinician, optional for service, refused for admin and radiologist.
    #[arg(long)]
    pub clinic: Option<String>,
    /// A radiologist's subspecialty (neuro, chest, msk…); repeat for several.
    #[arg(long = "subspecialty", value_name = "SUBSPECIALTY")]
    pub subspecialties: Vec<String>,
    /// Read the password from standard input (one line, 12–1024 bytes). Service accounts
    /// may go without and use API tokens only.
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Create an API token for a user; its secret is printed once.
    Create {
        username: String,
        /// What the token is for (shown in `pacs user token list`).
        #[arg(long, default_value = "")]
        label: String,
        /// Expire after this many days (default: valid until revoked).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3650))]
        ttl_days: Option<u32>,
    },
    /// Revoke a token by its id (see `pacs user token list USER`).
    Revoke { id: String },
    /// List a user's tokens (without secrets).
    List {
        username: String,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(settings: &Settings, cmd: UserCommand) -> anyhow::Result<ExitCode> {
    // Everything that can be refused without the archive is refused before opening it: a
    // bad password is answered at once, with nothing written.
    match cmd {
        UserCommand::Add(args) => add(settings, args).await,
        UserCommand::List { json } => {
            with_archive(settings, |a| async move { list(&a, json).await }).await
        }
        UserCommand::Disable { username } => set_disabled(settings, &username, true).await,
        UserCommand::Enable { username } => set_disabled(settings, &username, false).await,
        UserCommand::ResetPassword { username, .. } => {
            let username = parse_username(&username)?;
            let password = read_password()?;
            with_archive(settings, |a| async move {
                admin(&a, "pacs user reset-password")
                    .reset_password(&username, &password)
                    .await
                    .map_err(|e| user_error(e, &username))?;
                println!("password of {username} reset; their browser sessions have ended");
                Ok(())
            })
            .await
        }
        UserCommand::Token(t) => token(settings, t).await,
    }
}

/// Opens the archive, runs `f`, and closes the index whatever `f` answered.
async fn with_archive<F, Fut>(settings: &Settings, f: F) -> anyhow::Result<ExitCode>
where
    F: FnOnce(Archive) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let archive = settings
        .store()
        .open()
        .await
        .context("cannot open the archive")?;
    let index = archive.index().clone();
    let result = f(archive).await;
    index.close().await;
    result.map(|()| ExitCode::SUCCESS)
}

/// Administration by the person at this machine's command line, audited.
fn admin<'a>(archive: &'a Archive, command: &'static str) -> Admin<'a> {
    archive.index().admin(Actor::operator(), command)
}

fn parse_username(s: &str) -> anyhow::Result<Username> {
    Username::parse(s).map_err(|e| anyhow!("{e}"))
}

/// "not found: user x" is clear enough; say where to look.
fn user_error(e: pacs_store::StoreError, username: &Username) -> anyhow::Error {
    match e {
        pacs_store::StoreError::NotFound(_) => {
            anyhow!("no user {username}; see `pacs user list`")
        }
        other => other.into(),
    }
}

/// One line from standard input, checked against the password policy. At most
/// PASSWORD_MAX_BYTES (+ line end) are read: a longer input is refused without reading or
/// hashing the rest.
fn read_password() -> anyhow::Result<Password> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("password (one line; it is shown as you type):");
    }
    let mut line = Vec::new();
    stdin
        .lock()
        .take(PASSWORD_MAX_BYTES as u64 + 2)
        .read_until(b'\n', &mut line)
        .context("cannot read the password from standard input")?;
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    if line.len() > PASSWORD_MAX_BYTES {
        bail!("the password on standard input is too long: at most {PASSWORD_MAX_BYTES} bytes");
    }
    if line.is_empty() {
        bail!("no password on standard input: give it as one line");
    }
    let text = String::from_utf8(line)
        .map_err(|_| anyhow!("the password on standard input is not UTF-8"))?;
    Password::parse(&text).map_err(|e| anyhow!("{e}"))
}

async fn add(settings: &Settings, args: AddArgs) -> anyhow::Result<ExitCode> {
    let username = parse_username(&args.username)?;
    let role: Role = args.role.parse().map_err(|e| anyhow!("{e}"))?;
    let clinic = args
        .clinic
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty());
    role.check_assignment(clinic.is_some(), &args.subspecialties)
        .map_err(|e| anyhow!("{e}"))?;
    let password = match (args.password_stdin, role) {
        (true, _) => Some(read_password()?),
        (false, Role::Service) => None,
        (false, _) => bail!(
            "{} needs a password: give --password-stdin and the password as one line on \
             standard input",
            role.with_article()
        ),
    };
    with_archive(settings, |a| async move {
        if let Some(name) = clinic {
            let clinics = a.index().list_clinics().await?;
            if !clinics.iter().any(|c| c.name == name) {
                bail!(
                    "no clinic named {name:?}; see `pacs clinic list` (clinics are registered \
                     with `pacs clinic add`)"
                );
            }
        }
        let user = admin(&a, "pacs user add")
            .create_user(
                &username,
                role,
                clinic,
                &args.subspecialties,
                password.as_ref(),
            )
            .await?;
        println!("created user {} ({})", user.username, describe(&user));
        Ok(())
    })
    .await
}

/// "township-doctor, clinic "Tamu"", "radiologist: chest, neuro", "service, tokens only".
fn describe(u: &User) -> String {
    let mut s = u.role.to_string();
    if let Some(c) = &u.clinic_name {
        s.push_str(&format!(", clinic {c:?}"));
    }
    if !u.subspecialties.is_empty() {
        s.push_str(&format!(": {}", u.subspecialties.join(", ")));
    }
    if !u.has_password {
        s.push_str(", API tokens only");
    }
    s
}

async fn list(archive: &Archive, json: bool) -> anyhow::Result<()> {
    let users = archive.index().list_users().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&users)?);
        return Ok(());
    }
    if users.is_empty() {
        println!(
            "no users; add one with `pacs user add --username U --role R [--clinic NAME] --password-stdin`"
        );
        return Ok(());
    }
    let rows: Vec<[String; 6]> = users
        .iter()
        .map(|u| {
            [
                u.username.to_string(),
                u.role.to_string(),
                u.clinic_name.clone().unwrap_or_else(|| "-".into()),
                if u.disabled { "disabled" } else { "enabled" }.into(),
                format_time(u.created_at),
                u.subspecialties.join(","),
            ]
        })
        .collect();
    print_table(
        [
            "USERNAME",
            "ROLE",
            "CLINIC",
            "STATUS",
            "CREATED",
            "SUBSPECIALTIES",
        ],
        &rows,
    );
    Ok(())
}

async fn set_disabled(
    settings: &Settings,
    username: &str,
    disabled: bool,
) -> anyhow::Result<ExitCode> {
    let username = parse_username(username)?;
    with_archive(settings, |a| async move {
        let command = if disabled {
            "pacs user disable"
        } else {
            "pacs user enable"
        };
        admin(&a, command)
            .set_user_disabled(&username, disabled)
            .await
            .map_err(|e| user_error(e, &username))?;
        if disabled {
            println!("user {username} disabled: logins and tokens refused, browser sessions ended");
        } else {
            println!("user {username} enabled");
        }
        Ok(())
    })
    .await
}

async fn token(settings: &Settings, cmd: TokenCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TokenCommand::Create {
            username,
            label,
            ttl_days,
        } => {
            let username = parse_username(&username)?;
            let ttl = ttl_days.map(|d| Duration::from_secs(u64::from(d) * 86_400));
            with_archive(settings, |a| async move {
                let t = admin(&a, "pacs user token create")
                    .create_token(&username, &label, ttl)
                    .await
                    .map_err(|e| user_error(e, &username))?;
                let expiry = match t.expires_at {
                    Some(e) => format!("expires {}", format_time(e)),
                    None => "valid until revoked".into(),
                };
                println!("created token {} for {username} ({expiry}):", t.id);
                println!("{}", t.secret);
                println!("This secret will not be shown again: store it now.");
                Ok(())
            })
            .await
        }
        TokenCommand::Revoke { id } => {
            let id: TokenId = id.parse().map_err(|e| anyhow!("{e}"))?;
            with_archive(settings, |a| async move {
                admin(&a, "pacs user token revoke")
                    .revoke_token(id)
                    .await
                    .map_err(|e| match e {
                        pacs_store::StoreError::NotFound(_) => {
                            anyhow!("no token {id}; see `pacs user token list USER`")
                        }
                        other => other.into(),
                    })?;
                println!("token {id} revoked");
                Ok(())
            })
            .await
        }
        TokenCommand::List { username, json } => {
            let username = parse_username(&username)?;
            with_archive(settings, |a| async move {
                let tokens = a
                    .index()
                    .list_tokens(&username)
                    .await
                    .map_err(|e| user_error(e, &username))?;
                print_tokens(&username, &tokens, json)
            })
            .await
        }
    }
}

fn print_tokens(username: &Username, tokens: &[TokenInfo], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(tokens)?);
        return Ok(());
    }
    if tokens.is_empty() {
        println!("{username} has no tokens; create one with `pacs user token create {username}`");
        return Ok(());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    let rows: Vec<[String; 6]> = tokens
        .iter()
        .map(|t| {
            let status = if t.revoked_at.is_some() {
                "revoked"
            } else if t.expires_at.is_some_and(|e| e <= now) {
                "expired"
            } else {
                "active"
            };
            [
                t.id.to_string(),
                status.into(),
                format_time(t.created_at),
                t.expires_at.map_or_else(|| "never".into(), format_time),
                t.last_used_at.map_or_else(|| "never".into(), format_time),
                t.label.clone(),
            ]
        })
        .collect();
    print_table(
        ["ID", "STATUS", "CREATED", "EXPIRES", "LAST USED", "LABEL"],
        &rows,
    );
    Ok(())
}

fn print_table<const N: usize>(header: [&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(|h| h.chars().count());
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

/// Unix microseconds as `YYYY-MM-DD HH:MM:SSZ` (UTC).
fn format_time(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00Z");
        assert_eq!(format_time(951_782_400_000_000), "2000-02-29 00:00:00Z");
        assert_eq!(format_time(1_767_225_599_999_999), "2025-12-31 23:59:59Z");
        assert_eq!(format_time(-1), "1969-12-31 23:59:59Z");
    }
}
