//! The token cached by `prismctl login`: `token.json` in `$PRISM_CONFIG_DIR`
//! or else `$HOME/.prism/`, readable by the owner only (mode 0600, the
//! directory 0700).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// What `prismctl login` stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedToken {
    /// The issuer the token came from.
    pub issuer: String,
    /// The OAuth client id used to log in.
    pub client_id: String,
    /// The access token sent as `authorization: Bearer ...`.
    pub access_token: String,
    /// When the token expires, Unix seconds, if the issuer said.
    pub expires_at: Option<u64>,
}

/// The directory holding prismctl's files.
pub fn dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PRISM_CONFIG_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".prism")),
        None => bail!("neither PRISM_CONFIG_DIR nor HOME is set; set one to cache tokens"),
    }
}

/// The token file's path.
pub fn path() -> Result<PathBuf> {
    Ok(dir()?.join("token.json"))
}

/// The cached token, if there is one.
pub fn load() -> Result<Option<CachedToken>> {
    let path = path()?;
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let token = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a token cached by prismctl login; remove it with prismctl logout",
            path.display()
        )
    })?;
    Ok(Some(token))
}

/// Stores `token`, replacing any cached one; returns the file's path.
pub fn store(token: &CachedToken) -> Result<PathBuf> {
    let dir = dir()?;
    create_private_dir(&dir)?;
    let path = dir.join("token.json");
    let tmp = dir.join(format!(".token.json.{}", std::process::id()));
    write_private(&tmp, serde_json::to_string_pretty(token)?.as_bytes())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Removes the cached token; returns whether there was one.
pub fn remove() -> Result<bool> {
    let path = path()?;
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

#[cfg(not(unix))]
fn create_private_dir(dir: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

#[cfg(unix)]
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}
