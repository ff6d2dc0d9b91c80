//! Result batches cut to the size of a gRPC message before they are encoded.
//!
//! A query's batches are rarely message-sized. Scans of the scan cache hand out slices of whole
//! cached columns, and arrow-flight's encoder sizes a batch by its buffers' capacity, not by
//! the slice: a 330 KB slice of a 30 MB column was cut into ten 33 KB messages. Every message
//! costs a client a decode, an allocation and a callback (ADBC's Go driver spent two cores on
//! 12,000 messages for 10M rows). So batches are measured by the bytes they really hold,
//! small ones are joined and large ones sliced (zero-copy), and the encoder is told not to cut
//! them again. A batch waits for others to join it at most [`MAX_HOLD`]: a query whose rows
//! trickle still shows them as they come.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use arrow::array::{Array, RecordBatch};
use arrow::compute::concat_batches;
use arrow::error::ArrowError;
use futures::Stream;
use tokio::time::Sleep;

/// The most a message carries (rows are never split, so one very wide row may exceed it).
/// Clients accept 4 MiB by default (gRPC's default receive limit); this leaves room.
pub(crate) const MAX_MESSAGE_BYTES: usize = 2 << 20;

/// Batches smaller than this are joined with their neighbours until they reach it.
const JOIN_BELOW_BYTES: usize = 1 << 20;

/// The most rows joined into one message, whatever their size (columns of nulls hold none).
const MAX_JOINED_ROWS: usize = 1 << 20;

/// The longest a batch waits for the query to produce more to join it.
const MAX_HOLD: Duration = Duration::from_millis(20);

/// The bytes a batch's columns hold within their slices (what IPC will write).
fn slice_bytes(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|c| {
            c.to_data()
                .get_slice_memory_size()
                .unwrap_or_else(|_| c.get_array_memory_size())
        })
        .sum()
}

/// Joins small batches and slices large ones, keeping the rows in order.
#[derive(Default)]
struct Framer {
    pending: Vec<RecordBatch>,
    pending_bytes: usize,
    pending_rows: usize,
}

