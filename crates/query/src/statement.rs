//! The statement layer: `Session::sql` and `Session::execute`, from parsed statement to result.
//!
//! ```text
//!  Session::sql(text) ─ parser ─► execute_with(statement)
//!     │ dispatch by statement family:
//!     ├── ddl            databases, schemas, tables, partitions, USE, SHOW, DESCRIBE, VACUUM
//!     ├── alter          ALTER TABLE: columns (schema evolution), RENAME TO, SWAP WITH
//!     ├── indexes        CREATE / DROP INDEX, SHOW INDEXES: sort keys and bloom filters
//!     ├── optimize       OPTIMIZE (compaction, ZORDER BY), ALTER TABLE ... CLUSTER BY
//!     ├── maintenance    partition retention; serve's automatic compaction and retention
//!     ├── dml            UPDATE, DELETE, MERGE: copy-on-write of the affected files
//!     ├── copy           COPY INTO with load history and rejected rows
//!     │   └ load_transform   COPY INTO t FROM (SELECT $1, f($2) FROM @stage)
//!     ├── unload         COPY INTO 'location' FROM (query): Parquet, CSV or JSON files
//!     ├── stages         CREATE / DROP STAGE, LIST @stage; file_formats: CREATE FILE FORMAT
//!     ├── external       CREATE EXTERNAL TABLE, ALTER EXTERNAL TABLE ... REFRESH
//!     ├── apply_changes  APPLY CHANGES INTO an SCD Type 2 table
//!     ├── secrets        CREATE / DROP SECRET (admins)
//!     ├── data_tests     ADD TEST, CREATE DATA TEST, RUN DATA TESTS; the test_on_load gate
//!     ├── tasks          CREATE / ALTER / EXECUTE / DROP TASK; task_runs: graphs, attempts
//!     ├── scheduler      serve's scheduler of tasks and alerts
//!     ├── alerts         CREATE / ALTER / EXECUTE / DROP ALERT: a query checked on a schedule
//!     ├── metadata       COMMENT ON, SET / UNSET TAG, OWNER TO
//!     ├── monitoring     the gauges /metrics reads off the warehouse (crate::telemetry counts)
//!     ├── views          CREATE VIEW;   crate::mv: CREATE / REFRESH MATERIALIZED VIEW
//!     ├── stream         Flight ingest and streamed queries
//!     └── anything else: plan (then MV rewrite) ─► DataFusion
//!  after a success: hooks (lineage, on_commit refreshes); always: query_log
//! ```
//!
//! A statement that fails leaves the warehouse as it was: each handler commits at most once, at
//! its end.

pub(crate) mod alerts;
pub(crate) mod alter;
pub(crate) mod apply_changes;
#[cfg(test)]
mod cancel_sweep;
pub(crate) mod channels;
pub(crate) mod copy;
pub(crate) mod data_tests;
pub(crate) mod ddl;
pub(crate) mod dml;
pub(crate) mod external;
#[cfg(test)]
mod fault_sweep;
pub(crate) mod file_formats;
#[cfg(test)]
mod fuzz;
pub(crate) mod hooks;
pub(crate) mod indexes;
pub(crate) mod load_transform;
pub(crate) mod maintenance;
pub(crate) mod metadata;
pub(crate) mod monitoring;
pub(crate) mod optimize;
pub(crate) mod plan;
pub(crate) mod query_log;
pub(crate) mod scheduler;
pub(crate) mod secrets;
pub(crate) mod stages;
pub(crate) mod stream;
pub(crate) mod subscribe;
pub(crate) mod task_runs;
pub(crate) mod tasks;
pub(crate) mod unload;
pub(crate) mod views;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use arrow::datatypes::SchemaRef;
use chrono::Utc;
use datafusion::common::ParamValues;
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::sql::sqlparser::ast::{
    AlterTableType, CopyIntoSnowflakeKind, ObjectType, Statement as SqlStatement,
};
use futures::FutureExt;
use tracing::Instrument;

use crate::cluster::Placement;
use crate::config::parse_duration;
use crate::error::{Error, Result};
use crate::parser::{self, ParsedStatement, Statement};
use crate::result::StatementResult;
use crate::session::Session;
use crate::table::{ScanFigures, scan_figures};

