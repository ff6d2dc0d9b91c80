//! Data definition: databases, schemas, tables and their partitions, and the statements that
//! look at them (`USE`, `SHOW`, `DESCRIBE`) or tidy them (`TRUNCATE`, `VACUUM`).

use chrono::Utc;
use datafusion::sql::sqlparser::ast::{
    ColumnOption, CommentDef, CreateTable, CreateTableOptions, ObjectName, ObjectType, SchemaName,
    ShowStatementFilter, ShowStatementFilterPosition, ShowStatementIn, ShowStatementInParentType,
    ShowStatementOptions, SqlOption, Statement as SqlStatement, Truncate, Use,
};
use strata_storage::catalog::DatabaseEntry;
use strata_storage::{
    ColumnDef, Constraint, DEFAULT_DATABASE, DEFAULT_SCHEMA, Error as StorageError, Interval,
    KeyType, SchemaEntry, Snapshot, TableLog, TableMetadata, Transaction, UpperBound,
};

use crate::catalog::materialized_view::{Definition, HIDDEN_PREFIX};
use crate::error::{Error, Result};
use crate::parser::{self, PartitionClause, name_parts};
use crate::result::{Cell, StatementResult, count_of};
use crate::session::Session;
use crate::table::constraints::{self, refuse_drop, refuse_orphans};
use crate::table::layout::partition_layout;
use crate::table::scd;
use crate::table::{COMMENT_PROPERTY, OWNER_PROPERTY, write_batches};
use crate::types::{arrow_type, column_defs, sql_name};

impl Session {
    /// `CREATE DATABASE [IF NOT EXISTS] name` (with its `public` schema).
    pub(crate) async fn create_database(
        &self,
        db_name: &ObjectName,
        if_not_exists: bool,
    ) -> Result<StatementResult> {
        let name = single(db_name, "database")?;
        let exists = self.warehouse().catalog().databases.contains_key(&name);
        if exists && if_not_exists {
            return Ok(StatementResult::status(format!(
                "database {name} already exists"
            )));
        }
        let n = name.clone();
        self.warehouse()
            .update_catalog(move |c| {
                if c.databases.contains_key(&n) {
                    return Err(StorageError::DatabaseExists { name: n.clone() });
                }
                let mut schemas = std::collections::BTreeMap::new();
                schemas.insert(DEFAULT_SCHEMA.to_string(), SchemaEntry::new());
                c.databases.insert(
                    n.clone(),
                    DatabaseEntry {
                        created_at: Utc::now(),
                        comment: None,
                        schemas,
                    },
                );
                Ok(())
            })
            .await?;
        Ok(StatementResult::status(format!("created database {name}")))
    }

    /// `CREATE SCHEMA [IF NOT EXISTS] [db.]schema`.
    pub(crate) async fn create_schema(
        &self,
        schema_name: &SchemaName,
        if_not_exists: bool,
    ) -> Result<StatementResult> {
        let name = match schema_name {
            SchemaName::Simple(n) | SchemaName::NamedAuthorization(n, _) => n,
            SchemaName::UnnamedAuthorization(_) => {
                return Err(Error::Unsupported("CREATE SCHEMA AUTHORIZATION".into()));
            }
        };
        let (db, schema) = self.qualify_schema(name)?;
        let exists = self.warehouse().catalog().schema(&db, &schema).is_ok();
        if exists && if_not_exists {
            return Ok(StatementResult::status(format!(
                "schema {db}.{schema} already exists"
            )));
        }
        let (d, s) = (db.clone(), schema.clone());
        self.warehouse()
            .update_catalog(move |c| {
                let database = c
                    .databases
                    .get_mut(&d)
                    .ok_or_else(|| StorageError::DatabaseNotFound { name: d.clone() })?;
                if database.schemas.contains_key(&s) {
                    return Err(StorageError::SchemaExists {
                        database: d.clone(),
                        schema: s.clone(),
                    });
                }
                database.schemas.insert(s.clone(), SchemaEntry::new());
                Ok(())
            })
            .await?;
        Ok(StatementResult::status(format!(
            "created schema {db}.{schema}"
        )))
    }

    /// `SHOW DATABASES`.
    pub(crate) fn show_databases(&self) -> StatementResult {
        let rows = self
            .warehouse()
            .catalog()
            .databases
            .keys()
            .map(|d| vec![d.clone()])
            .collect();
        StatementResult::strings(&["database_name"], rows)
    }

