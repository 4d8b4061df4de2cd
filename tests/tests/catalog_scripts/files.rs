//! Scripts that look at or clean up files: disk-usage and clean-temp.

use super::*;

#[test]
fn disk_usage_lists_the_largest_directory_first() -> Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir(dir.path().join("big"))?;
    std::fs::create_dir(dir.path().join("small"))?;
    std::fs::write(dir.path().join("big/blob"), vec![7u8; 3 * 1024 * 1024])?;
    std::fs::write(dir.path().join("small/note"), b"x")?;
    let path = dir.path().to_str().context("UTF-8 temp path")?;
    let r = run("disk-usage", &[("path", path), ("top", "5")])?;
    ensure!(r.code == Some(0), "{r}");
    ensure!(r.has("Filesystem holding") && r.has("(total)"), "{r}");
    let big = r
        .stdout
        .find(&format!("{path}/big"))
        .context("big missing")?;
    let small = r
        .stdout
        .find(&format!("{path}/small"))
        .context("small missing")?;
    ensure!(big < small, "largest first:\n{r}");
    Ok(())
}

#[test]
fn disk_usage_missing_directory_and_relative_paths_are_refused() -> Result<()> {
    let r = run("disk-usage", &[("path", "/nonexistent-deskside-dir")])?;
    ensure!(r.code == Some(1), "{r}");
    ensure!(r.stderr.contains("does not exist"), "{r}");
    let (entry, _) = load("disk-usage")?;
    for bad in ["/tmp/../etc", "relative", "/a/./b", "/tmp/x;id", "/$(id)"] {
        ensure!(
            entry.resolve_params(&given(&[("path", bad)])).is_err(),
            "{bad}"
        );
    }
    Ok(())
}

#[test]
fn clean_temp_dry_run_only_lists_old_files() -> Result<()> {
    let dir = tmp_dir()?;
    let old = dir.path().join("old.log");
    let new = dir.path().join("new.log");
    std::fs::write(&old, b"old")?;
    std::fs::write(&new, b"new")?;
    age(&old, 30)?;
    let path = dir.path().to_str().context("UTF-8 temp path")?;
    let r = run("clean-temp", &[("path", path), ("days", "7")])?;
    ensure!(r.code == Some(0), "{r}");
    ensure!(r.has("Dry run: listing only"), "{r}");
    ensure!(r.has("would delete 1 file(s)"), "{r}");
    ensure!(
        r.stdout.contains("old.log") && !r.stdout.contains("new.log"),
        "{r}"
    );
    ensure!(old.exists() && new.exists(), "a dry run deleted something");
    Ok(())
}

#[test]
fn clean_temp_deletes_only_old_regular_files() -> Result<()> {
    let dir = tmp_dir()?;
    // The build may itself live under /tmp (a clone in /tmp): pick a place that is not.
    let base = [
        "/dev/shm",
        env!("CARGO_TARGET_TMPDIR"),
        env!("CARGO_MANIFEST_DIR"),
    ]
    .into_iter()
    .map(std::path::PathBuf::from)
    .find(|p| {
        p.canonicalize()
            .is_ok_and(|c| !c.starts_with("/tmp") && !c.starts_with("/var/tmp"))
    })
    .context("no directory outside /tmp and /var/tmp to play the victim")?;
    let outside = tempfile::tempdir_in(base)?;
    let precious = outside.path().join("precious");
    std::fs::write(&precious, b"keep")?;
    age(&precious, 30)?;

    let old = dir.path().join("sub/old.log");
    let new = dir.path().join("new.log");
    let private = dir
        .path()
        .join("systemd-private-abc-cups.service-x/tmp/old");
    let link = dir.path().join("link-to-precious");
    std::fs::create_dir_all(dir.path().join("sub"))?;
    std::fs::create_dir_all(private.parent().context("parent")?)?;
    for f in [&old, &new, &private] {
        std::fs::write(f, b"data")?;
    }
    std::os::unix::fs::symlink(&precious, &link)?;
    for f in [&old, &private, &link] {
        age(f, 30)?;
    }
    let path = dir.path().to_str().context("UTF-8 temp path")?;
    let r = run(
        "clean-temp",
        &[("path", path), ("days", "7"), ("dry_run", "false")],
    )?;
    ensure!(r.code == Some(0), "{r}");
    ensure!(r.has("deleted 1 file(s); 0 could not be deleted"), "{r}");
    ensure!(!old.exists(), "old file survived");
    ensure!(new.exists(), "new file was deleted");
    ensure!(private.exists(), "a service's private tmp was touched");
    ensure!(
        precious.exists() && link.symlink_metadata().is_ok(),
        "symlink followed"
    );
    Ok(())
}

#[test]
fn clean_temp_refuses_to_leave_tmp() -> Result<()> {
    // /tmp/X/escape -> a directory elsewhere: the path matches the pattern, but resolves
    // outside /tmp, so nothing there may be deleted.
    let dir = tmp_dir()?;
    // The build may itself live under /tmp (a clone in /tmp): pick a place that is not.
    let base = [
        "/dev/shm",
        env!("CARGO_TARGET_TMPDIR"),
        env!("CARGO_MANIFEST_DIR"),
    ]
    .into_iter()
    .map(std::path::PathBuf::from)
    .find(|p| {
        p.canonicalize()
            .is_ok_and(|c| !c.starts_with("/tmp") && !c.starts_with("/var/tmp"))
    })
    .context("no directory outside /tmp and /var/tmp to play the victim")?;
    let outside = tempfile::tempdir_in(base)?;
    std::fs::create_dir(outside.path().join("victim"))?;
    let precious = outside.path().join("victim/precious");
    std::fs::write(&precious, b"keep")?;
    age(&precious, 30)?;
    std::os::unix::fs::symlink(outside.path(), dir.path().join("escape"))?;
    let through = dir.path().join("escape/victim");
    let path = through.to_str().context("UTF-8 temp path")?;
    let r = run("clean-temp", &[("path", path), ("dry_run", "false")])?;
    ensure!(r.code == Some(1), "{r}");
    ensure!(
        r.stderr.contains("outside /tmp and /var/tmp; refusing"),
        "{r}"
    );
    ensure!(precious.exists(), "deleted outside /tmp");

    let link = dir.path().join("escape");
    let r = run(
        "clean-temp",
        &[
            ("path", link.to_str().context("UTF-8")?),
            ("dry_run", "false"),
        ],
    )?;
    ensure!(r.code == Some(1), "{r}");
    ensure!(r.stderr.contains("is a symbolic link"), "{r}");

    let (entry, _) = load("clean-temp")?;
    for bad in ["/etc", "/tmpfoo", "/tmp/../etc", "/var/tmp/./x", "/home/u"] {
        ensure!(
            entry.resolve_params(&given(&[("path", bad)])).is_err(),
            "{bad}"
        );
    }
    Ok(())
}