impl Session {
    /// Runs a script; returns one result per statement. Stops at the first failing statement,
    /// which leaves the warehouse as it was before that statement.
    pub async fn sql(&mut self, sql: &str) -> Result<Vec<StatementResult>> {
        let statements = parser::parse(sql)?;
        let mut results = Vec::with_capacity(statements.len());
        for statement in statements {
            results.push(self.execute(&statement).await?);
        }
        Ok(results)
    }

    /// Runs one parsed statement and records it in the query log.
    pub async fn execute(&mut self, statement: &ParsedStatement) -> Result<StatementResult> {
        self.execute_with(statement, None).await
    }

    /// Runs one parsed statement with values for its placeholders (`$1`, `?`), and records it
    /// in the query log. Parameters apply to statements DataFusion plans (queries, `INSERT`,
    /// `EXPLAIN`).
    pub async fn execute_with(
        &mut self,
        statement: &ParsedStatement,
        params: Option<&ParamValues>,
    ) -> Result<StatementResult> {
        let query_id = query_log::new_query_id();
        let span = query_log::span(&query_id, self.id());
        self.execute_logged(statement, params, query_id)
            .instrument(span)
            .await
    }

    /// [`Session::execute_with`] under the query id its log lines and record carry.
    async fn execute_logged(
        &mut self,
        statement: &ParsedStatement,
        params: Option<&ParamValues>,
        query_id: String,
    ) -> Result<StatementResult> {
        let started_at = Utc::now();
        let clock = Instant::now();
        let _running = crate::telemetry::QueryGuard::start();
        self.progress().reset();
        data_tests::install(self.warehouse());
        // A statement that lost a commit race wrote nothing: run it again, planned on the
        // newer snapshot, a bounded number of times.
        let max_retries = self.strata_options().max_statement_retries;
        let mut retries = 0;
        let outcome = loop {
            // A panic in any worker of this statement (DataFusion re-raises its tasks' panics
            // here) fails this statement alone; the session and the process go on.
            let outcome = AssertUnwindSafe(self.run(&statement.statement, params))
                .catch_unwind()
                .await
                .unwrap_or_else(|payload| Err(panicked(payload.as_ref())));
            match &outcome {
                Err(e) if e.is_retryable() && retries < max_retries => {
                    retries += 1;
                    tracing::debug!(retries, error = %e, "statement lost a commit race; retrying");
                    tokio::time::sleep(retry_backoff(retries)).await;
                }
                _ => break outcome,
            }
        };
        if outcome.is_ok() {
            hooks::after_success(self, &statement.statement).await;
        }
        let job = self.take_cluster_job();
        let (figures, rows) = match &outcome {
            Ok((r, f)) => (*f, r.row_count() as u64),
            Err(_) => (ScanFigures::default(), 0),
        };
        let (status, error) = match &outcome {
            Ok(_) => ("SUCCESS", None),
            Err(e) => ("FAILED", Some(e.to_string())),
        };
        let query_id = query_log::record(
            self.warehouse(),
            query_log::Entry {
                query_id,
                session_id: self.id(),
                user_name: self.user_name(),
                protocol: self.protocol(),
                text: &statement.text,
                started_at,
                elapsed: clock.elapsed(),
                status,
                error,
                rows,
                figures,
                retries,
                job,
            },
        )
        .await;
        self.set_last_query_id(query_id);
        crate::commit_gate::statement_finished();
        outcome.map(|(r, _)| r)
    }

