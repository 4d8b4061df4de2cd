//! Man pages (section 1): one for the binary and one per subcommand, at every depth
//! (`deskside.1`, `deskside-serve.1`, `deskside-token-create.1`, …).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Command;
use clap_mangen::Man;

/// Writes the pages of `cmd` and all its visible subcommands into `dir`; returns their paths.
pub fn write_pages(cmd: Command, dir: &Path) -> Result<Vec<PathBuf>> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Without clap's implicit `help` subcommand (no page for it); `build` fills in the
    // display names (`deskside-token-create`) the page titles and file names use.
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    // Subcommands have no version of their own: every page names the binary's.
    let source = format!(
        "{} {}",
        cmd.get_name(),
        cmd.get_version().unwrap_or_default()
    );
    let mut written = Vec::new();
    write_tree(&cmd, &source, dir, &mut written)?;
    Ok(written)
}

fn write_tree(cmd: &Command, source: &str, dir: &Path, written: &mut Vec<PathBuf>) -> Result<()> {
    let page = Man::new(cmd.clone())
        .source(source)
        .manual("Deskside Manual");
    let path = page
        .generate_to(dir)
        .with_context(|| format!("writing the man page of `{}`", cmd.get_name()))?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_tree(sub, source, dir, written)?;
    }
    Ok(())
}
