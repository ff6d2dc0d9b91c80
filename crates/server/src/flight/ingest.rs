//! Exactly-once ingest channels over Flight, for plain Flight clients (pyarrow.flight) and
//! typed ones.
//!
//! ```text
//!  DoPut  descriptor path ["strata.ingest", "<db.schema.table>", "<channel>", "<offset_token>"]
//!         (or the command strata.CommandIngestChannel of proto/strata.proto)
//!     batch, batch, batch + app_metadata "17"     ─► append ending at token 17
//!     batch, batch + app_metadata "42"            ─► append ending at token 42
//!     batch                          (end)       ─► append ending at the path's token
//!  ◄─ PutResult app_metadata {"offset_token":"17","rows":3000,"duplicate":false,"version":9}
//!     one per append, in order, once it is durable
//!
//!  DoAction strata.channel_status  {"table": "...", "channel": "..."[, "reopen": false]}
//!  ◄─ {"table":"db.schema.t","channel":"...","offset_token":"42" | null,"rows":..,"commits":..}
//! ```
//!
//! A producer streams as long as it likes: each message whose app_metadata holds a token ends
//! an append there (the UTF-8 text of the bytes is the token), and rows left at the end of the
//! stream end at the descriptor's token (an empty token there means every append carries its
//! own). A stream without rows commits nothing, unless a message without rows carries a token
//! (an explicit empty append: the source moved on without producing rows). A stream that fails ends with the error of the first failed append; appends
//! acknowledged before it are committed, later ones are not, and the producer resumes from
//! `strata.channel_status`, which reopens the channel: appends of streams opened before it
//! are refused from then on (`"reopen": false` only looks). See [`strata_query::IngestChannels`] for the guarantees.

use std::pin::Pin;

use arrow::array::RecordBatch;
use arrow_flight::PutResult;
use arrow_flight::decode::{DecodedPayload, FlightDataDecoder};
use arrow_flight::error::FlightError;
use arrow_flight::sql::Any;
use arrow_flight::sql::server::PeekableFlightDataStream;
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use serde::{Deserialize, Serialize};
use strata_query::{Appended, ChannelWriter, IngestChannels, Result as QueryResult};
use tokio::sync::{mpsc, oneshot};
use tonic::Status;

use crate::auth::Identity;
use crate::error::status;

/// The first element of an ingest channel's DoPut descriptor path.
pub(crate) const INGEST_PATH: &str = "strata.ingest";
/// The DoAction that returns a channel's committed state.
pub(crate) const CHANNEL_STATUS: &str = "strata.channel_status";
/// The type URL of [`CommandIngestChannel`] in a descriptor's `cmd`.
pub(crate) const COMMAND_TYPE_URL: &str = "type.googleapis.com/strata.CommandIngestChannel";
/// Most rows one append may gather before its token arrives (a memory bound).
const MAX_APPEND_ROWS: usize = 1_000_000;
/// Appends of one stream awaiting their acknowledgment, and acknowledgments not yet sent.
const ACKS_IN_FLIGHT: usize = 1024;

/// `strata.CommandIngestChannel` of `proto/strata.proto`, written out by hand (prost's derive)
/// so that no build needs `protoc`.
#[derive(Clone, PartialEq, Message)]
pub struct CommandIngestChannel {
    /// `database.schema.table`.
    #[prost(string, tag = "1")]
    pub table: String,
    /// The channel's name.
    #[prost(string, tag = "2")]
    pub channel: String,
    /// The token of rows that carry none of their own.
    #[prost(string, tag = "3")]
    pub offset_token: String,
}

/// The body of `strata.channel_status`.
#[derive(Debug, Deserialize)]
pub(crate) struct ChannelStatusRequest {
    table: String,
    channel: String,
    /// Reopen the channel (the default): streams opened before are refused from now on.
    /// `false` only reads its state.
    reopen: Option<bool>,
}

/// The reply of `strata.channel_status`.
#[derive(Debug, Serialize)]
struct ChannelStatusReply {
    table: String,
    channel: String,
    offset_token: Option<String>,
    rows: u64,
    commits: u64,
}