    /// Runs one statement: dispatches it to the handler of its family.
    async fn run(
        &mut self,
        statement: &Statement,
        params: Option<&ParamValues>,
    ) -> Result<(StatementResult, ScanFigures)> {
        self.warehouse().refresh_catalog().await?;
        let result = match statement {
            Statement::Sql(s) => return self.run_sql(s, params).await,
            Statement::CreatePartitioned {
                create,
                partitioning,
            } => match create.as_ref() {
                SqlStatement::CreateTable(c) => self.create_table(c, Some(partitioning)).await?,
                SqlStatement::CreateView(v) if v.materialized => {
                    crate::mv::create::create(self, v, Some(partitioning)).await?
                }
                _ => return Err(Error::Plan("expected CREATE TABLE".to_string())),
            },
            Statement::AddPartitions { table, partitions } => {
                self.add_partitions(table, partitions).await?
            }
            Statement::DropPartitions {
                table,
                names,
                if_exists,
            } => {
                self.drop_partitions(table, names, *if_exists, "DROP PARTITION")
                    .await?
            }
            Statement::OptimizeTiered { table, partition } => {
                Box::pin(optimize::optimize(
                    self,
                    table,
                    partition.as_deref(),
                    None,
                    true,
                ))
                .await?
            }
            Statement::ApplyRetention { table } => {
                Box::pin(maintenance::apply_retention(self, table)).await?
            }
            Statement::Vacuum {
                table,
                retain_hours,
            } => self.vacuum(table.as_ref(), *retain_hours).await?,
            Statement::ApplyChanges(apply) => apply_changes::apply_changes(self, apply).await?,
            Statement::Subscribe { .. } => {
                return Err(Error::Unsupported(
                    "SUBSCRIBE streams changes until it is stopped: run it with strata -c or \
                     over Flight"
                        .to_string(),
                ));
            }
            Statement::Refresh { view, full } => {
                crate::mv::refresh::refresh_statement(self, view, *full).await?
            }
            Statement::CreateSecret {
                name,
                or_replace,
                if_not_exists,
                options,
            } => {
                self.create_secret(name, *or_replace, *if_not_exists, options)
                    .await?
            }
            Statement::DropSecret { name, if_exists } => self.drop_secret(name, *if_exists).await?,
            Statement::CreateFileFormat {
                name,
                or_replace,
                if_not_exists,
                options,
            } => {
                Box::pin(file_formats::create(
                    self,
                    name,
                    *or_replace,
                    *if_not_exists,
                    options,
                ))
                .await?
            }
            Statement::ShowIndexes { table } => {
                Box::pin(indexes::show(self, table.as_ref())).await?
            }
            Statement::DropFileFormat { name, if_exists } => {
                file_formats::drop(self, name, *if_exists).await?
            }
            // Boxed: the futures of the rarer statements stay off the stack of every other.
            Statement::CreateExternalTable(def) => Box::pin(external::create(self, def)).await?,
            Statement::DataTest(statement) => {
                Box::pin(data_tests::execute(self, statement)).await?
            }
            Statement::Task(statement) => Box::pin(tasks::execute(self, statement)).await?,
            Statement::Alert(statement) => Box::pin(alerts::execute(self, statement)).await?,
            Statement::SetTags(change) => Box::pin(metadata::set_tags(self, change)).await?,
        };
        Ok((result, ScanFigures::default()))
    }

