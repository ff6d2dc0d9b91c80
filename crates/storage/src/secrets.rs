//! Named secrets: the keys a load needs, kept by the warehouse so that scripts never carry them.
//!
//! `CREATE SECRET landing (TYPE = S3, KEY_ID = '..', SECRET = '..', REGION = '..')` stores one
//! JSON object under `_secrets/<name>.json` in the warehouse root; `COPY INTO ... CREDENTIALS =
//! (SECRET = landing)` reads it back. Nothing reads that folder but the process that opened the
//! warehouse: no system table shows a key (`system.secrets` lists names, types, endpoints and
//! regions), `COPY INTO` refuses to load from it, and VACUUM never lists it. Like DuckDB's
//! persistent secrets, the keys are stored unencrypted: whoever can read the warehouse's storage
//! directly can read them, and already reads its data.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The folder of secrets under the warehouse root.
pub const SECRETS_DIR: &str = "_secrets";

/// The longest secret name accepted.
const MAX_NAME_LEN: usize = 128;

/// A named secret. Its `Debug` hides every key.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct Secret {
    /// The name, lowercase.
    pub name: String,
    /// What it opens: `S3`.
    pub kind: String,
    /// The access key id.
    pub key_id: Option<String>,
    /// The secret access key.
    pub secret: Option<String>,
    /// A session token.
    pub session_token: Option<String>,
    /// An S3-compatible endpoint (MinIO, R2, ...).
    pub endpoint: Option<String>,
    /// The region.
    pub region: Option<String>,
    /// Who created it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |v: &Option<String>| v.as_ref().map(|_| "***");
        f.debug_struct("Secret")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("key_id", &hidden(&self.key_id))
            .field("secret", &hidden(&self.secret))
            .field("session_token", &hidden(&self.session_token))
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("created_by", &self.created_by)
            .field("created_at", &self.created_at)
            .finish()
    }
}

impl Secret {
    /// The object_store S3 settings this secret gives (keys, endpoint, region; plain HTTP
    /// allowed for an `http://` endpoint such as a local MinIO).
    pub fn s3_settings(&self) -> Vec<(String, String)> {
        let settings = [
            ("aws_access_key_id", &self.key_id),
            ("aws_secret_access_key", &self.secret),
            ("aws_session_token", &self.session_token),
            ("aws_endpoint", &self.endpoint),
            ("aws_region", &self.region),
        ];
        let mut settings: Vec<(String, String)> = settings
            .into_iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.to_string(), v)))
            .collect();
        if self
            .endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("http://"))
        {
            settings.push(("aws_allow_http".to_string(), "true".to_string()));
        }
        settings
    }
}

/// The secrets of one warehouse root (under `_secrets/`), or of a folder of its own (an
/// executor's `--secrets-dir`, holding `<name>.json` files of the same form).
#[derive(Debug, Clone)]
pub struct Secrets {
    store: Arc<dyn ObjectStore>,
    folder: &'static str,
}

