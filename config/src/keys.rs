//! Reading one config file and checking its values, with errors that name the file (or
//! the environment variable), the key, the value and the reason.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::duration::parse_duration;
use crate::error::{ConfigError, Origin};
use crate::log::{LogFormat, check_log_level, parse_log_format};

/// Reads a config file of at most `max_bytes`; `named_by` says who chose the file
/// (`--config`, an environment variable, the default location) for the error.
pub fn read_config(path: &Path, named_by: &str, max_bytes: u64) -> Result<String, ConfigError> {
    let read_error = |source| ConfigError::Read {
        path: path.to_owned(),
        named_by: named_by.to_owned(),
        source,
    };
    if let Ok(m) = std::fs::metadata(path)
        && m.len() > max_bytes
    {
        return Err(read_error(std::io::Error::other(format!(
            "{} bytes is too large for a config file (limit {max_bytes})",
            m.len()
        ))));
    }
    std::fs::read_to_string(path).map_err(read_error)
}

/// Parses config text as a TOML table; `path` names the file in the error.
pub fn parse_toml(text: &str, path: &Path) -> Result<toml::Table, ConfigError> {
    text.parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })
}

/// Renders a TOML value for an error message: strings quoted, tables not spelled out.
pub fn render(value: &toml::Value) -> String {
    match value {
        toml::Value::Table(_) => "(a table)".to_owned(),
        other => other.to_string(),
    }
}

/// An error for an environment override.
pub fn env_invalid(var: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        origin: Origin::Env,
        key: var.to_owned(),
        value: format!("{value:?}"),
        reason: reason.into(),
    }
}

/// Helpers to validate one file's values with errors that name the file and key.
#[derive(Debug)]
pub struct FileKeys<'a> {
    pub path: &'a Path,
}

impl FileKeys<'_> {
    pub fn invalid(
        &self,
        key: &str,
        value: &toml::Value,
        reason: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            origin: Origin::File(self.path.to_owned()),
            key: key.to_owned(),
            value: render(value),
            reason: reason.into(),
        }
    }

    pub fn unknown(&self, key: &str, expected: &str) -> ConfigError {
        ConfigError::Unknown {
            origin: Origin::File(self.path.to_owned()),
            key: key.to_owned(),
            expected: expected.to_owned(),
        }
    }

    pub fn string<'v>(&self, key: &str, value: &'v toml::Value) -> Result<&'v str, ConfigError> {
        value
            .as_str()
            .ok_or_else(|| self.invalid(key, value, "must be a string (in double quotes)"))
    }

    pub fn table<'v>(
        &self,
        key: &str,
        value: &'v toml::Value,
    ) -> Result<&'v toml::Table, ConfigError> {
        value
            .as_table()
            .ok_or_else(|| self.invalid(key, value, format!("must be a table ([{key}])")))
    }

    /// A directory path; a relative one is taken relative to the config file's directory.
    pub fn dir(&self, key: &str, value: &toml::Value) -> Result<PathBuf, ConfigError> {
        let s = self.string(key, value)?;
        if s.is_empty() {
            return Err(self.invalid(key, value, "is empty; remove the key to use the default"));
        }
        let base = self.path.parent().unwrap_or(Path::new(""));
        Ok(base.join(s))
    }

    pub fn log_format(&self, key: &str, value: &toml::Value) -> Result<LogFormat, ConfigError> {
        parse_log_format(self.string(key, value)?)
            .map_err(|reason| self.invalid(key, value, reason))
    }

    pub fn log_level(&self, key: &str, value: &toml::Value) -> Result<String, ConfigError> {
        let s = self.string(key, value)?;
        check_log_level(s).map_err(|reason| self.invalid(key, value, reason))?;
        Ok(s.to_owned())
    }

    /// Any duration, zero included: the caller checks its range with its own reason.
    pub fn duration(&self, key: &str, value: &toml::Value) -> Result<Duration, ConfigError> {
        let s = self.string(key, value)?;
        parse_duration(s).map_err(|e| self.invalid(key, value, e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_file_key_value_and_reason() -> anyhow::Result<()> {
        let f = FileKeys {
            path: Path::new("/etc/x.toml"),
        };
        let doc = parse_toml("n = 3\ns = \"\"\nt = { a = 1 }\nd = \"soon\"\n", f.path)?;
        let get = |k: &str| doc.get(k).ok_or_else(|| anyhow::anyhow!("no {k}"));
        let e = f.string("n", get("n")?).err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("/etc/x.toml: n = 3: must be a string (in double quotes)")
        );
        let e = f.dir("s", get("s")?).err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("/etc/x.toml: s = \"\": is empty; remove the key to use the default")
        );
        let e = f.string("t", get("t")?).err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("t = (a table)")));
        let e = f.duration("d", get("d")?).err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("d = \"soon\": not a duration")));
        let e = f.unknown("x.y", "expected z").to_string();
        assert_eq!(e, "/etc/x.toml: x.y: unknown key; expected z");
        let e = env_invalid("DESKSIDE_X", "v", "bad").to_string();
        assert_eq!(e, "environment: DESKSIDE_X = \"v\": bad");
        Ok(())
    }

    #[test]
    fn a_relative_dir_is_next_to_the_file() -> anyhow::Result<()> {
        let f = FileKeys {
            path: Path::new("/etc/deskside/x.toml"),
        };
        let d = f.dir("data", &toml::Value::String("data".into()))?;
        assert_eq!(d, PathBuf::from("/etc/deskside/data"));
        Ok(())
    }

    #[test]
    fn reading_is_bounded_and_names_who_chose_the_file() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "x = 1\n")?;
        assert_eq!(read_config(&path, "--config", 100)?, "x = 1\n");
        let e = read_config(&path, "--config", 3)
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("too large for a config file (limit 3)")));
        let missing = dir.path().join("absent.toml");
        let e = read_config(&missing, "DESKSIDE_CONFIG", 100)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("(named by DESKSIDE_CONFIG)"), "{e}");
        let e = parse_toml("[x\n", &path).err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("not valid TOML")));
        Ok(())
    }
}
