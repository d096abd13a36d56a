//! Administration — users, API tokens, clinics and AE titles, study assignments — with its
//! audit trail.
//!
//! Every change an administrator makes, from the command line or the HTTP admin API, goes
//! through [`Admin`], which makes the change and records it: a 110113 Security Alert of
//! type 110129 Security Configuration (the PS3.15 A.5.3.11 event for changes of security
//! attributes), naming who did it, from where, what was asked and whether it worked.
//! Refusals (unknown user, bad value…) are recorded too, as minor failures. No secret is
//! ever put into an event: passwords and token secrets are only said to have been set.
//!
//! Who may administer is the access policy's business ([`crate::access::Capability`]);
//! adapters check it before they get here.

use std::net::IpAddr;
use std::time::Duration;

use crate::Result;
use crate::access::Assignment;
use crate::ae_title::AeTitle;
use crate::audit::{Action, AuditEvent, EventId, EventType, Outcome, local_operator, roles};
use crate::index::{AeOptions, AeRegistration, ClinicSummary, Index, now_micros};
use crate::users::{NewToken, Password, Principal, Role, TokenId, User, Username};
use crate::worklist::{ReadingProfile, RoutingRule};

/// Who is administering, as the audit trail names them.
#[derive(Debug, Clone)]
pub struct Actor {
    pub name: String,
    pub role: String,
    pub ip: Option<IpAddr>,
    /// The user id, when the actor is a user of the archive.
    pub user_id: Option<i64>,
}

impl Actor {
    /// The person at this machine's command line.
    pub fn operator() -> Actor {
        Actor {
            name: local_operator(),
            role: roles::OPERATOR.into(),
            ip: None,
            user_id: None,
        }
    }

    /// A logged-in user (through the HTTP API) calling from `ip`.
    pub fn user(principal: &Principal, ip: Option<IpAddr>) -> Actor {
        Actor {
            name: principal.username.to_string(),
            role: principal.role.as_str().into(),
            ip,
            user_id: Some(principal.user_id),
        }
    }
}

/// Audited administration on behalf of an [`Actor`]. Get one with [`Index::admin`].
pub struct Admin<'a> {
    index: &'a Index,
    actor: Actor,
    /// How the change was asked for ("pacs user add", "HTTP admin API").
    channel: &'static str,
}

impl Index {
    /// Administration by `actor` through `channel`, each change audited.
    pub fn admin(&self, actor: Actor, channel: &'static str) -> Admin<'_> {
        Admin {
            index: self,
            actor,
            channel,
        }
    }
}

impl Admin<'_> {
    pub async fn create_user(
        &self,
        username: &Username,
        role: Role,
        clinic: Option<&str>,
        subspecialties: &[String],
        password: Option<&Password>,
    ) -> Result<User> {
        let what = format!(
            "create user {username} as {role}{}{}{}",
            clinic.map_or(String::new(), |c| format!(" of clinic {c:?}")),
            if subspecialties.is_empty() {
                String::new()
            } else {
                format!(" ({})", subspecialties.join(", "))
            },
            if password.is_some() {
                ", password set"
            } else {
                ", no password"
            }
        );
        let r = self
            .index
            .create_user(username, role, clinic, subspecialties, password)
            .await;
        self.record(Action::Create, what, &r).await;
        r
    }

    pub async fn set_user_disabled(&self, username: &Username, disabled: bool) -> Result<User> {
        let what = format!(
            "{} user {username}",
            if disabled { "disable" } else { "enable" }
        );
        let r = self.index.set_user_disabled(username, disabled).await;
        self.record(Action::Update, what, &r).await;
        r
    }

    pub async fn reset_password(&self, username: &Username, new: &Password) -> Result<()> {
        let r = self.index.reset_password(username, new).await;
        self.record(
            Action::Update,
            format!("reset the password of {username}"),
            &r,
        )
        .await;
        r
    }

    pub async fn create_token(
        &self,
        username: &Username,
        label: &str,
        ttl: Option<Duration>,
    ) -> Result<NewToken> {
        let r = self.index.create_token(username, label, ttl).await;
        let id = r.as_ref().map_or(String::new(), |t| format!(" {}", t.id));
        let what = format!(
            "create API token{id} for {username} labelled {:?}{}",
            label.trim(),
            ttl.map_or(", until revoked".to_owned(), |t| format!(
                ", valid {} s",
                t.as_secs()
            ))
        );
        self.record(Action::Create, what, &r).await;
        r
    }

    pub async fn revoke_token(&self, id: TokenId) -> Result<()> {
        let r = self.index.revoke_token(id).await;
        self.record(Action::Delete, format!("revoke API token {id}"), &r)
            .await;
        r
    }

    pub async fn create_clinic(&self, name: &str) -> Result<ClinicSummary> {
        let r = self.index.create_clinic(name).await;
        self.record(
            Action::Create,
            format!("create clinic {:?}", name.trim()),
            &r,
        )
        .await;
        r
    }

