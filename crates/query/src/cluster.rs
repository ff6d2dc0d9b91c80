//! Queries on a cluster: Apache DataFusion Ballista runs the plans Strata makes.
//!
//! ```text
//!  coordinator (strata -c, strata serve)        scheduler              executors
//!  plan here: catalog, pruning, MV rewrite  ──► stages at shuffles ──► tasks read the files
//!  placement: enough files after pruning?        (Ballista)            from the shared store
//!  results ◄──────────────────────────────────── final stage's partitions, over Flight
//! ```
//!
//! A warehouse opened with a cluster (`WarehouseOptions::cluster`) still plans every query in
//! this process. [`place`] then decides where it runs: queries whose scans read fewer than
//! `strata.cluster_min_files` data files after pruning, and those that write or read what only
//! this process holds (system tables, the row-marking scans of DML), run here; the rest go to
//! the scheduler as a physical plan whose table scans are [`RemoteScanExec`]s
//! ([`crate::table::remote`]). Commits never leave the coordinator: a cluster only reads.
//!
//! [`run`] submits the plan, waits for the job, reads the final stage's partitions from the
//! executors and asks the scheduler for the job's stages, tasks and shuffled bytes, which
//! `system.query_log` records. [`processes`] starts the scheduler and executor processes.
//!
//! [`RemoteScanExec`]: crate::table::remote

pub(crate) mod join_filters;
pub mod processes;

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use ballista_core::JobId;
use ballista_core::client::BallistaClient;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use ballista_core::serde::protobuf::{
    CancelJobParams, ExecuteQueryParams, GetJobMetricsParams, GetJobStatusParams, KeyValuePair,
    OperatorMetricsSet, PartitionLocation, execute_query_params, execute_query_result, job_status,
};
use ballista_core::serde::scheduler::PartitionId;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::sink::DataSinkExec;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::metrics::{MetricValue, MetricsSet};
use datafusion::physical_plan::{ExecutionPlan, displayable};
use datafusion::prelude::SessionConfig;
use datafusion_proto::physical_plan::AsExecutionPlan;
use datafusion_proto::protobuf::PhysicalPlanNode;
use futures::{Stream, StreamExt, TryStreamExt};
use tonic::transport::Channel;

use crate::config::StrataOptions;
use crate::error::{Error, Result};
use crate::table::{StrataCodec, scan_figures};

/// The largest gRPC message exchanged with the scheduler and executors (plans of tables with
/// many files, result batches).
const MAX_MESSAGE: usize = 256 * 1024 * 1024;

/// Where a query runs, and why (what `EXPLAIN` says).
#[derive(Debug)]
pub(crate) enum Placement {
    /// In this process.
    Here { reason: String },
    /// On the cluster, as this plan (its scans made remote).
    Cluster {
        reason: String,
        plan: Arc<dyn ExecutionPlan>,
        /// The join filters evaluated here (or to be, for `EXPLAIN`), one line each.
        join_filters: Vec<String>,
    },
}

impl Placement {
    /// The rows `EXPLAIN` shows of it: where it runs and why, and the join filters evaluated
    /// here.
    pub(crate) fn describe(&self) -> Vec<(String, String)> {
        match self {
            Placement::Here { reason } => {
                vec![("placement".to_string(), format!("local: {reason}"))]
            }
            Placement::Cluster {
                reason,
                join_filters,
                ..
            } => std::iter::once(("placement".to_string(), format!("cluster: {reason}")))
                .chain(
                    join_filters
                        .iter()
                        .map(|f| ("join filter".to_string(), f.clone())),
                )
                .collect(),
        }
    }
}

