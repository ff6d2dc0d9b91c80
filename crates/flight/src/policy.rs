//! What remote SQL may not do. A client of `strata serve` works on warehouse tables; it may not
//! make the server read or write its own files (`COPY INTO` from a local path,
//! `CREATE EXTERNAL TABLE ... LOCATION`, `COPY ... TO` a file) or change settings of the
//! process (`SET datafusion.runtime.*`), unless its user has the admin role. `COPY INTO` from the
//! load locations the server is configured with (`load_locations` in `strata.toml`, e.g. a
//! landing bucket) is allowed to everyone.

use datafusion::sql::sqlparser::ast::{ObjectName, Set, Statement as SqlStatement};
use strata_query::parser::{ParsedStatement, Statement};
use tonic::Status;

use crate::auth::Role;

/// Refuses a statement `role` may not run, naming what is refused and why.
pub(crate) fn check(
    statement: &ParsedStatement,
    role: Role,
    load_locations: &[String],
) -> Result<(), Status> {
    if role == Role::Admin {
        return Ok(());
    }
    let Statement::Sql(sql) = &statement.statement else {
        return Ok(());
    };
    let refused = match sql.as_ref() {
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
            (!sources.iter().all(|s| in_load_locations(s, load_locations))).then_some(
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
        Some(why) => Err(Status::permission_denied(format!(
            "not allowed over Flight SQL without the admin role: {why}"
        ))),
        None => Ok(()),
    }
}

/// Whether `source` lies under one of `locations` (URL prefixes), with no `..` to climb out.
fn in_load_locations(source: &str, locations: &[String]) -> bool {
    let climbs = source.split(['/', '\\']).any(|segment| segment == "..");
    !climbs
        && locations.iter().any(|location| {
            let dir = location.trim_end_matches('/');
            !dir.is_empty()
                && source
                    .strip_prefix(dir)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
}

/// A setting's name as DataFusion reads it: identifier parts without quotes, joined by dots.
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
        check(&parsed[0], role, &["s3://landing/in/".to_string()])
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
        ] {
            assert!(verdict(sql, Role::User).is_ok(), "{sql}");
        }
    }
}
