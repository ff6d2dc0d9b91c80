//! Exactly-once ingest channels, with group commit.
//!
//! A channel is `(table, channel name)`. A producer appends batches to it, each append ending
//! at an offset token of its choosing (a Kafka offset, a file position). The token is
//! committed in the same table commit as the append's rows ([`strata_storage::ChannelOffset`]),
//! so the table never holds rows whose token it lost, nor a token whose rows it lost. A
//! producer that restarts reads its channel's last token ([`IngestChannels::status`]) and
//! resumes after it; an append whose token is already committed is acknowledged as a
//! duplicate and not written again. Tokens are opaque: a token equal to the channel's last one
//! is a duplicate, and when both are integers, so is one below it.
//!
//! ```text
//!  producer ─► ChannelWriter::append ─► cast to the table's columns ─┐
//!  producer ─► ChannelWriter::append ─► ...                          ├─► the table's committer
//!                                                                    │   (one task per table)
//!        acknowledgment, once durable ◄── one commit per group ◄─────┘
//! ```
//!
//! Appends reaching a table within its `ingest_commit_interval` (200 ms unless the table sets
//! it) are written and committed together: one commit, and one file per partition, however
//! many channels and appends. A group that fails for its rows (a key or check, a data-test
//! gate) is committed again one append at a time, so only the bad append fails; the appends
//! its stream sent after it fail too, so a channel never skips over lost rows. Appends go
//! through the table's write path, as `COPY INTO` does: constraints, partition routing and
//! `test_on_load` gates apply. When a partition has gathered many small files, the
//! committer compacts them (`OPTIMIZE`) between groups.
//!
//! One producer per channel, as in Snowpipe Streaming: reopening a channel
//! ([`IngestChannels::status`]) first lets the appends already queued commit, then refuses
//! any later append of a stream opened before, so a restarted producer never races the
//! leftovers of its killed predecessor; a newer stream's append does the same. Across
//! processes, the log decides: a commit that finds its channel moved by another process's
//! commit conflicts and is evaluated again on the newer snapshot.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::compute::BatchCoalescer;
use arrow::datatypes::SchemaRef;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::sql::sqlparser::ast::{Ident, ObjectName};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use strata_storage::{ChannelAdvance, ChannelOffset, Error as StorageError, Snapshot, Transaction};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::config::parse_duration;
use crate::error::{Error, ErrorKind, Result};
use crate::session::Session;
use crate::statement::maintenance;
use crate::table::write::TableWrite;
use crate::table::{COMMIT_INTERVAL_PROPERTY, MAX_COMMIT_INTERVAL};
use crate::warehouse::Warehouse;

/// The `ingest_commit_interval` of a table that sets none.
const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_millis(200);
/// A group is committed early once it holds this many rows (it is held in memory).
const MAX_GROUP_ROWS: usize = 2_000_000;
/// Appends queued for a table's committer; a producer past it waits (backpressure).
const QUEUE_DEPTH: usize = 256;
/// Memory the appends queued or being committed may hold, over all tables, in KiB: a
/// producer past it waits.
const MEMORY_BUDGET_KIB: u32 = 512 * 1024;
/// Commit races lost in a row before a group gives up (each re-reads the log).
const MAX_CONFLICTS: usize = 8;

/// Every stream that opens a channel gets a bigger number: the newest stream owns it.
static STREAMS: AtomicU64 = AtomicU64::new(1);

/// The ingest channels of one warehouse: the committers of the tables being appended to.
/// One per process (a server makes one); cheap to clone.
#[derive(Clone)]
pub struct IngestChannels {
    warehouse: Warehouse,
    committers: Arc<Mutex<HashMap<String, mpsc::Sender<Queued>>>>,
    /// Per (table, channel): the oldest stream whose appends are still taken. Reopening a
    /// channel, or a newer stream's append, raises it.
    owners: Arc<Mutex<HashMap<(String, String), u64>>>,
    /// KiB of appends queued or being committed ([`MEMORY_BUDGET_KIB`]).
    memory: Arc<Semaphore>,
}

impl std::fmt::Debug for IngestChannels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestChannels").finish_non_exhaustive()
    }
}

/// What a table's committer is sent.
enum Queued {
    /// An append to commit.
    Append(Append),
    /// Answered once everything queued before it is committed or failed.
    Barrier(oneshot::Sender<()>),
}

/// A channel's committed state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelStatus {
    /// `database.schema.table`.
    pub table: String,
    /// The channel's name.
    pub channel: String,
    /// The offset token of the last committed append; `None` for a channel never appended to.
    pub offset_token: Option<String>,
    /// Rows appended through the channel.
    pub rows: u64,
    /// Commits that advanced it.
    pub commits: u64,
}

