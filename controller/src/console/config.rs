//! `[console]` in `controller.toml`: where the web console listens and how it does TLS.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use deskside_config::FileKeys;

const CONSOLE_KEYS: &str = "expected listen, cert, key, names, proxy";

/// How the console's connections are secured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleTls {
    /// HTTPS with a certificate the controller's CA issues at start for `localhost`, the
    /// loopback addresses and these extra names; browsers trust it once the CA is
    /// imported (`deskside console ca`).
    Issued { names: Vec<String> },
    /// HTTPS with the admin's own certificate chain and key (PEM files).
    Files { cert: PathBuf, key: PathBuf },
    /// Plain HTTP on loopback behind a reverse proxy that terminates TLS; only this
    /// address's `X-Forwarded-For` is believed.
    BehindProxy { proxy: IpAddr },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleConfig {
    pub listen: SocketAddr,
    pub tls: ConsoleTls,
}

impl ConsoleConfig {
    /// HTTPS with a CA-issued certificate on `listen` (the demo's and the tests' choice).
    pub fn issued(listen: SocketAddr) -> ConsoleConfig {
        ConsoleConfig {
            listen,
            tls: ConsoleTls::Issued { names: Vec::new() },
        }
    }
}

/// Parses the `[console]` table.
pub fn parse(
    f: &FileKeys<'_>,
    table: &toml::Table,
) -> Result<ConsoleConfig, deskside_config::ConfigError> {
    let (mut listen, mut cert, mut key, mut proxy) = (None, None, None, None);
    let mut names = Vec::new();
    for (k, v) in table {
        match k.as_str() {
            "listen" => {
                listen = Some(
                    f.string("console.listen", v)?
                        .parse::<SocketAddr>()
                        .map_err(|_| {
                            f.invalid(
                                "console.listen",
                                v,
                                "not a socket address (HOST:PORT with an IP, e.g. 0.0.0.0:8443)",
                            )
                        })?,
                );
            }
            "cert" => cert = Some(f.dir("console.cert", v)?),
            "key" => key = Some(f.dir("console.key", v)?),
            "names" => {
                let list = v
                    .as_array()
                    .ok_or_else(|| f.invalid("console.names", v, "must be a list of DNS names"))?;
                for name in list {
                    let name = f.string("console.names", name)?;
                    if name.is_empty()
                        || name.len() > 253
                        || !name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
                    {
                        return Err(f.invalid("console.names", v, "each must be a DNS name"));
                    }
                    names.push(name.to_owned());
                }
            }
            "proxy" => {
                proxy = Some(
                    f.string("console.proxy", v)?
                        .parse::<IpAddr>()
                        .map_err(|_| {
                            f.invalid("console.proxy", v, "must be the reverse proxy's IP address")
                        })?,
                );
            }
            other => return Err(f.unknown(&format!("console.{other}"), CONSOLE_KEYS)),
        }
    }
    let empty = toml::Value::Table(table.clone());
    let listen = listen.ok_or_else(|| {
        f.invalid(
            "console",
            &empty,
            "needs listen (e.g. listen = \"0.0.0.0:8443\")",
        )
    })?;
    let tls = match (cert, key, proxy) {
        (None, None, None) => ConsoleTls::Issued { names },
        (Some(cert), Some(key), None) => ConsoleTls::Files { cert, key },
        (None, None, Some(proxy)) => {
            if !listen.ip().is_loopback() {
                return Err(f.invalid(
                    "console.proxy",
                    &empty,
                    format!(
                        "plain HTTP behind a proxy is only served on loopback, and listen is {listen}; listen on 127.0.0.1 or ::1, or drop proxy to serve HTTPS"
                    ),
                ));
            }
            ConsoleTls::BehindProxy { proxy }
        }
        (_, _, Some(_)) => {
            return Err(f.invalid(
                "console.proxy",
                &empty,
                "is for plain HTTP behind a proxy; drop cert and key, or drop proxy",
            ));
        }
        _ => {
            return Err(f.invalid(
                "console.cert",
                &empty,
                "cert and key go together: give both, or neither for a certificate from the controller's CA",
            ));
        }
    };
    Ok(ConsoleConfig { listen, tls })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn parsed(text: &str) -> Result<ConsoleConfig, String> {
        let table: toml::Table = text.parse().map_err(|e| format!("{e}"))?;
        let f = FileKeys {
            path: Path::new("/etc/deskside/controller.toml"),
        };
        parse(&f, &table).map_err(|e| e.to_string())
    }

    #[test]
    fn https_is_the_default_and_plain_http_only_behind_a_loopback_proxy() {
        assert_eq!(
            parsed(r#"listen = "0.0.0.0:8443""#),
            Ok(ConsoleConfig {
                listen: "0.0.0.0:8443"
                    .parse()
                    .unwrap_or(SocketAddr::from(([0; 4], 0))),
                tls: ConsoleTls::Issued { names: vec![] }
            })
        );
        let files = parsed("listen = \"0.0.0.0:443\"\ncert = \"c.pem\"\nkey = \"k.pem\"");
        assert!(matches!(
            files.map(|c| c.tls),
            Ok(ConsoleTls::Files { cert, .. }) if cert == Path::new("/etc/deskside/c.pem")
        ));
        assert!(parsed("listen = \"127.0.0.1:8080\"\nproxy = \"127.0.0.1\"").is_ok());
        let open = parsed("listen = \"0.0.0.0:8080\"\nproxy = \"127.0.0.1\"");
        assert!(open.is_err_and(|e| e.contains("only served on loopback")));
        assert!(
            parsed("listen = \"0.0.0.0:443\"\ncert = \"c.pem\"")
                .is_err_and(|e| e.contains("go together"))
        );
        assert!(parsed("cert = \"c.pem\"").is_err_and(|e| e.contains("needs listen")));
        assert!(
            parsed("listen = \"0.0.0.0:1\"\nport = 3").is_err_and(|e| e.contains("console.port"))
        );
        assert!(parsed("listen = \"0.0.0.0:1\"\nnames = [\"a b\"]").is_err());
    }
}
