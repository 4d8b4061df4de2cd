use super::*;
use crate::cli::exit;

fn finding(severity: Severity, code: &str, message: &str) -> Finding {
    Finding {
        severity,
        code: code.into(),
        message: message.into(),
    }
}

fn result(host: &str, outcome: Outcome, findings: Vec<Finding>) -> AgentResult {
    AgentResult {
        agent: format!("ag-{host}"),
        hostname: host.into(),
        outcome,
        reason: None,
        evidence_sha256: None,
        findings,
    }
}

fn agent(id: &str, hostname: &str, os: &str) -> AgentSummary {
    AgentSummary {
        id: id.into(),
        hostname: hostname.into(),
        os: os.into(),
        kernel: String::new(),
        agent_version: String::new(),
        enrolled_at_secs: 0,
        last_seen_secs: None,
        online: true,
        revoked: false,
    }
}

#[test]
fn groups_findings_by_code_worst_first_and_counts_machines_once() {
    let results = vec![
        result(
            "pc-1",
            Outcome::Stored,
            vec![
                finding(Severity::Info, "host.long_uptime", "uptime 63 days"),
                finding(Severity::Warning, "disk.nearly_full", "/ is 91% full"),
                finding(Severity::Warning, "disk.nearly_full", "/home is 92% full"),
            ],
        ),
        result(
            "pc-2",
            Outcome::Stored,
            vec![
                finding(Severity::Critical, "disk.nearly_full", "/ is 99% full"),
                finding(Severity::Info, "host.long_uptime", "uptime 70 days"),
                finding(Severity::Info, "updates.pending", "12 updates pending"),
            ],
        ),
        result("pc-3", Outcome::Refused, vec![]),
        result("pc-4", Outcome::Offline, vec![]),
        result("pc-5", Outcome::Failed, vec![]),
    ];
    let s = summarize(&results);
    assert_eq!((s.stored, s.refused, s.failed, s.offline), (2, 1, 1, 1));
    let codes: Vec<_> = s.findings.iter().map(|g| g.code.as_str()).collect();
    assert_eq!(
        codes,
        ["disk.nearly_full", "host.long_uptime", "updates.pending"]
    );
    let disk = s.findings.first().map(|g| (g.severity, g.machines));
    assert_eq!(disk, Some((Severity::Critical, 2)));
    let first = s.findings.first().map(|g| g.example.as_str());
    assert_eq!(first, Some("/ is 91% full"));
    let hosts = s.findings.first().map(|g| g.hostnames.clone());
    assert_eq!(hosts, Some(vec!["pc-1".to_owned(), "pc-2".to_owned()]));
}

#[test]
fn exit_status_is_the_worst_outcome() {
    let exit_status = |s: &Summary| {
        shortfall(s).map_or(exit::OK, |worst| {
            CliError::DiagAll {
                worst,
                summary: String::new(),
            }
            .exit_code()
        })
    };
    let mut s = Summary {
        stored: 3,
        ..Summary::default()
    };
    assert_eq!(exit_status(&s), exit::OK);
    s.offline = 1;
    assert_eq!(exit_status(&s), exit::OFFLINE);
    s.refused = 1;
    assert_eq!(exit_status(&s), exit::REFUSED);
    s.failed = 1;
    assert_eq!(exit_status(&s), exit::FAILURE);
}

#[test]
fn selects_by_glob_on_hostname_or_id_and_by_os_ignoring_case() -> Result<()> {
    let list = [
        agent("ag-1", "pc-0042", "Debian GNU/Linux 12 (bookworm)"),
        agent("ag-2", "lab-7", "Ubuntu 24.04 LTS"),
        agent("ag-3", "pc-0043", "Ubuntu 22.04 LTS"),
    ];
    let pick = |sel: Selection| -> Result<Vec<String>> {
        let f = Filter::new(&sel)?;
        Ok(list
            .iter()
            .filter(|a| f.matches(a))
            .map(|a| a.id.clone())
            .collect())
    };
    let glob = |g: &str| Selection {
        hostname_glob: Some(g.into()),
        os: None,
    };
    assert_eq!(pick(glob("pc-*"))?, ["ag-1", "ag-3"]);
    assert_eq!(pick(glob("ag-2"))?, ["ag-2"]);
    let os = Selection {
        hostname_glob: None,
        os: Some("UBUNTU".into()),
    };
    assert_eq!(pick(os)?, ["ag-2", "ag-3"]);
    let both = Selection {
        hostname_glob: Some("pc-*".into()),
        os: Some("ubuntu".into()),
    };
    assert_eq!(pick(both)?, ["ag-3"]);
    assert!(Filter::new(&glob("pc-[")).is_err());
    Ok(())
}
