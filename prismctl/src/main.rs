//! `prismctl`: the Prism operator CLI. Reads and writes KeyValue items,
//! writes, reads and tails TimeSeries events, publishes and subscribes to
//! PubSub topics,
//! checks the health of a running proxy, lists, shows, applies, deletes and
//! explains its namespaces, shows its backends and pattern processes,
//! reloads its config store and tails its audit log over gRPC, and logs in
//! to the proxy's OpenID Connect issuer.
//!
//! Exit codes: 0 on success, 1 on any failure (a gRPC error, an unreachable
//! proxy, a service that is not serving), 2 on a usage error.

#![forbid(unsafe_code)]

mod audit;
mod completion;
mod config;
mod connect;
mod errors;
mod health;
mod kv;
mod login;
mod migrate;
mod namespace;
mod output;
mod pages;
mod progress;
mod pubsub;
mod reload;
mod selection;
mod status;
mod token_cache;
mod ts;
mod ttl;
mod when;
mod whoami;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::audit::AuditCommand;
use crate::kv::KvCommand;
use crate::namespace::NamespaceCommand;
use crate::output::OutputFormat;
use crate::status::{BackendCommand, PatternCommand};

/// The long help's epilogue: the config file.
const CONFIG_HELP: &str = "\
CONFIG FILE:
  ~/.prism/config.yaml (or config.yaml in $PRISM_CONFIG_DIR, where `prismctl
  login` also caches its token) holds defaults for the connection flags:

    address: https://prism.example.com:8980   # --addr / PRISM_ADDR
    token: eyJ...                             # --token / PRISM_TOKEN
    tls:
      ca_file: ca.pem                         # --ca-file / PRISM_CA_FILE
      cert_file: client.pem                   # --cert-file / PRISM_CERT_FILE
      key_file: client.key                    # --key-file / PRISM_KEY_FILE
      server_name: prism.internal             # --server-name / PRISM_TLS_SERVER_NAME

  Every field is optional; relative paths are relative to the file's
  directory. Each setting comes from its flag, else its environment
  variable, else this file, else the default (address http://127.0.0.1:8980;
  token: the one cached by `prismctl login`; CA: the Mozilla roots). An
  unknown field is an error naming the file and the field.

PROGRESS:
  Slow calls (apply, delete, reload, health checks, connecting) show a
  spinner on stderr when it is a terminal; set PRISM_NO_PROGRESS=1 to hide it.";

#[derive(Debug, Parser)]
#[command(
    name = "prismctl",
    version,
    about = "Operate a Prism proxy over gRPC",
    after_long_help = CONFIG_HELP
)]
struct Cli {
    #[command(flatten)]
    target: connect::Target,