/// Where `plan` runs with a cluster, by the settings `options` (`strata.cluster_min_files`,
/// `strata.cluster_task_bytes`, `strata.cluster_join_filter_rows`). With `context`, the join
/// filters worth evaluating here are evaluated ([`join_filters`]) and prune the job's files;
/// without it (`EXPLAIN`) they are only named.
pub(crate) async fn place(
    plan: &Arc<dyn ExecutionPlan>,
    options: &StrataOptions,
    context: Option<Arc<TaskContext>>,
) -> Result<Placement> {
    let min_files = options.cluster_min_files;
    let (mut writes, mut tables, mut subqueries) = (false, false, false);
    let _ = TreeNode::apply(plan, |node| {
        writes |= node.downcast_ref::<DataSinkExec>().is_some();
        tables |= node.name() == "StrataScanExec";
        subqueries |= node.name() == "ScalarSubqueryExec";
        Ok(TreeNodeRecursion::Continue)
    });
    if subqueries {
        // DataFusion evaluates an uncorrelated scalar subquery beside the plan that uses its
        // value; Ballista 55 cannot send the two to executors apart.
        return Ok(Placement::Here {
            reason: "the plan evaluates a scalar subquery, which Ballista 55 cannot run in \
                     stages"
                .to_string(),
        });
    }
    if writes {
        return Ok(Placement::Here {
            reason: "the statement writes, and commits run on the coordinator".to_string(),
        });
    }
    if !tables {
        return Ok(Placement::Here {
            reason: "the plan reads no table".to_string(),
        });
    }
    let files = scan_figures(plan).files_scanned;
    if files < min_files {
        return Ok(Placement::Here {
            reason: format!(
                "{files} data files after pruning, fewer than strata.cluster_min_files = {min_files}"
            ),
        });
    }
    let unfiltered = match crate::table::remote::for_cluster(
        Arc::clone(plan),
        options.cluster_task_bytes,
        &HashSet::new(),
    ) {
        Ok(remote) => remote,
        Err(reason) => return Ok(Placement::Here { reason }),
    };
    let max_rows = options.cluster_join_filter_rows;
    let joins = join_filters::find(plan, max_rows);
    let mut evaluated = HashSet::new();
    let mut described = Vec::with_capacity(joins.len());
    for join in &joins {
        match &context {
            Some(context) => {
                // A filter is only an optimisation: one whose build side fails or outgrows
                // the limit is left out, and the job answers (or fails) on its own.
                if let Ok(Some(keys)) =
                    join_filters::evaluate(join, Arc::clone(context), max_rows).await
                {
                    described.push(keys);
                    evaluated.extend(join.id());
                }
            }
            None => described.push(join.describe()),
        }
    }
    // Once a build side ran here the plan goes to the cluster whatever is left of it: this
    // process cannot run the same plan again (its repartitions and joins hold their state).
    // The scans take the filters as they are made remote, so a filled one means a new plan.
    let remote = if evaluated.is_empty() {
        unfiltered
    } else {
        crate::table::remote::for_cluster(Arc::clone(plan), options.cluster_task_bytes, &evaluated)
            .map_err(Error::Plan)?
    };
    let reason = format!(
        "{files} data files after pruning, at least strata.cluster_min_files = {min_files}"
    );
    Ok(Placement::Cluster {
        reason,
        plan: remote,
        join_filters: described,
    })
}

/// The stages Ballista's planner makes of `plan` (a [`Placement::Cluster`] plan), one
/// `(name, indented plan)` per stage, for `EXPLAIN`.
pub(crate) fn stages(
    plan: &Arc<dyn ExecutionPlan>,
    config: &SessionConfig,
) -> Result<Vec<(String, String)>> {
    use ballista_scheduler::planner::{DefaultDistributedPlanner, DistributedPlanner};
    let mut planner = DefaultDistributedPlanner::new();
    let job = JobId::from("explain".to_string());
    let config = job_config(config);
    let stages = planner
        .plan_query_stages(&job, Arc::clone(plan), config.options())
        .map_err(|e| Error::Plan(format!("splitting the plan into stages: {e}")))?;
    Ok(stages
        .into_iter()
        .map(|stage| {
            let name = format!("stage {}", stage.stage_id());
            let plan: Arc<dyn ExecutionPlan> = stage;
            (name, displayable(plan.as_ref()).indent(false).to_string())
        })
        .collect())
}