    pub async fn add_ae(
        &self,
        clinic: &str,
        ae_title: &AeTitle,
        options: AeOptions,
    ) -> Result<AeRegistration> {
        let r = self
            .index
            .add_clinic_ae(clinic, ae_title, options.normalized())
            .await;
        let what = format!(
            "register AE title {ae_title} for clinic {:?}, {}",
            clinic.trim(),
            options.normalized().describe()
        );
        self.record(Action::Create, what, &r).await;
        r
    }

    pub async fn update_ae(
        &self,
        ae_title: &AeTitle,
        options: AeOptions,
    ) -> Result<AeRegistration> {
        let r = self.index.update_ae(ae_title, options.normalized()).await;
        let what = format!(
            "change AE title {ae_title} to {}",
            options.normalized().describe()
        );
        self.record(Action::Update, what, &r).await;
        r
    }

    pub async fn remove_ae(&self, ae_title: &AeTitle) -> Result<()> {
        let r = self.index.remove_ae(ae_title).await;
        self.record(Action::Delete, format!("remove AE title {ae_title}"), &r)
            .await;
        r
    }

    pub async fn assign_study(
        &self,
        study_instance_uid: &str,
        username: &Username,
    ) -> Result<Assignment> {
        let r = self
            .index
            .assign_study(study_instance_uid, username, self.actor.user_id)
            .await;
        let what = format!("assign study {study_instance_uid} to {username}");
        self.record_study(Action::Create, what, study_instance_uid, &r)
            .await;
        r
    }

    pub async fn revoke_assignment(
        &self,
        study_instance_uid: &str,
        username: &Username,
    ) -> Result<()> {
        let r = self
            .index
            .revoke_assignment(study_instance_uid, username)
            .await;
        let what = format!("take study {study_instance_uid} back from {username}");
        self.record_study(Action::Delete, what, study_instance_uid, &r)
            .await;
        r
    }

    pub async fn create_routing_rule(&self, rule: &RoutingRule) -> Result<RoutingRule> {
        let r = self.index.create_routing_rule(rule, now_micros()).await;
        let what = format!(
            "add routing rule {:?} at position {}",
            rule.name.trim(),
            rule.position
        );
        self.record(Action::Create, what, &r).await;
        r
    }

    pub async fn update_routing_rule(&self, id: i64, rule: &RoutingRule) -> Result<RoutingRule> {
        let r = self.index.update_routing_rule(id, rule).await;
        let what = format!("change routing rule {id} ({:?})", rule.name.trim());
        self.record(Action::Update, what, &r).await;
        r
    }

    pub async fn delete_routing_rule(&self, id: i64) -> Result<()> {
        let r = self.index.delete_routing_rule(id).await;
        self.record(Action::Delete, format!("remove routing rule {id}"), &r)
            .await;
        r
    }

    pub async fn set_reading_profile(
        &self,
        username: &Username,
        profile: &ReadingProfile,
    ) -> Result<()> {
        let r = self
            .index
            .set_reading_profile(username.as_str(), profile)
            .await;
        let what = format!(
            "set the reading profile of {username}: credentials {:?}, {} shift(s)",
            profile.credentials,
            profile.shifts.len()
        );
        self.record(Action::Update, what, &r).await;
        r
    }

    /// Routes reading task `task_id` to radiologist `username`.
    pub async fn reassign_task(&self, task_id: i64, username: &Username) -> Result<()> {
        let r = match self.index.find_user(username).await {
            Ok(Some(user)) => {
                self.index
                    .reassign_task(task_id, user.id, now_micros())
                    .await
            }
            Ok(None) => Err(crate::StoreError::NotFound(format!("user {username}"))),
            Err(e) => Err(e),
        };
        self.record(
            Action::Update,
            format!("reassign reading task {task_id} to {username}"),
            &r,
        )
        .await;
        r
    }

    pub async fn return_task_to_pool(&self, task_id: i64) -> Result<()> {
        let r = self.index.return_task_to_pool(task_id, now_micros()).await;
        self.record(
            Action::Update,
            format!("return reading task {task_id} to the pool"),
            &r,
        )
        .await;
        r
    }

    fn event<T>(&self, action: Action, what: String, result: &Result<T>) -> AuditEvent {
        let mut event = AuditEvent::new(
            EventId::SecurityAlert,
            action,
            self.actor.name.clone(),
            self.actor.role.clone(),
        )
        .with_type(EventType::SecurityConfiguration)
        .with_ip(self.actor.ip)
        .with_detail(format!("{}: {what}", self.channel));
        if let Err(e) = result {
            event = event.with_outcome(Outcome::MinorFailure, e.to_string());
        }
        event
    }

    async fn record<T>(&self, action: Action, what: String, result: &Result<T>) {
        let event = self.event(action, what, result);
        self.write(event).await;
    }

    async fn record_study<T>(
        &self,
        action: Action,
        what: String,
        study_instance_uid: &str,
        result: &Result<T>,
    ) {
        let event = self
            .event(action, what, result)
            .with_study(Some(study_instance_uid.to_owned()));
        self.write(event).await;
    }

    async fn write(&self, event: AuditEvent) {
        if let Err(e) = self.index.audit(event).await {
            metrics::counter!("pacs_audit_failures_total").increment(1);
            tracing::error!(error = %e, "cannot write the audit event of an administrative change");
        }
    }
}