/// The outcome of one append, once durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The append's offset token.
    pub offset_token: String,
    /// Rows written (0 for a duplicate).
    pub rows: u64,
    /// The token was already committed: nothing was written.
    pub duplicate: bool,
    /// The table version holding the append (or, for a duplicate, the version read).
    pub version: u64,
}

/// One producer's stream of appends to one channel (see [`IngestChannels::open`]).
pub struct ChannelWriter {
    table: String,
    /// The table's name, quoted parts.
    name: ObjectName,
    channel: String,
    owner: String,
    schema: SchemaRef,
    offset_token: Option<String>,
    stream: u64,
    failed: Arc<AtomicBool>,
    channels: IngestChannels,
}

/// An append on its way to the committer.
struct Append {
    /// `database.schema.table`.
    table: String,
    channel: String,
    offset_token: String,
    owner: String,
    batches: Vec<RecordBatch>,
    rows: usize,
    stream: u64,
    /// Set when an append of the same stream failed: later ones must not commit.
    failed: Arc<AtomicBool>,
    /// Taken when answered.
    reply: Option<oneshot::Sender<Result<Appended>>>,
    /// Its share of the memory budget, given back when it is answered.
    _memory: OwnedSemaphorePermit,
}

impl Append {
    /// Answers the producer and, on failure, fails the rest of its stream.
    fn answer(mut self, result: Result<Appended>) {
        self.reply_with(result);
    }

    fn reply_with(&mut self, result: Result<Appended>) {
        if result.is_err() {
            self.failed.store(true, Ordering::SeqCst);
        }
        if let Some(reply) = self.reply.take() {
            // A producer that went away no longer waits for its answer.
            let _ = reply.send(result);
        }
    }
}

impl Drop for Append {
    /// An append dropped unanswered (its committer panicked) failed: the rest of its stream
    /// must not commit past it.
    fn drop(&mut self) {
        if self.reply.is_some() {
            let reason = "the ingest committer stopped before committing this append; reopen \
                          the channel and resume from its offset token"
                .to_string();
            let error = conflict(&self.table, 0, reason);
            self.reply_with(Err(error));
        }
    }
}

impl std::fmt::Debug for ChannelWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelWriter")
            .field("table", &self.table)
            .field("channel", &self.channel)
            .field("offset_token", &self.offset_token)
            .finish_non_exhaustive()
    }
}

impl IngestChannels {
    /// The channels of `warehouse`.
    pub fn new(warehouse: Warehouse) -> Self {
        Self {
            warehouse,
            committers: Arc::new(Mutex::new(HashMap::new())),
            owners: Arc::new(Mutex::new(HashMap::new())),
            memory: Arc::new(Semaphore::new(MEMORY_BUDGET_KIB as usize)),
        }
    }

    /// Reopens `channel` of `table` (`table`, `schema.table` or `database.schema.table`,
    /// unqualified parts in the warehouse's default schema) and returns its committed state:
    /// what a restarted producer resumes from. Appends of streams opened before are no longer
    /// taken, and those already queued are committed (or refused) before the state is read, so
    /// the token returned is final until the caller appends. With `reopen` false, only reads.
    pub async fn status(&self, table: &str, channel: &str, reopen: bool) -> Result<ChannelStatus> {
        check_channel_name(channel)?;
        let session = self.warehouse.session();
        let name = resolve(&session, table)?;
        let (_, _, qualified) = open(&session, &name).await?;
        if reopen {
            let epoch = Self::stream_number();
            self.take_over(&qualified, channel, epoch);
            let (done, flushed) = oneshot::channel();
            self.submit(&qualified, &name, Queued::Barrier(done))
                .await?;
            // A committer that stopped has nothing queued.
            let _ = flushed.await;
        }
        let (_, snapshot, _) = open(&session, &name).await?;
        let state = snapshot.channels.get(channel);
        Ok(ChannelStatus {
            table: qualified,
            channel: channel.to_string(),
            offset_token: state.map(|c| c.offset_token.clone()),
            rows: state.map_or(0, |c| c.rows),
            commits: state.map_or(0, |c| c.commits),
        })
    }

    /// Makes `stream` the oldest stream whose appends `channel` of `table` takes (unless a
    /// newer one is already); false when `stream` is older than that.
    fn take_over(&self, table: &str, channel: &str, stream: u64) -> bool {
        let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        let owner = owners
            .entry((table.to_string(), channel.to_string()))
            .or_insert(0);
        if stream < *owner {
            return false;
        }
        *owner = stream;
        true
    }

    /// A number for a stream about to open a channel: take it as soon as the stream starts
    /// (before reading anything of it), so a reopen that comes later refuses it.
    pub fn stream_number() -> u64 {
        STREAMS.fetch_add(1, Ordering::Relaxed)
    }