    /// `SHOW SCHEMAS [IN db]`.
    pub(crate) fn show_schemas(&self, options: &ShowStatementOptions) -> Result<StatementResult> {
        let db = match parent(options) {
            Some(n) => single(n, "database")?,
            None => self.current_schema().0.to_string(),
        };
        let catalog = self.warehouse().catalog();
        let rows = catalog
            .database(&db)?
            .schemas
            .keys()
            .map(|s| vec![db.clone(), s.clone()])
            .collect();
        Ok(StatementResult::strings(
            &["database_name", "schema_name"],
            rows,
        ))
    }

    /// `SHOW TABLES [IN [db.]schema | IN DATABASE [db]]`: the tables, views and materialized
    /// views of the current schema, another schema, or every schema of a database, with their
    /// kind.
    pub(crate) async fn show_tables(
        &self,
        options: &ShowStatementOptions,
    ) -> Result<StatementResult> {
        let in_database = matches!(
            options.show_in,
            Some(ShowStatementIn {
                parent_type: Some(ShowStatementInParentType::Database),
                ..
            })
        );
        let catalog = self.warehouse().catalog();
        let (db, schemas) = if in_database {
            let db = match parent(options) {
                Some(name) => match name_parts(name).as_slice() {
                    [db] => db.clone(),
                    _ => return Err(Error::Plan(format!("invalid database name {name}"))),
                },
                None => self.current_schema().0.to_string(),
            };
            let schemas = catalog.database(&db)?.schemas.keys().cloned().collect();
            (db, schemas)
        } else {
            let (db, schema) = match parent(options) {
                Some(n) => self.qualify_schema(n)?,
                None => {
                    let (d, s) = self.current_schema();
                    (d.to_string(), s.to_string())
                }
            };
            (db, vec![schema])
        };
        // `LIKE '%revenue%'` matches names, comments and tags, case-insensitive (as
        // Snowflake's SHOW ... LIKE is).
        let like = match &options.filter_position {
            None => None,
            Some(
                ShowStatementFilterPosition::Infix(filter)
                | ShowStatementFilterPosition::Suffix(filter),
            ) => match filter {
                ShowStatementFilter::Like(p) | ShowStatementFilter::ILike(p) => {
                    Some(like_regex(p)?)
                }
                other => {
                    return Err(Error::Unsupported(format!(
                        "SHOW TABLES {other}: filter with LIKE '...'"
                    )));
                }
            },
        };
        let matches = |texts: &[&str]| {
            like.as_ref()
                .is_none_or(|r| texts.iter().any(|t| r.is_match(t)))
        };
        let mut rows = Vec::new();
        for schema in schemas {
            let entry = catalog.schema(&db, &schema)?;
            let mut objects: Vec<(String, &str)> = Vec::new();
            for (table, t) in &entry.tables {
                let log = self.warehouse().table_log(&t.id, table);
                let snapshot = self.warehouse().snapshot(&log).await?;
                let metadata = &snapshot.metadata;
                let comment = metadata
                    .properties
                    .get(COMMENT_PROPERTY)
                    .map_or("", String::as_str);
                let mut texts = vec![table.as_str(), comment];
                texts.extend(
                    metadata
                        .tags
                        .iter()
                        .flat_map(|(k, v)| [k.as_str(), v.as_str()]),
                );
                if !matches(&texts) {
                    continue;
                }
                let kind = if Definition::of(metadata).is_some() {
                    "materialized view"
                } else {
                    "table"
                };
                objects.push((table.clone(), kind));
            }
            objects.extend(
                entry
                    .views
                    .iter()
                    .filter(|(v, e)| matches(&[v.as_str(), e.comment.as_deref().unwrap_or("")]))
                    .map(|(v, _)| (v.clone(), "view")),
            );
            objects.sort();
            rows.extend(
                objects
                    .into_iter()
                    .map(|(name, kind)| vec![db.clone(), schema.clone(), name, kind.to_string()]),
            );
        }
        Ok(StatementResult::strings(
            &["database_name", "schema_name", "table_name", "kind"],
            rows,
        ))
    }

