//! Writes the seed corpus: real encoded messages, one file each, under `seeds/messages/`
//! (selector byte + payload, for the `messages` target) and `seeds/frame/` (whole frames,
//! for the `frame` target). Run with `cargo run --bin seeds` from `fuzz/`.

use std::fs;
use std::path::Path;

use deskside_fuzz::KINDS;
use deskside_proto::evidence::EvidenceKind;
use deskside_proto::frame::encode_frame;
use deskside_proto::msg::agent::{
    AgentNotice, AgentReply, AgentRequest, CheckIn, Delivery, NoticeAck, Refusal, RefusalCode,
    Requester, SignedItem,
};
use deskside_proto::msg::diag::{Disk, Finding, Interface, Severity, Snapshot};
use deskside_proto::msg::enroll::{
    EnrollRefusal, EnrollReply, EnrollRequest, EnrollToken, Enrollment, TokenKind,
};
use deskside_proto::msg::files::FileRefusal;
use deskside_proto::msg::hello::{Hello, HelloReply};
use deskside_proto::msg::identity::{Identity, Tier};
use deskside_proto::msg::script::{
    CatalogEntry, Interpreter, OutputStream, ParamKind, ParamSpec, RunEvent, SignedScript,
};
use deskside_proto::msg::session::{Grant, GrantOrigin, Scope};
use deskside_proto::msg::tech::{
    DiagReport, ErrorCode, ErrorReply, EvidenceRef, TechReply, TechRequest,
};
use deskside_proto::{Message, encode};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let mut seeds = Seeds::new(&root)?;

    seeds.add(&Hello {
        version: 1,
        software: "deskside-agent 0.1.0".into(),
    })?;
    seeds.add(&HelloReply::Welcome {
        version: 1,
        software: "deskside-controller 0.1.0".into(),
    })?;
    seeds.add(&HelloReply::VersionMismatch {
        controller: 1,
        peer: 2,
    })?;
    seeds.add(&EnrollToken {
        kind: TokenKind::Agent,
        controllers: vec![
            "ctl-a.helpdesk.example:4433".into(),
            "ctl-b.helpdesk.example:4433".into(),
        ],
        ca_sha256: [0xa5; 32],
        secret: [0x3c; 32],
    })?;
    seeds.add(&EnrollRequest {
        secret: [0x3c; 32],
        csr_pem: "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"
            .into(),
        hostname: "ws-0042".into(),
        os: "Debian GNU/Linux 13 (trixie)".into(),
    })?;
    seeds.add(&EnrollReply::Issued(Box::new(Enrollment {
        identity: Identity::Technician {
            name: "alice".into(),
        },
        tier: Some(Tier::L2),
        cert_pem: "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n".into(),
        ca_pem: "-----BEGIN CERTIFICATE-----\nMIID\n-----END CERTIFICATE-----\n".into(),
        script_public_key: [7; 32],
        cert_not_after_secs: 1_800_000_000,
    })))?;
    seeds.add(&EnrollReply::Refused(EnrollRefusal::Expired {
        at_secs: 1_790_000_000,
    }))?;
    seeds.add(&CheckIn {
        hostname: "ws-0042".into(),
        os: "Debian GNU/Linux 13 (trixie)".into(),
        kernel: "6.12.0-1-amd64".into(),
        agent_version: "0.1.0".into(),
    })?;
    seeds.add(&AgentRequest::Diagnostics {
        requester: requester(),
    })?;
    seeds.add(&AgentRequest::RunScript {
        requester: requester(),
        script: Box::new(SignedScript {
            entry: catalog_entry(),
            body: "#!/bin/sh\nresolvectl flush-caches\n".into(),
            signature: vec![0x11; 64],
        }),
        params: vec![("host".into(), "example.org".into())],
    })?;
    seeds.add(&AgentReply::Snapshot(Box::new(SignedItem {
        key: "5f0c2a9e8d7b6a5f4e3d2c1b0a998877".into(),
        kind: EvidenceKind::Snapshot,
        bytes: br#"{"version":1,"disks":[]}"#.to_vec(),
        signature: vec![0x30; 70],
        redaction: vec!["emails".into()],
    })))?;
    seeds.add(&AgentReply::Run(RunEvent::Output {
        stream: OutputStream::Stdout,
        data: b"flushed\n".to_vec(),
    }))?;
    seeds.add(&AgentReply::Refused(Refusal {
        code: RefusalCode::NoSession,
        reason: "no session covers alice on ticket 42".into(),
    }))?;
    seeds.add(&Delivery {
        key: "1a2b3c4d5e6f708192a3b4c5d6e7f809".into(),
        notice: AgentNotice::SupportCode {
            code: "482-913".into(),
            expires_at_secs: 1_790_000_600,
        },
    })?;
    seeds.add(&Delivery {
        key: "2b3c4d5e6f708192a3b4c5d6e7f8091a".into(),
        notice: AgentNotice::SessionEnded {
            grant: grant(),
            by: "user".into(),
        },
    })?;
    seeds.add(&NoticeAck::Recorded)?;
    seeds.add(&NoticeAck::Retry {
        reason: "database is locked".into(),
    })?;
    seeds.add(&TechRequest::NewTicket {
        title: "VPN drops every hour".into(),
        agent: Some("ag-1f3a".into()),
        requester: "bob@example.org".into(),
        priority: "high".into(),
    })?;
    seeds.add(&TechRequest::RequestSession {
        agent: "ws-0042".into(),
        ticket: 42,
        scopes: vec![Scope::Diagnostics, Scope::ScriptsL1],
        duration_secs: 3600,
        wait_secs: 120,
    })?;
    seeds.add(&TechRequest::RunScript {
        agent: "ws-0042".into(),
        ticket: 42,
        script: "flush-dns".into(),
        params: vec![("host".into(), "example.org".into())],
    })?;
    seeds.add(&TechReply::Diagnostics(Box::new(DiagReport {
        ticket: 42,
        agent: "ag-1f3a".into(),
        snapshot: snapshot(),
        evidence: EvidenceRef {
            sha256: "ab".repeat(32),
            kind: "snapshot".into(),
            size_bytes: 2048,
            agent: Some("ag-1f3a".into()),
            created_at_secs: 1_790_000_000,
            location: "/var/lib/deskside/evidence/ab".into(),
            signature: Some("3045".into()),
            redaction: vec![],
        },
    })))?;
    // Collecting a file (protocol 3): request, header, manifest, refusal, progress.
    seeds.add(&AgentRequest::CollectFile {
        requester: Requester {
            technician: "alice".into(),
            tier: Tier::L1,
            ticket: 42,
            request_key: "5f0c9a2e4b7d11e8a3c6f09b2d4e6a81".into(),
        },
        path: "/var/log/syslog".into(),
        max_bytes: 1 << 30,
    })?;
    seeds.add(&AgentReply::FileStart {
        size_bytes: 268_435_456,
    })?;
    seeds.add(&AgentReply::FileSent(Box::new(SignedItem {
        key: "3c4d5e6f708192a3b4c5d6e7f8091a2b".into(),
        kind: EvidenceKind::FileManifest,
        bytes: br#"{"path":"/var/log/syslog","size_bytes":5,"sha256":"2cf2"}"#.to_vec(),
        signature: vec![0x30, 0x45, 0x02, 0x21],
        redaction: vec![],
    })))?;
    seeds.add(&AgentReply::FileRefused(FileRefusal::TooLarge {
        path: "/var/crash/core".into(),
        size_bytes: 4 << 30,
        limit_bytes: 1 << 30,
    }))?;
    seeds.add(&TechRequest::Collect {
        agent: "ws-0042".into(),
        ticket: 42,
        path: "/var/log/syslog".into(),
    })?;
    seeds.add(&TechReply::CollectProgress {
        received_bytes: 1 << 20,
        total_bytes: 1 << 28,
    })?;
    seeds.add(&TechReply::Error(ErrorReply {
        code: ErrorCode::Forbidden,
        message: "tier l1 may not run l2 scripts".into(),
    }))?;

    println!("wrote {} seeds under {}", seeds.count, root.display());
    Ok(())
}

