//! The secrets built into the agent, which it never sends whatever the machine's policy
//! says: where each kind lives, as globs.

use std::sync::LazyLock;

use deskside_proto::msg::files::SecretKind;
use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

/// One kind of built-in secret: absolute globs, and globs relative to any home
/// directory (matched by path anywhere: `**/<glob>`). A `**` only as the last component.
pub(super) struct Secret {
    pub kind: SecretKind,
    pub system: &'static [&'static str],
    pub home: &'static [&'static str],
}

pub(super) const SECRETS: &[Secret] = &[
    Secret {
        kind: SecretKind::PasswordHashes,
        system: &[
            "/etc/shadow",
            "/etc/shadow-",
            "/etc/gshadow",
            "/etc/gshadow-",
            "/etc/security/opasswd",
        ],
        home: &[],
    },
    Secret {
        kind: SecretKind::SshHostKey,
        system: &["/etc/ssh/ssh_host_*_key", "/etc/ssh/ssh_host_key"],
        home: &[],
    },
    Secret {
        kind: SecretKind::SshUserKey,
        system: &[],
        home: &[
            ".ssh/id_dsa",
            ".ssh/id_rsa",
            ".ssh/id_ecdsa",
            ".ssh/id_ecdsa_sk",
            ".ssh/id_ed25519",
            ".ssh/id_ed25519_sk",
            ".ssh/id_xmss",
            ".ssh/identity",
            ".ssh/*.pem",
            ".ssh/*.key",
        ],
    },
    Secret {
        kind: SecretKind::Keyring,
        system: &[],
        home: &[
            ".local/share/keyrings/**",
            ".gnupg/private-keys-v1.d/**",
            ".gnupg/secring.gpg",
            ".local/share/kwalletd/**",
            ".kde/share/apps/kwallet/**",
            ".kde4/share/apps/kwallet/**",
            ".password-store/**",
        ],
    },
    Secret {
        kind: SecretKind::BrowserCredentials,
        system: &[],
        home: &[
            ".mozilla/firefox/*/logins.json",
            ".mozilla/firefox/*/key3.db",
            ".mozilla/firefox/*/key4.db",
            ".mozilla/firefox/*/cookies.sqlite",
            ".config/google-chrome/*/Login Data",
            ".config/google-chrome/*/Cookies",
            ".config/google-chrome/*/Network/Cookies",
            ".config/chromium/*/Login Data",
            ".config/chromium/*/Cookies",
            ".config/chromium/*/Network/Cookies",
            ".config/microsoft-edge/*/Login Data",
            ".config/microsoft-edge/*/Network/Cookies",
            ".config/BraveSoftware/Brave-Browser/*/Login Data",
            ".config/BraveSoftware/Brave-Browser/*/Network/Cookies",
        ],
    },
    Secret {
        kind: SecretKind::NetworkSecrets,
        system: &[
            "/etc/NetworkManager/system-connections/**",
            "/var/lib/iwd/**",
            "/etc/wpa_supplicant/*.conf",
            "/etc/wireguard/**",
            "/etc/ppp/chap-secrets",
            "/etc/ppp/pap-secrets",
        ],
        home: &[],
    },
    Secret {
        kind: SecretKind::MachineCredentials,
        system: &[
            "/etc/ssl/private/**",
            "/etc/pki/tls/private/**",
            "/etc/krb5.keytab",
            "/var/lib/sss/secrets/**",
            "/etc/sssd/sssd.conf",
        ],
        home: &[],
    },
    Secret {
        kind: SecretKind::UserCredentials,
        system: &[],
        home: &[
            ".netrc",
            ".git-credentials",
            ".pgpass",
            ".aws/credentials",
            ".config/gcloud/credentials.db",
            ".azure/msal_token_cache.json",
            ".docker/config.json",
            ".kube/config",
            ".config/gh/hosts.yml",
        ],
    },
];

pub(super) fn glob(pattern: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(pattern).literal_separator(true).build()
}

/// The built-in secrets as path matchers, compiled once (a few milliseconds).
pub(super) static SECRET_GLOBS: LazyLock<Vec<(SecretKind, GlobSet)>> = LazyLock::new(secret_globs);

/// The built-in secrets as path matchers, in the order of [`SECRETS`].
fn secret_globs() -> Vec<(SecretKind, GlobSet)> {
    SECRETS
        .iter()
        .filter_map(|s| {
            let mut set = GlobSetBuilder::new();
            for p in s.system {
                set.add(glob(p).ok()?);
            }
            for p in s.home {
                set.add(glob(&format!("**/{p}")).ok()?);
            }
            Some((s.kind, set.build().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_list_compiles_and_keeps_double_stars_last() {
        assert_eq!(secret_globs().len(), SECRETS.len());
        for s in SECRETS {
            for p in s.system.iter().chain(s.home) {
                let parts: Vec<&str> = p.split('/').collect();
                let stars = parts.iter().position(|c| *c == "**");
                assert!(
                    stars.is_none_or(|i| i + 1 == parts.len()),
                    "{p}: ** only last"
                );
            }
        }
    }
}
