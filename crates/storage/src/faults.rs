//! Hooks for crash and conflict tests, driven by environment variables and free when unset.
//!
//! - `STRATA_FAILPOINT=<name>` aborts the process at that point, as a kill or a power loss
//!   would stop it (`before_commit`: data files uploaded, commit not written).
//! - `STRATA_COMMIT_BARRIER=<dir>:<n>` makes a process's first commit (table or catalog) and
//!   its first VACUUM wait until `n` processes have reached theirs, or 3 seconds pass. The
//!   conflict matrix uses it so that two statements in two processes really overlap: both have
//!   read their snapshot and uploaded their files before either commits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Aborts the process if `STRATA_FAILPOINT` names this point. One environment lookup.
pub(crate) fn failpoint(name: &str) {
    if std::env::var("STRATA_FAILPOINT").is_ok_and(|v| v == name) {
        eprintln!("failpoint {name}: aborting");
        std::process::abort();
    }
}

/// Waits at the commit barrier, once per process (see the module docs).
pub(crate) async fn commit_barrier() {
    static PASSED: AtomicBool = AtomicBool::new(false);
    let Ok(spec) = std::env::var("STRATA_COMMIT_BARRIER") else {
        return;
    };
    if PASSED.swap(true, Ordering::SeqCst) {
        return;
    }
    let Some((dir, n)) = spec.rsplit_once(':') else {
        return;
    };
    let n: usize = n.parse().unwrap_or(2);
    let dir = std::path::Path::new(dir);
    let _ = std::fs::write(dir.join(std::process::id().to_string()), b"");
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        let arrived = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
        if arrived >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// What [`FaultyStore`] does at its `k`-th call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Fails call `k` alone (a network error, a throttled request); later calls succeed.
    FailCall(usize),
    /// Fails call `k` and every call after it: the process lost power at call `k`, so a
    /// write in flight is lost and nothing after it happens.
    CrashAt(usize),
    /// Makes call `k` and then fails it: a write that landed but whose answer was lost.
    LoseAnswer(usize),
}

/// An object store that injects one fault into the calls made through it, counting every
/// call (reads, writes, lists, deletes) from 0. For fault-injection tests: sweep `k` over all
/// the calls a statement makes, then reopen the inner store and check what survived.
#[derive(Debug)]
pub struct FaultyStore {
    inner: std::sync::Arc<dyn object_store::ObjectStore>,
    calls: std::sync::atomic::AtomicUsize,
    fault: std::sync::Mutex<Option<Fault>>,
}

impl FaultyStore {
    /// `inner` with no fault armed.
    pub fn new(inner: std::sync::Arc<dyn object_store::ObjectStore>) -> Self {
        Self {
            inner,
            calls: std::sync::atomic::AtomicUsize::new(0),
            fault: std::sync::Mutex::new(None),
        }
    }

    /// Arms `fault`, counting calls from the next one as 0.
    pub fn arm(&self, fault: Option<Fault>) {
        self.calls.store(0, Ordering::SeqCst);
        *self.fault.lock().unwrap_or_else(|e| e.into_inner()) = fault;
    }

    /// Calls made since the last [`arm`](Self::arm).
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Counts a call: fails it before it is made if the armed fault says so, and returns
    /// whether its answer is to be lost after it is made.
    fn call(&self) -> object_store::Result<bool> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let fault = *self.fault.lock().unwrap_or_else(|e| e.into_inner());
        let failed = match fault {
            Some(Fault::FailCall(k)) => n == k,
            Some(Fault::CrashAt(k)) => n >= k,
            Some(Fault::LoseAnswer(_)) | None => false,
        };
        if failed {
            return Err(injected(n));
        }
        Ok(fault == Some(Fault::LoseAnswer(n)))
    }

    /// `result`, or a lost answer.
    fn answer<T>(&self, lose: bool, result: object_store::Result<T>) -> object_store::Result<T> {
        if lose {
            return Err(injected(self.calls().saturating_sub(1)));
        }
        result
    }
}

fn injected(n: usize) -> object_store::Error {
    object_store::Error::Generic {
        store: "FaultyStore",
        source: format!("injected fault at call {n}").into(),
    }
}

impl std::fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

#[async_trait::async_trait]
impl object_store::ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &object_store::path::Path,
        payload: object_store::PutPayload,
        opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        let lose = self.call()?;
        let result = self.inner.put_opts(location, payload, opts).await;
        self.answer(lose, result)
    }

    async fn put_multipart_opts(
        &self,
        location: &object_store::path::Path,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        let lose = self.call()?;
        let result = self.inner.put_multipart_opts(location, opts).await;
        self.answer(lose, result)
    }

    async fn get_opts(
        &self,
        location: &object_store::path::Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        let lose = self.call()?;
        let result = self.inner.get_opts(location, options).await;
        self.answer(lose, result)
    }

    async fn get_ranges(
        &self,
        location: &object_store::path::Path,
        ranges: &[std::ops::Range<u64>],
    ) -> object_store::Result<Vec<bytes::Bytes>> {
        let lose = self.call()?;
        let result = self.inner.get_ranges(location, ranges).await;
        self.answer(lose, result)
    }

    fn delete_stream(
        &self,
        locations: futures::stream::BoxStream<
            'static,
            object_store::Result<object_store::path::Path>,
        >,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>> {
        match self.call() {
            // A lost answer of a delete: the deletes happen, and the caller sees them.
            Ok(_) => self.inner.delete_stream(locations),
            Err(e) => Box::pin(futures::stream::once(async move { Err(e) })),
        }
    }

    fn list(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        match self.call() {
            Ok(_) => self.inner.list(prefix),
            Err(e) => Box::pin(futures::stream::once(async move { Err(e) })),
        }
    }

    fn list_with_offset(
        &self,
        prefix: Option<&object_store::path::Path>,
        offset: &object_store::path::Path,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        match self.call() {
            Ok(_) => self.inner.list_with_offset(prefix, offset),
            Err(e) => Box::pin(futures::stream::once(async move { Err(e) })),
        }
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> object_store::Result<object_store::ListResult> {
        let lose = self.call()?;
        let result = self.inner.list_with_delimiter(prefix).await;
        self.answer(lose, result)
    }

    async fn copy_opts(
        &self,
        from: &object_store::path::Path,
        to: &object_store::path::Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        let lose = self.call()?;
        let result = self.inner.copy_opts(from, to, options).await;
        self.answer(lose, result)
    }
}