    /// Opens `channel` of `table` for a stream of appends by `user`. The writer starts from
    /// the channel's committed token, and takes the channel over from any older stream.
    pub async fn open(&self, user: &str, table: &str, channel: &str) -> Result<ChannelWriter> {
        self.open_stream(user, table, channel, Self::stream_number())
            .await
    }

    /// [`IngestChannels::open`] for a stream numbered by [`IngestChannels::stream_number`].
    pub async fn open_stream(
        &self,
        user: &str,
        table: &str,
        channel: &str,
        stream: u64,
    ) -> Result<ChannelWriter> {
        check_channel_name(channel)?;
        let session = self.warehouse.session();
        let name = resolve(&session, table)?;
        let (_, snapshot, qualified) = open(&session, &name).await?;
        Ok(ChannelWriter {
            table: qualified,
            name,
            channel: channel.to_string(),
            owner: user.to_string(),
            schema: snapshot.metadata.schema(),
            offset_token: snapshot
                .channels
                .get(channel)
                .map(|c| c.offset_token.clone()),
            stream,
            failed: Arc::new(AtomicBool::new(false)),
            channels: self.clone(),
        })
    }

    /// Hands `append` to its table's committer, starting one if none runs.
    async fn submit(&self, table: &str, name: &ObjectName, mut item: Queued) -> Result<()> {
        // A committer that ended between the lookup and the send dropped its queue; the
        // append comes back and goes to a new one.
        for _ in 0..3 {
            let sender = {
                let mut committers = self.committers.lock().unwrap_or_else(|e| e.into_inner());
                committers
                    .entry(table.to_string())
                    .or_insert_with(|| self.start(table, name))
                    .clone()
            };
            match sender.send(item).await {
                Ok(()) => return Ok(()),
                Err(mpsc::error::SendError(back)) => {
                    item = back;
                    let mut committers = self.committers.lock().unwrap_or_else(|e| e.into_inner());
                    if committers
                        .get(table)
                        .is_some_and(|s| s.same_channel(&sender))
                    {
                        committers.remove(table);
                    }
                }
            }
        }
        Err(Error::Plan(format!(
            "ingest into {table}: its committer keeps stopping; try again"
        )))
    }

    /// Starts the committer of `table`.
    fn start(&self, table: &str, name: &ObjectName) -> mpsc::Sender<Queued> {
        let (sender, receiver) = mpsc::channel(QUEUE_DEPTH);
        let committer = Committer {
            channels: self.clone(),
            table: table.to_string(),
            name: name.clone(),
            session: self.warehouse.session(),
            interval: None,
            compacting: Arc::new(AtomicBool::new(false)),
            refresh_wanted: Arc::new(AtomicBool::new(false)),
            refreshing: Arc::new(AtomicBool::new(false)),
        };
        tokio::spawn(committer.run(receiver));
        sender
    }
}

impl ChannelWriter {
    /// `database.schema.table`.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The table's columns: what appends are cast to.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The channel's token when the writer opened it, then the token of its last append.
    pub fn offset_token(&self) -> Option<&str> {
        self.offset_token.as_deref()
    }

    /// Sends the rows of `batches` (columns matched by name and cast to the table's types) as
    /// one append ending at `offset_token`. Returns once the committer has it; the returned
    /// receiver answers once the append is durable, or failed.
    pub async fn append(
        &mut self,
        offset_token: String,
        batches: Vec<RecordBatch>,
    ) -> Result<oneshot::Receiver<Result<Appended>>> {
        if self.failed.load(Ordering::SeqCst) {
            return Err(stream_failed(&self.table, &self.channel));
        }
        let submitted = self.submit(offset_token, batches).await;
        if submitted.is_err() {
            // Nothing after a refused append may commit.
            self.failed.store(true, Ordering::SeqCst);
        }
        submitted
    }

    async fn submit(
        &mut self,
        offset_token: String,
        batches: Vec<RecordBatch>,
    ) -> Result<oneshot::Receiver<Result<Appended>>> {
        let label = format!(
            "{} (channel '{}', offset token '{offset_token}')",
            self.table, self.channel
        );
        let mut first_row = 0usize;
        let mut bytes = 0usize;
        let mut conformed = Vec::with_capacity(batches.len());
        for batch in batches {
            let rows = batch.num_rows();
            if rows > 0 {
                let batch = super::stream::conform_batch(&batch, &self.schema, &label, first_row)?;
                bytes = bytes.saturating_add(batch.get_array_memory_size());
                conformed.push(batch);
            }
            first_row = first_row.saturating_add(rows);
        }
        let kib = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, MEMORY_BUDGET_KIB);
        let memory = Arc::clone(&self.channels.memory)
            .acquire_many_owned(kib)
            .await
            .map_err(|_| Error::Plan("the ingest memory budget is closed".to_string()))?;
        let (reply, answer) = oneshot::channel();
        let append = Append {
            table: self.table.clone(),
            channel: self.channel.clone(),
            offset_token: offset_token.clone(),
            owner: self.owner.clone(),
            batches: conformed,
            rows: first_row,
            stream: self.stream,
            failed: Arc::clone(&self.failed),
            reply: Some(reply),
            _memory: memory,
        };
        self.channels
            .submit(&self.table, &self.name, Queued::Append(append))
            .await?;
        self.offset_token = Some(offset_token);
        Ok(answer)
    }
}