    async fn run_sql(
        &mut self,
        s: &SqlStatement,
        params: Option<&ParamValues>,
    ) -> Result<(StatementResult, ScanFigures)> {
        let result = match s {
            SqlStatement::CreateDatabase {
                db_name,
                if_not_exists,
                ..
            } => self.create_database(db_name, *if_not_exists).await?,
            SqlStatement::CreateSchema {
                schema_name,
                if_not_exists,
                ..
            } => self.create_schema(schema_name, *if_not_exists).await?,
            SqlStatement::OptimizeTable {
                name,
                partition,
                zorder,
                predicate,
                include_final,
                deduplicate,
                on_cluster,
                ..
            } => {
                if predicate.is_some()
                    || *include_final
                    || deduplicate.is_some()
                    || on_cluster.is_some()
                {
                    return Err(Error::Unsupported(
                        "OPTIMIZE takes a table, PARTITION p and ZORDER BY (...)".to_string(),
                    ));
                }
                Box::pin(optimize::optimize(
                    self,
                    name,
                    partition.as_ref(),
                    zorder.as_deref(),
                    false,
                ))
                .await?
            }
            SqlStatement::CreateIndex(create) => Box::pin(indexes::create(self, create)).await?,
            SqlStatement::Drop {
                object_type: ObjectType::Index,
                if_exists,
                names,
                table,
                ..
            } => Box::pin(indexes::drop(self, names, table.as_ref(), *if_exists)).await?,
            SqlStatement::Drop {
                object_type: ObjectType::Stage,
                if_exists,
                names,
                ..
            } => stages::drop(self, names, *if_exists).await?,
            SqlStatement::Drop {
                object_type,
                if_exists,
                names,
                cascade,
                ..
            } => self.drop(*object_type, names, *if_exists, *cascade).await?,
            SqlStatement::Use(u) => self.use_(u)?,
            SqlStatement::ShowDatabases { .. } => self.show_databases(),
            SqlStatement::ShowSchemas { show_options, .. } => self.show_schemas(show_options)?,
            SqlStatement::Comment {
                object_type,
                object_name,
                comment,
                if_exists,
            } => {
                metadata::comment_on(
                    self,
                    *object_type,
                    object_name,
                    comment.as_deref(),
                    *if_exists,
                )
                .await?
            }
            SqlStatement::ShowTables { show_options, .. } => self.show_tables(show_options).await?,
            SqlStatement::ExplainTable {
                table_name,
                hive_format,
                ..
            } => self.describe(table_name, hive_format.is_some()).await?,
            SqlStatement::CreateTable(c) => self.create_table(c, None).await?,
            SqlStatement::AlterTable(a) if a.table_type == Some(AlterTableType::External) => {
                Box::pin(external::refresh(self, a)).await?
            }
            SqlStatement::AlterTable(a) => Box::pin(alter::alter_table(self, a)).await?,
            SqlStatement::CreateStage { .. } => Box::pin(stages::create(self, s)).await?,
            SqlStatement::List(command) => {
                Box::pin(stages::list(
                    self,
                    &command.stage,
                    command.pattern.as_deref(),
                ))
                .await?
            }
            SqlStatement::CreateView(v) if v.materialized => {
                crate::mv::create::create(self, v, None).await?
            }
            SqlStatement::CreateView(v) => views::create(self, v).await?,
            SqlStatement::CopyIntoSnowflake {
                kind: CopyIntoSnowflakeKind::Location,
                ..
            } => Box::pin(unload::unload(self, s)).await?,
            SqlStatement::CopyIntoSnowflake { .. } => Box::pin(copy::copy_into(self, s)).await?,
            SqlStatement::Truncate(t) => self.truncate(t).await?,
            SqlStatement::Set(_) => {
                // DataFusion stores `SET strata.x = ...` as text; check it here, where a bad
                // value can be refused, rather than in the next query.
                let before = self.strata_options();
                let result = self.run_datafusion(s.clone(), params).await?;
                let options = self.strata_options();
                let checked = parse_duration(&options.max_staleness).and_then(|_| {
                    let share = options.dml_rewrite_share;
                    if (0.0..=1.0).contains(&share) {
                        Ok(())
                    } else {
                        Err(Error::Plan(format!(
                            "strata.dml_rewrite_share = {share}: it is a share of a file's \
                             rows, from 0 (always rewrite) to 1 (never rewrite)"
                        )))
                    }
                });
                if let Err(e) = checked {
                    let state = self.context().state_ref();
                    state
                        .write()
                        .config_mut()
                        .options_mut()
                        .extensions
                        .insert(before);
                    return Err(e);
                }
                return Ok(result);
            }
            SqlStatement::Insert(insert) if insert.partitioned.is_some() => {
                dml::insert_partition(self, insert).await?
            }
            SqlStatement::Update(update) if update.from.is_some() => {
                let merge = dml::update_from_as_merge(update)?;
                let (merged, _) = self.run_datafusion(merge, params).await?;
                dml::updated_rows(&merged)
            }
            other => return self.run_datafusion(other.clone(), params).await,
        };
        Ok((result, ScanFigures::default()))
    }

    /// Plans and runs a statement with DataFusion.
    async fn run_datafusion(
        &mut self,
        statement: SqlStatement,
        params: Option<&ParamValues>,
    ) -> Result<(StatementResult, ScanFigures)> {
        let explained = match &statement {
            SqlStatement::Explain {
                statement, analyze, ..
            } if !analyze => Some(statement.as_ref().clone()),
            SqlStatement::Explain { statement, .. } => {
                if let Some(analyzed) = self.analyze_on_cluster(statement, params).await? {
                    return Ok(analyzed);
                }
                None
            }
            _ => None,
        };
        let plan = self.plan(statement, params).await?;
        if let Some(result) = dml::run(self, &plan).await? {
            return Ok((result, ScanFigures::default()));
        }
        let ctx = self.context();
        let df = ctx.execute_logical_plan(plan).await?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let physical: Arc<dyn ExecutionPlan> = df.create_physical_plan().await?;
        self.progress().watch(&physical);
        let placement = match self.warehouse().options().cluster.clone() {
            Some(url) => {
                let options = self.strata_options();
                let placement =
                    crate::cluster::place(&physical, &options, Some(ctx.task_ctx())).await?;
                Some((url, placement))
            }
            None => None,
        };
        let mut figures = scan_figures(&physical);
        let mut batches = match placement {
            Some((url, Placement::Cluster { plan, .. })) => {
                figures = scan_figures(&plan);
                let (rows, job) = self.run_on_cluster(&url, plan).await?;
                self.set_cluster_job(job);
                futures::TryStreamExt::try_collect(rows).await?
            }
            _ => collect(Arc::clone(&physical), ctx.task_ctx()).await?,
        };
        if let Some(explained) = explained
            && self.warehouse().options().cluster.is_some()
        {
            batches.extend(self.explain_placement(explained, params).await?);
        }
        let schema = batches.first().map(|b| b.schema()).unwrap_or(schema);
        let (schema, batches) = match crate::result::visible_schema(&schema) {
            Some(visible) => {
                let batches = batches
                    .into_iter()
                    .map(|b| crate::result::relabel(b, &visible))
                    .collect::<std::result::Result<_, _>>()?;
                (visible, batches)
            }
            None => (schema, batches),
        };
        Ok((StatementResult { schema, batches }, figures))
    }
}

