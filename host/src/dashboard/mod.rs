//! The live dashboard: panels of read-only SQL over the sink, drawn by a
//! page the binary serves, refreshed when a checkpoint commits.
//!
//! `apiary run` serves it next to the pipeline (updates come from the
//! lanes' commits); `apiary dashboard` serves it alone from the sink
//! (updates come from polling the stored offsets once a second).

mod pipeline;
mod server;

use std::sync::Arc;
use std::time::Duration;

pub use pipeline::PipelineView;
pub use server::{CHARTS_AVAILABLE, Dashboard};

use crate::config::PipelineConfig;
use crate::metrics::Metrics;
use crate::store::Reader;

/// How often the pipeline panel samples its figures (and, standalone, how
/// often the sink's offsets are polled for commits).
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Serves the dashboard of a running pipeline, if `[dashboard]` is
/// configured; returns its address.
pub async fn serve_live(
    config: &PipelineConfig,
    metrics: Arc<Metrics>,
) -> anyhow::Result<Option<std::net::SocketAddr>> {
    let Some(section) = &config.dashboard else {
        return Ok(None);
    };
    let reader = Reader::connect(&config.sink.sql.url, section.query_timeout).await?;
    let view = Arc::new(PipelineView::live(metrics.clone(), utc_offset(config)?));
    let sampler = view.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        loop {
            tick.tick().await;
            // Live samples read memory only and cannot fail.
            let _ = sampler.sample().await;
        }
    });
    let dashboard = Dashboard::new(section, reader, view, metrics.commits());
    let address = dashboard.serve(&section.listen).await?;
    tracing::info!("dashboard at http://{address}/");
    Ok(Some(address))
}

/// `apiary dashboard`: serves the dashboard from the sink alone, read-only,
/// until SIGINT or SIGTERM.
pub async fn serve_standalone(config: &PipelineConfig, listen: Option<&str>) -> anyhow::Result<()> {
    let Some(section) = &config.dashboard else {
        anyhow::bail!("the configuration has no [dashboard] section");
    };
    let reader = Reader::connect(&config.sink.sql.url, section.query_timeout).await?;
    let consumer = config
        .source
        .kafka
        .as_ref()
        .map_or(config.name(), |k| k.group.as_str())
        .to_owned();
    let view = Arc::new(PipelineView::stored(
        reader.clone(),
        consumer,
        utc_offset(config)?,
    ));
    let (commits, receiver) = tokio::sync::watch::channel(0u64);
    let poller = view.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        let mut first = true;
        loop {
            tick.tick().await;
            match poller.sample().await {
                Ok(true) if !first => commits.send_modify(|n| *n = n.wrapping_add(1)),
                Ok(_) => {}
                // No checkpoint yet (no apiary_offsets table) or the
                // database is away: the panels say so; keep polling.
                Err(e) => tracing::debug!("dashboard: cannot read the stored offsets: {e:#}"),
            }
            first = false;
        }
    });
    let dashboard = Dashboard::new(section, reader, view, receiver);
    let address = dashboard.serve(listen.unwrap_or(&section.listen)).await?;
    println!("dashboard at http://{address}/");
    stopped().await?;
    tracing::info!("dashboard stops");
    Ok(())
}

/// Waits for SIGINT (Ctrl-C) or SIGTERM.
async fn stopped() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}

fn utc_offset(config: &PipelineConfig) -> anyhow::Result<i32> {
    match &config.sink.sql.time_zone {
        Some(zone) => crate::time::parse_utc_offset(zone).map_err(anyhow::Error::msg),
        None => Ok(0),
    }
}