/// The task that commits a table's appends, group by group.
struct Committer {
    channels: IngestChannels,
    /// `database.schema.table`, its key among the committers.
    table: String,
    /// The table's name, quoted parts.
    name: ObjectName,
    session: Session,
    /// The table's `ingest_commit_interval`, as of the last group's snapshot.
    interval: Option<Duration>,
    /// A compaction of the table's small files is running.
    compacting: Arc<AtomicBool>,
    /// A commit landed since the views were last refreshed.
    refresh_wanted: Arc<AtomicBool>,
    /// A refresh of the views runs.
    refreshing: Arc<AtomicBool>,
}

impl Committer {
    /// Commits groups until the queue closes. A committer lives as long as its server: an
    /// idle one is a task waiting on its queue, and never retiring means no append can be
    /// caught between a retiring committer and its successor.
    async fn run(mut self, mut queue: mpsc::Receiver<Queued>) {
        let mut small_files_checked = Instant::now();
        loop {
            let first = match queue.recv().await {
                Some(Queued::Append(append)) => append,
                Some(Queued::Barrier(done)) => {
                    let _ = done.send(());
                    continue;
                }
                None => return,
            };
            let interval = match self.interval {
                Some(interval) => interval,
                // The first group reads it; later ones take it from the snapshot they commit on.
                None => match open(&self.session, &self.name).await {
                    Ok((_, snapshot, _)) => {
                        commit_interval(&snapshot).unwrap_or(DEFAULT_COMMIT_INTERVAL)
                    }
                    Err(_) => DEFAULT_COMMIT_INTERVAL,
                },
            };
            let deadline = tokio::time::Instant::now() + interval;
            let mut rows = first.rows;
            let mut group = vec![first];
            let mut barrier = None;
            while rows < MAX_GROUP_ROWS {
                match tokio::time::timeout_at(deadline, queue.recv()).await {
                    Ok(Some(Queued::Append(append))) => {
                        rows = rows.saturating_add(append.rows);
                        group.push(append);
                    }
                    // Commit what came before the barrier now, then answer it.
                    Ok(Some(Queued::Barrier(done))) => {
                        barrier = Some(done);
                        break;
                    }
                    _ => break,
                }
            }
            let committed = self.commit_group(group).await;
            if let Some(done) = barrier {
                let _ = done.send(());
            }
            if committed > 0 {
                crate::telemetry::loaded(committed, 0);
                self.refresh_views();
                if small_files_checked.elapsed() >= Duration::from_secs(5) {
                    small_files_checked = Instant::now();
                    self.compact_small_files().await;
                }
            }
        }
    }

    /// Refreshes the `on_commit` materialized views in a task of its own, so they never hold
    /// the next group back; commits made while a refresh runs are folded by one more refresh.
    fn refresh_views(&self) {
        self.refresh_wanted.store(true, Ordering::SeqCst);
        if self.refreshing.swap(true, Ordering::SeqCst) {
            return;
        }
        let (wanted, running) = (
            Arc::clone(&self.refresh_wanted),
            Arc::clone(&self.refreshing),
        );
        let warehouse = self.session.warehouse().clone();
        tokio::spawn(async move {
            // A refresh that panics must not leave the flag set: no refresh would run again.
            struct Reset(Arc<AtomicBool>);
            impl Drop for Reset {
                fn drop(&mut self) {
                    if std::thread::panicking() {
                        self.0.store(false, Ordering::SeqCst);
                    }
                }
            }
            let _reset = Reset(Arc::clone(&running));
            loop {
                while wanted.swap(false, Ordering::SeqCst) {
                    crate::mv::scheduler::refresh_on_commit(&warehouse).await;
                }
                running.store(false, Ordering::SeqCst);
                // A commit that came between the last check and the store above.
                if !wanted.load(Ordering::SeqCst) || running.swap(true, Ordering::SeqCst) {
                    return;
                }
            }
        });
    }

