//! `CREATE SECRET` and `DROP SECRET`: named keys for loads, so that scripts never carry them.
//!
//! Only admins create or drop a secret; any user may name one in `COPY INTO ... CREDENTIALS =
//! (SECRET = name)`. What a secret holds is never shown: `system.secrets` lists its name, type,
//! endpoint and region. Storage is [`strata_storage::Secrets`].

use chrono::Utc;
use strata_storage::{Secret, Secrets};

use crate::error::{Error, Result};
use crate::result::StatementResult;
use crate::session::Session;

/// The options `CREATE SECRET` accepts.
const OPTIONS: &str = "TYPE, KEY_ID, SECRET, SESSION_TOKEN, ENDPOINT, REGION";

impl Session {
    pub(crate) async fn create_secret(
        &self,
        name: &str,
        or_replace: bool,
        if_not_exists: bool,
        options: &[(String, String)],
    ) -> Result<StatementResult> {
        self.require_admin("CREATE SECRET")?;
        let mut secret = Secret {
            name: name.to_ascii_lowercase(),
            kind: "S3".to_string(),
            key_id: None,
            secret: None,
            session_token: None,
            endpoint: None,
            region: None,
            created_by: self.user_name(),
            created_at: Utc::now(),
        };
        for (key, value) in options {
            let slot = match key.as_str() {
                "TYPE" => {
                    if !value.eq_ignore_ascii_case("S3") {
                        return Err(Error::Unsupported(format!(
                            "secret TYPE {value} (Strata keeps S3 secrets)"
                        )));
                    }
                    continue;
                }
                "KEY_ID" | "AWS_KEY_ID" | "ACCESS_KEY_ID" => &mut secret.key_id,
                "SECRET" | "AWS_SECRET_KEY" | "SECRET_ACCESS_KEY" => &mut secret.secret,
                "SESSION_TOKEN" | "TOKEN" | "AWS_TOKEN" => &mut secret.session_token,
                "ENDPOINT" => &mut secret.endpoint,
                "REGION" => &mut secret.region,
                other => {
                    return Err(Error::Plan(format!(
                        "CREATE SECRET: unknown option {other} (use {OPTIONS})"
                    )));
                }
            };
            *slot = Some(value.clone());
        }
        if secret.key_id.is_some() != secret.secret.is_some() {
            return Err(Error::Plan(
                "CREATE SECRET: KEY_ID and SECRET go together".to_string(),
            ));
        }
        let secrets = Secrets::new(self.warehouse().object_store());
        crate::commit_gate::begin_commit()?;
        match secrets.create(&secret, or_replace).await {
            Ok(()) => Ok(StatementResult::status(format!(
                "created secret {}",
                secret.name
            ))),
            Err(strata_storage::Error::SecretExists { .. }) if if_not_exists => Ok(
                StatementResult::status(format!("secret {} already exists", secret.name)),
            ),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) async fn drop_secret(&self, name: &str, if_exists: bool) -> Result<StatementResult> {
        self.require_admin("DROP SECRET")?;
        let secrets = Secrets::new(self.warehouse().object_store());
        crate::commit_gate::begin_commit()?;
        if secrets.drop(name).await? || if_exists {
            Ok(StatementResult::status(format!(
                "dropped secret {}",
                name.to_ascii_lowercase()
            )))
        } else {
            Err(strata_storage::Error::SecretNotFound {
                name: name.to_ascii_lowercase(),
            }
            .into())
        }
    }

    /// The S3 settings of the secret `name` (see [`crate::Warehouse`]).
    pub(crate) async fn secret_settings(&self, name: &str) -> Result<Vec<(String, String)>> {
        self.warehouse().secret_settings(name).await
    }

    /// Fails unless this session's user has the admin role.
    pub(crate) fn require_admin(&self, what: &str) -> Result<()> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(Error::PermissionDenied(format!(
                "{what} needs the admin role; user '{}' does not have it",
                self.user_name()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Warehouse;
    use crate::error::ErrorKind;

    #[tokio::test]
    async fn only_admins_keep_secrets_but_anyone_may_name_one() {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = Warehouse::open(dir.path().to_str().unwrap()).await.unwrap();
        let mut admin = warehouse.session();
        admin
            .sql("CREATE SECRET s (TYPE = S3, KEY_ID = 'k', SECRET = 'v'); CREATE TABLE t (x INT)")
            .await
            .unwrap();
        let mut user = warehouse.session();
        user.set_user("analyst", false);
        for sql in [
            "CREATE SECRET s2 (TYPE = S3, KEY_ID = 'k', SECRET = 'v')",
            "DROP SECRET s",
        ] {
            let err = user.sql(sql).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
            assert!(err.to_string().contains("admin role"), "{err}");
        }
        // Naming the secret is allowed: the failure is the load's, not a refusal.
        let err = user
            .sql("COPY INTO t FROM 's3://b/x.csv' CREDENTIALS = (SECRET = nope)")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        let names = user
            .sql("SELECT secret_name FROM system.secrets")
            .await
            .unwrap();
        assert_eq!(names[0].row_count(), 1);
    }
}