/// The settings a job runs with: the session's, except that the scheduler must not regroup a
/// scan's files (its planner repartitions file scans to `target_partitions`, the
/// coordinator's core count): each group is one task, packed by `strata.cluster_task_bytes`.
fn job_config(config: &SessionConfig) -> SessionConfig {
    let mut config = config.clone();
    config.options_mut().optimizer.repartition_file_scans = false;
    config
}

/// What a query on the cluster did, for `system.query_log`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFigures {
    /// Ballista's job id.
    pub job_id: String,
    /// Stages the scheduler ran.
    pub stages: u64,
    /// Tasks over all stages (one per partition of each stage).
    pub tasks: u64,
    /// Bytes the stages passed each other: what every stage but the last wrote to its
    /// shuffle (Arrow's in-memory size of the rows).
    pub shuffle_bytes: u64,
    /// Milliseconds the job waited for the scheduler.
    pub queued_ms: u64,
    /// Milliseconds it then ran on the executors.
    pub running_ms: u64,
    /// Each stage as `EXPLAIN ANALYZE` shows it: its name, then its tasks, compute time and
    /// operators with their metrics summed over the tasks.
    pub profile: Vec<(String, String)>,
}

/// The rows of a finished job, read partition by partition from the executors that hold them
/// as the stream is polled: a large result never sits whole in the coordinator.
pub(crate) type JobRows = Pin<Box<dyn Stream<Item = DfResult<RecordBatch>> + Send>>;

/// Runs `plan` (a [`Placement::Cluster`] plan) on the scheduler at `url` (`df://host:port`)
/// with the settings of `config`; returns its rows and what the job did. A job that runs
/// past `timeout` is cancelled and fails the statement; so does dropping the future.
pub(crate) async fn run(
    url: &str,
    plan: Arc<dyn ExecutionPlan>,
    config: &SessionConfig,
    session_id: &str,
    timeout: Duration,
) -> Result<(JobRows, JobFigures)> {
    let mut scheduler = connect(url).await?;
    let codec = StrataCodec::default();
    let message = PhysicalPlanNode::try_from_physical_plan(Arc::clone(&plan), &codec)
        .map_err(|e| Error::Plan(format!("encoding the plan for the cluster: {e}")))?;
    let mut encoded = Vec::new();
    prost::Message::encode(&message, &mut encoded)
        .map_err(|e| Error::Plan(format!("encoding the plan for the cluster: {e}")))?;
    let settings = job_config(config)
        .options()
        .entries()
        .into_iter()
        .map(|entry| KeyValuePair {
            key: entry.key,
            value: entry.value,
        })
        .collect();
    let mut request = tonic::Request::new(ExecuteQueryParams {
        session_id: session_id.to_string(),
        settings,
        operation_id: uuid::Uuid::new_v4().to_string(),
        query: Some(execute_query_params::Query::PhysicalPlan(encoded)),
    });
    ballista_core::version::insert_version_header(request.metadata_mut());
    let submitted = scheduler
        .execute_query(request)
        .await
        .map_err(|e| cluster_error(url, &e))?
        .into_inner();
    let job_id = match submitted.result {
        Some(execute_query_result::Result::Success(ok)) => ok.job_id,
        Some(execute_query_result::Result::Failure(failure)) => {
            return Err(Error::Plan(format!(
                "the cluster at {url} refused the query: {failure:?}"
            )));
        }
        None => {
            return Err(Error::Plan(format!("the cluster at {url} answered no job")));
        }
    };
    // From here the job runs: cancel it if the statement ends early (an error, a timeout, a
    // client gone).
    let mut guard = CancelOnDrop {
        scheduler: Some(scheduler.clone()),
        job_id: job_id.clone(),
    };
    let (locations, queued_ms, running_ms) =
        tokio::time::timeout(timeout, wait(&mut scheduler, &job_id))
            .await
            .map_err(|_| {
                Error::Plan(format!(
                    "cluster job {job_id} ran past strata.cluster_job_timeout ({timeout:?}); it \
                 was cancelled"
                ))
            })??;
    guard.scheduler = None;
    let figures = JobFigures {
        queued_ms,
        running_ms,
        ..figures(&mut scheduler, &job_id).await
    };
    let rows = futures::stream::iter(locations)
        .then(fetch)
        .map_err(|e| DataFusionError::External(Box::new(e)))
        .try_flatten();
    Ok((Box::pin(rows), figures))
}