    /// Commits `group`, answering each append; returns the rows committed. A group that
    /// fails for anything but a lost race is committed again one append at a time.
    async fn commit_group(&mut self, group: Vec<Append>) -> u64 {
        let mut pending = group;
        let mut conflicts = 0;
        loop {
            match self.try_commit(pending).await {
                Ok(rows) => return rows,
                Err((error, back)) => {
                    let retry = error.kind() == ErrorKind::Conflict && conflicts < MAX_CONFLICTS;
                    if retry {
                        conflicts += 1;
                        pending = back;
                        continue;
                    }
                    if back.len() == 1 {
                        if let Some(append) = back.into_iter().next() {
                            append.answer(Err(error));
                        }
                        return 0;
                    }
                    tracing::debug!(table = %self.table, error = %error,
                        "ingest group failed; committing its appends one by one");
                    let mut rows = 0u64;
                    for append in back {
                        rows = rows.saturating_add(Box::pin(self.commit_group(vec![append])).await);
                    }
                    return rows;
                }
            }
        }
    }

    /// One attempt at committing `group` on the newest snapshot: appends that are duplicates
    /// or may not commit are answered now; the others are written and committed together. On
    /// failure, those others come back unanswered.
    async fn try_commit(
        &mut self,
        group: Vec<Append>,
    ) -> std::result::Result<u64, (Error, Vec<Append>)> {
        let opened = async {
            self.session.warehouse().refresh_catalog().await?;
            self.session.open_table_for_write(&self.name).await
        }
        .await;
        let (log, snapshot, qualified) = match opened {
            Ok(o) => o,
            Err(e) => return Err((e, group)),
        };
        let version = snapshot.version.0;
        // The next group gathers for the interval this snapshot sets: no read of its own.
        self.interval = Some(commit_interval(&snapshot).unwrap_or(DEFAULT_COMMIT_INTERVAL));
        // Where each channel stands as the group's appends are taken in order.
        let mut tokens: HashMap<String, Option<String>> = HashMap::new();
        let mut included: Vec<Append> = Vec::new();
        for append in group {
            if !self
                .channels
                .take_over(&self.table, &append.channel, append.stream)
            {
                let reason = format!(
                    "ingest channel '{}' was reopened by another producer; this stream's \
                     appends from offset token '{}' on were not written",
                    append.channel, append.offset_token
                );
                append.answer(Err(conflict(&qualified, version, reason)));
                continue;
            }
            if append.failed.load(Ordering::SeqCst) {
                let error = stream_failed(&qualified, &append.channel);
                append.answer(Err(error));
                continue;
            }
            let current = tokens.entry(append.channel.clone()).or_insert_with(|| {
                snapshot
                    .channels
                    .get(&append.channel)
                    .map(|c| c.offset_token.clone())
            });
            if current
                .as_deref()
                .is_some_and(|c| already_committed(&append.offset_token, c))
            {
                let answer = Appended {
                    offset_token: append.offset_token.clone(),
                    rows: 0,
                    duplicate: true,
                    version,
                };
                append.answer(Ok(answer));
                continue;
            }
            *current = Some(append.offset_token.clone());
            included.push(append);
        }
        if included.is_empty() {
            return Ok(0);
        }
        let mut txn = Transaction::new("INGEST");
        let mut advances: Vec<ChannelAdvance> = Vec::new();
        for append in &included {
            match advances
                .iter_mut()
                .find(|a| a.offset.channel == append.channel)
            {
                Some(advance) => {
                    advance.offset.offset_token = append.offset_token.clone();
                    advance.offset.rows = advance.offset.rows.saturating_add(append.rows as u64);
                }
                None => advances.push(ChannelAdvance {
                    offset: ChannelOffset {
                        channel: append.channel.clone(),
                        offset_token: append.offset_token.clone(),
                        rows: append.rows as u64,
                        owner: append.owner.clone(),
                    },
                    previous: snapshot
                        .channels
                        .get(&append.channel)
                        .map(|c| c.offset_token.clone()),
                }),
            }
        }
        txn.channels = advances;
        let schema = snapshot.metadata.schema();
        let batches = match coalesce(&qualified, &schema, &included) {
            Ok(batches) => batches,
            Err(e) => return Err((e, included)),
        };
        let stream = RecordBatchStreamAdapter::new(
            Arc::clone(&schema),
            futures::stream::iter(batches.into_iter().map(Ok)),
        );
        let written = async {
            let warehouse = self.session.warehouse();
            let options = self.session.write_options();
            let mut write =
                TableWrite::begin(warehouse, options, &qualified, &log, &snapshot, txn, None)
                    .await?;
            match write.write(Box::pin(stream)).await {
                Ok(()) => write.commit().await,
                Err(e) => {
                    write.abort().await;
                    Err(e)
                }
            }
        }
        .await;
        match written {
            Ok((rows, committed)) => {
                for append in included {
                    let answer = Appended {
                        offset_token: append.offset_token.clone(),
                        rows: append.rows as u64,
                        duplicate: false,
                        version: committed.version.0,
                    };
                    append.answer(Ok(answer));
                }
                Ok(rows)
            }
            Err(e) => Err((e, included)),
        }
    }

