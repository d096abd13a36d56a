//! Township clinics and the AE titles allowed to send on their behalf.
//!
//! The registry is the access rule of the DICOM port: a calling AE title must be registered,
//! may be bound to one host, may be restricted to the TLS port (`tls_only`) and may need a
//! verified client certificate (`require_client_cert`). [`AeRegistration::admit`] applies
//! those rules in one place; the DICOM adapter only reports how the peer connected
//! ([`LinkSecurity`]).
//!
//! Functions for administration (the CLI now, the admin HTTP API later):
//! [`Index::create_clinic`], [`Index::add_clinic_ae`], [`Index::update_ae`],
//! [`Index::remove_ae`], [`Index::list_clinics`], [`Index::find_ae`]. They do not audit:
//! the adapter that calls them knows who asked and writes the audit event.

use std::net::IpAddr;

use sqlx::Row;

use super::{Index, now_micros};
use crate::ae_title::AeTitle;
use crate::{Result, StoreError};

/// How a registered AE title may connect. `Default` is: from any host, over plain TCP or
/// TLS, with or without a client certificate (the registry before DICOM TLS existed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AeOptions {
    /// When set, associations from this AE are accepted only from this address.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub host: Option<IpAddr>,
    /// Accepted only over the DICOM TLS port; refused on the plain port.
    pub tls_only: bool,
    /// Accepted only when the peer presented a client certificate that the TLS listener
    /// verified (against `dicom_tls_client_ca`). Implies `tls_only`: the store sets both.
    pub require_client_cert: bool,
    /// The port the AE listens on. With `host`, the AE can be a C-MOVE destination for
    /// its own clinic.
    pub port: Option<u16>,
    /// The clinic's signed reports (SR and PDF) are pushed to this AE by C-STORE; it needs
    /// a host and a port.
    pub receives_reports: bool,
}

impl AeOptions {
    /// The options as stored: `require_client_cert` implies `tls_only` (a client
    /// certificate only exists on the TLS port), so the registry never says "plain TCP
    /// allowed" for an AE that could never connect over it.
    pub fn normalized(self) -> Self {
        AeOptions {
            tls_only: self.tls_only || self.require_client_cert,
            ..self
        }
    }

    /// Refuses options that cannot work: reports need an address to be pushed to.
    fn check(&self) -> Result<()> {
        if self.receives_reports && (self.host.is_none() || self.port.is_none()) {
            return Err(StoreError::Invalid(
                "an AE title that receives reports needs a host and a port to send them to".into(),
            ));
        }
        Ok(())
    }

    /// "from any host, plain or TLS" and the like, for messages and audit details.
    pub fn describe(&self) -> String {
        let from = self
            .host
            .map_or("from any host".to_owned(), |h| format!("only from {h}"));
        let transport = match (self.tls_only, self.require_client_cert) {
            (_, true) => "TLS only with a verified client certificate",
            (true, false) => "TLS only",
            (false, false) => "plain TCP or TLS",
        };
        let reports = if self.receives_reports {
            ", receives the clinic's reports"
        } else {
            ""
        };
        match self.port {
            Some(p) => format!("{from}, {transport}, receives at port {p}{reports}"),
            None => format!("{from}, {transport}{reports}"),
        }
    }
}

/// The pre-TLS call shape `add_clinic_ae(name, ae, host)` keeps working.
impl From<Option<IpAddr>> for AeOptions {
    fn from(host: Option<IpAddr>) -> Self {
        AeOptions {
            host,
            ..AeOptions::default()
        }
    }
}

/// A registered calling AE title and the clinic it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AeRegistration {
    pub ae_title: AeTitle,
    pub clinic_id: i64,
    pub clinic_name: String,
    /// When set, associations from this AE are accepted only from this address.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub host: Option<IpAddr>,
    /// Accepted only over the DICOM TLS port.
    pub tls_only: bool,
    /// Accepted only with a verified client certificate (implies `tls_only`).
    pub require_client_cert: bool,
    /// Where the AE listens (C-MOVE destination, with `host`).
    pub port: Option<u16>,
    /// Signed reports of the clinic are pushed here.
    pub receives_reports: bool,
}

/// What the transport established about a connection, as the DICOM adapter saw it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkSecurity {
    /// The connection came in on the TLS port and completed a TLS handshake.
    pub tls: bool,
    /// The peer presented a client certificate and the TLS listener verified it against
    /// its trusted client CAs (a certificate that does not verify fails the handshake, so
    /// there is no "presented but unverified" state).
    pub client_certificate_verified: bool,
}