    /// `TRUNCATE TABLE a, b, ...`: each table emptied in one commit.
    pub(crate) async fn truncate(&self, t: &Truncate) -> Result<StatementResult> {
        let mut total = 0;
        for target in &t.table_names {
            let (log, snapshot, name) = self.open_table_for_write(&target.name).await?;
            let mut txn = Transaction::new("TRUNCATE");
            txn.remove = snapshot.files.values().cloned().collect();
            // Rows a concurrent commit added go too: TRUNCATE empties the table.
            txn.reads = strata_storage::Reads::Table;
            self.commit_removal(&name, &log, &snapshot, &txn).await?;
            total += snapshot.row_count();
        }
        Ok(StatementResult::status(format!("truncated {total} rows")))
    }

    /// `ALTER TABLE t ADD PARTITION (...)`.
    pub(crate) async fn add_partitions(
        &self,
        table: &ObjectName,
        partitions: &[(String, UpperBound)],
    ) -> Result<StatementResult> {
        let (log, snapshot, name) = self.open_table(table).await?;
        let mut layout = snapshot
            .metadata
            .partitioning
            .clone()
            .ok_or_else(|| Error::Plan(format!("table '{name}' is not partitioned")))?;
        layout.add(&name, partitions)?;
        let mut txn = Transaction::new("ADD PARTITION");
        txn.new_partitions = true;
        txn.add_partitions = layout
            .partitions
            .iter()
            .filter(|p| partitions.iter().any(|(n, _)| *n == p.name))
            .cloned()
            .collect();
        self.warehouse()
            .commit(&name, &log, &snapshot, &txn)
            .await?;
        Ok(StatementResult::status(format!(
            "added {} to {name}",
            count_of(partitions.len() as u64, "partition")
        )))
    }

    /// `ALTER TABLE t DROP PARTITION [IF EXISTS] p, ...`: the partitions and their rows.
    pub(crate) async fn drop_partitions(
        &self,
        table: &ObjectName,
        names: &[String],
        if_exists: bool,
        operation: &str,
    ) -> Result<StatementResult> {
        let (log, snapshot, name) = self.open_table_for_write(table).await?;
        let layout = snapshot
            .metadata
            .partitioning
            .as_ref()
            .ok_or_else(|| Error::Plan(format!("table '{name}' is not partitioned")))?;
        let mut txn = Transaction::new(operation);
        for n in names {
            if layout.partition(n).is_none() {
                if if_exists {
                    continue;
                }
                return Err(StorageError::PartitionNotFound {
                    table: name.clone(),
                    partition: n.clone(),
                }
                .into());
            }
            txn.drop_partitions.push(n.clone());
            txn.remove.extend(snapshot.files_in(n).cloned());
        }
        let rows: u64 = txn.remove.iter().map(|f| f.live_rows()).sum();
        self.commit_removal(&name, &log, &snapshot, &txn).await?;
        Ok(StatementResult::status(format!(
            "dropped {} of {name} ({})",
            count_of(txn.drop_partitions.len() as u64, "partition"),
            count_of(rows, "row")
        )))
    }

    /// `USE database`, `USE SCHEMA [db.]schema`, `USE name` (a database, else a schema).
    pub(crate) fn use_(&mut self, u: &Use) -> Result<StatementResult> {
        let catalog = self.warehouse().catalog();
        let (db, schema) = match u {
            Use::Database(n) | Use::Catalog(n) => {
                (single(n, "database")?, DEFAULT_SCHEMA.to_string())
            }
            Use::Schema(n) => self.qualify_schema(n)?,
            Use::Object(n) => {
                let parts = name_parts(n);
                match parts.as_slice() {
                    [one] if catalog.databases.contains_key(one) => {
                        (one.clone(), DEFAULT_SCHEMA.to_string())
                    }
                    [one] => (self.current_schema().0.to_string(), one.clone()),
                    _ => self.qualify_schema(n)?,
                }
            }
            other => return Err(Error::Unsupported(format!("{other}"))),
        };
        self.set_schema(&db, &schema)?;
        Ok(StatementResult::status(format!("using {db}.{schema}")))
    }

