//! The processes of a cluster: `strata cluster scheduler` and `strata cluster executor`.
//!
//! Both are Ballista's, set up with what Strata's plans need: [`StrataCodec`] for table scans,
//! Strata's functions (a plan names its functions; the receiving side resolves the names) and
//! Strata's session settings (`strata.*` travel with every job). Neither opens a warehouse:
//! executors open the store of whatever warehouse a scan names, with their own credentials.
//!
//! Both bind loopback unless told otherwise. Ballista's gRPC and Flight ports carry no
//! authentication: put a cluster on a private network (or behind a TLS-terminating proxy) and
//! never on a public address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ballista_core::registry::BallistaFunctionRegistry;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::{create_scheduler, start_grpc_service_with_listener};
use datafusion::execution::SessionState;
use datafusion::prelude::SessionConfig;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};

use crate::config::StrataOptions;
use crate::error::{Error, Result};
use crate::table::{StoreSettings, StrataCodec};

/// How often executors tell the scheduler they are alive.
const HEARTBEAT: Duration = Duration::from_secs(3);
/// How long the scheduler waits for a heartbeat before it takes an executor for dead and runs
/// its tasks elsewhere.
const EXECUTOR_TIMEOUT: Duration = Duration::from_secs(12);
/// How long a finished job's results stay on the executors for the coordinator to read.
const RESULTS_KEPT: Duration = Duration::from_secs(3600);

/// The session settings of every job on the cluster: Ballista's and Strata's.
fn session_config() -> SessionConfig {
    use ballista_core::extension::SessionConfigExt;
    SessionConfig::new_with_ballista()
        .with_option_extension(StrataOptions::default())
        .with_ballista_physical_extension_codec(Arc::new(StrataCodec::default()))
}

/// A session state with Strata's functions, for decoding plans that call them.
fn session_state(config: SessionConfig) -> datafusion::error::Result<SessionState> {
    Ok(crate::session::function_state(config))
}

/// Runs a scheduler on `bind` until the process ends; `ready` hears the address it listens on.
pub async fn run_scheduler(bind: SocketAddr, ready: impl FnOnce(SocketAddr)) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|e| Error::Plan(format!("scheduler: cannot listen on {bind}: {e}")))?;
    let address = listener
        .local_addr()
        .map_err(|e| Error::Plan(format!("scheduler: {e}")))?;
    let config = SchedulerConfig {
        bind_host: address.ip().to_string(),
        bind_port: address.port(),
        external_host: address.ip().to_string(),
        executor_timeout_seconds: EXECUTOR_TIMEOUT.as_secs(),
        expire_dead_executor_interval_seconds: 2,
        no_executors_grace_period_seconds: EXECUTOR_TIMEOUT.as_secs(),
        // A finished job's result partitions stay on the executors this long: the coordinator
        // streams them to its client as the client reads, which may be slow.
        finished_job_data_clean_up_interval_seconds: RESULTS_KEPT.as_secs(),
        override_config_producer: Some(Arc::new(session_config)),
        override_session_builder: Some(Arc::new(session_state)),
        override_physical_codec: Some(Arc::new(StrataCodec::default())),
        ..SchedulerConfig::default()
    };
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(|e| Error::Plan(format!("scheduler: {e}")))?;
    let scheduler =
        create_scheduler::<LogicalPlanNode, PhysicalPlanNode>(cluster, Arc::new(config))
            .await
            .map_err(|e| Error::Plan(format!("scheduler: {e}")))?;
    ready(address);
    start_grpc_service_with_listener(listener, scheduler)
        .await
        .map_err(|e| Error::Plan(format!("scheduler: {e}")))
}