impl LinkSecurity {
    pub const PLAIN: LinkSecurity = LinkSecurity {
        tls: false,
        client_certificate_verified: false,
    };
}

/// The registry's answer for a registered AE title on one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// The AE title is bound to another host.
    WrongHost,
    /// The AE title is TLS-only and called on the plain port.
    TlsRequired,
    /// The AE title needs a verified client certificate and the peer presented none.
    ClientCertificateRequired,
}

impl AeRegistration {
    /// Whether a peer at `peer` may use this AE title.
    pub fn allows_host(&self, peer: IpAddr) -> bool {
        match self.host {
            None => true,
            Some(h) => canonical(h) == canonical(peer),
        }
    }

    /// Whether a peer at `peer`, connected as `link` says, may call as this AE title. The
    /// host binding is checked first (the most telling refusal), then TLS, then the client
    /// certificate. `require_client_cert` implies TLS even if a row says otherwise.
    pub fn admit(&self, peer: IpAddr, link: LinkSecurity) -> Admission {
        if !self.allows_host(peer) {
            Admission::WrongHost
        } else if (self.tls_only || self.require_client_cert) && !link.tls {
            Admission::TlsRequired
        } else if self.require_client_cert && !link.client_certificate_verified {
            Admission::ClientCertificateRequired
        } else {
            Admission::Admitted
        }
    }

    /// The registration's options (host binding and transport requirements).
    pub fn options(&self) -> AeOptions {
        AeOptions {
            host: self.host,
            tls_only: self.tls_only,
            require_client_cert: self.require_client_cert,
            port: self.port,
            receives_reports: self.receives_reports,
        }
    }
}

/// `::ffff:127.0.0.1` and `127.0.0.1` are the same host.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// A clinic with its AE titles, for listings.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClinicSummary {
    pub id: i64,
    pub name: String,
    pub ae_titles: Vec<AeRegistration>,
}

/// A clinic name as stored: trimmed, 1–200 printable characters.
fn clinic_name(name: &str) -> Result<&str> {
    let name = name.trim();
    if name.is_empty() || name.len() > 200 || name.chars().any(|c| c.is_control()) {
        return Err(StoreError::Invalid(
            "a clinic name must be 1–200 printable characters".into(),
        ));
    }
    Ok(name)
}

/// `SELECT` of the columns [`ae_from_row`] reads, from `ae_titles a` joined with
/// `clinics c`, followed by `$rest` (a literal: the query stays a `&'static str`).
macro_rules! select_ae {
    ($rest:literal) => {
        concat!(
            "SELECT a.ae_title, a.clinic_id, c.name, a.host, ",
            "CASE WHEN a.tls_only THEN 1 ELSE 0 END, ",
            "CASE WHEN a.require_client_cert THEN 1 ELSE 0 END, a.port, ",
            "CASE WHEN a.receives_reports THEN 1 ELSE 0 END ",
            "FROM ae_titles a JOIN clinics c ON c.id = a.clinic_id ",
            $rest
        )
    };
}

impl Index {
    /// Creates the clinic `name` (trimmed; 1–200 printable characters) without AE titles.
    ///
    /// Not idempotent: a clinic of that name already existing is
    /// [`StoreError::AlreadyExists`] (an admin API answers 409), so that two administrators
    /// creating "the same" clinic notice each other. [`Index::add_clinic_ae`] still creates
    /// the clinic on the fly for the CLI's one-step registration.
    pub async fn create_clinic(&self, name: &str) -> Result<ClinicSummary> {
        let name = clinic_name(name)?;
        let mut tx = self.pool().begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO clinics (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(now_micros())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(StoreError::AlreadyExists(format!(
                "a clinic named {name:?} already exists"
            )));
        }
        let id: i64 = sqlx::query("SELECT id FROM clinics WHERE name = $1")
            .bind(name)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        tx.commit().await?;
        Ok(ClinicSummary {
            id,
            name: name.to_owned(),
            ae_titles: Vec::new(),
        })
    }