    /// `DROP DATABASE | SCHEMA | TABLE a, b, ...`: all names in one catalog commit, so a failing
    /// name leaves every object in place.
    pub(crate) async fn drop(
        &mut self,
        object_type: ObjectType,
        names: &[ObjectName],
        if_exists: bool,
        cascade: bool,
    ) -> Result<StatementResult> {
        // (database, schema, table); unused parts are empty.
        let targets: Vec<(String, String, String)> = names
            .iter()
            .map(|name| match object_type {
                ObjectType::Database => {
                    Ok((single(name, "database")?, String::new(), String::new()))
                }
                ObjectType::Schema => {
                    let (d, s) = self.qualify_schema(name)?;
                    Ok((d, s, String::new()))
                }
                ObjectType::Table | ObjectType::View | ObjectType::MaterializedView => {
                    self.qualify_table(name)
                }
                other => Err(Error::Unsupported(format!("DROP {other}"))),
            })
            .collect::<Result<_>>()?;
        // Which targets are materialized views (tables whose metadata holds a definition).
        let mut materialized = std::collections::HashSet::new();
        if matches!(
            object_type,
            ObjectType::Table | ObjectType::View | ObjectType::MaterializedView
        ) {
            let catalog = self.warehouse().catalog();
            for (d, s, t) in &targets {
                if let Ok(entry) = catalog.table(d, s, t) {
                    let log = self.warehouse().table_log(&entry.id, t);
                    let snapshot = self.warehouse().snapshot(&log).await?;
                    if Definition::of(&snapshot.metadata).is_some() {
                        materialized.insert((d.clone(), s.clone(), t.clone()));
                    }
                }
            }
        }
        if object_type == ObjectType::Table {
            for (d, s, t) in &targets {
                let name = [d.clone(), s.clone(), t.clone()];
                refuse_drop(self.warehouse(), &name).await?;
            }
        }
        let mut dropped = Vec::new();
        self.warehouse()
            .update_catalog(|c| {
                dropped.clear();
                for (d, s, t) in &targets {
                    let exists = match object_type {
                        ObjectType::Database => c.database(d).is_ok(),
                        ObjectType::Schema => c.schema(d, s).is_ok(),
                        _ => c.schema(d, s).is_ok_and(|e| e.contains(t)),
                    };
                    if !exists && if_exists {
                        continue;
                    }
                    match object_type {
                        ObjectType::Database => {
                            let has_tables = c.database(d)?.schemas.values().any(|s| !s.is_empty());
                            if has_tables && !cascade {
                                return Err(StorageError::NotEmpty {
                                    what: "database",
                                    name: d.clone(),
                                });
                            }
                            c.databases.remove(d);
                            dropped.push(format!("database {d}"));
                        }
                        ObjectType::Schema => {
                            if !c.schema(d, s)?.is_empty() && !cascade {
                                return Err(StorageError::NotEmpty {
                                    what: "schema",
                                    name: format!("{d}.{s}"),
                                });
                            }
                            c.database_mut(d)?.schemas.remove(s);
                            dropped.push(format!("schema {d}.{s}"));
                        }
                        _ if object_type == ObjectType::Table
                            && c.schema(d, s)?.external_tables.contains_key(t) =>
                        {
                            c.schema_mut(d, s)?.external_tables.remove(t);
                            dropped.push(format!("external table {d}.{s}.{t}"));
                        }
                        _ => {
                            let name = format!("{d}.{s}.{t}");
                            let is = if c.view(d, s, t).is_some() {
                                ObjectType::View
                            } else if c.table(d, s, t).is_err() {
                                return Err(match object_type {
                                    ObjectType::View => StorageError::ViewNotFound { name },
                                    _ => StorageError::TableNotFound { name },
                                });
                            } else if materialized.contains(&(d.clone(), s.clone(), t.clone())) {
                                ObjectType::MaterializedView
                            } else {
                                ObjectType::Table
                            };
                            if is != object_type {
                                let (is, hint) = match is {
                                    ObjectType::View => ("view", "DROP VIEW"),
                                    ObjectType::MaterializedView => {
                                        ("materialized view", "DROP MATERIALIZED VIEW")
                                    }
                                    _ => ("table", "DROP TABLE"),
                                };
                                return Err(StorageError::WrongKind { name, is, hint });
                            }
                            let schema = c.schema_mut(d, s)?;
                            if is == ObjectType::View {
                                schema.views.remove(t);
                            } else {
                                schema.tables.remove(t);
                            }
                            dropped.push(format!("{} {name}", is.to_string().to_lowercase()));
                        }
                    }
                }
                Ok(())
            })
            .await?;
        // A session whose database or schema was dropped falls back to main.public.
        let (database, schema) = self.current_schema();
        if self.warehouse().catalog().schema(database, schema).is_err() {
            self.set_schema(DEFAULT_DATABASE, DEFAULT_SCHEMA)?;
        }
        Ok(StatementResult::status(if dropped.is_empty() {
            "nothing to drop".to_string()
        } else {
            format!("dropped {}", dropped.join(", "))
        }))
    }