/// An append's acknowledgment, a PutResult's app_metadata.
#[derive(Debug, Serialize)]
struct Ack<'a> {
    offset_token: &'a str,
    rows: u64,
    duplicate: bool,
    version: u64,
}

/// The channel a DoPut appends to, from its descriptor's command, or else its path; `None`
/// when the DoPut is not an ingest channel's.
pub(crate) async fn target(
    message: &Any,
    stream: &mut PeekableFlightDataStream,
) -> Result<Option<CommandIngestChannel>, Status> {
    if message.type_url == COMMAND_TYPE_URL {
        let command = CommandIngestChannel::decode(message.value.clone()).map_err(|e| {
            Status::invalid_argument(format!("malformed strata.CommandIngestChannel: {e}"))
        })?;
        return Ok(Some(command));
    }
    if !message.type_url.is_empty() {
        return Ok(None);
    }
    let Some(Ok(first)) = stream.peek().await else {
        return Ok(None);
    };
    let Some(descriptor) = &first.flight_descriptor else {
        return Ok(None);
    };
    match descriptor.path.as_slice() {
        [kind, table, channel, token] if kind == INGEST_PATH => Ok(Some(CommandIngestChannel {
            table: table.clone(),
            channel: channel.clone(),
            offset_token: token.clone(),
        })),
        [kind, ..] if kind == INGEST_PATH => Err(Status::invalid_argument(format!(
            "an ingest channel's DoPut path is [\"{INGEST_PATH}\", \"<db.schema.table>\", \
             \"<channel>\", \"<offset_token>\"]; this one has {} elements",
            descriptor.path.len()
        ))),
        _ => Ok(None),
    }
}

type PutStream = Pin<Box<dyn Stream<Item = Result<PutResult, Status>> + Send + 'static>>;

/// Serves one DoPut of an ingest channel: reads its appends and hands them to the channel,
/// and streams back an acknowledgment per append once it is durable.
pub(crate) async fn append(
    channels: &IngestChannels,
    who: &Identity,
    command: CommandIngestChannel,
    stream_number: u64,
    stream: PeekableFlightDataStream,
) -> Result<PutStream, Status> {
    let mut writer = channels
        .open_stream(&who.user, &command.table, &command.channel, stream_number)
        .await
        .map_err(status)?;
    // Both queues are bounded: a client that reads no acknowledgments is, in the end, read
    // no further.
    let (pending_tx, mut pending_rx) = mpsc::channel::<Pending>(ACKS_IN_FLIGHT);
    // Read the stream in a task of its own: acknowledgments flow back while it reads.
    tokio::spawn(async move {
        let outcome = read_appends(&mut writer, &command.offset_token, stream, &pending_tx).await;
        if let Err(e) = outcome {
            let _ = pending_tx.send(Pending::Failed(e)).await;
        }
    });
    let (ack_tx, mut ack_rx) = mpsc::channel::<Result<PutResult, Status>>(ACKS_IN_FLIGHT);
    tokio::spawn(async move {
        while let Some(pending) = pending_rx.recv().await {
            let answer = match pending {
                Pending::Append(answer) => answer,
                Pending::Failed(e) => {
                    let _ = ack_tx.send(Err(e)).await;
                    return;
                }
            };
            let message = match answer.await {
                Ok(Ok(appended)) => Ok(ack(&appended)),
                Ok(Err(e)) => Err(status(e)),
                Err(_) => Err(Status::unavailable(
                    "the ingest committer stopped before answering; reopen the channel",
                )),
            };
            let failed = message.is_err();
            if ack_tx.send(message).await.is_err() || failed {
                return;
            }
        }
    });
    let acks: PutStream = Box::pin(futures::stream::poll_fn(move |cx| ack_rx.poll_recv(cx)));
    Ok(acks)
}

/// What the reading task hands the acknowledging one, in stream order.
enum Pending {
    Append(oneshot::Receiver<QueryResult<Appended>>),
    Failed(Status),
}

