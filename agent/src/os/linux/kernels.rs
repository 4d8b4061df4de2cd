//! The running kernel against the kernels installed under /lib/modules: a newer one of
//! the same kind (Debian and Fedora keep several), or the running one's modules gone (Arch
//! replaces it), means the machine needs a restart to run what is installed.

use std::cmp::Ordering;
use std::path::Path;

/// Kernels looked at under /lib/modules (a machine keeps a handful).
const MAX_KERNELS: usize = 256;
/// Where kernels keep their modules: /lib/modules, or /usr/lib/modules where /lib is not
/// merged into /usr.
const MODULE_DIRS: [&str; 2] = ["/lib/modules", "/usr/lib/modules"];

/// What the running kernel says against the installed ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kernel {
    /// No newer kernel of the running one's kind is installed.
    Current,
    /// A newer kernel of the same kind is installed.
    Newer { running: String, newest: String },
    /// The running kernel's modules are gone: an upgrade replaced it (Arch does this).
    Gone { running: String },
}

/// One kernel directory under /lib/modules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Installed {
    pub release: String,
    /// It holds `modules.dep`: a kernel, not leftovers of a removed one.
    pub complete: bool,
}

/// Compares the running kernel with the installed ones. Only kernels of the same kind
/// count as newer (digits aside, the same release: `-amd64` against `-rt-amd64`, or
/// `-arch` against `-lts`, are different kernels, not upgrades).
pub(crate) fn kernel_check(running: &str, installed: &[Installed]) -> Result<Kernel, String> {
    if installed.is_empty() {
        return Err("no kernels under /lib/modules (a container shares its host's kernel)".into());
    }
    if !installed.iter().any(|k| k.release == running) {
        return Ok(Kernel::Gone {
            running: running.to_owned(),
        });
    }
    let kind = shape(running);
    let newest = installed
        .iter()
        .filter(|k| k.complete && shape(&k.release) == kind)
        .map(|k| k.release.as_str())
        .max_by(|a, b| version_cmp(a, b));
    Ok(match newest {
        Some(n) if version_cmp(n, running) == Ordering::Greater => Kernel::Newer {
            running: running.to_owned(),
            newest: n.to_owned(),
        },
        _ => Kernel::Current,
    })
}

/// A kernel release with its digits taken out: its kind.
fn shape(release: &str) -> String {
    release.chars().filter(|c| !c.is_ascii_digit()).collect()
}

