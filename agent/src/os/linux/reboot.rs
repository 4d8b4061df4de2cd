//! Whether the machine needs a restart, by its distribution's own signal: Debian's and
//! Ubuntu's /var/run/reboot-required, `needs-restarting -r` (Fedora, RHEL and kin),
//! `zypper needs-rebooting` (SUSE), and everywhere the running kernel against the
//! kernels installed under /lib/modules (Arch keeps only the newest). Where none of them
//! could be read the probe fails with the reason: unknown, never a silent "no".

use std::path::Path;

use super::command;
use super::files::{SMALL_FILE_BYTES, read_bounded};
use super::host::{kernel_release, os_release};
use super::kernels::{Kernel, installed_kernels, kernel_check};
use crate::os::{Error, blocking, clip};

/// Packages named in reboot-required.pkgs that we keep.
const MAX_REBOOT_PACKAGES: usize = 256;
/// `zypper needs-rebooting`'s ZYPPER_EXIT_INF_REBOOT_NEEDED.
const ZYPPER_REBOOT_NEEDED: i32 = 102;
const FLAG: &str = "/var/run/reboot-required";
const FLAG_PACKAGES: &str = "/var/run/reboot-required.pkgs";

/// A known answer: required or not, and which packages asked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RebootRequired {
    pub required: bool,
    pub packages: Vec<String>,
}

/// Families whose own restart signal differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    /// Debian, Ubuntu and derivatives: packages touch /var/run/reboot-required.
    Debian,
    /// Fedora, RHEL, CentOS, Rocky, Alma: `needs-restarting -r` (dnf-utils, yum-utils).
    RedHat,
    /// openSUSE, SLES: `zypper needs-rebooting`.
    Suse,
    /// Everything else (Arch, Alpine, …): only the kernel check.
    Other,
}

/// The family from os-release's `ID` and `ID_LIKE`.
pub(crate) fn family(id: &str, id_like: &str) -> Family {
    let ids = || std::iter::once(id).chain(id_like.split_whitespace());
    // Prefixes: `opensuse-tumbleweed`, `opensuse-leap` and such name their family first.
    let any = |names: &[&str]| ids().any(|i| names.iter().any(|n| i.starts_with(n)));
    if any(&["debian", "ubuntu"]) {
        Family::Debian
    } else if any(&["fedora", "rhel", "centos", "rocky", "almalinux"]) {
        Family::RedHat
    } else if any(&["suse", "opensuse", "sles"]) {
        Family::Suse
    } else {
        Family::Other
    }
}

/// Everything the verdict rests on, read from the machine (or a fixture).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Signals {
    pub family: Family,
    /// /var/run/reboot-required exists: the packages its .pkgs list names.
    pub flag: Option<Vec<String>>,
    /// The family's tool: `Some(Ok(required))`, `Some(Err(why not))`, `None` where the
    /// family has none.
    pub tool: Option<Result<bool, String>>,
    pub kernel: Result<Kernel, String>,
}

/// The verdict: any signal asking for a restart wins; otherwise "no" needs a signal that
/// was read; otherwise unknown, with every reason.
pub(crate) fn decide(s: Signals) -> Result<RebootRequired, String> {
    let required = |packages| {
        Ok(RebootRequired {
            required: true,
            packages,
        })
    };
    if let Some(packages) = s.flag {
        return required(packages);
    }
    if let Some(Ok(true)) = s.tool {
        return required(Vec::new());
    }
    if let Ok(Kernel::Newer { .. } | Kernel::Gone { .. }) = s.kernel {
        return required(Vec::new());
    }
    let no = Ok(RebootRequired::default());
    if s.family == Family::Debian || matches!(s.tool, Some(Ok(false))) {
        return no;
    }
    if s.kernel == Ok(Kernel::Current) {
        return no;
    }
    let mut reasons = Vec::new();
    if let Some(Err(e)) = &s.tool {
        reasons.push(e.clone());
    }
    if let Err(e) = &s.kernel {
        reasons.push(e.clone());
    }
    Err(format!(
        "cannot tell whether a restart is needed: {}",
        reasons.join("; ")
    ))
}

