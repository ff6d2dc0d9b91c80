//! What remote SQL may not do. A client of `strata serve` works on warehouse tables; it may not
//! make the server read or write its own files (`COPY INTO` from a local path,
//! `CREATE EXTERNAL TABLE ... LOCATION`, `COPY ... TO` a file) or change settings of the
//! process (`SET datafusion.runtime.*`), unless its user has the admin role.

use datafusion::sql::sqlparser::ast::{ObjectName, Set, Statement as SqlStatement};
use strata_query::parser::{ParsedStatement, Statement};
use tonic::Status;

use crate::auth::Role;

/// Refuses a statement `role` may not run, naming what is refused and why.
pub(crate) fn check(statement: &ParsedStatement, role: Role) -> Result<(), Status> {
    if role == Role::Admin {
        return Ok(());
    }
    let Statement::Sql(sql) = &statement.statement else {
        return Ok(());
    };
    let refused = match sql.as_ref() {
        SqlStatement::CopyIntoSnowflake { .. } => {
            Some("COPY INTO from a path reads files on the server")
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
        check(&parsed[0], role)
    }

    #[test]
    fn server_files_are_off_limits_to_users() {
        for sql in [
            "COPY INTO t FROM '/etc/passwd'",
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
        ] {
            assert!(verdict(sql, Role::User).is_ok(), "{sql}");
        }
    }
}
