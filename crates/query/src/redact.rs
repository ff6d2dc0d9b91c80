//! Secrets out of statement text before it is kept anywhere: the query log, error messages,
//! traces.
//!
//! A script may carry keys (`COPY INTO ... CREDENTIALS = (AWS_SECRET_KEY = '...')`, a password
//! in a URL). Everything Strata keeps or shows of a statement passes through [`redact`], which
//! replaces the value of every option whose name looks like a secret, and the password of every
//! URL, with `***`. It errs towards hiding: `KEY_ID` and `TOKEN` values go too.

use std::sync::LazyLock;

use regex::Regex;

/// What a hidden value is replaced with.
pub const HIDDEN: &str = "***";

/// `NAME = 'value'` (or `"value"`, or a bare word) where NAME names a secret.
static SECRET_OPTION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)(\b[a-z_]*(?:secret|password|passwd|token|key_id|access_key|private_key|credential|api_key|sas)[a-z_]*\s*=>?\s*)('(?:[^']|'')*'?|"(?:[^"]|"")*"?|[^\s,;()'"]+)"#,
    )
    .expect("the secret pattern is valid")
});

/// `PASSWORD 'x'` and `IDENTIFIED BY 'x'` (user DDL of other databases), and the options of
/// DuckDB's `CREATE SECRET (KEY_ID 'x', AWS_SECRET_KEY 'y')`, written without `=`.
static PASSWORD_CLAUSE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)(\b(?:[a-z_]*(?:password|secret|key_id|token)[a-z_]*|identified\s+by)\s+)('(?:[^']|'')*'?|"(?:[^"]|"")*"?)"#,
    )
        .expect("the password pattern is valid")
});

/// The password of `scheme://user:password@host`.
static URL_PASSWORD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/@\s']+:)[^@\s/']+@")
        .expect("the URL pattern is valid")
});

/// The URL of `NOTIFY WEBHOOK 'url'`: services keep the token in its path or query.
static WEBHOOK_URL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(\bwebhook\s+'[a-z][a-z0-9+.-]*://[^/'?#]*)[^']*'")
        .expect("the webhook pattern is valid")
});

/// `text` with every secret it carries replaced by [`HIDDEN`].
pub fn redact(text: &str) -> String {
    let text = WEBHOOK_URL.replace_all(text, |c: &regex::Captures| format!("{}/{HIDDEN}'", &c[1]));
    let text =
        SECRET_OPTION.replace_all(&text, |c: &regex::Captures| format!("{}'{HIDDEN}'", &c[1]));
    let text =
        PASSWORD_CLAUSE.replace_all(&text, |c: &regex::Captures| format!("{}'{HIDDEN}'", &c[1]));
    URL_PASSWORD
        .replace_all(&text, |c: &regex::Captures| format!("{}{HIDDEN}@", &c[1]))
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn webhook_paths_are_hidden() {
        let sql = "CREATE ALERT a SCHEDULE = '1 minute' IF (EXISTS (SELECT 1)) \
                   THEN NOTIFY WEBHOOK 'https://hooks.slack.com/services/T0/B1/s3cret?x=1'";
        let out = redact(sql);
        assert!(!out.contains("s3cret"), "{out}");
        assert!(
            out.ends_with("NOTIFY WEBHOOK 'https://hooks.slack.com/***'"),
            "{out}"
        );
        assert_eq!(redact("notify webhook 'x"), "notify webhook 'x");
    }

    #[test]
    fn credentials_in_copy_options_are_hidden() {
        let sql = "COPY INTO t FROM 's3://b/x.csv' CREDENTIALS = (AWS_KEY_ID = 'AKIAEXAMPLE' \
                   AWS_SECRET_KEY = 'wJalr/it''s+secret' AWS_TOKEN = 'tok') ENDPOINT = 'http://h'";
        let out = redact(sql);
        for secret in ["AKIAEXAMPLE", "wJalr", "secret'", "tok'"] {
            assert!(!out.contains(secret), "{out}");
        }
        assert!(out.contains("AWS_SECRET_KEY = '***'"), "{out}");
        assert!(out.contains("ENDPOINT = 'http://h'"), "{out}");
        assert!(out.starts_with("COPY INTO t FROM 's3://b/x.csv'"), "{out}");
    }

    #[test]
    fn passwords_in_urls_clauses_and_unterminated_quotes_are_hidden() {
        assert_eq!(
            redact("COPY INTO t FROM 'https://me:hunter2@host/f.csv'"),
            "COPY INTO t FROM 'https://me:***@host/f.csv'"
        );
        assert_eq!(
            redact("CREATE USER u PASSWORD 'hunter2'"),
            "CREATE USER u PASSWORD '***'"
        );
        assert!(!redact("CREDENTIALS = (SECRET = 'unterminated").contains("unterminated"));
        assert!(!redact("CREDENTIALS=(aws_secret_key=bare)").contains("bare"));
    }

    #[test]
    fn create_secret_keeps_its_name_and_endpoint_only() {
        for sql in [
            "CREATE SECRET landing (TYPE = S3, KEY_ID = 'AKIAX', SECRET = 'wJalr', \
             SESSION_TOKEN = 'tok1', ENDPOINT = 'http://h', REGION = 'eu')",
            "CREATE SECRET landing (TYPE S3, KEY_ID 'AKIAX', SECRET 'wJalr', \
             SESSION_TOKEN 'tok1', ENDPOINT 'http://h', REGION 'eu')",
            "CREATE SECRET landing (TYPE S3, AWS_KEY_ID 'AKIAX', AWS_SECRET_KEY 'wJalr', \
             AWS_TOKEN 'tok1', ENDPOINT 'http://h', REGION 'eu')",
        ] {
            let out = redact(sql);
            for secret in ["AKIAX", "wJalr", "tok1"] {
                assert!(!out.contains(secret), "{out}");
            }
            assert!(out.contains("CREATE SECRET landing (TYPE"), "{out}");
            assert!(out.contains("'http://h'") && out.contains("'eu'"), "{out}");
        }
    }

    #[test]
    fn ordinary_sql_is_left_alone() {
        for sql in [
            "SELECT * FROM orders WHERE key = 'x'",
            "CREATE TABLE t (id INT PRIMARY KEY, k VARCHAR)",
            "SELECT monkey_id FROM zoo",
        ] {
            assert_eq!(redact(sql), sql);
        }
    }
}