/// What `needs-restarting -r` said: exit 1 means a restart is needed, 0 that it is not.
pub(crate) fn needs_restarting_verdict(code: Option<i32>, stderr: &str) -> Result<bool, String> {
    match code {
        Some(0) => Ok(false),
        Some(1) => Ok(true),
        _ => Err(format!("`needs-restarting -r` failed: {stderr}")),
    }
}

/// What `zypper needs-rebooting` said: exit 102 means a restart is needed, 0 not.
pub(crate) fn zypper_verdict(code: Option<i32>, stderr: &str) -> Result<bool, String> {
    match code {
        Some(0) => Ok(false),
        Some(ZYPPER_REBOOT_NEEDED) => Ok(true),
        _ => Err(format!("`zypper needs-rebooting` failed: {stderr}")),
    }
}

/// Whether this machine needs a restart, and which packages asked for it.
pub async fn reboot_required() -> Result<RebootRequired, Error> {
    let (family, flag, kernel) = blocking(read_files).await?;
    let tool = match family {
        Family::RedHat => Some(
            command::exit_code_of("needs-restarting", &["-r"])
                .await
                .map_err(|e| e.to_string())
                .and_then(|(code, err)| needs_restarting_verdict(code, &err)),
        ),
        Family::Suse => Some(
            command::exit_code_of("zypper", &["--non-interactive", "needs-rebooting"])
                .await
                .map_err(|e| e.to_string())
                .and_then(|(code, err)| zypper_verdict(code, &err)),
        ),
        Family::Debian | Family::Other => None,
    };
    decide(Signals {
        family,
        flag,
        tool,
        kernel,
    })
    .map_err(Error::Unavailable)
}

type FileSignals = (Family, Option<Vec<String>>, Result<Kernel, String>);

fn read_files() -> Result<FileSignals, Error> {
    let release = os_release().ok();
    let family = release
        .as_ref()
        .map_or(Family::Other, |r| family(&r.id, &r.id_like));
    let flag_path = Path::new(FLAG);
    let flagged = flag_path.try_exists().map_err(|source| Error::Read {
        path: FLAG.to_owned(),
        source,
    })?;
    // The list is optional: a reboot can be required without it.
    let flag = flagged.then(|| {
        read_bounded(FLAG_PACKAGES, SMALL_FILE_BYTES)
            .map(|text| unique_lines(&text, MAX_REBOOT_PACKAGES))
            .unwrap_or_default()
    });
    let kernel = kernel_release()
        .map_err(|e| e.to_string())
        .and_then(|running| kernel_check(&running, &installed_kernels()?));
    Ok((family, flag, kernel))
}