    /// `DESCRIBE name`: a row per column with its SQL type and the keys it belongs to.
    /// `DESCRIBE EXTENDED name`: what the object is (its qualified name, kind, keys, checks,
    /// partitioning, rows, definition), one property per row.
    pub(crate) async fn describe(
        &self,
        name: &ObjectName,
        extended: bool,
    ) -> Result<StatementResult> {
        let (_, snapshot, qualified) = match self.open_table(name).await {
            Ok(table) => table,
            // Not a stored table: a view or a system table has columns too.
            Err(not_a_table) => {
                return self.describe_relation(name, not_a_table, extended).await;
            }
        };
        if extended {
            return Ok(describe_properties(table_properties(&qualified, &snapshot)));
        }
        let metadata = &snapshot.metadata;
        let rows = metadata
            .columns
            .iter()
            .filter(|c| !c.name.starts_with(HIDDEN_PREFIX))
            .map(|c| {
                vec![
                    c.name.clone(),
                    sql_name(&c.data_type, c.sql_type.as_deref()),
                    if c.nullable { "YES" } else { "NO" }.to_string(),
                    column_keys(metadata, &c.name),
                ]
            })
            .collect();
        Ok(describe_result(rows))
    }

    /// `DESCRIBE` of a view or system table, from the schema DataFusion plans it with.
    async fn describe_relation(
        &self,
        name: &ObjectName,
        not_a_table: Error,
        extended: bool,
    ) -> Result<StatementResult> {
        let (db, schema, table) = self.qualify_table(name)?;
        let view = self
            .warehouse()
            .catalog()
            .view(&db, &schema, &table)
            .map(|v| v.query.clone());
        let qualified = format!("{db}.{schema}.{table}");
        let reference = datafusion::common::TableReference::full(db, schema, table);
        let Ok(provider) = self.context().table_provider(reference).await else {
            return Err(not_a_table);
        };
        if extended {
            let mut properties = vec![("name", qualified)];
            match view {
                Some(query) => {
                    properties.push(("kind", "view".to_string()));
                    properties.push(("definition", query));
                }
                None => properties.push(("kind", "system table".to_string())),
            }
            return Ok(describe_properties(properties));
        }
        let rows = provider
            .schema()
            .fields()
            .iter()
            .map(|f| {
                vec![
                    f.name().clone(),
                    sql_name(f.data_type(), None),
                    if f.is_nullable() { "YES" } else { "NO" }.to_string(),
                    String::new(),
                ]
            })
            .collect();
        Ok(describe_result(rows))
    }

