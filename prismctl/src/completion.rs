//! `prismctl completion SHELL`: a shell completion script on stdout.

use std::io::Write;

use clap::{Command, ValueEnum};
use clap_complete::Shell as Generator;

/// The shells completion scripts are made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    /// `source <(prismctl completion bash)`, e.g. in ~/.bashrc.
    Bash,
    /// `prismctl completion zsh > "${fpath[1]}/_prismctl"`.
    Zsh,
    /// `prismctl completion fish > ~/.config/fish/completions/prismctl.fish`.
    Fish,
}

/// Writes the completion script for `shell` and the command `cmd`.
pub fn write(shell: Shell, cmd: &mut Command, out: &mut impl Write) -> anyhow::Result<()> {
    let generator = match shell {
        Shell::Bash => Generator::Bash,
        Shell::Zsh => Generator::Zsh,
        Shell::Fish => Generator::Fish,
    };
    let name = cmd.get_name().to_owned();
    clap_complete::generate(generator, cmd, name, out);
    out.flush()?;
    Ok(())
}