impl Framer {
    /// Takes one batch and returns the messages that are complete.
    fn push(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>, ArrowError> {
        if batch.num_rows() == 0 {
            return Ok(Vec::new());
        }
        let bytes = slice_bytes(&batch);
        let mut out = Vec::new();
        if bytes < JOIN_BELOW_BYTES {
            self.pending_rows += batch.num_rows();
            self.pending.push(batch);
            self.pending_bytes += bytes;
            if self.pending_bytes >= JOIN_BELOW_BYTES || self.pending_rows >= MAX_JOINED_ROWS {
                out.extend(self.flush()?);
            }
            return Ok(out);
        }
        out.extend(self.flush()?);
        let pieces = bytes.div_ceil(MAX_MESSAGE_BYTES).max(1);
        let rows = batch.num_rows();
        let per_piece = rows.div_ceil(pieces).max(1);
        let mut offset = 0;
        while offset < rows {
            let length = per_piece.min(rows - offset);
            out.push(batch.slice(offset, length));
            offset += length;
        }
        Ok(out)
    }

    /// The batches held back, joined into one message.
    fn flush(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        self.pending_bytes = 0;
        self.pending_rows = 0;
        match self.pending.len() {
            0 => Ok(None),
            1 => Ok(self.pending.pop()),
            _ => {
                let schema = self.pending[0].schema();
                let joined = concat_batches(&schema, &self.pending)?;
                self.pending.clear();
                Ok(Some(joined))
            }
        }
    }
}

/// `batches` as message-sized batches.
pub(crate) fn frame<S, E>(batches: S) -> Framed<S, E>
where
    S: Stream<Item = Result<RecordBatch, E>> + Unpin,
    E: From<ArrowError>,
{
    Framed {
        inner: batches,
        framer: Framer::default(),
        ready: std::collections::VecDeque::new(),
        hold: None,
        failed: None,
        done: false,
    }
}

/// The stream [`frame`] returns.
pub(crate) struct Framed<S, E> {
    inner: S,
    framer: Framer,
    ready: std::collections::VecDeque<RecordBatch>,
    /// When the batches held back go out even if nothing joins them.
    hold: Option<Pin<Box<Sleep>>>,
    /// The error the input ended with, sent after the rows before it.
    failed: Option<E>,
    done: bool,
}

impl<S, E> Stream for Framed<S, E>
where
    S: Stream<Item = Result<RecordBatch, E>> + Unpin,
    E: From<ArrowError> + Unpin,
{
    type Item = Result<RecordBatch, E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(batch) = this.ready.pop_front() {
                return Poll::Ready(Some(Ok(batch)));
            }
            if this.done {
                return Poll::Ready(this.failed.take().map(Err));
            }
            match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Pending => {
                    let Some(hold) = this.hold.as_mut() else {
                        return Poll::Pending;
                    };
                    if hold.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    this.hold = None;
                    match this.framer.flush() {
                        Ok(held) => this.ready.extend(held),
                        Err(e) => return Poll::Ready(Some(Err(e.into()))),
                    }
                }
                Poll::Ready(Some(Ok(batch))) => {
                    match this.framer.push(batch) {
                        Ok(messages) => this.ready.extend(messages),
                        Err(e) => return Poll::Ready(Some(Err(e.into()))),
                    }
                    if this.framer.pending.is_empty() {
                        this.hold = None;
                    } else if this.hold.is_none() {
                        this.hold = Some(Box::pin(tokio::time::sleep(MAX_HOLD)));
                    }
                }
                Poll::Ready(end) => {
                    // Rows before an error still go out, then the error ends the stream.
                    this.done = true;
                    this.failed = end.and_then(Result::err);
                    match this.framer.flush() {
                        Ok(last) => this.ready.extend(last),
                        Err(e) => return Poll::Ready(Some(Err(e.into()))),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use futures::StreamExt;

    use super::*;

    fn ints(from: i64, rows: usize) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let values = Int64Array::from_iter_values(from..from + rows as i64);
        RecordBatch::try_new(schema, vec![Arc::new(values)]).unwrap()
    }

    fn values(batches: &[RecordBatch]) -> Vec<i64> {
        batches
            .iter()
            .flat_map(|b| {
                let c = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
                c.values().to_vec()
            })
            .collect()
    }

    async fn framed(input: Vec<RecordBatch>) -> Vec<RecordBatch> {
        let stream = futures::stream::iter(input.into_iter().map(Ok::<_, ArrowError>));
        frame(stream).map(|b| b.unwrap()).collect().await
    }

    #[tokio::test]
    async fn small_batches_are_joined_and_slices_measured_by_what_they_hold() {
        // 8,192-row slices of one 4M-row column: each holds 64 KB of a 32 MB buffer.
        let whole = ints(0, 4 << 20);
        let slices: Vec<_> = (0..64).map(|i| whole.slice(i * 8192, 8192)).collect();
        let out = framed(slices).await;
        assert_eq!(values(&out), (0..64 * 8192).collect::<Vec<i64>>());
        // 64 KB each: joined 16 at a time into 1 MiB messages.
        assert_eq!(out.len(), 4);
        assert!(out.iter().all(|b| slice_bytes(b) <= MAX_MESSAGE_BYTES));
    }

    #[tokio::test]
    async fn large_batches_are_sliced_and_order_is_kept() {
        let out = framed(vec![
            ints(0, 10),
            ints(10, 1 << 20),
            ints((1 << 20) + 10, 5),
        ])
        .await;
        assert_eq!(values(&out), (0..(1 << 20) + 15).collect::<Vec<i64>>());
        assert!(out.iter().all(|b| slice_bytes(b) <= MAX_MESSAGE_BYTES));
        // The small batch before the large one is not held back past it.
        assert_eq!(out[0].num_rows(), 10);
        assert_eq!(out.last().unwrap().num_rows(), 5);
    }

    #[tokio::test]
    async fn an_error_ends_the_stream_after_the_rows_before_it() {
        let input = vec![
            Ok(ints(0, 3)),
            Err(ArrowError::ComputeError("boom".into())),
            Ok(ints(3, 3)),
        ];
        let out: Vec<_> = frame(futures::stream::iter(input)).collect().await;
        assert_eq!(out.len(), 2);
        assert_eq!(values(&[out[0].as_ref().unwrap().clone()]), vec![0, 1, 2]);
        assert!(
            out[1]
                .as_ref()
                .is_err_and(|e| e.to_string().contains("boom"))
        );
    }

    #[tokio::test]
    async fn a_batch_is_not_held_while_the_query_produces_nothing() {
        let trickle = futures::stream::iter([Ok::<_, ArrowError>(ints(0, 3))])
            .chain(futures::stream::pending());
        let mut framed = frame(Box::pin(trickle));
        let first = tokio::time::timeout(Duration::from_secs(10), framed.next())
            .await
            .expect("the held batch goes out")
            .unwrap()
            .unwrap();
        assert_eq!(values(&[first]), vec![0, 1, 2]);
    }

    #[tokio::test]
    async fn rows_without_bytes_are_joined_to_a_bound() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Null, true)]));
        let nulls = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(arrow::array::NullArray::new(8192))],
        )
        .unwrap();
        let out = framed(vec![nulls; 300]).await;
        assert_eq!(out.iter().map(|b| b.num_rows()).sum::<usize>(), 300 * 8192);
        assert!(out.len() >= 2, "{} messages", out.len());
        assert!(out.iter().all(|b| b.num_rows() <= MAX_JOINED_ROWS + 8192));
    }

    #[tokio::test]
    async fn strings_and_empty_batches() {
        let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, true)]));
        let batch = |v: Vec<Option<&str>>| {
            RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(StringArray::from(v))]).unwrap()
        };
        let out = framed(vec![
            batch(vec![Some("a"), None]),
            batch(vec![]),
            batch(vec![Some("c")]),
        ])
        .await;
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].num_rows(), 3);
        assert_eq!(out[0].column(0).null_count(), 1);
    }
}
