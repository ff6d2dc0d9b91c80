//! What remote SQL may not do. A client of `strata serve` works on warehouse tables; it may not
//! make the server read or write its own files (`COPY INTO` from a local path,
//! `CREATE EXTERNAL TABLE ... LOCATION`, `COPY ... TO` a file, `COPY INTO <location>`, stages)
//! or change settings of the
//! process (`SET datafusion.runtime.*`), delete files (`VACUUM`), or send signed requests to a
//! host it picks (`COPY INTO ... ENDPOINT`), unless its user has the admin role. `COPY INTO`
//! from the load locations the server is configured with (`load_locations` in `strata.toml`,
//! e.g. a landing bucket), through the endpoints it lists (`load_endpoints`), is allowed to
//! everyone.

use datafusion::sql::sqlparser::ast::{
    CopyIntoSnowflakeKind, ObjectName, ObjectType, Set, Statement as SqlStatement,
};
use strata_query::parser::{ParsedStatement, Statement};
use tonic::Status;

use crate::auth::Role;

/// Refuses a statement `role` may not run, naming what is refused and why.
pub(crate) fn check(
    statement: &ParsedStatement,
    role: Role,
    load: &LoadPolicy,
) -> Result<(), Status> {
    if role == Role::Admin {
        return Ok(());
    }
    let sql = match &statement.statement {
        Statement::Sql(sql) => sql,
        Statement::Vacuum { .. } => {
            return Err(refusal("VACUUM deletes files of the warehouse"));
        }
        Statement::CreateSecret { .. } | Statement::DropSecret { .. } => {
            return Err(refusal("secrets are kept by admins"));
        }
        Statement::CreateExternalTable(_) => {
            return Err(refusal("an external table reads files on the server"));
        }
        _ => return Ok(()),
    };
    let refused = match sql.as_ref() {
        SqlStatement::CopyIntoSnowflake {
            kind: CopyIntoSnowflakeKind::Location,
            ..
        } => Some("COPY INTO <location> writes files outside the warehouse"),
        SqlStatement::CreateStage { .. }
        | SqlStatement::Drop {
            object_type: ObjectType::Stage,
            ..
        } => Some("stages name locations on the server; admins keep them"),
        // A stage is a location an admin made: loading through it is allowed (the statement
        // keeps `FILES` and paths under the stage).
        SqlStatement::CopyIntoSnowflake {
            from_obj: Some(stage),
            ..
        } if stage
            .0
            .first()
            .and_then(|p| p.as_ident())
            .is_some_and(|i| i.value.starts_with('@')) =>
        {
            None
        }
        SqlStatement::CopyIntoSnowflake { stage_params, .. }
            if stage_params
                .endpoint
                .as_ref()
                .is_some_and(|e| !load.endpoints.iter().any(|allowed| allowed == e)) =>
        {
            Some(
                "COPY INTO ... ENDPOINT sends signed requests to the host it names; users may \
                 use only the endpoints in load_endpoints",
            )
        }
        SqlStatement::CopyIntoSnowflake {
            from_obj, files, ..
        } => {
            let base = from_obj
                .as_ref()
                .and_then(|o| o.0.first())
                .and_then(|p| p.as_ident())
                .map(|i| i.value.clone())
                .unwrap_or_default();
            let mut sources = vec![base.clone()];
            for f in files.iter().flatten() {
                sources.push(format!("{}/{f}", base.trim_end_matches('/')));
            }
            (!sources
                .iter()
                .all(|s| in_load_locations(s, &load.locations)))
            .then_some(
                "COPY INTO reads files on the server; users may load only from the configured \
                 load_locations",
            )
        }
        SqlStatement::Copy { .. } => Some("COPY reads or writes files on the server"),
        SqlStatement::CreateTable(c) if c.external || c.location.is_some() => {
            Some("an external table reads files on the server")
        }
        SqlStatement::Set(Set::SingleAssignment { variable, .. })
            if setting_name(variable).starts_with("datafusion.runtime") =>
        {
            Some("runtime settings apply to the whole server")
        }
        SqlStatement::AttachDatabase { .. }
        | SqlStatement::AttachDuckDBDatabase { .. }
        | SqlStatement::Install { .. }
        | SqlStatement::Load { .. }
        | SqlStatement::Unload { .. } => Some("it reaches outside the warehouse"),
        _ => None,
    };
    match refused {
        Some(why) => Err(refusal(why)),
        None => Ok(()),
    }
}

fn refusal(why: &str) -> Status {
    Status::permission_denied(format!(
        "not allowed over Flight SQL without the admin role: {why}"
    ))
}

/// Where users without the admin role may load from.
#[derive(Debug, Clone, Default)]
pub struct LoadPolicy {
    /// URL prefixes they may `COPY INTO` from (`load_locations` in `strata.toml`).
    pub locations: Vec<String>,
    /// S3 endpoints they may name in `COPY INTO ... ENDPOINT` (`load_endpoints`).
    pub endpoints: Vec<String>,
}