    /// Compacts the table's small files in the background, one run at a time, by the rules
    /// and statements of table maintenance (`OPTIMIZE` of each partition holding
    /// `strata.auto_compact_min_files` small files): group commits leave a few files per second.
    async fn compact_small_files(&self) {
        if self.compacting.load(Ordering::SeqCst) {
            return;
        }
        let Ok((_, snapshot, _)) = open(&self.session, &self.name).await else {
            return;
        };
        let min_files = self.session.strata_options().auto_compact_min_files;
        let target = self.session.write_options().target_file_size_bytes;
        let small = (target as f64 * super::optimize::SMALL_FILE_SHARE) as u64;
        let partitions = maintenance::partitions_to_compact(&snapshot, min_files, small);
        if partitions.is_empty() {
            return;
        }
        let table = self.name.to_string();
        let statements: Vec<String> = partitions
            .iter()
            .map(|p| maintenance::optimize_statement(&table, p))
            .collect();
        self.compacting.store(true, Ordering::SeqCst);
        let compacting = Arc::clone(&self.compacting);
        let mut session = self.session.warehouse().session();
        tokio::spawn(async move {
            for sql in statements {
                if let Err(e) = session.sql(&sql).await {
                    tracing::warn!(statement = %sql, error = %e, "compacting ingested files failed");
                }
            }
            compacting.store(false, Ordering::SeqCst);
        });
    }
}

/// Rows per batch handed to the table writer: producers send small batches (a thousand rows
/// is typical), and a writer fed those judges each file's encodings on a sample too small to
/// tell unique columns from repetitive ones, and pays per-batch costs thousands of times.
const WRITE_BATCH_ROWS: usize = 64 * 1024;

/// The rows of `appends`, in order, as batches of [`WRITE_BATCH_ROWS`] in `schema`, the
/// table's as of the group's snapshot: appends were cast to the table as it was when they
/// arrived, and an `ALTER TABLE` since may have changed a column's type.
fn coalesce(table: &str, schema: &SchemaRef, appends: &[Append]) -> Result<Vec<RecordBatch>> {
    let mut coalescer = BatchCoalescer::new(Arc::clone(schema), WRITE_BATCH_ROWS);
    let mut batches = Vec::new();
    let mut row = 0usize;
    for batch in appends.iter().flat_map(|a| a.batches.iter()) {
        let conformed = strata_storage::writer::conform(table, schema, batch, row)?;
        row = row.saturating_add(batch.num_rows());
        coalescer.push_batch(conformed)?;
        while let Some(done) = coalescer.next_completed_batch() {
            batches.push(done);
        }
    }
    coalescer.finish_buffered_batch()?;
    while let Some(done) = coalescer.next_completed_batch() {
        batches.push(done);
    }
    Ok(batches)
}

/// The log, newest snapshot and qualified name of table `name`.
async fn open(
    session: &Session,
    name: &ObjectName,
) -> Result<(strata_storage::TableLog, Snapshot, String)> {
    session.warehouse().refresh_catalog().await?;
    session.open_table(name).await
}

/// The table a producer named (`table`, `schema.table` or `database.schema.table`), its parts
/// qualified with `session`'s current schema and quoted.
fn resolve(session: &Session, table: &str) -> Result<ObjectName> {
    let (db, schema, table) = session.qualify_table(&table_name(table)?)?;
    Ok(ObjectName::from(
        [db, schema, table]
            .into_iter()
            .map(|part| Ident::with_quote('"', part))
            .collect::<Vec<_>>(),
    ))
}

/// Parses `db.schema.table` (parts may be double-quoted).
fn table_name(table: &str) -> Result<ObjectName> {
    let bad = |e: &dyn std::fmt::Display| {
        Error::Plan(format!("ingest: '{table}' is not a table name: {e}"))
    };
    let mut parser = Parser::new(&GenericDialect {})
        .try_with_sql(table)
        .map_err(|e| bad(&e))?;
    let name = parser.parse_object_name(false).map_err(|e| bad(&e))?;
    if parser.peek_token().token != datafusion::sql::sqlparser::tokenizer::Token::EOF {
        return Err(bad(&"text after the name"));
    }
    Ok(name)
}

fn check_channel_name(channel: &str) -> Result<()> {
    if channel.is_empty() || channel.len() > 255 || channel.chars().any(char::is_control) {
        return Err(Error::Plan(
            "an ingest channel's name is 1 to 255 characters, none of them control characters"
                .to_string(),
        ));
    }
    Ok(())
}