    pub(crate) async fn create_table(
        &mut self,
        create: &CreateTable,
        partitioning: Option<&PartitionClause>,
    ) -> Result<StatementResult> {
        let (db, schema, table) = self.qualify_table(&create.name)?;
        let qualified = format!("{db}.{schema}.{table}");
        let catalog = self.warehouse().catalog();
        if let Some(kind @ ("view" | "external table")) =
            catalog.schema(&db, &schema)?.kind_of(&table)
        {
            return Err(StorageError::NameTaken {
                name: qualified,
                kind,
            }
            .into());
        }
        let exists = catalog.table(&db, &schema, &table).is_ok();
        if exists && create.if_not_exists {
            return Ok(StatementResult::status(format!(
                "table {qualified} already exists"
            )));
        }
        if exists && !create.or_replace {
            return Err(StorageError::TableExists { name: qualified }.into());
        }
        // Columns: declared, or from the query.
        let mut columns: Vec<ColumnDef> = create
            .columns
            .iter()
            .map(|c| {
                let name = parser::normalize(&c.name);
                let (data_type, sql_type) = arrow_type(&c.data_type, &name)?;
                let not_null = c.options.iter().any(|o| {
                    matches!(
                        o.option,
                        ColumnOption::NotNull | ColumnOption::PrimaryKey(_)
                    )
                });
                Ok(ColumnDef {
                    name,
                    data_type,
                    nullable: !not_null,
                    sql_type,
                    field_id: 0,
                    default: None,
                    initial_default: None,
                    comment: c.options.iter().find_map(|o| match &o.option {
                        ColumnOption::Comment(text) => Some(text.clone()),
                        _ => None,
                    }),
                    tags: Default::default(),
                })
            })
            .collect::<Result<_>>()?;
        for (column, declared) in columns.iter_mut().zip(&create.columns) {
            for option in &declared.options {
                if let ColumnOption::Default(value) = &option.option {
                    column.default =
                        super::alter::constant(self, &column.name, value, &column.data_type)
                            .await?;
                }
            }
        }
        let source = match &create.query {
            Some(q) => {
                let plan = self.plan_raw(SqlStatement::Query(q.clone()), None).await?;
                let df = self.context().execute_logical_plan(plan).await?;
                if columns.is_empty() {
                    columns = column_defs(df.schema().as_arrow().fields());
                } else if columns.len() != df.schema().fields().len() {
                    return Err(Error::Plan(format!(
                        "CREATE TABLE {qualified} declares {} columns but its query returns {}",
                        columns.len(),
                        df.schema().fields().len()
                    )));
                }
                Some(df)
            }
            None => None,
        };
        if columns.is_empty() {
            return Err(Error::Plan(format!("table {qualified} needs columns")));
        }
        let mut names = std::collections::HashSet::new();
        for c in &columns {
            if !names.insert(c.name.clone()) {
                return Err(Error::Plan(format!(
                    "column '{}' appears twice in {qualified}",
                    c.name
                )));
            }
        }
        let (current_db, current_schema) = {
            let (d, s) = self.current_schema();
            (d.to_string(), s.to_string())
        };
        let mut constraints = constraints::declared(
            create,
            &[db.clone(), schema.clone(), table.clone()],
            &mut columns,
            |name| constraints::qualify(name, &current_db, &current_schema),
            self.warehouse(),
        )
        .await?;
        let mut properties = scd::declare(create, &table, &mut columns, &mut constraints)?;
        // `COMMENT = '...'`: sqlparser keeps it with the table options or on its own.
        let plain = match &create.table_options {
            CreateTableOptions::Plain(options) => options.as_slice(),
            _ => &[],
        };
        let comment = create
            .comment
            .iter()
            .chain(plain.iter().filter_map(|o| match o {
                SqlOption::Comment(c) => Some(c),
                _ => None,
            }));
        if let Some(CommentDef::WithEq(text) | CommentDef::WithoutEq(text)) = comment.last() {
            properties.insert(COMMENT_PROPERTY.to_string(), text.clone());
        }
        properties.insert(OWNER_PROPERTY.to_string(), self.user_name());
        let partitioning = partitioning
            .map(|p| partition_layout(&qualified, p, &columns))
            .transpose()?;
        let metadata = TableMetadata {
            columns,
            partitioning,
            properties,
            constraints,
            last_field_id: 0,
            name_mapping: Default::default(),
            indexes: Vec::new(),
            cluster_by: Vec::new(),
            tests: Vec::new(),
            tags: Default::default(),
        };
        let warehouse = &self.warehouse();
        let rows = warehouse
            .create_table(
                &db,
                &schema,
                &table,
                metadata,
                create.or_replace,
                async |log, snapshot| match source {
                    Some(df) => {
                        let stream = self.progress().execute(df).await?;
                        write_batches(
                            warehouse,
                            self.write_options(),
                            &qualified,
                            log,
                            &snapshot,
                            stream,
                            Transaction::new("CREATE TABLE AS SELECT"),
                        )
                        .await
                    }
                    None => Ok((0, snapshot)),
                },
            )
            .await?;
        Ok(if create.query.is_some() {
            StatementResult::status(format!(
                "created table {qualified} with {}",
                count_of(rows as u64, "row")
            ))
        } else {
            StatementResult::status(format!("created table {qualified}"))
        })
    }