/// Reads the DoPut's messages into appends: a message with app_metadata ends one at that
/// token; what is left at the end ends at `last_token`.
async fn read_appends(
    writer: &mut ChannelWriter,
    last_token: &str,
    stream: PeekableFlightDataStream,
    pending: &mpsc::Sender<Pending>,
) -> Result<(), Status> {
    // The first message (peeked to dispatch the call) carries the schema.
    let mut decoder = FlightDataDecoder::new(stream.into_peekable().map_err(FlightError::from));
    let mut batches: Vec<RecordBatch> = Vec::new();
    let mut rows = 0usize;
    while let Some(message) = decoder.next().await {
        let message = message
            .map_err(|e| Status::invalid_argument(format!("reading the ingest stream: {e}")))?;
        if let DecodedPayload::RecordBatch(batch) = message.payload {
            rows = rows.saturating_add(batch.num_rows());
            if rows > MAX_APPEND_ROWS {
                return Err(Status::invalid_argument(format!(
                    "an append holds more than {MAX_APPEND_ROWS} rows: end appends with an \
                     offset token in a message's app_metadata more often"
                )));
            }
            batches.push(batch);
        }
        let metadata = &message.inner.app_metadata;
        if metadata.is_empty() {
            continue;
        }
        let token = std::str::from_utf8(metadata)
            .map_err(|_| {
                Status::invalid_argument("an offset token in app_metadata must be UTF-8 text")
            })?
            .to_string();
        let answer = writer
            .append(token, std::mem::take(&mut batches))
            .await
            .map_err(status)?;
        rows = 0;
        if pending.send(Pending::Append(answer)).await.is_err() {
            return Ok(());
        }
    }
    // Rows after the last token end at the path's. A stream that sent no rows at all commits
    // nothing: a producer that failed to read its source must not mark the token done.
    if !batches.is_empty() {
        if last_token.is_empty() {
            return Err(Status::invalid_argument(
                "rows at the end of the stream carry no offset token: give one in the \
                 descriptor path, or in the app_metadata of their last message",
            ));
        }
        let answer = writer
            .append(last_token.to_string(), batches)
            .await
            .map_err(status)?;
        let _ = pending.send(Pending::Append(answer)).await;
    }
    Ok(())
}

fn ack(appended: &Appended) -> PutResult {
    let body = serde_json::to_vec(&Ack {
        offset_token: &appended.offset_token,
        rows: appended.rows,
        duplicate: appended.duplicate,
        version: appended.version,
    })
    .unwrap_or_default();
    PutResult {
        app_metadata: body.into(),
    }
}

/// Answers `strata.channel_status`.
pub(crate) async fn channel_status(
    channels: &IngestChannels,
    body: &[u8],
) -> Result<arrow_flight::Result, Status> {
    let request: ChannelStatusRequest = serde_json::from_slice(body).map_err(|e| {
        Status::invalid_argument(format!(
            "{CHANNEL_STATUS} takes {{\"table\": \"db.schema.table\", \"channel\": \"name\"}} \
             as JSON: {e}"
        ))
    })?;
    let state = channels
        .status(
            &request.table,
            &request.channel,
            request.reopen.unwrap_or(true),
        )
        .await
        .map_err(status)?;
    let reply = ChannelStatusReply {
        table: state.table,
        channel: state.channel,
        offset_token: state.offset_token,
        rows: state.rows,
        commits: state.commits,
    };
    let body = serde_json::to_vec(&reply).map_err(|e| Status::internal(e.to_string()))?;
    Ok(arrow_flight::Result { body: body.into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_typed_command_round_trips_through_any() {
        let command = CommandIngestChannel {
            table: "db.s.t".into(),
            channel: "c".into(),
            offset_token: "7".into(),
        };
        let any = Any {
            type_url: COMMAND_TYPE_URL.into(),
            value: command.encode_to_vec().into(),
        };
        assert_eq!(CommandIngestChannel::decode(any.value).unwrap(), command);
    }
}
