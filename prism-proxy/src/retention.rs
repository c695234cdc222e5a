//! TimeSeries retention: while a namespace version with
//! `timeseries.retention` is served, a task asks its backend to drop the
//! buckets that have passed retention.

use std::sync::Arc;
use std::time::Duration;

use pattern_core::Capability;
use pattern_core::timeseries::TimeSeriesBackend;
use tokio::task::JoinHandle;

use crate::backend::DalBackend;
use crate::config::NamespaceConfig;

/// The retention task of one namespace version; stops when dropped (the
/// version stops being served).
pub struct RetentionTask(JoinHandle<()>);

impl Drop for RetentionTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl RetentionTask {
    /// Starts the task when `config` has a retention and `backend` is a
    /// TimeSeries backend declaring [`Capability::Retention`] (a backend
    /// without it is refused when the namespace is checked).
    pub fn start(config: &NamespaceConfig, backend: &DalBackend) -> Option<RetentionTask> {
        let DalBackend::TimeSeries(backend) = backend else {
            return None;
        };
        let settings = config.timeseries_settings();
        let retention = settings.retention?;
        if !backend.capabilities().has(Capability::Retention) {
            return None;
        }
        // Often enough that a bucket goes soon after it passed retention,
        // rarely enough to cost nothing.
        let every =
            (settings.bucket / 4).clamp(Duration::from_millis(250), Duration::from_secs(60));
        let backend = Arc::downgrade(backend);
        let namespace = config.name.clone();
        Some(RetentionTask(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(backend) = backend.upgrade() else {
                    return;
                };
                enforce(&namespace, backend.as_ref(), retention).await;
            }
        })))
    }
}

async fn enforce(namespace: &str, backend: &dyn TimeSeriesBackend, retention: Duration) {
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    let cutoff = now_us.saturating_sub(retention.as_micros() as i64);
    match backend.drop_before(cutoff).await {
        Ok(0) => {}
        Ok(dropped) => {
            metrics::counter!("prism_timeseries_retention_dropped_total", "namespace" => namespace.to_string())
                .increment(dropped);
            tracing::info!(
                namespace,
                dropped,
                "retention removed events past their bucket"
            );
        }
        Err(e) => tracing::warn!(namespace, error = %e, "retention could not drop old buckets"),
    }
}