/// A client of the scheduler at `url` (`df://host:port`, or `http://`).
async fn connect(url: &str) -> Result<SchedulerGrpcClient<Channel>> {
    let address = match url.split_once("://") {
        Some(("df" | "http", rest)) => format!("http://{rest}"),
        Some((scheme, _)) => {
            return Err(Error::Plan(format!(
                "cluster URL {url}: the scheme is df:// (or http://), not {scheme}://"
            )));
        }
        None => format!("http://{url}"),
    };
    let channel = Channel::from_shared(address)
        .map_err(|e| Error::Plan(format!("cluster URL {url}: {e}")))?
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .map_err(|e| Error::Plan(format!("cannot reach the cluster scheduler at {url}: {e}")))?;
    Ok(SchedulerGrpcClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE))
}

fn cluster_error(url: &str, status: &tonic::Status) -> Error {
    Error::Plan(format!(
        "the cluster scheduler at {url} failed: {}",
        status.message()
    ))
}

/// Waits for `job_id` to end; returns where its result partitions are, and the milliseconds
/// it was queued and ran.
async fn wait(
    scheduler: &mut SchedulerGrpcClient<Channel>,
    job_id: &str,
) -> Result<(Vec<PartitionLocation>, u64, u64)> {
    let mut pause = Duration::from_millis(5);
    loop {
        let status = scheduler
            .get_job_status(GetJobStatusParams {
                job_id: job_id.to_string(),
            })
            .await
            .map_err(|e| Error::Plan(format!("cluster job {job_id}: {}", e.message())))?
            .into_inner()
            .status
            .and_then(|s| s.status);
        match status {
            Some(job_status::Status::Successful(done)) => {
                let queued = done.started_at.saturating_sub(done.queued_at);
                let running = done.ended_at.saturating_sub(done.started_at);
                return Ok((done.partition_location, queued, running));
            }
            Some(job_status::Status::Failed(failed)) => {
                return Err(Error::Plan(format!(
                    "cluster job {job_id} failed: {}",
                    failed.error
                )));
            }
            _ => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(50));
            }
        }
    }
}

/// The rows of one result partition, streamed from the executor that holds it.
async fn fetch(location: PartitionLocation) -> Result<SendableRecordBatchStream> {
    tracing::debug!(?location, "fetching a result partition");
    let layout = location.layout();
    let (Some(executor), Some(partition)) = (location.executor_meta, location.partition_id) else {
        return Err(Error::Plan(
            "the cluster named a result partition without its executor".to_string(),
        ));
    };
    let unreachable = |e: &dyn std::fmt::Display| {
        Error::Plan(format!(
            "reading a result partition from executor {} at {}:{}: {e}",
            executor.id, executor.host, executor.port
        ))
    };
    let port = u16::try_from(executor.port).map_err(|e| unreachable(&e))?;
    let mut client =
        BallistaClient::try_new(&executor.host, port, MAX_MESSAGE, false, None, 3, 100, 0, 0)
            .await
            .map_err(|e| unreachable(&e))?;
    let id = PartitionId {
        job_id: JobId::from(partition.job_id.clone()),
        stage_id: partition.stage_id as usize,
        partition_id: partition.partition_id as usize,
    };
    let stream = client
        .fetch_partition(&executor.id, &id, location.file_id, layout, true)
        .await
        .map_err(|e| unreachable(&e))?;
    let schema = stream.schema();
    let context = format!(
        "reading result partition {} of job {} from executor {} at {}:{}",
        partition.partition_id, partition.job_id, executor.id, executor.host, executor.port
    );
    let stream = stream.map_err(move |e| e.context(context.clone()));
    Ok(Box::pin(
        datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, stream),
    ))
}

