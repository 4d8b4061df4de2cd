//! `cargo run -p xtask -- dist DIR`: writes the man pages and shell completions that the
//! `.deb` packages install, generated from the clap definitions of both binaries.

mod completions;
mod man;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "xtask", about = "Deskside build helpers")]
struct Args {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Write man pages and bash/zsh/fish completions for `deskside` and `deskside-agent`
    /// into DIR/BINARY/man/man1/ and DIR/BINARY/completions/SHELL/ (each binary's
    /// subdirectory is replaced, so pages of removed subcommands do not linger). The
    /// man/ directories work as MANPATH entries.
    Dist {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    match args.task {
        Task::Dist { dir } => match dist(&dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn dist(dir: &Path) -> Result<()> {
    let binaries = [
        deskside_controller::cli::Cli::command(),
        deskside_agent::cli::Cli::command(),
    ];
    for cmd in binaries {
        let name = cmd.get_name().to_owned();
        let out = dir.join(&name);
        if out.exists() {
            fs::remove_dir_all(&out)
                .with_context(|| format!("removing the old output in {}", out.display()))?;
        }
        let pages = man::write_pages(cmd.clone(), &out.join("man").join("man1"))
            .with_context(|| format!("writing the man pages of {name}"))?;
        let scripts = completions::write_all(cmd, &out.join("completions"))
            .with_context(|| format!("writing the shell completions of {name}"))?;
        println!(
            "{name}: {} man pages, {} completion scripts in {}",
            pages.len(),
            scripts.len(),
            out.display()
        );
        for path in pages.iter().chain(&scripts) {
            println!("  {}", path.display());
        }
    }
    Ok(())
}
