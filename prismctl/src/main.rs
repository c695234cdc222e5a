//! `prismctl`: the Prism operator CLI. Reads and writes KeyValue items,
//! checks the health of a running proxy, explains how its namespaces are
//! served and tails its audit log over gRPC, and logs in to the proxy's
//! OpenID Connect issuer.
//!
//! Exit codes: 0 on success, 1 on any failure (a gRPC error, an unreachable
//! proxy, a service that is not serving), 2 on a usage error.

#![forbid(unsafe_code)]

mod audit;
mod connect;
mod errors;
mod health;
mod kv;
mod login;
mod namespace;
mod output;
mod pages;
mod selection;
mod token_cache;
mod ttl;
mod whoami;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::audit::AuditCommand;
use crate::kv::KvCommand;
use crate::namespace::NamespaceCommand;
use crate::output::OutputFormat;

#[derive(Debug, Parser)]
#[command(name = "prismctl", version, about = "Operate a Prism proxy over gRPC")]
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
    /// Check the proxy's gRPC health service; fails unless it is serving.
    Health,
    /// Inspect namespaces: `explain NAME` says which backend serves one and why.
    #[command(subcommand)]
    Namespace(NamespaceCommand),
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
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    // clap prints usage errors itself and exits with code 2.
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Kv(command) => kv::run(command, &cli.target, cli.output)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Health => health::run(&cli.target, cli.output).await,
        Command::Login(args) => login::login(args).await.map(|()| ExitCode::SUCCESS),
        Command::Logout => login::logout().map(|()| ExitCode::SUCCESS),
        Command::Whoami => whoami::run(&cli.target, cli.output)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Namespace(command) => namespace::run(command, &cli.target, cli.output)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Audit(command) => audit::run(command, &cli.target, cli.output)
            .await
            .map(|()| ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|err| errors::report(&err))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
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
        assert_eq!(cli.target.addr, "h:1");
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
