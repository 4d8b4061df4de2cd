//! `cargo run -p xtask -- dist DIR`: writes the man pages and shell completions that the
//! `.deb` packages install, generated from the clap definitions of both binaries.
//! `cargo xtask cycles`: lists import cycles between the files of each crate.

mod completions;
mod cycles;
mod man;
mod modules;

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
    /// Print each import cycle between the files of a crate as `a → b → c → a`, for
    /// every crate target of the workspace; exits 1 if there is any.
    Cycles,
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
        Task::Cycles => match report_cycles() {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Prints the cycles found; true when there are none.
fn report_cycles() -> Result<bool> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask lives in the workspace")?;
    let targets = cycles::targets(workspace)?;
    let found = cycles::check(&targets)?;
    for f in &found {
        println!("{}:", f.target);
        for c in &f.cycles {
            println!("  {}", cycles::show(c));
        }
    }
    let total: usize = found.iter().map(|f| f.cycles.len()).sum();
    match total {
        0 => println!("no import cycles in {} targets", targets.len()),
        n => println!(
            "{n} import cycles; break each by moving what both sides need into a module of its own"
        ),
    }
    Ok(total == 0)
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