/// The stages, tasks and shuffled bytes of a finished job; zeros where the scheduler no longer
/// knows it.
async fn figures(scheduler: &mut SchedulerGrpcClient<Channel>, job_id: &str) -> JobFigures {
    let mut figures = JobFigures {
        job_id: job_id.to_string(),
        ..JobFigures::default()
    };
    let Ok(metrics) = scheduler
        .get_job_metrics(GetJobMetricsParams {
            job_id: job_id.to_string(),
        })
        .await
    else {
        return figures;
    };
    let stages = metrics.into_inner().stages;
    let last = stages.iter().map(|s| s.stage_id).max();
    for stage in stages {
        figures.stages = figures.stages.saturating_add(1);
        figures.tasks = figures.tasks.saturating_add(u64::from(stage.partitions));
        let mut compute = Duration::ZERO;
        let (mut written, mut fetched, mut stored) = (0u64, 0u64, 0u64);
        let mut operators = String::new();
        for operator in stage.operators {
            let set = OperatorMetricsSet {
                metrics: operator.metrics,
            };
            let set = match TryInto::<MetricsSet>::try_into(set) {
                Ok(set) => set.aggregate_by_name(),
                Err(_) => MetricsSet::new(),
            };
            let bytes = |name: &str| {
                set.sum_by_name(name)
                    .map_or(0, |v| u64::try_from(v.as_usize()).unwrap_or(u64::MAX))
            };
            if operator.operator_type.contains("ShuffleReader") {
                fetched = fetched.saturating_add(bytes("decoded_bytes"));
            }
            if operator.depth == 1 {
                // What the stage's writer wrote: the output of the operator below it.
                let output = set
                    .sum(|m| matches!(m.value(), MetricValue::OutputBytes(_)))
                    .map_or(0, |v| v.as_usize());
                written = written.saturating_add(u64::try_from(output).unwrap_or(u64::MAX));
            }
            stored = stored.saturating_add(bytes("bytes_scanned"));
            if let Some(nanos) = set.elapsed_compute() {
                let nanos = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
                compute = compute.saturating_add(nanos);
            }
            let depth = usize::try_from(operator.depth).unwrap_or(0).min(64);
            operators.push_str(&format!(
                "{:indent$}{}, metrics=[{}]\n",
                "",
                operator.operator_desc.trim_end(),
                set.sorted_for_display().timestamps_removed(),
                indent = depth * 2
            ));
        }
        if Some(stage.stage_id) != last {
            // The last stage's output is the result, not a shuffle.
            figures.shuffle_bytes = figures.shuffle_bytes.saturating_add(written);
        }
        figures.profile.push((
            format!("stage {}", stage.stage_id),
            format!(
                "{} tasks, compute {compute:.3?}, shuffle write {written} bytes, shuffle fetch \
                 {fetched} bytes, store read {stored} bytes\n{operators}",
                stage.partitions
            ),
        ));
    }
    figures
}

/// Cancels a job whose results nobody will read.
struct CancelOnDrop {
    scheduler: Option<SchedulerGrpcClient<Channel>>,
    job_id: String,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(mut scheduler) = self.scheduler.take() else {
            return;
        };
        let job_id = std::mem::take(&mut self.job_id);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = scheduler.cancel_job(CancelJobParams { job_id }).await;
            });
        }
    }
}
