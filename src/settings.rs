//! Layered configuration: built-in defaults < TOML file (`--config`) < `PACS_*` environment
//! < command-line flags.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use pacs_store::config::StoreConfig;
use pacs_store::objects::s3::S3Config;
use pacs_store::users::SessionTtl;
use serde::{Deserialize, Serialize};

use crate::cli::{CommonArgs, ServeArgs};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    #[serde(skip_serializing)]
    pub s3: Option<S3Config>,
    pub max_object_size: u64,
    pub study_quiet_seconds: u64,

    pub ae_title: String,
    pub dicom_port: u16,
    pub dicom_bind: IpAddr,
    pub max_pdu: u32,
    pub idle_timeout_seconds: u64,
    pub max_associations: usize,
    /// DICOM TLS (PS3.15 B.1, BCP 195) on a second port, bound like `dicom_port` on
    /// `dicom_bind`: opened when this port and `dicom_tls_cert`/`dicom_tls_key` are set.
    pub dicom_tls_port: Option<u16>,
    /// PEM certificate chain and private key of the DICOM TLS listener.
    pub dicom_tls_cert: Option<PathBuf>,
    pub dicom_tls_key: Option<PathBuf>,
    /// PEM bundle of the CAs whose client certificates the DICOM TLS listener verifies.
    /// Unset: no client certificates are requested (AE titles that require one are refused).
    pub dicom_tls_client_ca: Option<PathBuf>,

    pub http_port: u16,
    pub http_bind: IpAddr,
    /// PEM certificate chain and private key: HTTPS when both are set.
    pub http_tls_cert: Option<PathBuf>,
    pub http_tls_key: Option<PathBuf>,
    /// A browser session ends this long after login, whatever happens…
    pub session_lifetime_seconds: u64,
    /// …or after this long without a request.
    pub session_idle_seconds: u64,

    /// `host:port` of an IHE ATNA audit record repository: forward the audit trail there
    /// as RFC 5424 syslog over TLS (RFC 5425). Unset: no forwarding.
    pub audit_syslog: Option<String>,
    /// PEM CA certificate(s) that the syslog server's certificate must chain to.
    pub audit_syslog_ca: Option<PathBuf>,
    /// The name the syslog server's certificate must carry (default: the host of
    /// `audit_syslog`).
    pub audit_syslog_server_name: Option<String>,
    /// PEM certificate chain and private key this node authenticates itself with.
    pub audit_syslog_client_cert: Option<PathBuf>,
    pub audit_syslog_client_key: Option<PathBuf>,

    /// Reading turnaround per priority, from "study ready" to the signed report.
    pub turnaround_stat_minutes: u64,
    pub turnaround_urgent_minutes: u64,
    pub turnaround_routine_minutes: u64,
    /// How long a radiologist's claim on a task lasts without being renewed.
    pub claim_lease_seconds: u64,
    /// How long the originating clinic has to acknowledge a critical finding.
    pub critical_ack_minutes: u64,
    /// The key that seals radiologists' report-signing keys (32 bytes, made on first
    /// start, mode 0600). Default `<data_dir>/report-signing.key`. Every node of a
    /// deployment needs the same file; back it up apart from the database.
    pub report_key_file: Option<PathBuf>,
    /// The reading centre's name, written into the report documents (SR verifying
    /// organisation, PDF header).
    pub report_institution: String,
    /// Font files (TrueType/OpenType) for the report PDFs, in order of preference per
    /// character. Empty: DejaVu Sans and Droid Sans Fallback (CJK) from Debian's
    /// fonts-dejavu-core and fonts-droid-fallback.
    pub report_fonts: Vec<PathBuf>,
    /// Wait after a failed delivery of a report to the clinic; doubled after each further
    /// failure up to `delivery_retry_max_seconds`.
    pub delivery_retry_seconds: u64,
    pub delivery_retry_max_seconds: u64,
    /// Attempts before a delivery is marked failed (an administrator can retry it).
    pub delivery_max_attempts: u64,

    /// The web viewer's built files (`index.html` and `assets/`, from `npm run build` in
    /// viewer-web), served at `/`. Relative paths are from the working directory.
    pub viewer_dir: PathBuf,
}

