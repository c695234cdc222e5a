//! The peer proxies a user would otherwise put between an application and
//! its store: twemproxy (`nutcracker`) in front of Redis and pgbouncer in
//! front of PostgreSQL. Each is configured in a temporary directory, started
//! on a free loopback port, and killed when dropped.

use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::process::{Child, Command};

/// How long a peer may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running peer proxy.
pub struct Peer {
    /// `twemproxy` or `pgbouncer`.
    pub name: &'static str,
    /// Where it listens.
    pub addr: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Peer {
    fn drop(&mut self) {
        // kill_on_drop is set; this makes the intent explicit and quick.
        let _ = self.child.start_kill();
    }
}

/// Finds a program on PATH or in the sbin directories Debian installs
/// daemons into (which a non-root PATH often lacks).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// twemproxy in front of the Redis at `redis_addr` (`host:port`), one
/// server connection, as its documentation's minimal pool.
pub async fn twemproxy(redis_addr: &str) -> Result<Peer> {
    let program = find_program("nutcracker")
        .context("twemproxy is not installed: apt-get install -y nutcracker")?;
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let stats_port = free_port()?;
    let config = dir.path().join("nutcracker.yml");
    std::fs::write(
        &config,
        format!(
            "prism_bench:\n  listen: 127.0.0.1:{port}\n  hash: fnv1a_64\n  \
             distribution: ketama\n  redis: true\n  auto_eject_hosts: false\n  \
             servers:\n   - {redis_addr}:1\n"
        ),
    )?;
    let mut command = Command::new(program);
    command
        .arg("-c")
        .arg(&config)
        .args(["-a", "127.0.0.1", "-s", &stats_port.to_string()]);
    start("twemproxy", command, port, dir).await
}

/// pgbouncer in session mode in front of the PostgreSQL at `host:port`,
/// database `database`, trusting user `user` (the machine's PostgreSQL
/// uses trust auth). Session mode because Prism's postgres backend and the
/// raw client use named prepared statements, which pgbouncer before 1.21
/// cannot carry in transaction mode.
pub async fn pgbouncer(host: &str, port: u16, database: &str, user: &str) -> Result<Peer> {
    let program = find_program("pgbouncer")
        .context("pgbouncer is not installed: apt-get install -y pgbouncer")?;
    let dir = tempfile::tempdir()?;
    let listen = free_port()?;
    let users = dir.path().join("users.txt");
    std::fs::write(&users, format!("\"{user}\" \"\"\n"))?;
    let config = dir.path().join("pgbouncer.ini");
    std::fs::write(
        &config,
        format!(
            "[databases]\n{database} = host={host} port={port} dbname={database}\n\
             [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {listen}\n\
             unix_socket_dir =\nauth_type = trust\nauth_file = {}\n\
             pool_mode = session\nmax_client_conn = 1024\ndefault_pool_size = 128\n\
             log_connections = 0\nlog_disconnections = 0\n",
            users.display(),
        ),
    )?;
    let mut command = Command::new(program);
    if running_as_root() {
        // pgbouncer refuses to run as root; it switches to `user` itself,
        // which must be able to read its files.
        for path in [dir.path(), &users, &config] {
            let mode = if path.is_dir() { 0o755 } else { 0o644 };
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        }
        command.args(["-u", "postgres"]);
    }
    command.arg(&config);
    start("pgbouncer", command, listen, dir).await
}

async fn start(
    name: &'static str,
    mut command: Command,
    port: u16,
    dir: tempfile::TempDir,
) -> Result<Peer> {
    // Both log to stderr; the file is opened here, so a peer that switched
    // user can still write it.
    let log = dir.path().join(format!("{name}.log"));
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let started = Instant::now();
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(Peer {
                name,
                addr,
                child,
                _dir: dir,
            });
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "{name} exited with {status} before listening on {addr}: {}",
                log_tail(&log)
            );
        }
        if started.elapsed() > READY_TIMEOUT {
            bail!(
                "{name} did not listen on {addr} within {READY_TIMEOUT:?}: {}",
                log_tail(&log)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}