    /// `VACUUM [t] [RETAIN n HOURS]`: deletes files no version inside the retention reads.
    pub(crate) async fn vacuum(
        &self,
        table: Option<&ObjectName>,
        retain_hours: Option<f64>,
    ) -> Result<StatementResult> {
        let hours = retain_hours.unwrap_or(MIN_RETENTION_HOURS);
        if hours < MIN_RETENTION_HOURS && self.strata_options().vacuum_retention_check {
            return Err(Error::Plan(format!(
                "VACUUM RETAIN {hours} HOURS is shorter than the minimum retention of \
                 {MIN_RETENTION_HOURS} hours (7 days): it would delete files that time travel \
                 to recent versions and statements still running may need. To allow it, SET \
                 strata.vacuum_retention_check = false"
            )));
        }
        // Beyond ~100 years nothing could be old enough: keep everything.
        let retention = chrono::Duration::milliseconds(
            (hours.clamp(0.0, 24.0 * 365.0 * 100.0) * 3_600_000.0) as i64,
        );
        let store = self.warehouse().object_store();
        let mut report = strata_storage::vacuum::VacuumReport::default();
        let logs: Vec<strata_storage::TableLog> = match table {
            Some(name) => vec![self.open_table(name).await?.0],
            None => {
                let catalog = self.warehouse().catalog();
                let r = strata_storage::vacuum::vacuum_dropped_tables(&store, &catalog, retention)
                    .await?;
                report.files_deleted += r.files_deleted;
                report.bytes_deleted += r.bytes_deleted;
                catalog
                    .table_ids()
                    .map(|id| self.warehouse().table_log(id, &id.0))
                    .collect()
            }
        };
        for log in logs {
            let r = strata_storage::vacuum::vacuum_table(&store, &log, retention).await?;
            report.files_deleted += r.files_deleted;
            report.bytes_deleted += r.bytes_deleted;
        }
        Ok(StatementResult::row(vec![
            ("files_deleted", Cell::Count(report.files_deleted)),
            ("bytes_deleted", Cell::Count(report.bytes_deleted)),
        ]))
    }

    /// Commits `txn`, which removes files of table `name` (TRUNCATE, DROP PARTITION), unless
    /// other tables reference keys in them.
    pub(crate) async fn commit_removal(
        &self,
        name: &str,
        log: &TableLog,
        snapshot: &Snapshot,
        txn: &Transaction,
    ) -> Result<()> {
        let fences = refuse_orphans(self.warehouse(), name, log, snapshot, &txn.remove).await?;
        let mut txn = txn.clone();
        if let Some(removal) = fences
            .commit(self.warehouse(), log, snapshot.version)
            .await?
        {
            removal.seal(name, &mut txn)?;
        }
        self.warehouse().commit(name, log, snapshot, &txn).await?;
        Ok(())
    }
}

/// The shortest retention VACUUM accepts unless `strata.vacuum_retention_check` is off.
const MIN_RETENTION_HOURS: f64 = 7.0 * 24.0;

/// The one part of a database name.
fn single(name: &ObjectName, what: &str) -> Result<String> {
    let parts = name_parts(name);
    match parts.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(Error::Plan(format!("invalid {what} name {name}"))),
    }
}