struct Seeds<'a> {
    root: &'a Path,
    count: usize,
}

impl<'a> Seeds<'a> {
    fn new(root: &'a Path) -> std::io::Result<Self> {
        fs::create_dir_all(root.join("messages"))?;
        fs::create_dir_all(root.join("frame"))?;
        Ok(Seeds { root, count: 0 })
    }

    /// One seed per target: `<selector><payload>` and `<len><payload>`.
    fn add<M: Message>(&mut self, msg: &M) -> Result<(), Box<dyn std::error::Error>> {
        let selector = KINDS
            .iter()
            .position(|k| *k == M::KIND)
            .ok_or_else(|| format!("{} is missing from deskside_fuzz::KINDS", M::KIND))?;
        let name = format!("{:02}-{}.bin", self.count, M::KIND.replace([' ', '-'], "_"));
        let mut input = vec![u8::try_from(selector)?];
        input.extend_from_slice(&encode(msg)?);
        fs::write(self.root.join("messages").join(&name), input)?;
        fs::write(self.root.join("frame").join(&name), encode_frame(msg)?)?;
        self.count += 1;
        Ok(())
    }
}

fn requester() -> Requester {
    Requester {
        technician: "alice".into(),
        tier: Tier::L2,
        ticket: 42,
        request_key: "5f0c9a2e4b7d11e8a3c6f09b2d4e6a81".into(),
    }
}

