//! prismctl's config file, `config.yaml` in `$PRISM_CONFIG_DIR` or else
//! `~/.prism/`: the proxy's address, a token and TLS settings, so that they
//! need not be passed on every command.
//!
//! Each setting is taken from, in order: its flag, its environment
//! variable, the config file, the built-in default. Parsing is strict: an
//! unknown field is an error naming the file and the field.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::token_cache;

/// The file's name inside the config directory.
pub const FILE_NAME: &str = "config.yaml";

/// The contents of `config.yaml`. Every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The proxy's gRPC address, as for `--addr`.
    pub address: Option<String>,
    /// A bearer token, as for `--token`. Default: the token cached by
    /// `prismctl login`.
    pub token: Option<String>,
    /// TLS settings for an `https://` address.
    #[serde(default)]
    pub tls: TlsFile,
}

/// `tls` in `config.yaml`. Relative paths are relative to the config
/// directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    /// CA certificate (PEM) the proxy's certificate must chain to, as for
    /// `--ca-file`. Default: the Mozilla root certificates.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM), as for `--cert-file`; needs `key_file`.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's key (PEM), as for `--key-file`.
    pub key_file: Option<PathBuf>,
    /// The name to check the proxy's certificate against, as for
    /// `--server-name`. Default: the host of the address.
    pub server_name: Option<String>,
}

/// A loaded config file and where it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loaded {
    /// The file's path, when it exists.
    pub path: Option<PathBuf>,
    pub file: ConfigFile,
}

/// The config file's path (whether or not it exists).
pub fn path() -> Result<PathBuf> {
    Ok(token_cache::dir()?.join(FILE_NAME))
}

/// Reads the config file; an absent file (or no config directory at all)
/// is an empty config.
pub fn load() -> Result<Loaded> {
    let Ok(path) = path() else {
        return Ok(Loaded::default());
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded::default()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let file = parse(&path, &text)?;
    Ok(Loaded {
        path: Some(path),
        file,
    })
}

/// Parses the text of the config file at `path`, resolving relative TLS
/// paths against its directory.
pub fn parse(path: &Path, text: &str) -> Result<ConfigFile> {
    // An empty file (or only comments) is an empty config.
    if text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Ok(ConfigFile::default());
    }
    let de = yaml_serde::Deserializer::from_str(text);
    let mut file: ConfigFile = serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let message = e.into_inner().to_string();
        let message = message
            .strip_prefix(&format!("{field}: "))
            .map(str::to_owned)
            .unwrap_or(message);
        let field = if field == "." || field.is_empty() {
            String::new()
        } else {
            format!(" field '{field}':")
        };
        anyhow::anyhow!(
            "{}:{field} {message}; the fields are address, token and tls (ca_file, cert_file, \
             key_file, server_name), see `prismctl --help`",
            path.display()
        )
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tls = &mut file.tls;
    for p in [&mut tls.ca_file, &mut tls.cert_file, &mut tls.key_file]
        .into_iter()
        .flatten()
    {
        if p.is_relative() {
            *p = dir.join(&*p);
        }
    }
    if tls.cert_file.is_some() != tls.key_file.is_some() {
        bail!(
            "{}: tls.cert_file and tls.key_file go together; set both or neither",
            path.display()
        );
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_field_and_resolves_relative_paths() {
        let text = "address: https://prism.example:8980\ntoken: abc\ntls:\n  ca_file: ca.pem\n  \
                    cert_file: /abs/client.pem\n  key_file: client.key\n  server_name: prism\n";
        let file = parse(Path::new("/home/u/.prism/config.yaml"), text).unwrap();
        assert_eq!(file.address.as_deref(), Some("https://prism.example:8980"));
        assert_eq!(file.token.as_deref(), Some("abc"));
        assert_eq!(
            file.tls.ca_file.as_deref(),
            Some(Path::new("/home/u/.prism/ca.pem"))
        );
        assert_eq!(
            file.tls.cert_file.as_deref(),
            Some(Path::new("/abs/client.pem"))
        );
        assert_eq!(
            file.tls.key_file.as_deref(),
            Some(Path::new("/home/u/.prism/client.key"))
        );
        assert_eq!(file.tls.server_name.as_deref(), Some("prism"));
    }

    #[test]
    fn empty_files_are_empty_configs() {
        let p = Path::new("c.yaml");
        assert_eq!(parse(p, "").unwrap(), ConfigFile::default());
        assert_eq!(parse(p, "# nothing\n\n").unwrap(), ConfigFile::default());
    }

    #[test]
    fn unknown_fields_name_the_file_and_the_field() {
        let p = Path::new("/h/.prism/config.yaml");
        let err = parse(p, "adress: h:1\n").unwrap_err().to_string();
        assert!(err.starts_with("/h/.prism/config.yaml:"), "{err}");
        assert!(err.contains("adress"), "{err}");
        let err = parse(p, "tls:\n  ca: x\n").unwrap_err().to_string();
        assert!(err.contains("field 'tls"), "{err}");
        assert!(err.contains("`ca`"), "{err}");
        let err = parse(p, "address: [1]\n").unwrap_err().to_string();
        assert!(err.contains("field 'address'"), "{err}");
    }

    #[test]
    fn a_client_certificate_needs_its_key() {
        let err = parse(Path::new("c.yaml"), "tls:\n  cert_file: c.pem\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("key_file"), "{err}");
    }
}