/// Non-empty trimmed lines, first occurrence kept, at most `max`.
fn unique_lines(text: &str, max: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if out.len() >= max {
            break;
        }
        if !out.iter().any(|seen| seen == line) {
            out.push(clip(line));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::host::parse_os_release;
    use super::*;

    #[test]
    fn reboot_packages_deduplicated() {
        let pkgs = unique_lines("linux-image-6.1.0\nlibc6\n\nlibc6\n", 10);
        assert_eq!(pkgs, ["linux-image-6.1.0", "libc6"]);
        assert_eq!(unique_lines("a\nb\nc\n", 2), ["a", "b"]);
    }

    #[test]
    fn families_from_os_release() {
        let of = |text: &str| {
            let r = parse_os_release(text);
            family(&r.id, &r.id_like)
        };
        assert_eq!(of("ID=debian\n"), Family::Debian);
        assert_eq!(of("ID=ubuntu\nID_LIKE=debian\n"), Family::Debian);
        assert_eq!(
            of("ID=linuxmint\nID_LIKE=\"ubuntu debian\"\n"),
            Family::Debian
        );
        assert_eq!(of("ID=fedora\n"), Family::RedHat);
        assert_eq!(
            of("ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n"),
            Family::RedHat
        );
        assert_eq!(
            of("ID=\"opensuse-tumbleweed\"\nID_LIKE=\"opensuse suse\"\n"),
            Family::Suse
        );
        assert_eq!(of("ID=\"sles\"\nID_LIKE=\"suse\"\n"), Family::Suse);
        assert_eq!(of("ID=arch\n"), Family::Other);
        assert_eq!(of(""), Family::Other);
    }

    #[test]
    fn tool_exit_codes() {
        assert_eq!(needs_restarting_verdict(Some(0), ""), Ok(false));
        assert_eq!(
            needs_restarting_verdict(Some(1), "Reboot is required"),
            Ok(true)
        );
        let err = needs_restarting_verdict(Some(2), "No module named dnf");
        assert!(err.is_err_and(|e| e.contains("No module named dnf")));
        assert_eq!(zypper_verdict(Some(0), ""), Ok(false));
        assert_eq!(zypper_verdict(Some(102), ""), Ok(true));
        assert!(zypper_verdict(None, "killed").is_err());
    }

    fn signals(family: Family) -> Signals {
        Signals {
            family,
            flag: None,
            tool: None,
            kernel: Err("no kernels under /lib/modules".into()),
        }
    }

    #[test]
    fn debian_reads_its_flag_and_its_absence() {
        let flagged = Signals {
            flag: Some(vec!["linux-image-6.1.0-20-amd64".into(), "libc6".into()]),
            ..signals(Family::Debian)
        };
        assert_eq!(
            decide(flagged),
            Ok(RebootRequired {
                required: true,
                packages: vec!["linux-image-6.1.0-20-amd64".into(), "libc6".into()]
            })
        );
        // No flag on Debian (even in a container, without kernels): no restart.
        assert_eq!(
            decide(signals(Family::Debian)),
            Ok(RebootRequired::default())
        );
    }

    #[test]
    fn fedora_asks_needs_restarting() {
        let tool = |t| Signals {
            tool: Some(t),
            kernel: Ok(Kernel::Current),
            ..signals(Family::RedHat)
        };
        assert_eq!(decide(tool(Ok(true))).map(|r| r.required), Ok(true));
        assert_eq!(decide(tool(Ok(false))).map(|r| r.required), Ok(false));
        // Without the tool the kernel check still answers.
        let missing = Err("needs-restarting is not installed (not found in PATH)".to_owned());
        assert_eq!(decide(tool(missing.clone())).map(|r| r.required), Ok(false));
        // Without either: unknown, naming both reasons.
        let unknown = decide(Signals {
            tool: Some(missing),
            ..signals(Family::RedHat)
        });
        assert!(
            unknown.as_ref().is_err_and(|e| e.contains("cannot tell")
                && e.contains("needs-restarting is not installed")
                && e.contains("/lib/modules")),
            "{unknown:?}"
        );
    }

    #[test]
    fn suse_asks_zypper() {
        let tool = |t| Signals {
            tool: Some(t),
            ..signals(Family::Suse)
        };
        assert_eq!(decide(tool(Ok(true))).map(|r| r.required), Ok(true));
        assert_eq!(decide(tool(Ok(false))).map(|r| r.required), Ok(false));
        assert!(decide(tool(Err("`zypper needs-rebooting` failed: locked".into()))).is_err());
    }

    #[test]
    fn arch_compares_kernels_and_says_unknown_without_them() {
        let with = |kernel| Signals {
            kernel,
            ..signals(Family::Other)
        };
        let gone = Ok(Kernel::Gone {
            running: "6.8.9-arch1-1".into(),
        });
        assert_eq!(decide(with(gone)).map(|r| r.required), Ok(true));
        assert_eq!(
            decide(with(Ok(Kernel::Current))).map(|r| r.required),
            Ok(false)
        );
        assert!(decide(signals(Family::Other)).is_err_and(|e| e.contains("/lib/modules")));
    }

    #[test]
    fn a_new_kernel_wins_over_a_tool_that_says_no() {
        let s = Signals {
            tool: Some(Ok(false)),
            kernel: Ok(Kernel::Newer {
                running: "a".into(),
                newest: "b".into(),
            }),
            ..signals(Family::RedHat)
        };
        assert_eq!(decide(s).map(|r| r.required), Ok(true));
    }

    #[tokio::test]
    async fn this_machine_answers_or_says_why_not() {
        match reboot_required().await {
            Ok(_) => {}
            Err(e) => assert!(e.to_string().contains("cannot tell"), "{e}"),
        }
    }
}