fn grant() -> Grant {
    Grant {
        id: "gr-7c1e".into(),
        technician: "alice".into(),
        tier: Tier::L2,
        ticket: 42,
        scopes: vec![Scope::Diagnostics],
        expires_at_secs: 1_790_003_600,
        origin: GrantOrigin::UserCode,
        request_key: "5f0c9a2e4b7d11e8a3c6f09b2d4e6a81".into(),
    }
}

fn catalog_entry() -> CatalogEntry {
    CatalogEntry {
        name: "flush-dns".into(),
        version: 1,
        description: "Flush the DNS cache".into(),
        changes: "clears cached DNS answers".into(),
        tier: Tier::L1,
        interpreter: Interpreter::Sh,
        os: "linux".into(),
        timeout_secs: 30,
        params: vec![ParamSpec {
            name: "host".into(),
            description: "a name to resolve afterwards".into(),
            kind: ParamKind::String {
                pattern: "[A-Za-z0-9.-]+".into(),
                max_len: 253,
            },
            default: None,
        }],
        body_sha256: [0x42; 32],
        self_service: false,
    }
}

fn snapshot() -> Snapshot {
    let mut s = Snapshot {
        version: 1,
        collected_at_ms: 1_790_000_000_000,
        ..Snapshot::default()
    };
    s.host.hostname = "ws-0042".into();
    s.cpu.usage_percent = 12.5;
    s.disks.push(Disk {
        device: "/dev/nvme0n1p2".into(),
        mount: "/".into(),
        fs_type: "ext4".into(),
        total_bytes: 512 << 30,
        available_bytes: 3 << 30,
        used_bytes: 509 << 30,
        read_only: false,
        inodes_total: 32_000_000,
        inodes_free: 1_000_000,
    });
    s.network.interfaces.push(Interface {
        name: "wlp2s0".into(),
        mac: "aa:bb:cc:dd:ee:ff".into(),
        addresses: vec!["192.0.2.10/24".into()],
        up: true,
        oper_state: "up".into(),
        mtu: 1500,
        ..Interface::default()
    });
    s.findings.push(Finding {
        severity: Severity::Critical,
        code: "disk.nearly_full".into(),
        message: "/ is 99% full (3.0 GiB free)".into(),
    });
    s
}
