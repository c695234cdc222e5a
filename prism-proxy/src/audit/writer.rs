//! The writer task: takes whatever is queued (up to a batch), hands it to
//! the sink in one go, then tells waiting calls and the tail. Group
//! commit falls out of this: while one batch is written, the next one
//! queues up.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::mpsc;

use super::file::FileSink;
use super::nats::{Message, NatsSink};
use super::tail::Tail;
use super::{Entry, MAX_BATCH, Msg, QUEUE_DEPTH, RECORDS, SINK_ERRORS, count_dropped};

/// The open sink.
pub enum Sink {
    /// Blocking I/O, run on the blocking pool (a mutex only to move it
    /// there; the writer is its only user).
    File(Arc<Mutex<FileSink>>),
    Nats(Box<NatsSink>),
}

fn with_file<T: Send + 'static>(
    file: &Arc<Mutex<FileSink>>,
    f: impl FnOnce(&mut FileSink) -> T + Send + 'static,
) -> impl Future<Output = T> {
    let file = file.clone();
    async move {
        tokio::task::spawn_blocking(move || {
            f(&mut file.lock().unwrap_or_else(PoisonError::into_inner))
        })
        .await
        .expect("audit file operations do not panic")
    }
}

impl Sink {
    async fn write(&self, entries: &[Entry]) -> Result<(), String> {
        match self {
            Sink::File(file) => {
                let mut lines = Vec::with_capacity(entries.len() * 256);
                for e in entries {
                    serde_json::to_writer(&mut lines, &e.record).expect("records serialize");
                    lines.push(b'\n');
                }
                with_file(file, move |f| f.write(&lines))
                    .await
                    .map_err(|e| e.to_string())
            }
            Sink::Nats(nats) => {
                let batch = entries
                    .iter()
                    .map(|e| Message {
                        namespace: e.label.clone(),
                        payload: serde_json::to_vec(&e.record).expect("records serialize"),
                        confirm: e.done.is_some(),
                    })
                    .collect();
                nats.write(batch).await.map_err(|e| e.to_string())
            }
        }
    }

    /// When data must be made durable at the latest.
    fn sync_deadline(&self) -> Option<Instant> {
        match self {
            Sink::File(file) => file
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .sync_deadline(),
            Sink::Nats(_) => None,
        }
    }

    /// Fsyncs (file) or flushes (NATS) now; `only_if_due`: only when the
    /// fsync interval has passed.
    async fn sync(&self, only_if_due: bool) -> Result<(), String> {
        match self {
            Sink::File(file) => with_file(file, move |f| {
                if only_if_due {
                    f.sync_if_due(Instant::now())
                } else {
                    f.sync()
                }
            })
            .await
            .map_err(|e| e.to_string()),
            Sink::Nats(nats) if !only_if_due => nats.flush().await.map_err(|e| e.to_string()),
            Sink::Nats(_) => Ok(()),
        }
    }
}

/// Logs sink failures, at most one line a second (a failing disk must not
/// flood the log); never a record's content.
struct FailureLog {
    sink: &'static str,
    last: Option<Instant>,
    suppressed: u64,
}

impl FailureLog {
    fn failed(&mut self, what: &'static str, error: &str) {
        metrics::counter!(SINK_ERRORS, "sink" => self.sink).increment(1);
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t).as_secs() < 1)
        {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(
            sink = self.sink,
            error,
            suppressed = self.suppressed,
            "audit sink {what} failed"
        );
        self.last = Some(now);
        self.suppressed = 0;
    }
}

/// Runs until [`Msg::Close`] or every sender is gone.
pub async fn run(mut rx: mpsc::Receiver<Msg>, sink: Sink, tail: Arc<Tail>, name: &'static str) {
    let mut failures = FailureLog {
        sink: name,
        last: None,
        suppressed: 0,
    };
    let mut msgs = Vec::with_capacity(MAX_BATCH);
    loop {
        let deadline = sink.sync_deadline();
        let received = tokio::select! {
            n = rx.recv_many(&mut msgs, MAX_BATCH) => n,
            () = sleep_until(deadline), if deadline.is_some() => {
                if let Err(e) = sink.sync(true).await {
                    failures.failed("fsync", &e);
                }
                continue;
            }
        };
        metrics::gauge!(QUEUE_DEPTH).set(rx.len() as f64);
        if received == 0 {
            break;
        }
        let mut close = None;
        let mut entries = Vec::with_capacity(msgs.len());
        for msg in msgs.drain(..) {
            match msg {
                Msg::Record(entry) => entries.push(entry),
                Msg::Close(done) => close = Some(done),
            }
        }
        if !entries.is_empty() {
            write_batch(&sink, entries, &tail, name, &mut failures).await;
        }
        if let Some(done) = close {
            // Calls still queued behind the close find the log closed.
            rx.close();
            while let Ok(msg) = rx.try_recv() {
                if let Msg::Record(entry) = msg {
                    write_batch(&sink, vec![entry], &tail, name, &mut failures).await;
                }
            }
            if let Err(e) = sink.sync(false).await {
                failures.failed("final fsync", &e);
            }
            let _ = done.send(());
            return;
        }
        if let Err(e) = sink.sync(true).await {
            failures.failed("fsync", &e);
        }
    }
    if let Err(e) = sink.sync(false).await {
        failures.failed("final fsync", &e);
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

async fn write_batch(
    sink: &Sink,
    entries: Vec<Entry>,
    tail: &Tail,
    name: &'static str,
    failures: &mut FailureLog,
) {
    let result = sink.write(&entries).await;
    let n = entries.len() as u64;
    match &result {
        Ok(()) => metrics::counter!(RECORDS, "sink" => name).increment(n),
        Err(e) => failures.failed("write", e),
    }
    let mut written = Vec::with_capacity(entries.len());
    for entry in entries {
        match (&result, entry.done) {
            (_, Some(done)) => {
                // The caller may have given up waiting; that is fine.
                let _ = done.send(result.clone());
            }
            (Err(_), None) => count_dropped(&entry.label, "sink_error", 1),
            (Ok(()), None) => {}
        }
        if result.is_ok() {
            written.push(Arc::new(entry.record));
        }
    }
    tail.push(written);
}