/// Whether an append ending at `token` is already in a channel standing at `committed`.
fn already_committed(token: &str, committed: &str) -> bool {
    if token == committed {
        return true;
    }
    match (token.parse::<i128>(), committed.parse::<i128>()) {
        (Ok(t), Ok(c)) => t < c,
        _ => false,
    }
}

/// The table's `ingest_commit_interval`, when it sets one.
fn commit_interval(snapshot: &Snapshot) -> Option<Duration> {
    let text = snapshot.metadata.properties.get(COMMIT_INTERVAL_PROPERTY)?;
    parse_duration(text)
        .ok()
        .map(|d| d.min(MAX_COMMIT_INTERVAL))
}

fn conflict(table: &str, version: u64, reason: String) -> Error {
    StorageError::CommitConflict {
        table: table.to_string(),
        version: strata_storage::Version(version),
        reason,
    }
    .into()
}

fn stream_failed(table: &str, channel: &str) -> Error {
    conflict(
        table,
        0,
        format!(
            "an earlier append of this stream to ingest channel '{channel}' failed, so this one \
             was not written; reopen the channel and resume from its offset token"
        ),
    )
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch(ids: std::ops::Range<i64>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("v", DataType::Utf8, true),
            Field::new("id", DataType::Int64, false),
        ]));
        let n = ids.clone().count();
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["x"; n])),
                Arc::new(Int64Array::from_iter_values(ids)),
            ],
        )
        .unwrap()
    }

    async fn count(warehouse: &Warehouse) -> String {
        let mut session = warehouse.session();
        let result = session
            .sql("SELECT count(*) AS n, count(DISTINCT id) AS ids FROM t")
            .await
            .unwrap();
        arrow::util::pretty::pretty_format_batches(&result.last().unwrap().batches)
            .unwrap()
            .to_string()
    }

    async fn warehouse(ddl: &str) -> Warehouse {
        let warehouse = Warehouse::open("memory://").await.unwrap();
        warehouse.session().sql(ddl).await.unwrap();
        warehouse
    }

    /// Appends commit with their tokens; a reopened channel resumes from the last one; an
    /// append whose token is committed is a duplicate; a stream opened before the reopen is
    /// refused.
    #[tokio::test]
    async fn appends_commit_exactly_once_and_a_reopen_fences_older_streams() {
        let warehouse = warehouse("CREATE TABLE t (id BIGINT NOT NULL, v VARCHAR)").await;
        let channels = IngestChannels::new(warehouse.clone());
        let mut old = channels.open("u", "t", "c").await.unwrap();
        assert_eq!(old.table(), "main.public.t");
        let first = old.append("1".into(), vec![batch(0..10)]).await.unwrap();
        let second = old.append("2".into(), vec![batch(10..20)]).await.unwrap();
        let (first, second) = (
            first.await.unwrap().unwrap(),
            second.await.unwrap().unwrap(),
        );
        assert_eq!((first.rows, first.duplicate), (10, false));
        assert_eq!((second.rows, second.offset_token.as_str()), (10, "2"));

        let status = channels.status("main.public.t", "c", true).await.unwrap();
        assert_eq!(status.offset_token.as_deref(), Some("2"));
        assert_eq!((status.rows, status.table.as_str()), (20, "main.public.t"));
        let mut new = channels.open("v", "public.t", "c").await.unwrap();
        assert_eq!(new.offset_token(), Some("2"));
        let again = new.append("2".into(), vec![batch(10..20)]).await.unwrap();
        let again = again.await.unwrap().unwrap();
        assert_eq!((again.rows, again.duplicate), (0, true));
        let behind = new.append("1".into(), vec![batch(0..10)]).await.unwrap();
        assert!(behind.await.unwrap().unwrap().duplicate);
        let third = new.append("3".into(), vec![batch(20..25)]).await.unwrap();
        assert_eq!(third.await.unwrap().unwrap().rows, 5);

        let refused = old.append("9".into(), vec![batch(90..99)]).await.unwrap();
        let e = refused.await.unwrap().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
        assert!(e.to_string().contains("reopened"), "{e}");
        assert!(count(&warehouse).await.contains("| 25 | 25  |"));
        let state = channels.status("t", "c", false).await.unwrap();
        assert_eq!((state.offset_token.as_deref(), state.rows), (Some("3"), 25));
        // "1" and "2" arrived together: one commit, or two if a group deadline fell between.
        assert!((2..=3).contains(&state.commits), "{state:?}");
    }

    /// Appends of many channels that arrive together share one commit; in a group, an append
    /// that breaks the key fails alone, and the appends its stream sent after it fail too.
    #[tokio::test]
    async fn a_group_commits_many_channels_at_once_and_a_bad_append_fails_alone() {
        let warehouse = warehouse(
            "CREATE TABLE t (id BIGINT NOT NULL PRIMARY KEY, v VARCHAR);
             ALTER TABLE t SET (ingest_commit_interval = '300 ms')",
        )
        .await;
        let channels = IngestChannels::new(warehouse.clone());
        let mut answers = Vec::new();
        for i in 0..5i64 {
            let mut writer = channels.open("u", "t", &format!("c{i}")).await.unwrap();
            let rows = i * 100..i * 100 + 100;
            answers.push(writer.append("a".into(), vec![batch(rows)]).await.unwrap());
        }
        let mut versions = Vec::new();
        for answer in answers {
            versions.push(answer.await.unwrap().unwrap().version);
        }
        versions.dedup();
        assert_eq!(
            versions.len(),
            1,
            "one commit for five appends: {versions:?}"
        );

        let mut bad = channels.open("u", "t", "bad").await.unwrap();
        let mut good = channels.open("u", "t", "good").await.unwrap();
        let clash = bad
            .append("1".into(), vec![batch(1000..1010), batch(5..6)])
            .await
            .unwrap();
        let after = bad
            .append("2".into(), vec![batch(2000..2010)])
            .await
            .unwrap();
        let fine = good
            .append("1".into(), vec![batch(3000..3010)])
            .await
            .unwrap();
        let e = clash.await.unwrap().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConstraintViolation, "{e}");
        let e = after.await.unwrap().unwrap_err();
        assert!(e.to_string().contains("earlier append"), "{e}");
        assert_eq!(fine.await.unwrap().unwrap().rows, 10);
        assert!(count(&warehouse).await.contains("| 510 | 510 |"));
        let status = channels.status("t", "bad", true).await.unwrap();
        assert_eq!(status.offset_token, None);
        // Columns are matched by name and cast; a missing one names the channel and token.
        let mut writer = channels.open("u", "t", "bad").await.unwrap();
        let wrong = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("v", DataType::Utf8, true)])),
            vec![Arc::new(StringArray::from(vec!["x"]))],
        )
        .unwrap();
        let e = writer.append("7".into(), vec![wrong]).await.err().unwrap();
        assert!(
            e.to_string().contains("channel 'bad', offset token '7'"),
            "{e}"
        );
    }

    /// A continuous view folds each group commit in: the time from an append's durable
    /// acknowledgment to its rows showing in the view, over 20 appends (printed; the bench
    /// measures the same under load).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_continuous_view_shows_each_ingest_commit_within_a_second() {
        let warehouse = warehouse(
            "CREATE TABLE t (id BIGINT NOT NULL, v VARCHAR);
             CREATE MATERIALIZED VIEW per_v WITH (refresh = 'continuous') AS
               SELECT v, count(*) AS n, max(id) AS top FROM t GROUP BY v",
        )
        .await;
        let channels = IngestChannels::new(warehouse.clone());
        let mut writer = channels.open("u", "t", "c").await.unwrap();
        let mut latencies = Vec::new();
        for i in 0..20i64 {
            let answer = writer
                .append(i.to_string(), vec![batch(i * 10..i * 10 + 10)])
                .await
                .unwrap();
            answer.await.unwrap().unwrap();
            let acknowledged = Instant::now();
            let expected = format!("| x | {} | {}", (i + 1) * 10, i * 10 + 9);
            loop {
                let mut session = warehouse.session();
                let result = session.sql("SELECT v, n, top FROM per_v").await.unwrap();
                let shown =
                    arrow::util::pretty::pretty_format_batches(&result.last().unwrap().batches)
                        .unwrap()
                        .to_string();
                if shown.contains(&expected) {
                    break;
                }
                assert!(
                    acknowledged.elapsed() < Duration::from_secs(5),
                    "append {i} not in the view after 5 s: {shown}"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            latencies.push(acknowledged.elapsed());
        }
        latencies.sort();
        let (p50, p99) = (latencies[10], latencies[19]);
        println!("commit to visible in a continuous view: p50 {p50:?}, max {p99:?}");
        assert!(p50 < Duration::from_millis(500), "p50 {p50:?}");
        assert!(p99 < Duration::from_secs(2), "max {p99:?}");
    }

    #[test]
    fn a_token_is_committed_when_equal_or_numerically_behind() {
        assert!(already_committed("abc", "abc"));
        assert!(!already_committed("abd", "abc"));
        assert!(already_committed("99", "100"));
        assert!(!already_committed("101", "100"));
        assert!(!already_committed("9", "x"));
    }

    #[test]
    fn table_names_parse_with_quotes_and_reject_trailing_text() {
        assert_eq!(table_name("a.b.c").unwrap().0.len(), 3);
        assert_eq!(table_name("\"odd.name\"").unwrap().0.len(), 1);
        assert!(table_name("a b").is_err());
        assert!(table_name("").is_err());
    }
}