impl Default for Settings {
    fn default() -> Self {
        let store = StoreConfig::default();
        let scp = dicom_scp::ScpConfig::default();
        let worklist = pacs_store::worklist::WorklistPolicy::default();
        let delivery = pacs_store::reports::delivery::DeliveryPolicy::default();
        Settings {
            data_dir: store.data_dir,
            database_url: None,
            s3: None,
            max_object_size: store.max_object_size,
            study_quiet_seconds: store.study_quiet_seconds,
            ae_title: scp.ae_title,
            dicom_port: 11112,
            dicom_bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            max_pdu: scp.max_pdu,
            idle_timeout_seconds: scp.idle_timeout.as_secs(),
            max_associations: scp.max_associations,
            dicom_tls_port: None,
            dicom_tls_cert: None,
            dicom_tls_key: None,
            dicom_tls_client_ca: None,
            http_port: 8080,
            http_bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            http_tls_cert: None,
            http_tls_key: None,
            session_lifetime_seconds: SessionTtl::default().absolute.as_secs(),
            session_idle_seconds: SessionTtl::default().idle.as_secs(),
            audit_syslog: None,
            audit_syslog_ca: None,
            audit_syslog_server_name: None,
            audit_syslog_client_cert: None,
            audit_syslog_client_key: None,
            turnaround_stat_minutes: worklist.stat.as_secs() / 60,
            turnaround_urgent_minutes: worklist.urgent.as_secs() / 60,
            turnaround_routine_minutes: worklist.routine.as_secs() / 60,
            claim_lease_seconds: worklist.lease.as_secs(),
            critical_ack_minutes: worklist.critical_ack.as_secs() / 60,
            report_key_file: None,
            report_institution: "Regional Imaging Centre".into(),
            report_fonts: Vec::new(),
            delivery_retry_seconds: delivery.retry_first.as_secs(),
            delivery_retry_max_seconds: delivery.retry_max.as_secs(),
            delivery_max_attempts: delivery.max_attempts as u64,
            viewer_dir: PathBuf::from(reading_workstation_api::viewer::DEFAULT_DIR),
        }
    }
}

/// The environment variables read (PACS_ + upper-case key); others are ignored so that
/// unrelated PACS_* variables do not break start-up.
const ENV_KEYS: &[&str] = &[
    "data_dir",
    "database_url",
    "max_object_size",
    "study_quiet_seconds",
    "ae_title",
    "dicom_port",
    "dicom_bind",
    "max_pdu",
    "idle_timeout_seconds",
    "max_associations",
    "dicom_tls_port",
    "dicom_tls_cert",
    "dicom_tls_key",
    "dicom_tls_client_ca",
    "http_port",
    "http_bind",
    "http_tls_cert",
    "http_tls_key",
    "session_lifetime_seconds",
    "session_idle_seconds",
    "audit_syslog",
    "audit_syslog_ca",
    "audit_syslog_server_name",
    "audit_syslog_client_cert",
    "audit_syslog_client_key",
    "turnaround_stat_minutes",
    "turnaround_urgent_minutes",
    "turnaround_routine_minutes",
    "claim_lease_seconds",
    "critical_ack_minutes",
    "report_key_file",
    "report_institution",
    "delivery_retry_seconds",
    "delivery_retry_max_seconds",
    "delivery_max_attempts",
    "viewer_dir",
];
const S3_ENV_KEYS: &[&str] = &[
    "endpoint",
    "region",
    "bucket",
    "access_key",
    "secret_key",
    "path_style",
    "prefix",
];

/// Flags that override everything else.
#[derive(Debug, Default, Serialize)]
struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ae_title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dicom_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dicom_bind: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dicom_tls_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_bind: Option<IpAddr>,
}

impl Settings {
    pub fn load(common: &CommonArgs, serve: Option<&ServeArgs>) -> anyhow::Result<Settings> {
        let mut fig = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = &common.config {
            anyhow::ensure!(
                path.is_file(),
                "configuration file {} does not exist",
                path.display()
            );
            fig = fig.merge(Toml::file(path));
        }
        fig = fig.merge(Env::prefixed("PACS_").only(ENV_KEYS)).merge(
            Env::prefixed("PACS_S3_")
                .only(S3_ENV_KEYS)
                .map(|k| format!("s3.{}", k.as_str()).into()),
        );
        let mut o = Overrides {
            data_dir: common.data_dir.clone(),
            database_url: common.database_url.clone(),
            ..Overrides::default()
        };
        if let Some(s) = serve {
            o.ae_title = s.ae_title.clone();
            o.dicom_port = s.dicom_port;
            o.dicom_bind = s.dicom_bind;
            o.dicom_tls_port = s.dicom_tls_port;
            o.http_port = s.http_port;
            o.http_bind = s.http_bind;
        }
        fig = fig.merge(Serialized::defaults(o));
        let settings: Settings = fig.extract().context(
            "invalid configuration (check the --config file, PACS_* variables and flags)",
        )?;
        pacs_store::ae_title::AeTitle::parse(&settings.ae_title)
            .context("invalid ae_title in the configuration")?;
        Ok(settings)
    }