    /// How results are printed on stdout.
    #[arg(short, long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    output: OutputFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Read and write items of the KeyValue DAL.
    #[command(subcommand)]
    Kv(KvCommand),
    /// Write, read and tail events of the TimeSeries DAL.
    #[command(subcommand)]
    Ts(ts::TsCommand),
    /// Publish to and subscribe to topics of the PubSub DAL.
    #[command(subcommand)]
    Pubsub(pubsub::PubSubCommand),
    /// Check the proxy's gRPC health service; fails unless it is serving.
    Health,
    /// Manage namespaces: list, get, apply (create or change from YAML),
    /// delete, and explain which backend serves one and why.
    #[command(subcommand)]
    Namespace(NamespaceCommand),
    /// Move a namespace to another backend while it serves: start,
    /// status, wait, advance, rollback, abort, finalize.
    #[command(subcommand)]
    Migrate(migrate::MigrateCommand),
    /// Show each namespace's backend and its health.
    #[command(subcommand)]
    Backend(BackendCommand),
    /// Show the pattern processes serving namespaces.
    #[command(subcommand)]
    Pattern(PatternCommand),
    /// Make the proxy re-read its config store now and apply what changed
    /// (it also does so by itself on change and on SIGHUP).
    Reload,
    /// Log in with the OpenID Connect device flow and cache the token
    /// (in $PRISM_CONFIG_DIR or ~/.prism/) for later commands.
    Login(login::LoginArgs),
    /// Remove the cached token.
    Logout,
    /// Show who the proxy authenticates this caller as.
    Whoami,
    /// Read the proxy's audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Print a shell completion script (bash, zsh or fish) on stdout.
    Completion {
        #[arg(value_enum)]
        shell: completion::Shell,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    // clap prints usage errors itself and exits with code 2.
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Kv(command) => kv::run(command, &cli.target, cli.output)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Ts(command) => ts::run(command, &cli.target, cli.output)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Pubsub(command) => pubsub::run(command, &cli.target, cli.output)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Health => health::run(&cli.target, cli.output).await,
        Command::Login(args) => login::login(args).await.map(|()| ExitCode::SUCCESS),
        Command::Logout => login::logout().map(|()| ExitCode::SUCCESS),
        Command::Whoami => whoami::run(&cli.target, cli.output)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Namespace(command) => namespace::run(command, &cli.target, cli.output).await,
        Command::Backend(command) => status::backend(command, &cli.target, cli.output)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Pattern(command) => status::pattern(command, &cli.target, cli.output)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Reload => reload::run(&cli.target, cli.output).await,
        Command::Migrate(command) => migrate::run(command, &cli.target, cli.output)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Completion { shell } => {
            completion::write(shell, &mut Cli::command(), &mut std::io::stdout().lock())
                .map(|()| ExitCode::SUCCESS)
        }
        Command::Audit(command) => audit::run(command, &cli.target, cli.output)
            .await
            .map(|()| ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|err| errors::report(&err))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("prismctl").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_anywhere() {
        let cli = parse(&[
            "kv",
            "scan",
            "--namespace",
            "n",
            "-o",
            "json",
            "--addr",
            "h:1",
        ])
        .unwrap();
        assert_eq!(cli.output, OutputFormat::Json);
        assert_eq!(cli.target.addr.as_deref(), Some("h:1"));
        let cli = parse(&["--output", "table", "health"]).unwrap();
        assert_eq!(cli.output, OutputFormat::Table);
    }

    #[test]
    fn namespace_explain_takes_a_name() {
        let cli = parse(&["namespace", "explain", "orders", "-o", "json"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Namespace(NamespaceCommand::Explain { ref name }) if name == "orders"
        ));
        let err = parse(&["namespace", "explain"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn namespace_apply_takes_a_file_or_stdin_and_a_version() {
        let cli = parse(&[
            "namespace",
            "apply",
            "-f",
            "-",
            "--dry-run",
            "--expected-version",
            "3",
        ])
        .unwrap();
        let Command::Namespace(NamespaceCommand::Apply {
            file,
            dry_run,
            expected_version,
        }) = cli.command
        else {
            panic!("namespace apply")
        };
        assert_eq!(file, std::path::Path::new("-"));
        assert!(dry_run);
        assert_eq!(expected_version, Some(3));
        let err = parse(&["namespace", "apply"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
        let cli = parse(&["namespace", "delete", "x", "--expected-version", "0"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Namespace(NamespaceCommand::Delete { ref name, expected_version: Some(0) })
                if name == "x"
        ));
    }

    #[test]
    fn every_command_takes_yaml_output() {
        for args in [
            &["namespace", "list"][..],
            &["namespace", "get", "x"],
            &["backend", "status"],
            &["pattern", "list"],
            &["reload"],
            &["whoami"],
            &["health"],
            &["audit", "tail"],
        ] {
            let cli = parse(&[args, &["-o", "yaml"]].concat()).unwrap();
            assert_eq!(cli.output, OutputFormat::Yaml, "{args:?}");
        }
    }

    #[test]
    fn completion_scripts_name_the_commands() {
        for shell in [
            completion::Shell::Bash,
            completion::Shell::Zsh,
            completion::Shell::Fish,
        ] {
            let mut out = Vec::new();
            completion::write(shell, &mut Cli::command(), &mut out).unwrap();
            let script = String::from_utf8(out).unwrap();
            assert!(script.contains("prismctl"), "{shell:?}");
            assert!(script.contains("namespace"), "{shell:?}");
            assert!(script.contains("apply"), "{shell:?}");
        }
        assert_eq!(
            parse(&["completion", "tcsh"]).unwrap_err().kind(),
            ErrorKind::InvalidValue
        );
    }

    #[test]
    fn the_long_help_documents_the_config_file() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("config.yaml"), "{help}");
        assert!(help.contains("server_name"), "{help}");
        assert!(help.contains("PRISM_CONFIG_DIR"), "{help}");
    }

    #[test]
    fn put_needs_exactly_one_value_source() {
        let base = ["kv", "put", "--namespace", "n", "--id", "i", "--key", "k"];
        let err = parse(&base).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
        let both = [&base[..], &["--value", "v", "--value-file", "f"]].concat();
        assert_eq!(
            parse(&both).unwrap_err().kind(),
            ErrorKind::ArgumentConflict
        );
        let ok = [
            &base[..],
            &["--value", "v", "--ttl", "5m", "--expected-version", "3"],
        ]
        .concat();
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn bad_ttls_and_limits_are_usage_errors() {
        let put = [
            "kv",
            "put",
            "--namespace",
            "n",
            "--id",
            "i",
            "--key",
            "k",
            "--value",
            "v",
        ];
        let err = parse(&[&put[..], &["--ttl", "5"]].concat()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ValueValidation);
        assert_eq!(err.exit_code(), 2);
        let err = parse(&["kv", "scan", "--namespace", "n", "--limit", "0"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ValueValidation);
    }

    #[test]
    fn audit_tail_takes_filters_follow_and_a_count() {
        let cli = parse(&["audit", "tail", "--namespace", "x", "-f", "-n", "5"]).unwrap();
        let Command::Audit(AuditCommand::Tail(args)) = cli.command else {
            panic!("audit tail")
        };
        assert_eq!(args.namespace.as_deref(), Some("x"));
        assert!(args.follow);
        assert_eq!(args.lines, 5);
        let cli = parse(&["audit", "tail"]).unwrap();
        let Command::Audit(AuditCommand::Tail(args)) = cli.command else {
            panic!("audit tail")
        };
        assert!(!args.follow && args.namespace.is_none());
        assert_eq!(args.lines, 20);
    }

    #[test]
    fn get_and_delete_take_selection_flags() {
        let get = ["kv", "get", "--namespace", "n", "--id", "i"];
        assert!(parse(&[&get[..], &["--key", "a", "--key", "b"]].concat()).is_ok());
        assert!(parse(&[&get[..], &["--prefix", "p", "--page-size-bytes", "10"]].concat()).is_ok());
        let err = parse(&[&get[..], &["--key", "a", "--prefix", "p"]].concat()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
        let delete = [
            "kv",
            "delete",
            "--namespace",
            "n",
            "--id",
            "i",
            "--start",
            "a",
            "--end",
            "b",
        ];
        assert!(parse(&delete).is_ok());
    }
}
