//! Township clinics and the AE titles allowed to send on their behalf.

use std::net::IpAddr;

use sqlx::Row;

use super::{Index, now_micros};
use crate::ae_title::AeTitle;
use crate::{Result, StoreError};

/// A registered calling AE title and the clinic it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AeRegistration {
    pub ae_title: AeTitle,
    pub clinic_id: i64,
    pub clinic_name: String,
    /// When set, associations from this AE are accepted only from this address.
    pub host: Option<IpAddr>,
}

impl AeRegistration {
    /// Whether a peer at `peer` may use this AE title.
    pub fn allows_host(&self, peer: IpAddr) -> bool {
        match self.host {
            None => true,
            Some(h) => canonical(h) == canonical(peer),
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
pub struct ClinicSummary {
    pub id: i64,
    pub name: String,
    pub ae_titles: Vec<AeRegistration>,
}

impl Index {
    /// Registers `ae_title` (optionally bound to `host`) for the clinic `name`, creating the
    /// clinic when it does not exist yet. An AE title already registered is an error: an AE
    /// title identifies one sender.
    pub async fn add_clinic_ae(
        &self,
        name: &str,
        ae_title: &AeTitle,
        host: Option<IpAddr>,
    ) -> Result<AeRegistration> {
        let name = name.trim();
        if name.is_empty() || name.len() > 200 || name.chars().any(|c| c.is_control()) {
            return Err(StoreError::Invalid(
                "a clinic name must be 1–200 printable characters".into(),
            ));
        }
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
            "INSERT INTO ae_titles (ae_title, clinic_id, host, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(ae_title.as_str())
        .bind(clinic_id)
        .bind(host.map(|h| h.to_string()))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(AeRegistration {
            ae_title: ae_title.clone(),
            clinic_id,
            clinic_name: name.to_owned(),
            host,
        })
    }

    /// The registration of a calling AE title, if any.
    pub async fn find_ae(&self, ae_title: &AeTitle) -> Result<Option<AeRegistration>> {
        let row = sqlx::query(
            "SELECT a.ae_title, a.clinic_id, c.name, a.host FROM ae_titles a \
             JOIN clinics c ON c.id = a.clinic_id WHERE a.ae_title = $1",
        )
        .bind(ae_title.as_str())
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| ae_from_row(&r)).transpose()
    }

    /// All clinics with their AE titles, by name.
    pub async fn list_clinics(&self) -> Result<Vec<ClinicSummary>> {
        let clinics = sqlx::query("SELECT id, name FROM clinics ORDER BY name")
            .fetch_all(self.pool())
            .await?;
        let aes = sqlx::query(
            "SELECT a.ae_title, a.clinic_id, c.name, a.host FROM ae_titles a \
             JOIN clinics c ON c.id = a.clinic_id ORDER BY a.ae_title",
        )
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

fn ae_from_row(r: &sqlx::any::AnyRow) -> Result<AeRegistration> {
    let ae: String = r.try_get(0)?;
    let host: Option<String> = r.try_get(3)?;
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
    })
}
