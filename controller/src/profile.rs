//! A technician's profile: who they are, their key and certificate, and where the
//! controller is. Written by `deskside login`, read by every technician command.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use deskside_proto::msg::identity::Tier;
use serde::{Deserialize, Serialize};

/// A profile is a few PEM blocks; anything larger is not one.
const MAX_PROFILE_BYTES: u64 = 64 * 1024;

/// Why a profile cannot be found, read or written. Each names the file and, where there
/// is one, what to do next; the I/O or TOML cause is the error's source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    #[error("no config directory for this user; set DESKSIDE_PROFILE")]
    NoConfigDir,
    #[error(
        "no technician profile at {}; run `deskside login TOKEN` with the token from `deskside tech add`",
        .path.display()
    )]
    Missing {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reading {}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is larger than {MAX_PROFILE_BYTES} bytes; it is not a Deskside profile", .path.display())]
    TooLarge { path: PathBuf },
    #[error("{} is not a valid profile", .path.display())]
    Invalid {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("encoding the profile")]
    Encode(#[source] toml::ser::Error),
    #[error("creating {}", .path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "ProfileFile")]
pub struct Profile {
    /// `HOST:PORT` of each controller node; a command tries them in random order.
    pub controllers: Vec<String>,
    pub name: String,
    pub tier: Tier,
    pub cert_not_after_secs: u64,
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// `profile.toml` as any release wrote it: `controllers` now, `controller` (one address)
/// before lists existed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    #[serde(default)]
    controllers: Option<Vec<String>>,
    #[serde(default)]
    controller: Option<String>,
    name: String,
    tier: Tier,
    cert_not_after_secs: u64,
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

impl TryFrom<ProfileFile> for Profile {
    type Error = String;

    fn try_from(f: ProfileFile) -> Result<Profile, String> {
        let listed = match (f.controllers, f.controller) {
            (Some(list), None) => list,
            (None, Some(one)) => vec![one],
            (Some(_), Some(_)) => {
                return Err("has both `controller` and `controllers`; keep `controllers`".into());
            }
            (None, None) => return Err("names no controller (`controllers`)".into()),
        };
        Ok(Profile {
            controllers: deskside_proto::msg::enroll::check_controllers(&listed)
                .map_err(|e| format!("controllers: {e}"))?,
            name: f.name,
            tier: f.tier,
            cert_not_after_secs: f.cert_not_after_secs,
            ca_pem: f.ca_pem,
            cert_pem: f.cert_pem,
            key_pem: f.key_pem,
        })
    }
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profile")
            .field("controllers", &self.controllers)
            .field("name", &self.name)
            .field("tier", &self.tier)
            .finish_non_exhaustive()
    }
}

/// `DESKSIDE_PROFILE`, else `<config dir>/deskside/profile.toml`.
pub fn default_path() -> Result<PathBuf, ProfileError> {
    if let Some(p) = std::env::var_os("DESKSIDE_PROFILE") {
        return Ok(PathBuf::from(p));
    }
    let dir = dirs::config_dir().ok_or(ProfileError::NoConfigDir)?;
    Ok(dir.join("deskside").join("profile.toml"))
}

impl Profile {
    pub fn load(path: &Path) -> Result<Profile, ProfileError> {
        let file = fs::File::open(path).map_err(|source| ProfileError::Missing {
            path: path.to_owned(),
            source,
        })?;
        let mut text = String::new();
        file.take(MAX_PROFILE_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|source| ProfileError::Read {
                path: path.to_owned(),
                source,
            })?;
        if text.len() as u64 > MAX_PROFILE_BYTES {
            return Err(ProfileError::TooLarge {
                path: path.to_owned(),
            });
        }
        toml::from_str(&text).map_err(|source| ProfileError::Invalid {
            path: path.to_owned(),
            source,
        })
    }

    /// Writes the profile readable by its owner only, replacing any previous one.
    pub fn save(&self, path: &Path) -> Result<(), ProfileError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|source| ProfileError::Create {
                path: dir.to_owned(),
                source,
            })?;
        }
        let text = toml::to_string(self).map_err(ProfileError::Encode)?;
        let tmp = path.with_extension("toml.tmp");
        let _ = fs::remove_file(&tmp);
        let create = |source| ProfileError::Create {
            path: tmp.clone(),
            source,
        };
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(create)?;
        f.write_all(text.as_bytes()).map_err(create)?;
        f.sync_all().map_err(create)?;
        fs::rename(&tmp, path).map_err(|source| ProfileError::Write {
            path: path.to_owned(),
            source,
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_round_trip_and_bad_files() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("p/profile.toml");
        let p = Profile {
            controllers: vec!["127.0.0.1:1".into(), "127.0.0.1:2".into()],
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
        assert_eq!(back.controllers, p.controllers);
        // A profile saved before lists existed still loads.
        let old = toml::to_string(&p)?.replace(
            "controllers = [\"127.0.0.1:1\", \"127.0.0.1:2\"]",
            "controller = \"127.0.0.1:1\"",
        );
        assert!(old.contains("controller = "), "{old}");
        fs::write(&path, old)?;
        assert_eq!(
            Profile::load(&path)?.controllers,
            vec!["127.0.0.1:1".to_owned()]
        );
        fs::write(&path, "name = 3")?;
        assert!(Profile::load(&path).is_err());
        let missing = Profile::load(&dir.path().join("none"))
            .err()
            .map(|e| format!("{e:#}"));
        assert!(missing.unwrap_or_default().contains("deskside login"));
        Ok(())
    }
}
