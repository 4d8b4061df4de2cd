//! A technician's profile: who they are, their key and certificate, and where the
//! controller is. Written by `deskside login`, read by every technician command.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use deskside_proto::msg::identity::Tier;
use serde::{Deserialize, Serialize};

/// A profile is a few PEM blocks; anything larger is not one.
const MAX_PROFILE_BYTES: u64 = 64 * 1024;

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// `HOST:PORT` of the controller.
    pub controller: String,
    pub name: String,
    pub tier: Tier,
    pub cert_not_after_secs: u64,
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profile")
            .field("controller", &self.controller)
            .field("name", &self.name)
            .field("tier", &self.tier)
            .finish_non_exhaustive()
    }
}

/// `DESKSIDE_PROFILE`, else `<config dir>/deskside/profile.toml`.
pub fn default_path() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("DESKSIDE_PROFILE") {
        return Ok(PathBuf::from(p));
    }
    let dir =
        dirs::config_dir().context("no config directory for this user; set DESKSIDE_PROFILE")?;
    Ok(dir.join("deskside").join("profile.toml"))
}

impl Profile {
    pub fn load(path: &Path) -> Result<Profile> {
        let file = fs::File::open(path).with_context(|| {
            format!(
                "no technician profile at {}; run `deskside login TOKEN` with the token from `deskside tech add`",
                path.display()
            )
        })?;
        let mut text = String::new();
        file.take(MAX_PROFILE_BYTES + 1)
            .read_to_string(&mut text)
            .with_context(|| format!("reading {}", path.display()))?;
        if text.len() as u64 > MAX_PROFILE_BYTES {
            bail!(
                "{} is larger than {MAX_PROFILE_BYTES} bytes; it is not a Deskside profile",
                path.display()
            );
        }
        toml::from_str(&text).with_context(|| format!("{} is not a valid profile", path.display()))
    }

    /// Writes the profile readable by its owner only, replacing any previous one.
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let text = toml::to_string(self).context("encoding the profile")?;
        let tmp = path.with_extension("toml.tmp");
        let _ = fs::remove_file(&tmp);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_round_trip_and_bad_files() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("p/profile.toml");
        let p = Profile {
            controller: "127.0.0.1:1".into(),
            name: "alice".into(),
            tier: Tier::L2,
            cert_not_after_secs: 5,
            ca_pem: "ca".into(),
            cert_pem: "c".into(),
            key_pem: "k".into(),
        };
        p.save(&path)?;
        let back = Profile::load(&path)?;
        assert_eq!((back.name.as_str(), back.tier), ("alice", Tier::L2));
        fs::write(&path, "name = 3")?;
        assert!(Profile::load(&path).is_err());
        let missing = Profile::load(&dir.path().join("none"))
            .err()
            .map(|e| format!("{e:#}"));
        assert!(missing.unwrap_or_default().contains("deskside login"));
        Ok(())
    }
}
