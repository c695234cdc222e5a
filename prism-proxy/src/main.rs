//! `prism-proxy`: runs the gateway. With no arguments it serves the
//! embedded default (gRPC 127.0.0.1:8980, admin 127.0.0.1:8981, demo
//! namespaces on memstore and SQLite under ./data).

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use prism_proxy::ProxyConfig;
use prism_proxy::config::LogFormat;

/// The Prism data access gateway.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// prism.yaml to run with; without it, the embedded default.
    #[arg(long, short, env = "PRISM_CONFIG")]
    config: Option<PathBuf>,
    /// Overrides listeners.grpc.
    #[arg(long)]
    grpc_addr: Option<SocketAddr>,
    /// Overrides listeners.admin.
    #[arg(long)]
    admin_addr: Option<SocketAddr>,
    /// Overrides data_dir.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Validate the configuration and exit.
    #[arg(long)]
    check: bool,
}

fn load(args: &Args) -> Result<ProxyConfig, prism_proxy::config::ConfigError> {
    let mut config = match &args.config {
        Some(path) => ProxyConfig::load(path)?,
        None => ProxyConfig::embedded_default()?,
    };
    if let Some(addr) = args.grpc_addr {
        config.listeners.grpc = addr;
    }
    if let Some(addr) = args.admin_addr {
        config.listeners.admin = addr;
    }
    if let Some(dir) = &args.data_dir {
        config.data_dir = dir.clone();
    }
    config.resolver().check_all(&config.namespaces)?;
    Ok(config)
}

fn init_tracing(config: &ProxyConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.ok();
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let config = match load(&args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check {
        println!(
            "configuration ok: {} namespace(s) from {}",
            config.namespaces.len(),
            config.source
        );
        return ExitCode::SUCCESS;
    }
    init_tracing(&config);
    let proxy = match prism_proxy::start(config).await {
        Ok(proxy) => proxy,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    #[cfg(unix)]
    {
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .expect("installing the SIGHUP handler");
        let stop = shutdown_signal();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                _ = hangup.recv() => {
                    tracing::info!("SIGHUP: reloading namespaces");
                    proxy.manager().reload_logged("SIGHUP").await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    shutdown_signal().await;
    proxy.shutdown().await;
    ExitCode::SUCCESS
}