impl Secrets {
    /// The secrets under the root of `store`.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            folder: SECRETS_DIR,
        }
    }

    /// The secrets at the root of `store` itself: `<name>.json` files.
    pub fn folder(store: Arc<dyn ObjectStore>) -> Self {
        Self { store, folder: "" }
    }

    /// Stores `secret`. An existing secret of that name is an error unless `replace`.
    pub async fn create(&self, secret: &Secret, replace: bool) -> Result<()> {
        let path = secret_path(self.folder, &secret.name)?;
        let body = serde_json::to_vec(secret)
            .map_err(|e| Error::InvalidArgument(format!("secret does not serialise: {e}")))?;
        let mode = if replace {
            PutMode::Overwrite
        } else {
            PutMode::Create
        };
        let options = PutOptions {
            mode,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&path, PutPayload::from(body), options)
            .await
        {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => Err(Error::SecretExists {
                name: secret.name.clone(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// The secret named `name`.
    pub async fn get(&self, name: &str) -> Result<Secret> {
        let path = secret_path(self.folder, name)?;
        let bytes = match self.store.get(&path).await {
            Ok(found) => found.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Error::SecretNotFound {
                    name: name.to_ascii_lowercase(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        // serde_json's message may quote a value (a key given as a number): say only where.
        serde_json::from_slice(&bytes).map_err(|e| Error::CorruptMetadata {
            path: path.to_string(),
            reason: format!(
                "not a secret ({:?} error at line {}, column {})",
                e.classify(),
                e.line(),
                e.column()
            ),
        })
    }

    /// Deletes the secret named `name`; false when there is none.
    pub async fn drop(&self, name: &str) -> Result<bool> {
        let path = secret_path(self.folder, name)?;
        match self.store.head(&path).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(true),
            Err(e) => Err(e.into()),
        }
    }

    /// Every readable secret, by name. Callers show only what is not a key.
    pub async fn list(&self) -> Result<Vec<Secret>> {
        let metas: Vec<_> = self
            .store
            .list(Some(&Path::from(self.folder)))
            .try_collect()
            .await?;
        let mut secrets = Vec::with_capacity(metas.len());
        for meta in metas {
            let bytes = self.store.get(&meta.location).await?.bytes().await?;
            // A foreign or damaged file is not a secret.
            if let Ok(secret) = serde_json::from_slice::<Secret>(&bytes) {
                secrets.push(secret);
            }
        }
        secrets.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(secrets)
    }
}

/// `<folder>/<name>.json`, for a name of letters, digits and `_` (case-insensitive).
fn secret_path(folder: &str, name: &str) -> Result<Path> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(Error::InvalidArgument(format!(
            "secret name '{name}': use letters, digits and _ (at most {MAX_NAME_LEN})"
        )));
    }
    let file = format!("{}.json", name.to_ascii_lowercase());
    Ok(if folder.is_empty() {
        Path::from(file)
    } else {
        Path::from(format!("{folder}/{file}"))
    })
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;

    use super::*;

    fn secret(name: &str, key: &str) -> Secret {
        Secret {
            name: name.to_string(),
            kind: "S3".to_string(),
            key_id: Some("AKIA1".to_string()),
            secret: Some(key.to_string()),
            session_token: None,
            endpoint: Some("http://minio:9000".to_string()),
            region: Some("eu-west-1".to_string()),
            created_by: "admin".to_string(),
            created_at: Utc::now(),
        }
    }

    #[tokio::test]
    async fn create_get_replace_drop() {
        let secrets = Secrets::new(Arc::new(InMemory::new()));
        secrets
            .create(&secret("landing", "k1"), false)
            .await
            .unwrap();
        let err = secrets.create(&secret("landing", "k2"), false).await;
        assert!(matches!(err, Err(Error::SecretExists { .. })), "{err:?}");
        assert_eq!(
            secrets.get("LANDING").await.unwrap().secret.as_deref(),
            Some("k1")
        );
        secrets
            .create(&secret("landing", "k2"), true)
            .await
            .unwrap();
        assert_eq!(
            secrets.get("landing").await.unwrap().secret.as_deref(),
            Some("k2")
        );
        assert_eq!(secrets.list().await.unwrap().len(), 1);
        assert!(secrets.drop("landing").await.unwrap());
        assert!(!secrets.drop("landing").await.unwrap());
        assert!(matches!(
            secrets.get("landing").await,
            Err(Error::SecretNotFound { .. })
        ));
    }

    #[test]
    fn debug_hides_keys_and_names_cannot_escape() {
        let text = format!("{:?}", secret("landing", "wJalrXUtnFEMI"));
        assert!(
            !text.contains("wJalrXUtnFEMI") && !text.contains("AKIA1"),
            "{text}"
        );
        assert!(secret_path(SECRETS_DIR, "../x").is_err());
        assert!(secret_path(SECRETS_DIR, "a/b").is_err());
        assert!(secret_path("", "").is_err());
    }
}