/// What `strata cluster executor` is told.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The scheduler's address.
    pub scheduler: SocketAddr,
    /// Where the executor listens (port 0: any free port, for its Flight and gRPC services).
    pub bind: SocketAddr,
    /// Tasks run at once; 0 for one per core.
    pub concurrent_tasks: usize,
    /// Where shuffle files go; a temporary directory when `None`.
    pub work_dir: Option<std::path::PathBuf>,
    /// A named secret that reaches the warehouse's store (its keys, endpoint and region over
    /// the `AWS_*` environment): `<secrets_dir>/<name>.json`, in the form `CREATE SECRET`
    /// stores. Plans never carry keys.
    pub secret: Option<String>,
    /// Where named secrets are kept.
    pub secrets_dir: std::path::PathBuf,
}

/// The S3 settings of the executor's named secret, or none.
async fn store_settings(options: &ExecutorOptions) -> Result<Vec<(String, String)>> {
    let Some(name) = &options.secret else {
        return Ok(Vec::new());
    };
    let dir = &options.secrets_dir;
    let folder = object_store::local::LocalFileSystem::new_with_prefix(dir)
        .map_err(|e| Error::Plan(format!("executor: secrets folder {}: {e}", dir.display())))?;
    let secret = strata_storage::Secrets::folder(Arc::new(folder))
        .get(name)
        .await
        .map_err(|e| {
            Error::Plan(format!(
                "executor: secret '{name}' in {}: {e}",
                dir.display()
            ))
        })?;
    Ok(secret.s3_settings())
}

/// Runs an executor until the process ends; `ready` hears the Flight address it serves.
pub async fn run_executor(options: ExecutorOptions, ready: impl FnOnce(SocketAddr)) -> Result<()> {
    let port = |wanted: u16| -> Result<u16> {
        if wanted != 0 {
            return Ok(wanted);
        }
        // Ballista binds its ports itself: pick free ones.
        let probe = std::net::TcpListener::bind((options.bind.ip(), 0))
            .and_then(|l| l.local_addr())
            .map_err(|e| Error::Plan(format!("executor: no free port on {}: {e}", options.bind)))?;
        Ok(probe.port())
    };
    let flight = port(options.bind.port())?;
    let grpc = port(0)?;
    let (work_dir, _temporary) = match &options.work_dir {
        Some(dir) => (dir.clone(), None),
        None => {
            let dir = tempfile_dir()?;
            (dir.clone(), Some(TempDir(dir)))
        }
    };
    std::fs::create_dir_all(&work_dir)
        .map_err(|e| Error::Plan(format!("executor: work dir {}: {e}", work_dir.display())))?;
    let functions =
        BallistaFunctionRegistry::from(&crate::session::function_state(SessionConfig::new()));
    let store = StoreSettings::new(store_settings(&options).await?);
    let codec = Arc::new(StrataCodec::with_store(store));
    let config_codec = Arc::clone(&codec);
    let config_producer = move || {
        use ballista_core::extension::SessionConfigExt;
        SessionConfig::new_with_ballista()
            .with_option_extension(StrataOptions::default())
            .with_ballista_physical_extension_codec(Arc::clone(&config_codec) as _)
    };
    let config = ExecutorProcessConfig {
        bind_host: options.bind.ip().to_string(),
        external_host: Some(options.bind.ip().to_string()),
        port: flight,
        grpc_port: grpc,
        scheduler_host: options.scheduler.ip().to_string(),
        scheduler_port: options.scheduler.port(),
        scheduler_connect_timeout_seconds: 30,
        vcores: options.concurrent_tasks,
        work_dir: Some(work_dir.display().to_string()),
        executor_heartbeat_interval_seconds: HEARTBEAT.as_secs(),
        print_thread_info: false,
        override_function_registry: Some(Arc::new(functions)),
        override_config_producer: Some(Arc::new(config_producer)),
        override_physical_codec: Some(codec),
        ..ExecutorProcessConfig::default()
    };
    ready(SocketAddr::new(options.bind.ip(), flight));
    start_executor_process(Arc::new(config))
        .await
        .map_err(|e| Error::Plan(format!("executor: {e}")))
}

/// A fresh directory under the OS temp directory.
fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("strata-executor-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::Plan(format!("executor: work dir {}: {e}", dir.display())))?;
    Ok(dir)
}

/// Removes a temporary work directory when the executor stops.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