    /// Registers `ae_title` for the clinic `name`, creating the clinic when it does not
    /// exist yet, with `options` (an `Option<IpAddr>` host binding converts into options
    /// with no TLS requirement). `require_client_cert` implies `tls_only`.
    ///
    /// An AE title already registered (for any clinic) is [`StoreError::AlreadyExists`]:
    /// an AE title identifies one sender; change it with [`Index::update_ae`].
    pub async fn add_clinic_ae(
        &self,
        name: &str,
        ae_title: &AeTitle,
        options: impl Into<AeOptions>,
    ) -> Result<AeRegistration> {
        let options = options.into().normalized();
        options.check()?;
        let name = clinic_name(name)?;
        let mut tx = self.pool().begin().await?;
        let now = now_micros();
        sqlx::query(
            "INSERT INTO clinics (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let clinic_id: i64 = sqlx::query("SELECT id FROM clinics WHERE name = $1")
            .bind(name)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        let existing = sqlx::query(
            "SELECT c.name FROM ae_titles a JOIN clinics c ON c.id = a.clinic_id WHERE a.ae_title = $1",
        )
        .bind(ae_title.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = existing {
            let owner: String = row.try_get(0)?;
            return Err(StoreError::AlreadyExists(format!(
                "AE title {ae_title} is already registered for clinic {owner:?}"
            )));
        }
        sqlx::query(
            "INSERT INTO ae_titles (ae_title, clinic_id, host, tls_only, require_client_cert, \
             created_at, port, receives_reports) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(ae_title.as_str())
        .bind(clinic_id)
        .bind(options.host.map(|h| h.to_string()))
        .bind(options.tls_only)
        .bind(options.require_client_cert)
        .bind(now)
        .bind(options.port.map(i64::from))
        .bind(options.receives_reports)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(AeRegistration {
            ae_title: ae_title.clone(),
            clinic_id,
            clinic_name: name.to_owned(),
            host: options.host,
            tls_only: options.tls_only,
            require_client_cert: options.require_client_cert,
            port: options.port,
            receives_reports: options.receives_reports,
        })
    }

    /// Replaces the host binding and transport requirements of a registered AE title (all
    /// of them: read [`AeRegistration::options`] first to change one). The clinic stays.
    /// Returns the registration as stored; an unregistered AE title is
    /// [`StoreError::NotFound`]. Takes effect for the next association.
    pub async fn update_ae(
        &self,
        ae_title: &AeTitle,
        options: AeOptions,
    ) -> Result<AeRegistration> {
        let options = options.normalized();
        options.check()?;
        let mut tx = self.pool().begin().await?;
        let updated = sqlx::query(
            "UPDATE ae_titles SET host = $1, tls_only = $2, require_client_cert = $3, port = $4, \
               receives_reports = $5 WHERE ae_title = $6",
        )
        .bind(options.host.map(|h| h.to_string()))
        .bind(options.tls_only)
        .bind(options.require_client_cert)
        .bind(options.port.map(i64::from))
        .bind(options.receives_reports)
        .bind(ae_title.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(not_registered(ae_title));
        }
        let row = sqlx::query(select_ae!("WHERE a.ae_title = $1"))
            .bind(ae_title.as_str())
            .fetch_one(&mut *tx)
            .await?;
        let reg = ae_from_row(&row)?;
        tx.commit().await?;
        Ok(reg)
    }

    /// Unregisters an AE title: its next association is refused as unknown. Instances it
    /// sent stay, attributed to its clinic. An unregistered AE title is
    /// [`StoreError::NotFound`]. The clinic stays, even without AE titles.
    pub async fn remove_ae(&self, ae_title: &AeTitle) -> Result<()> {
        let removed = sqlx::query("DELETE FROM ae_titles WHERE ae_title = $1")
            .bind(ae_title.as_str())
            .execute(self.pool())
            .await?
            .rows_affected();
        if removed == 0 {
            return Err(not_registered(ae_title));
        }
        Ok(())
    }

    /// The registration of a calling AE title, if any.
    pub async fn find_ae(&self, ae_title: &AeTitle) -> Result<Option<AeRegistration>> {
        let row = sqlx::query(select_ae!("WHERE a.ae_title = $1"))
            .bind(ae_title.as_str())
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| ae_from_row(&r)).transpose()
    }

    /// The AE title of clinic `clinic_id` that receives its signed reports (the first by
    /// name if several do), with the host and port to send them to.
    pub async fn report_destination(&self, clinic_id: i64) -> Result<Option<AeRegistration>> {
        let row = sqlx::query(select_ae!(
            "WHERE a.clinic_id = $1 AND a.receives_reports AND a.host IS NOT NULL \
             AND a.port IS NOT NULL ORDER BY a.ae_title LIMIT 1"
        ))
        .bind(clinic_id)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| ae_from_row(&r)).transpose()
    }

    /// All clinics with their AE titles, by name.
    pub async fn list_clinics(&self) -> Result<Vec<ClinicSummary>> {
        let clinics = sqlx::query("SELECT id, name FROM clinics ORDER BY name")
            .fetch_all(self.pool())
            .await?;
        let aes = sqlx::query(select_ae!("ORDER BY a.ae_title"))
            .fetch_all(self.pool())
            .await?;
        let aes: Vec<AeRegistration> = aes.iter().map(ae_from_row).collect::<Result<_>>()?;
        clinics
            .iter()
            .map(|r| {
                let id: i64 = r.try_get(0)?;
                Ok(ClinicSummary {
                    id,
                    name: r.try_get(1)?,
                    ae_titles: aes.iter().filter(|a| a.clinic_id == id).cloned().collect(),
                })
            })
            .collect()
    }
}

fn not_registered(ae_title: &AeTitle) -> StoreError {
    StoreError::NotFound(format!(
        "AE title {ae_title} is not registered (see `pacs clinic list`)"
    ))
}

/// A row of [`select_ae!`]. Booleans come as 0/1 integers: SQLite has no boolean type and
/// sqlx's Any driver does not convert between the two.
fn ae_from_row(r: &sqlx::any::AnyRow) -> Result<AeRegistration> {
    let ae: String = r.try_get(0)?;
    let host: Option<String> = r.try_get(3)?;
    let tls_only: i64 = r.try_get(4)?;
    let require_client_cert: i64 = r.try_get(5)?;
    let port: Option<i64> = r.try_get(6)?;
    let receives_reports: i64 = r.try_get(7)?;
    Ok(AeRegistration {
        ae_title: AeTitle::parse(&ae)?,
        clinic_id: r.try_get(1)?,
        clinic_name: r.try_get(2)?,
        host: host
            .map(|h| {
                h.parse()
                    .map_err(|_| StoreError::Invalid(format!("stored host {h:?} is not an IP")))
            })
            .transpose()?,
        tls_only: tls_only != 0,
        require_client_cert: require_client_cert != 0,
        port: port.and_then(|p| u16::try_from(p).ok()),
        receives_reports: receives_reports != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The registry's behaviour, run against each database.
    async fn registry_contract(index: &Index) {
        options_update_and_remove(index).await;
        create_clinic_refuses_a_duplicate_name(index).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn registry_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("index.db").display());
        let index = Index::open(&url).await.unwrap();
        registry_contract(&index).await;
        index.close().await;
    }

    /// On PostgreSQL (a fresh database on the server scripts/test.sh starts), like the
    /// audit chain's tests: required unless PACS_TEST_ALLOW_NO_POSTGRES=1.
    #[tokio::test(flavor = "multi_thread")]
    async fn registry_on_postgres() {
        let Some(url) = crate::test_postgres::fresh_database("AE registry").await else {
            return;
        };
        let index = Index::open(&url).await.unwrap();
        registry_contract(&index).await;
        index.close().await;
        crate::test_postgres::drop_database(&url).await;
    }

    fn ae(s: &str) -> AeTitle {
        AeTitle::parse(s).unwrap()
    }

    const HERE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const TLS: LinkSecurity = LinkSecurity {
        tls: true,
        client_certificate_verified: false,
    };
    const TLS_CERT: LinkSecurity = LinkSecurity {
        tls: true,
        client_certificate_verified: true,
    };

    /// Options round-trip; update and remove; NotFound for unknown AE titles.
    async fn options_update_and_remove(index: &Index) {
        let plain = index.add_clinic_ae("A", &ae("PLAIN"), None).await.unwrap();
        assert!(!plain.tls_only && !plain.require_client_cert);
        let strict = index
            .add_clinic_ae(
                "A",
                &ae("STRICT"),
                AeOptions {
                    host: Some(HERE),
                    tls_only: false,
                    require_client_cert: true,
                    port: Some(104),
                    receives_reports: true,
                },
            )
            .await
            .unwrap();
        assert!(strict.tls_only, "a client certificate implies TLS");
        assert_eq!(
            index.find_ae(&ae("STRICT")).await.unwrap(),
            Some(strict.clone())
        );
        // The clinic's reports go to STRICT, the one AE that receives them.
        assert_eq!(
            index.report_destination(strict.clinic_id).await.unwrap(),
            Some(strict.clone())
        );
        assert_eq!(index.report_destination(999).await.unwrap(), None);
        // Reports need somewhere to go.
        assert!(matches!(
            index
                .add_clinic_ae(
                    "A",
                    &ae("NOWHERE"),
                    AeOptions {
                        receives_reports: true,
                        ..AeOptions::default()
                    },
                )
                .await,
            Err(StoreError::Invalid(_))
        ));

        let updated = index
            .update_ae(
                &ae("PLAIN"),
                AeOptions {
                    tls_only: true,
                    ..AeOptions::default()
                },
            )
            .await
            .unwrap();
        assert!(updated.tls_only && !updated.require_client_cert);
        assert_eq!(updated.clinic_name, "A");
        assert_eq!(index.find_ae(&ae("PLAIN")).await.unwrap(), Some(updated));
        let listed = index.list_clinics().await.unwrap();
        assert_eq!(listed[0].ae_titles.len(), 2);
        assert!(listed[0].ae_titles.iter().all(|a| a.tls_only));

        assert!(matches!(
            index.update_ae(&ae("NOBODY"), AeOptions::default()).await,
            Err(StoreError::NotFound(_))
        ));
        index.remove_ae(&ae("PLAIN")).await.unwrap();
        assert_eq!(index.find_ae(&ae("PLAIN")).await.unwrap(), None);
        assert!(matches!(
            index.remove_ae(&ae("PLAIN")).await,
            Err(StoreError::NotFound(_))
        ));
        // The clinic stays, and an AE title can be registered again after removal.
        index.add_clinic_ae("A", &ae("PLAIN"), None).await.unwrap();
    }

    /// `create_clinic` refuses a duplicate name; AE titles go into the existing clinic.
    async fn create_clinic_refuses_a_duplicate_name(index: &Index) {
        let c = index.create_clinic("  North Clinic ").await.unwrap();
        assert_eq!(c.name, "North Clinic");
        assert!(c.ae_titles.is_empty());
        assert!(matches!(
            index.create_clinic("North Clinic").await,
            Err(StoreError::AlreadyExists(_))
        ));
        assert!(matches!(
            index.create_clinic(" ").await,
            Err(StoreError::Invalid(_))
        ));
        // AE titles go into the existing clinic.
        let reg = index
            .add_clinic_ae("North Clinic", &ae("N1"), None)
            .await
            .unwrap();
        assert_eq!(reg.clinic_id, c.id);
        let named: Vec<_> = index
            .list_clinics()
            .await
            .unwrap()
            .into_iter()
            .filter(|c| c.name == "North Clinic")
            .collect();
        assert_eq!(named.len(), 1);
        assert_eq!(named[0].ae_titles, vec![reg]);
    }

    #[test]
    fn admission_checks_host_then_tls_then_certificate() {
        let reg = |host, tls_only, require_client_cert| AeRegistration {
            ae_title: ae("X"),
            clinic_id: 1,
            clinic_name: "A".into(),
            host,
            tls_only,
            require_client_cert,
            port: None,
            receives_reports: false,
        };
        let other: IpAddr = "10.1.2.3".parse().unwrap();
        let open = reg(None, false, false);
        assert_eq!(open.admit(HERE, LinkSecurity::PLAIN), Admission::Admitted);
        assert_eq!(open.admit(HERE, TLS), Admission::Admitted);

        let tls_only = reg(None, true, false);
        assert_eq!(
            tls_only.admit(HERE, LinkSecurity::PLAIN),
            Admission::TlsRequired
        );
        assert_eq!(tls_only.admit(HERE, TLS), Admission::Admitted);

        let cert = reg(Some(HERE), true, true);
        assert_eq!(
            cert.admit(HERE, LinkSecurity::PLAIN),
            Admission::TlsRequired
        );
        assert_eq!(cert.admit(HERE, TLS), Admission::ClientCertificateRequired);
        assert_eq!(cert.admit(HERE, TLS_CERT), Admission::Admitted);
        assert_eq!(cert.admit(other, TLS_CERT), Admission::WrongHost);
        // A row with only require_client_cert set still needs TLS.
        assert_eq!(
            reg(None, false, true).admit(HERE, LinkSecurity::PLAIN),
            Admission::TlsRequired
        );
        // IPv4-mapped IPv6 is the same host.
        assert_eq!(
            cert.admit("::ffff:127.0.0.1".parse().unwrap(), TLS_CERT),
            Admission::Admitted
        );
    }
}
