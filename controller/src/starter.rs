//! The starter catalog, built into the binary so `deskside demo` works from anywhere.
//! The files themselves live in `catalog/` at the repository root; admins load those
//! with `deskside script add catalog/*.toml`.

use std::path::{Path, PathBuf};

/// (name, manifest, body file name, body) for every script in `catalog/`.
pub const SCRIPTS: &[(&str, &str, &str, &str)] = &[
    (
        "clean-temp",
        include_str!("../../catalog/clean-temp.toml"),
        "clean-temp.sh",
        include_str!("../../catalog/clean-temp.sh"),
    ),
    (
        "clear-print-queue",
        include_str!("../../catalog/clear-print-queue.toml"),
        "clear-print-queue.sh",
        include_str!("../../catalog/clear-print-queue.sh"),
    ),
    (
        "collect-logs",
        include_str!("../../catalog/collect-logs.toml"),
        "collect-logs.sh",
        include_str!("../../catalog/collect-logs.sh"),
    ),
    (
        "connectivity-check",
        include_str!("../../catalog/connectivity-check.toml"),
        "connectivity-check.sh",
        include_str!("../../catalog/connectivity-check.sh"),
    ),
    (
        "disk-usage",
        include_str!("../../catalog/disk-usage.toml"),
        "disk-usage.sh",
        include_str!("../../catalog/disk-usage.sh"),
    ),
    (
        "flush-dns",
        include_str!("../../catalog/flush-dns.toml"),
        "flush-dns.sh",
        include_str!("../../catalog/flush-dns.sh"),
    ),
    (
        "kill-process",
        include_str!("../../catalog/kill-process.toml"),
        "kill-process.sh",
        include_str!("../../catalog/kill-process.sh"),
    ),
    (
        "network-info",
        include_str!("../../catalog/network-info.toml"),
        "network-info.sh",
        include_str!("../../catalog/network-info.sh"),
    ),
    (
        "pending-updates",
        include_str!("../../catalog/pending-updates.toml"),
        "pending-updates.sh",
        include_str!("../../catalog/pending-updates.sh"),
    ),
    (
        "repair-packages",
        include_str!("../../catalog/repair-packages.toml"),
        "repair-packages.sh",
        include_str!("../../catalog/repair-packages.sh"),
    ),
    (
        "reset-network",
        include_str!("../../catalog/reset-network.toml"),
        "reset-network.sh",
        include_str!("../../catalog/reset-network.sh"),
    ),
    (
        "restart-service",
        include_str!("../../catalog/restart-service.toml"),
        "restart-service.sh",
        include_str!("../../catalog/restart-service.sh"),
    ),
    (
        "resync-clock",
        include_str!("../../catalog/resync-clock.toml"),
        "resync-clock.sh",
        include_str!("../../catalog/resync-clock.sh"),
    ),
    (
        "top-processes",
        include_str!("../../catalog/top-processes.toml"),
        "top-processes.sh",
        include_str!("../../catalog/top-processes.sh"),
    ),
];

/// Writes the starter catalog into `dir`; returns the manifest paths.
pub fn write_to(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut manifests = Vec::with_capacity(SCRIPTS.len());
    for (name, manifest, body_name, body) in SCRIPTS {
        std::fs::write(dir.join(body_name), body)?;
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, manifest)?;
        manifests.push(path);
    }
    Ok(manifests)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_list_matches_the_catalog_directory() -> std::io::Result<()> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../catalog");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)?
            .filter_map(|e| {
                e.ok()?
                    .file_name()
                    .to_str()?
                    .strip_suffix(".toml")
                    .map(str::to_owned)
            })
            .collect();
        on_disk.sort();
        let embedded: Vec<String> = SCRIPTS.iter().map(|s| s.0.to_owned()).collect();
        assert_eq!(
            embedded, on_disk,
            "add new catalog scripts to controller/src/starter.rs"
        );
        assert!(SCRIPTS.len() >= 12);
        Ok(())
    }

    #[test]
    fn every_embedded_script_loads_and_validates() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        for manifest in write_to(dir.path())? {
            crate::catalog::load(&manifest)?;
        }
        Ok(())
    }
}
