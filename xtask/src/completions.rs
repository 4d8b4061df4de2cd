//! Shell completions, named the way each shell's vendor directory expects: bash looks up
//! `completions/<command>`, zsh `_<command>` on its fpath, fish `<command>.fish`.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Command;
use clap_complete::Shell;

/// Writes `dir/{bash,zsh,fish}/<file>` for `cmd`; returns their paths.
pub fn write_all(cmd: Command, dir: &Path) -> Result<Vec<PathBuf>> {
    let name = cmd.get_name().to_owned();
    let targets = [
        (Shell::Bash, "bash", name.clone()),
        (Shell::Zsh, "zsh", format!("_{name}")),
        (Shell::Fish, "fish", format!("{name}.fish")),
    ];
    let mut written = Vec::new();
    for (shell, subdir, file_name) in targets {
        let shell_dir = dir.join(subdir);
        fs::create_dir_all(&shell_dir)
            .with_context(|| format!("creating {}", shell_dir.display()))?;
        let path = shell_dir.join(file_name);
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut out = BufWriter::new(file);
        let mut cmd = cmd.clone();
        clap_complete::generate(shell, &mut cmd, name.as_str(), &mut out);
        out.flush()
            .with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}