/// Version order (as `sort -V`, simplified): runs of digits compare as numbers, other
/// runs as text.
pub(crate) fn version_cmp(a: &str, b: &str) -> Ordering {
    fn runs(s: &str) -> impl Iterator<Item = (bool, &str)> {
        let mut rest = s;
        std::iter::from_fn(move || {
            let first = rest.chars().next()?;
            let digit = first.is_ascii_digit();
            let end = rest
                .find(|c: char| c.is_ascii_digit() != digit)
                .unwrap_or(rest.len());
            let (run, tail) = rest.split_at(end);
            rest = tail;
            Some((digit, run))
        })
    }
    let (mut x, mut y) = (runs(a), runs(b));
    loop {
        match (x.next(), y.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some((true, p)), Some((true, q))) => {
                let (p, q) = (p.trim_start_matches('0'), q.trim_start_matches('0'));
                let order = p.len().cmp(&q.len()).then_with(|| p.cmp(q));
                if order != Ordering::Equal {
                    return order;
                }
            }
            (Some((_, p)), Some((_, q))) => {
                let order = p.cmp(q);
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

/// Kernel directories under the first modules directory that exists.
pub(crate) fn installed_kernels() -> Result<Vec<Installed>, String> {
    installed_kernels_in(&MODULE_DIRS.map(Path::new))
}

fn installed_kernels_in(dirs: &[&Path]) -> Result<Vec<Installed>, String> {
    let Some((dir, entries)) = dirs
        .iter()
        .find_map(|d| std::fs::read_dir(d).ok().map(|e| (*d, e)))
    else {
        return Err(
            "no /lib/modules or /usr/lib/modules (a container shares its host's kernel)".into(),
        );
    };
    Ok(entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| name.starts_with(|c: char| c.is_ascii_digit()))
        .take(MAX_KERNELS)
        .map(|release| Installed {
            complete: dir.join(&release).join("modules.dep").is_file(),
            release,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernels(list: &[&str]) -> Vec<Installed> {
        list.iter()
            .map(|r| Installed {
                release: (*r).to_owned(),
                complete: true,
            })
            .collect()
    }

    #[test]
    fn versions_order_numbers_as_numbers() {
        use Ordering::*;
        assert_eq!(version_cmp("6.10.1-arch1-1", "6.9.12-arch1-1"), Greater);
        assert_eq!(version_cmp("6.1.0-9-amd64", "6.1.0-20-amd64"), Less);
        assert_eq!(
            version_cmp(
                "5.14.0-427.13.1.el9_4.x86_64",
                "5.14.0-427.13.1.el9_4.x86_64"
            ),
            Equal
        );
        assert_eq!(version_cmp("6.8.0-31-generic", "6.8.0-031-generic"), Equal);
        assert_eq!(version_cmp("6.8", "6.8.1"), Less);
    }

    #[test]
    fn kernel_newer_gone_current_or_unknown() {
        // Debian keeps the old kernel after installing a new one.
        assert_eq!(
            kernel_check(
                "6.1.0-18-amd64",
                &kernels(&["6.1.0-18-amd64", "6.1.0-20-amd64"])
            ),
            Ok(Kernel::Newer {
                running: "6.1.0-18-amd64".into(),
                newest: "6.1.0-20-amd64".into()
            })
        );
        // Arch replaces it: the running kernel's modules are gone.
        assert_eq!(
            kernel_check("6.8.9-arch1-1", &kernels(&["6.9.1-arch1-1"])),
            Ok(Kernel::Gone {
                running: "6.8.9-arch1-1".into()
            })
        );
        // Running the newest; an older one and another flavour do not count.
        assert_eq!(
            kernel_check(
                "6.1.0-20-amd64",
                &kernels(&["6.1.0-18-amd64", "6.1.0-20-amd64", "6.1.0-21-rt-amd64"])
            ),
            Ok(Kernel::Current)
        );
        // Fedora keeps three; the release crosses fc40 → fc41.
        assert!(matches!(
            kernel_check(
                "6.10.12-200.fc40.x86_64",
                &kernels(&["6.10.12-200.fc40.x86_64", "6.11.3-300.fc41.x86_64"])
            ),
            Ok(Kernel::Newer { .. })
        ));
        // A leftover directory of a removed kernel (no modules.dep) is no newer kernel.
        let mut leftover = kernels(&["6.1.0-20-amd64", "6.1.0-25-amd64"]);
        if let Some(k) = leftover.last_mut() {
            k.complete = false;
        }
        assert_eq!(
            kernel_check("6.1.0-20-amd64", &leftover),
            Ok(Kernel::Current)
        );
        assert!(kernel_check("6.1.0-20-amd64", &[]).is_err());
    }

    #[test]
    fn installed_kernels_from_a_modules_tree() -> std::io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let modules = tmp.path().join("modules");
        for (dir, dep) in [
            ("6.1.0-18-amd64", true),
            ("6.1.0-20-amd64", true),
            ("6.1.0-25-amd64", false),
            ("extramodules-6.8-arch", false),
        ] {
            std::fs::create_dir_all(modules.join(dir))?;
            if dep {
                std::fs::write(modules.join(dir).join("modules.dep"), "")?;
            }
        }
        let missing = tmp.path().join("missing");
        let mut found = installed_kernels_in(&[&missing, &modules]).unwrap_or_default();
        found.sort_by(|a, b| version_cmp(&a.release, &b.release));
        let seen: Vec<(&str, bool)> = found
            .iter()
            .map(|k| (k.release.as_str(), k.complete))
            .collect();
        assert_eq!(
            seen,
            [
                ("6.1.0-18-amd64", true),
                ("6.1.0-20-amd64", true),
                ("6.1.0-25-amd64", false)
            ]
        );
        assert_eq!(
            kernel_check("6.1.0-18-amd64", &found).map(|k| matches!(k, Kernel::Newer { .. })),
            Ok(true)
        );
        assert!(installed_kernels_in(&[&missing]).is_err_and(|e| e.contains("/lib/modules")));
        Ok(())
    }
}