impl Session {
    /// Runs `plan` (a [`Placement::Cluster`] plan) as a job of the cluster at `url`, with this
    /// session's settings and id, within `strata.cluster_job_timeout`.
    async fn run_on_cluster(
        &self,
        url: &str,
        plan: Arc<dyn ExecutionPlan>,
    ) -> Result<(crate::cluster::JobRows, crate::cluster::JobFigures)> {
        let config = self.context().copied_config();
        let timeout = parse_duration(&self.strata_options().cluster_job_timeout)?;
        crate::cluster::run(url, plan, &config, self.id(), timeout).await
    }

    /// `EXPLAIN ANALYZE` of a statement that runs on the cluster: runs it there and answers
    /// where it ran, the job's times and each stage's tasks and operator metrics (summed over
    /// its tasks). `None` when there is no cluster or the statement runs here.
    async fn analyze_on_cluster(
        &mut self,
        statement: &SqlStatement,
        params: Option<&ParamValues>,
    ) -> Result<Option<(StatementResult, ScanFigures)>> {
        let Some(url) = self.warehouse().options().cluster.clone() else {
            return Ok(None);
        };
        // Writes run here (and UPDATE, DELETE and MERGE have no DataFusion plan of their own):
        // the usual EXPLAIN ANALYZE answers them.
        let plan = match self.plan(statement.clone(), params).await {
            Ok(plan) if !matches!(plan, datafusion::logical_expr::LogicalPlan::Dml(_)) => plan,
            _ => return Ok(None),
        };
        let physical = self.physical_plan(plan).await?;
        let options = self.strata_options();
        let placement =
            crate::cluster::place(&physical, &options, Some(self.context().task_ctx())).await?;
        let Placement::Cluster { plan, .. } = &placement else {
            return Ok(None);
        };
        let (batches, job) = self.run_on_cluster(&url, Arc::clone(plan)).await?;
        let rows = futures::TryStreamExt::try_fold(batches, 0usize, |n, batch| async move {
            Ok(n.saturating_add(batch.num_rows()))
        })
        .await?;
        let mut lines = placement.describe();
        lines.extend([(
            "job".to_string(),
            format!(
                "{}: queued {} ms, ran {} ms, {} stages, {} tasks, {} bytes shuffled, {rows} rows",
                job.job_id, job.queued_ms, job.running_ms, job.stages, job.tasks, job.shuffle_bytes
            ),
        )]);
        lines.extend(job.profile.iter().cloned());
        self.set_cluster_job(job);
        let batch = plan_rows(lines)?;
        let result = StatementResult {
            schema: batch.schema(),
            batches: vec![batch],
        };
        Ok(Some((result, scan_figures(plan))))
    }

    /// The rows `EXPLAIN` adds with a cluster: where the statement would run and why, and the
    /// stages Ballista would run it in.
    async fn explain_placement(
        &mut self,
        statement: SqlStatement,
        params: Option<&ParamValues>,
    ) -> Result<Vec<arrow::array::RecordBatch>> {
        let plan = self.plan(statement, params).await?;
        let physical = self.physical_plan(plan).await?;
        let placement = crate::cluster::place(&physical, &self.strata_options(), None).await?;
        let mut rows = placement.describe();
        if let Placement::Cluster { plan, .. } = &placement {
            rows.extend(crate::cluster::stages(
                plan,
                &self.context().copied_config(),
            )?);
        }
        Ok(vec![plan_rows(rows)?])
    }

    /// The physical plan of `plan`, as this session's context makes it.
    async fn physical_plan(
        &self,
        plan: datafusion::logical_expr::LogicalPlan,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let frame = self.context().execute_logical_plan(plan).await?;
        Ok(frame.create_physical_plan().await?)
    }
}