/// Whether `source` lies under one of `locations` (URL prefixes), with no `..` to climb out.
/// Local paths are compared with their symbolic links resolved, so a link inside a load
/// location cannot lead out of it.
fn in_load_locations(source: &str, locations: &[String]) -> bool {
    let climbs = source.split(['/', '\\']).any(|segment| segment == "..");
    let source = resolve_links(source);
    !climbs
        && locations.iter().map(|l| resolve_links(l)).any(|location| {
            let dir = location.trim_end_matches('/');
            !dir.is_empty()
                && source
                    .strip_prefix(dir)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
}

/// A setting's name as DataFusion reads it: identifier parts without quotes, joined by dots.
/// A local path (or `file://` URL) with its symbolic links resolved: the whole path, or for
/// a glob the directory before its first wildcard (the rest is kept as written). Missing
/// components are kept; URLs of other schemes are returned as they are.
fn resolve_links(source: &str) -> String {
    let path = match source.strip_prefix("file://") {
        Some(p) => p,
        None if source.contains("://") => return source.to_string(),
        None => source,
    };
    let wildcard = path.find(['*', '?', '[', '{']).unwrap_or(path.len());
    let (fixed, rest) = if wildcard == path.len() {
        (path, "")
    } else {
        path.split_at(path[..wildcard].rfind('/').map_or(0, |i| i + 1))
    };
    let mut existing = std::path::Path::new(fixed);
    let mut missing = Vec::new();
    let real = loop {
        if let Ok(real) = existing.canonicalize() {
            break real;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name.to_os_string());
                existing = parent;
            }
            _ => return source.to_string(),
        }
    };
    let mut out = real;
    for name in missing.iter().rev() {
        out.push(name);
    }
    let mut text = out.display().to_string();
    if !rest.is_empty() {
        if !text.ends_with('/') {
            text.push('/');
        }
        text.push_str(rest);
    }
    text
}

fn setting_name(variable: &ObjectName) -> String {
    strata_query::parser::name_parts(variable)
        .join(".")
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(sql: &str, role: Role) -> Result<(), Status> {
        let parsed = strata_query::parser::parse(sql).unwrap();
        let load = LoadPolicy {
            locations: vec!["s3://landing/in/".to_string()],
            endpoints: vec!["http://minio:9000".to_string()],
        };
        check(&parsed[0], role, &load)
    }

    /// A symbolic link inside a load location that leads out of it is followed before the
    /// check, for a file and for the directory of a glob.
    #[test]
    fn links_out_of_a_load_location_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let landing = dir.path().join("landing");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&landing).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret.csv"), "x").unwrap();
        std::fs::write(landing.join("ok.csv"), "x").unwrap();
        std::os::unix::fs::symlink(outside.join("secret.csv"), landing.join("link.csv")).unwrap();
        std::os::unix::fs::symlink(&outside, landing.join("dir")).unwrap();
        let load = LoadPolicy {
            locations: vec![format!("{}/", landing.display())],
            endpoints: Vec::new(),
        };
        let verdict = |file: &str| {
            let sql = format!("COPY INTO t FROM '{}/{file}'", landing.display());
            let parsed = strata_query::parser::parse(&sql).unwrap();
            check(&parsed[0], Role::User, &load)
        };
        assert!(verdict("ok.csv").is_ok());
        assert!(verdict("2024-*.csv").is_ok());
        for file in ["link.csv", "dir/secret.csv", "dir/*.csv"] {
            assert!(verdict(file).is_err(), "{file}");
        }
    }

    #[test]
    fn server_files_are_off_limits_to_users() {
        for sql in [
            "COPY INTO t FROM '/etc/passwd'",
            "COPY INTO t FROM 's3://landing/other/x.csv'",
            "COPY INTO t FROM 's3://landing/in/../secret/x.csv'",
            "COPY INTO t FROM 's3://landing/input/x.csv'",
            "COPY INTO t FROM 's3://landing/in/' FILES = ('../../etc/passwd')",
            "SET datafusion.runtime.memory_limit = '100G'",
            "SET \"datafusion.runtime.temp_directory\" = '/srv/x'",
            "SET datafusion.\"runtime\".memory_limit = '1T'",
            "VACUUM",
            "VACUUM t RETAIN 240 HOURS",
            "COPY INTO t FROM 's3://landing/in/x.csv' ENDPOINT = 'http://attacker:80'",
            "CREATE SECRET s (TYPE = S3, KEY_ID = 'k', SECRET = 'v')",
            "DROP SECRET s",
            "CREATE STAGE s URL = '/etc/'",
            "DROP STAGE s",
            "COPY INTO '/tmp/out/' FROM (SELECT 1)",
            "COPY INTO 's3://bucket/out/' FROM t",
            "CREATE EXTERNAL TABLE e LOCATION = '/etc/' FILE_FORMAT = (TYPE = CSV)",
            "CREATE EXTERNAL TABLE e STORED AS CSV LOCATION '/etc/'",
        ] {
            let e = verdict(sql, Role::User).unwrap_err();
            assert_eq!(e.code(), tonic::Code::PermissionDenied, "{sql}");
            assert!(verdict(sql, Role::Admin).is_ok(), "{sql}");
        }
        for sql in [
            "SELECT 1",
            "CREATE TABLE t (a INT)",
            "INSERT INTO t VALUES (1)",
            "SET datafusion.execution.batch_size = 1024",
            "COPY INTO t FROM 's3://landing/in/2024-*.csv'",
            "COPY INTO t FROM 's3://landing/in' FILES = ('a.csv', 'b.csv')",
            "COPY INTO t FROM 's3://landing/in/x.csv' ENDPOINT = 'http://minio:9000'",
            // Stages are the locations admins made; loading through one is allowed.
            "COPY INTO t FROM @landing/2024/",
            "COPY INTO t (a) FROM (SELECT $1 FROM @landing)",
            "LIST @landing",
            "CREATE FILE FORMAT f TYPE = CSV",
            "ALTER EXTERNAL TABLE e REFRESH",
        ] {
            assert!(verdict(sql, Role::User).is_ok(), "{sql}");
        }
    }
}