    /// The HTTPS configuration, when a certificate and key are configured.
    /// How long browser sessions live.
    pub fn session_ttl(&self) -> anyhow::Result<SessionTtl> {
        anyhow::ensure!(
            self.session_idle_seconds >= 1 && self.session_lifetime_seconds >= 1,
            "session_idle_seconds and session_lifetime_seconds must be at least 1"
        );
        anyhow::ensure!(
            self.session_idle_seconds <= self.session_lifetime_seconds,
            "session_idle_seconds ({}) is longer than session_lifetime_seconds ({}): a session \
             can never be idle that long",
            self.session_idle_seconds,
            self.session_lifetime_seconds
        );
        Ok(SessionTtl {
            absolute: Duration::from_secs(self.session_lifetime_seconds),
            idle: Duration::from_secs(self.session_idle_seconds),
        })
    }

    /// Where the report key lives.
    pub fn report_key_path(&self) -> PathBuf {
        self.report_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("report-signing.key"))
    }

    /// The worklist's deadlines and claim lease.
    pub fn worklist_policy(&self) -> anyhow::Result<pacs_store::worklist::WorklistPolicy> {
        let (stat, urgent, routine) = (
            self.turnaround_stat_minutes,
            self.turnaround_urgent_minutes,
            self.turnaround_routine_minutes,
        );
        anyhow::ensure!(
            stat >= 1 && stat <= urgent && urgent <= routine,
            "turnaround minutes must be at least 1 and STAT ≤ urgent ≤ routine (got {stat}, \
             {urgent}, {routine})"
        );
        anyhow::ensure!(
            self.claim_lease_seconds >= 30,
            "claim_lease_seconds must be at least 30 (got {})",
            self.claim_lease_seconds
        );
        Ok(pacs_store::worklist::WorklistPolicy {
            stat: Duration::from_secs(stat * 60),
            urgent: Duration::from_secs(urgent * 60),
            routine: Duration::from_secs(routine * 60),
            lease: Duration::from_secs(self.claim_lease_seconds),
            critical_ack: Duration::from_secs(self.critical_ack_minutes.max(1) * 60),
            ..Default::default()
        })
    }

    /// Retries of report delivery.
    pub fn delivery_policy(&self) -> anyhow::Result<pacs_store::reports::delivery::DeliveryPolicy> {
        anyhow::ensure!(
            self.delivery_retry_seconds >= 1
                && self.delivery_retry_seconds <= self.delivery_retry_max_seconds,
            "delivery_retry_seconds must be at least 1 and at most delivery_retry_max_seconds \
             (got {} and {})",
            self.delivery_retry_seconds,
            self.delivery_retry_max_seconds
        );
        anyhow::ensure!(
            self.delivery_max_attempts >= 1,
            "delivery_max_attempts must be at least 1"
        );
        Ok(pacs_store::reports::delivery::DeliveryPolicy {
            retry_first: Duration::from_secs(self.delivery_retry_seconds),
            retry_max: Duration::from_secs(self.delivery_retry_max_seconds),
            max_attempts: i64::try_from(self.delivery_max_attempts).unwrap_or(i64::MAX),
            ..Default::default()
        })
    }

    pub fn http_tls(&self) -> anyhow::Result<Option<std::sync::Arc<rustls::ServerConfig>>> {
        match (&self.http_tls_cert, &self.http_tls_key) {
            (Some(cert), Some(key)) => crate::tls::server_config(cert, key).map(Some),
            (None, None) => Ok(None),
            _ => anyhow::bail!("HTTPS needs both http_tls_cert and http_tls_key"),
        }
    }

    /// The DICOM TLS listener's configuration, when `dicom_tls_port` is set (with the
    /// certificate and key it needs). A partial configuration is an error rather than a
    /// silent plain-only start: TLS-only AE titles would be refused without a clue.
    pub fn dicom_tls(&self) -> anyhow::Result<Option<std::sync::Arc<rustls::ServerConfig>>> {
        let files = [
            ("dicom_tls_cert", &self.dicom_tls_cert),
            ("dicom_tls_key", &self.dicom_tls_key),
            ("dicom_tls_client_ca", &self.dicom_tls_client_ca),
        ];
        let Some(port) = self.dicom_tls_port else {
            let set: Vec<&str> = files
                .iter()
                .filter(|(_, v)| v.is_some())
                .map(|(k, _)| *k)
                .collect();
            anyhow::ensure!(
                set.is_empty(),
                "{} set but dicom_tls_port is not: set dicom_tls_port (PACS_DICOM_TLS_PORT or \
                 --dicom-tls-port; 2762 is the registered DICOM TLS port) to open the DICOM TLS \
                 listener, or remove {}",
                set.join(" and "),
                if set.len() == 1 { "it" } else { "them" }
            );
            return Ok(None);
        };
        let (Some(cert), Some(key)) = (&self.dicom_tls_cert, &self.dicom_tls_key) else {
            anyhow::bail!(
                "dicom_tls_port is {port}, but DICOM TLS needs both dicom_tls_cert and \
                 dicom_tls_key (the PEM certificate chain and private key of this archive; \
                 PACS_DICOM_TLS_CERT, PACS_DICOM_TLS_KEY): set them, or unset dicom_tls_port \
                 to serve DICOM over plain TCP only"
            );
        };
        crate::tls::dicom_server_config(cert, key, self.dicom_tls_client_ca.as_deref())
            .context("invalid DICOM TLS configuration (dicom_tls_cert, dicom_tls_key, dicom_tls_client_ca)")
            .map(Some)
    }

    /// Where and how to forward the audit trail, when `audit_syslog` is set. Checks every
    /// `audit_syslog*` setting and loads the certificates and key.
    pub fn audit_forwarding(&self) -> anyhow::Result<Option<crate::audit_forward::Forwarding>> {
        // An empty value (PACS_AUDIT_SYSLOG=) is unset.
        let address = self.audit_syslog.as_deref().map(str::trim);
        let Some(address) = address.filter(|a| !a.is_empty()) else {
            let stray = [
                ("audit_syslog_ca", self.audit_syslog_ca.is_some()),
                (
                    "audit_syslog_server_name",
                    self.audit_syslog_server_name.is_some(),
                ),
                (
                    "audit_syslog_client_cert",
                    self.audit_syslog_client_cert.is_some(),
                ),
                (
                    "audit_syslog_client_key",
                    self.audit_syslog_client_key.is_some(),
                ),
            ];
            if let Some((name, _)) = stray.iter().find(|(_, set)| *set) {
                anyhow::bail!(
                    "{name} is set but audit_syslog is not: set audit_syslog = \"HOST:PORT\" \
                     (PACS_AUDIT_SYSLOG) to forward the audit trail, or remove {name}"
                );
            }
            return Ok(None);
        };
        let (host, port) = crate::audit_forward::split_address(address).map_err(|why| {
            anyhow::anyhow!(
                "invalid audit_syslog {address:?}: {why}; expected HOST:PORT, e.g. \
                 \"arr.region.example:6514\" or \"[2001:db8::5]:6514\""
            )
        })?;
        let ca = self.audit_syslog_ca.as_deref().ok_or_else(|| {
            anyhow::anyhow!(
                "audit_syslog needs audit_syslog_ca (PACS_AUDIT_SYSLOG_CA): the PEM file of the \
                 CA that signed the syslog server's certificate (the audit trail is forwarded \
                 over TLS only)"
            )
        })?;
        let client = match (
            &self.audit_syslog_client_cert,
            &self.audit_syslog_client_key,
        ) {
            (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
            (None, None) => None,
            _ => anyhow::bail!(
                "a client certificate for audit_syslog needs both audit_syslog_client_cert and \
                 audit_syslog_client_key (PEM files), or neither"
            ),
        };
        let name = self
            .audit_syslog_server_name
            .as_deref()
            .map(str::trim)
            .unwrap_or(host.as_str());
        let server_name = rustls::pki_types::ServerName::try_from(name.to_owned()).map_err(|_| {
            anyhow::anyhow!(
                "{name:?} is neither a DNS name nor an IP address: set audit_syslog_server_name \
                 to the name in the syslog server's certificate"
            )
        })?;
        let tls =
            crate::tls::client_config(ca, client).context("cannot set up TLS for audit_syslog")?;
        Ok(Some(crate::audit_forward::Forwarding {
            destination: address.to_owned(),
            host,
            port,
            server_name,
            tls,
            audit_source_id: self.ae_title.clone(),
        }))
    }

    pub fn store(&self) -> StoreConfig {
        StoreConfig {
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
            s3: self.s3.clone(),
            max_object_size: self.max_object_size,
            study_quiet_seconds: self.study_quiet_seconds,
        }
    }

    pub fn scp(&self) -> dicom_scp::ScpConfig {
        dicom_scp::ScpConfig {
            ae_title: self.ae_title.clone(),
            max_pdu: self.max_pdu.clamp(dicom_ul_min_pdu(), 16 << 20),
            idle_timeout: Duration::from_secs(self.idle_timeout_seconds.max(1)),
            max_associations: self.max_associations.max(1),
            ..dicom_scp::ScpConfig::default()
        }
    }
}

/// The smallest maximum PDU length DICOM allows a node to announce.
fn dicom_ul_min_pdu() -> u32 {
    1024
}