/// A SQL `LIKE` pattern (`%` any text, `_` one character) as a case-insensitive regex.
fn like_regex(pattern: &str) -> Result<regex::Regex> {
    let mut re = String::from("(?is)^");
    for c in pattern.chars() {
        match c {
            '%' => re.push_str(".*"),
            '_' => re.push('.'),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    regex::Regex::new(&re).map_err(|e| Error::Plan(format!("LIKE '{pattern}': {e}")))
}

fn parent(options: &ShowStatementOptions) -> Option<&ObjectName> {
    options
        .show_in
        .as_ref()
        .and_then(|ShowStatementIn { parent_name, .. }| parent_name.as_ref())
}

/// The result of `DESCRIBE`: a row per column.
fn describe_result(rows: Vec<Vec<String>>) -> StatementResult {
    StatementResult::strings(&["column_name", "data_type", "is_nullable", "key"], rows)
}

/// The result of `DESCRIBE EXTENDED`: a row per property.
fn describe_properties(properties: Vec<(&str, String)>) -> StatementResult {
    let rows = properties
        .into_iter()
        .map(|(p, v)| vec![p.to_string(), v])
        .collect();
    StatementResult::strings(&["property", "value"], rows)
}

/// The keys column `name` belongs to, as `DESCRIBE` shows them: `PRIMARY KEY`, `UNIQUE`,
/// `REFERENCES db.schema.table (column)`, `RANGE PARTITION KEY`.
fn column_keys(metadata: &TableMetadata, name: &str) -> String {
    let mut keys = Vec::new();
    for constraint in &metadata.constraints {
        match constraint {
            Constraint::PrimaryKey { columns, .. } if columns.iter().any(|c| c == name) => {
                keys.push("PRIMARY KEY".to_string());
            }
            Constraint::Unique { columns, .. } if columns.iter().any(|c| c == name) => {
                keys.push("UNIQUE".to_string());
            }
            Constraint::ForeignKey {
                columns,
                references,
                referenced_columns,
                ..
            } => {
                if let Some(i) = columns.iter().position(|c| c == name) {
                    let target = referenced_columns.get(i).map_or("", String::as_str);
                    keys.push(format!("REFERENCES {} ({target})", references.join(".")));
                }
            }
            _ => {}
        }
    }
    if metadata
        .partitioning
        .as_ref()
        .is_some_and(|p| p.column == name)
    {
        keys.push("RANGE PARTITION KEY".to_string());
    }
    keys.join(", ")
}

/// What `DESCRIBE EXTENDED` says about a stored table or materialized view.
fn table_properties(qualified: &str, snapshot: &Snapshot) -> Vec<(&'static str, String)> {
    let metadata = &snapshot.metadata;
    let definition = Definition::of(metadata);
    let mut properties = vec![
        ("name", qualified.to_string()),
        (
            "kind",
            if definition.is_some() {
                "materialized view"
            } else {
                "table"
            }
            .to_string(),
        ),
    ];
    let list = |columns: &[String]| columns.join(", ");
    for constraint in &metadata.constraints {
        properties.push(match constraint {
            Constraint::PrimaryKey { name, columns } => {
                ("primary key", format!("{name} ({})", list(columns)))
            }
            Constraint::Unique { name, columns } => {
                ("unique", format!("{name} ({})", list(columns)))
            }
            Constraint::Check { name, expr } => ("check", format!("{name}: {expr}")),
            Constraint::ForeignKey {
                name,
                columns,
                references,
                referenced_columns,
            } => (
                "foreign key",
                format!(
                    "{name} ({}) REFERENCES {} ({})",
                    list(columns),
                    references.join("."),
                    list(referenced_columns)
                ),
            ),
        });
    }
    if let Some(p) = &metadata.partitioning {
        let interval = match (&p.interval, &p.key_type) {
            (None, _) => String::new(),
            (Some(Interval::Months(m)), _) if m % 12 == 0 => format!(" INTERVAL ({} YEAR)", m / 12),
            (Some(Interval::Months(m)), _) => format!(" INTERVAL ({m} MONTH)"),
            (Some(Interval::Width(w)), KeyType::Date) => format!(" INTERVAL ({w} DAY)"),
            (Some(Interval::Width(w)), KeyType::Timestamp(unit)) => {
                format!(" INTERVAL ({})", timestamp_width(*w, *unit))
            }
            (Some(Interval::Width(w)), KeyType::Integer) => format!(" INTERVAL ({w})"),
        };
        properties.push(("partitioned by", format!("RANGE ({}){interval}", p.column)));
        properties.push(("partitions", p.partitions.len().to_string()));
    }
    properties.push(("rows", snapshot.row_count().to_string()));
    if let Some(comment) = metadata.properties.get(COMMENT_PROPERTY) {
        properties.push(("comment", comment.clone()));
    }
    if let Some(definition) = definition {
        properties.push(("definition", definition.query));
    }
    properties
}

/// A TIMESTAMP partition width in `unit` ticks, in the largest whole unit of time.
fn timestamp_width(width: i64, unit: arrow::datatypes::TimeUnit) -> String {
    use arrow::datatypes::TimeUnit;
    let per_second: i64 = match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    };
    for (name, seconds) in [("WEEK", 604_800), ("DAY", 86_400), ("HOUR", 3_600)] {
        let ticks = per_second.saturating_mul(seconds);
        if width % ticks == 0 {
            return format!("{} {name}", width / ticks);
        }
    }
    format!("{width} ticks")
}