/// `(plan_type, plan)` rows, as DataFusion's `EXPLAIN` answers.
fn plan_rows(rows: Vec<(String, String)>) -> Result<arrow::array::RecordBatch> {
    use arrow::array::StringArray;
    use arrow::datatypes::{DataType, Field, Schema};
    let schema = Arc::new(Schema::new(vec![
        Field::new("plan_type", DataType::Utf8, false),
        Field::new("plan", DataType::Utf8, false),
    ]));
    let (kinds, plans): (Vec<String>, Vec<String>) = rows.into_iter().unzip();
    Ok(arrow::array::RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(kinds)),
            Arc::new(StringArray::from(plans)),
        ],
    )?)
}

/// How long to wait before retry `n` (from 1): exponential from 10 ms up to 1 s, with
/// jitter so that writers that collided do not collide again in step.
fn retry_backoff(n: u32) -> std::time::Duration {
    let ceiling = 10u64.saturating_mul(1 << n.min(7)).min(1_000);
    let jitter = (uuid::Uuid::new_v4().as_u128() % u128::from(ceiling)) as u64;
    std::time::Duration::from_millis(ceiling / 2 + jitter / 2)
}

/// The error a panic in a statement's code becomes.
pub(crate) fn panicked(payload: &(dyn std::any::Any + Send)) -> Error {
    Error::Storage(strata_storage::Error::Panicked {
        message: strata_storage::panic_message(payload),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::DataType;
    use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};

    use crate::{ErrorKind, Warehouse};

    /// A panic inside a statement's execution (here a function that panics, run by DataFusion
    /// on its own tasks) fails that statement with an internal error; the session goes on.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_fails_only_its_statement() {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = Warehouse::open(dir.path().to_str().unwrap()).await.unwrap();
        let mut session = warehouse.session();
        let boom = create_udf(
            "boom",
            vec![DataType::Int64],
            DataType::Int64,
            Volatility::Volatile,
            Arc::new(|_: &[ColumnarValue]| panic!("boom was called")),
        );
        session.context().register_udf(boom);
        session
            .sql("CREATE TABLE t (x BIGINT); INSERT INTO t VALUES (1), (2)")
            .await
            .unwrap();
        for sql in [
            "SELECT boom(x) FROM t",
            "INSERT INTO t SELECT boom(x) FROM t",
        ] {
            let err = session.sql(sql).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Internal, "{err}");
            assert!(err.to_string().contains("boom was called"), "{err}");
        }
        let rows = session.sql("SELECT count(*) FROM t").await.unwrap();
        assert_eq!(rows[0].row_count(), 1);
        let log = session
            .sql("SELECT count(*) AS n FROM system.query_log WHERE status = 'FAILED'")
            .await
            .unwrap();
        let text = arrow::util::pretty::pretty_format_batches(&log[0].batches)
            .unwrap()
            .to_string();
        assert!(text.contains("| 2 |"), "{text}");
    }

    /// Repeated output names keep the names the query wrote, in collected and streamed
    /// results alike.
    #[tokio::test]
    async fn repeated_output_names_are_shown_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let warehouse = Warehouse::open(dir.path().to_str().unwrap()).await.unwrap();
        let mut session = warehouse.session();
        session
            .sql("CREATE TABLE t1 (a INT, b INT); INSERT INTO t1 VALUES (1, 2)")
            .await
            .unwrap();
        let sql = "SELECT a AS x, b AS x, b AS a, a, 1, 1 FROM t1";
        let names = |schema: &arrow::datatypes::SchemaRef| -> Vec<String> {
            schema.fields().iter().map(|f| f.name().clone()).collect()
        };
        let expected = ["x", "x", "a", "a", "1", "1"];
        let collected = session.sql(sql).await.unwrap();
        assert_eq!(names(&collected[0].schema), expected);
        assert_eq!(names(&collected[0].batches[0].schema()), expected);
        let parsed = crate::parser::parse(sql).unwrap();
        assert_eq!(
            names(&session.query_schema(&parsed[0], None).await.unwrap()),
            expected
        );
        let mut stream = session.execute_stream(&parsed[0], None).await.unwrap();
        assert_eq!(names(&stream.schema()), expected);
        use futures::StreamExt;
        let batch = stream.next().await.unwrap().unwrap();
        assert_eq!(names(&batch.schema()), expected);
    }
}
