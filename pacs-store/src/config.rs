//! The archive's configuration and how to open it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::archive::Archive;
use crate::index::Index;
use crate::objects::ObjectStore;
use crate::objects::fs::FsObjectStore;
use crate::objects::s3::{S3Config, S3ObjectStore};
use crate::{Result, StoreError};

/// Where and how the archive keeps its data.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Data directory: the SQLite index, the object files and the staging area.
    pub data_dir: PathBuf,
    /// `sqlite:PATH` or `postgres://…`; default `sqlite:<data_dir>/index.db`.
    pub database_url: Option<String>,
    /// When set, objects are kept in this S3 bucket instead of under the data directory
    /// (the staging area stays local).
    pub s3: Option<S3Config>,
    /// Largest object accepted, in bytes.
    pub max_object_size: u64,
    /// A study is "ready to read" after this many seconds without a new instance.
    pub study_quiet_seconds: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            data_dir: PathBuf::from("./pacs-data"),
            database_url: None,
            s3: None,
            max_object_size: 4 << 30,
            study_quiet_seconds: 60,
        }
    }
}

impl StoreConfig {
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite:{}", self.data_dir.join("index.db").display()))
    }

    pub fn study_quiet_period(&self) -> Duration {
        Duration::from_secs(self.study_quiet_seconds)
    }

    /// Opens index and object store (creating the data directory when needed).
    pub async fn open(&self) -> Result<Archive> {
        std::fs::create_dir_all(&self.data_dir)
            .map_err(|e| StoreError::io("cannot create the data directory", &self.data_dir, e))?;
        let index = Index::open(&self.database_url()).await?;
        let staging = self.data_dir.join("staging");
        let objects: Arc<dyn ObjectStore> = match &self.s3 {
            Some(s3) => Arc::new(S3ObjectStore::connect(s3).await?),
            None => Arc::new(FsObjectStore::open(&self.data_dir).await?),
        };
        Archive::new(index, objects, staging, self.max_object_size)
    }
}
