//! Ending a namespace version's streams (tails, subscriptions) when the
//! backend they read from is released, or the TimeSeries log they follow
//! changes: the flags, shared by the versions holding the same backend
//! or log.

use std::sync::Arc;

use tokio::sync::watch;

use super::Namespace;
use crate::backend::DalBackend;
use crate::config::{MigrationPhase, NamespaceConfig};

/// The streams-ended flag of a version of `config`: `previous`'s while its
/// `timeseries.log` is the same, else a new one.
pub(super) fn streams_flag(
    previous: Option<&Namespace>,
    config: &NamespaceConfig,
) -> Arc<watch::Sender<bool>> {
    match previous {
        Some(p) if p.config.timeseries_settings().log == config.timeseries_settings().log => {
            p.streams_ended.clone()
        }
        _ => Arc::new(watch::channel(false).0),
    }
}

/// The release flags of `backends`: `previous`'s for a backend it holds,
/// new ones for the others.
pub(super) fn release_flags(
    previous: Option<&Namespace>,
    backends: &[DalBackend],
) -> Vec<Arc<watch::Sender<bool>>> {
    backends
        .iter()
        .map(|b| {
            previous
                .and_then(|p| p.release_flag(b))
                .unwrap_or_else(|| Arc::new(watch::channel(false).0))
        })
        .collect()
}

impl Namespace {
    pub(super) fn release_flag(&self, backend: &DalBackend) -> Option<Arc<watch::Sender<bool>>> {
        self.raw_backends()
            .iter()
            .zip(&self.released)
            .find(|(b, _)| b.same(backend))
            .map(|(_, flag)| flag.clone())
    }

    /// Marks `backends` (of this version) released: the streams of every
    /// version reading from one of them end.
    pub fn release(&self, backends: &[DalBackend]) {
        for b in backends {
            if let Some(flag) = self.release_flag(b) {
                flag.send_replace(true);
            }
        }
    }

    /// Resolves once the backend serving this version's reads (the
    /// primary, during a migration) is released.
    pub async fn released(&self) {
        let serving = match (&self.migration, &self.config.migration) {
            (Some(m), Some(c)) if c.phase == MigrationPhase::Promoted => m.target.clone(),
            (Some(m), _) => m.source.clone(),
            (None, _) => self.raw.clone().unwrap_or_else(|| self.backend.clone()),
        };
        let mut ended = self.streams_ended.subscribe();
        let released = async {
            match self.release_flag(&serving) {
                Some(flag) => {
                    let mut rx = flag.subscribe();
                    let _ = rx.wait_for(|r| *r).await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = released => {}
            _ = ended.wait_for(|r| *r) => {}
        }
    }

    /// Ends this version's streams (tails, subscriptions) although its
    /// backends stay.
    pub fn end_streams(&self) {
        self.streams_ended.send_replace(true);
    }

    /// The error a stream on a released version ends with.
    pub fn moved(&self, stream: &str) -> tonic::Status {
        tonic::Status::unavailable(format!(
            "namespace '{}' changed its backend or its log, or was removed; open the {stream} \
             again{}",
            self.config.name,
            if stream == "tail" {
                ", from the time of the last event received"
            } else {
                ""
            }
        ))
    }
}
