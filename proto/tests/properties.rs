//! Property tests of the wire protocol: every decoder refuses arbitrary bytes without
//! panicking, realistic values survive encode → decode unchanged, and a truncated frame
//! is always an error. The coverage-guided fuzzer in `fuzz/` explores the same decoders
//! far more deeply; these run in the normal `cargo test`.

use std::fmt::Debug;

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use deskside_proto::frame::{self, HEADER_LEN};
use deskside_proto::msg::agent::{
    AgentReply, AgentRequest, CheckIn, Delivery, NoticeAck, Requester, SignedItem,
};
use deskside_proto::msg::diag::{Disk, Finding, Interface, Severity, Snapshot};
use deskside_proto::msg::enroll::{EnrollReply, EnrollRequest, EnrollToken, TokenKind};
use deskside_proto::msg::files::{FileManifest, FileRefusal, FileRule, SecretKind};
use deskside_proto::msg::hello::{Hello, HelloReply};
use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::session::Scope;
use deskside_proto::msg::tech::{CollectReport, DiagReport, EvidenceRef, TechReply, TechRequest};
use deskside_proto::{DecodeError, Message, decode, encode};

// ---------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------

/// Identifiers as the project makes them: agent ids, hostnames, technician names.
fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9._-]{0,31}"
}

/// Free text a person typed: any printable Unicode, including multi-byte characters.
fn text() -> impl Strategy<Value = String> {
    "\\PC{0,80}"
}

fn tier() -> impl Strategy<Value = Tier> {
    prop_oneof![Just(Tier::L1), Just(Tier::L2), Just(Tier::L3)]
}

fn scopes() -> impl Strategy<Value = Vec<Scope>> {
    vec(proptest::sample::select(Scope::ALL.to_vec()), 0..=5)
}

fn params() -> impl Strategy<Value = Vec<(String, String)>> {
    vec(("[a-z][a-z0-9_]{0,15}", text()), 0..4)
}

prop_compose! {
    fn hello()(version in any::<u16>(), software in text()) -> Hello {
        Hello { version, software }
    }
}

prop_compose! {
    fn check_in()(
        hostname in name(),
        os in text(),
        kernel in "[0-9]\\.[0-9]{1,2}\\.[0-9]{1,3}-[a-z0-9-]{1,12}",
        agent_version in "[0-9]\\.[0-9]\\.[0-9]",
    ) -> CheckIn {
        CheckIn { hostname, os, kernel, agent_version }
    }
}

prop_compose! {
    fn requester()(technician in name(), tier in tier(), ticket in any::<u64>(), request_key in "[0-9a-f]{32}") -> Requester {
        Requester { technician, tier, ticket, request_key }
    }
}

fn agent_request() -> impl Strategy<Value = AgentRequest> {
    requester().prop_map(|requester| AgentRequest::Diagnostics { requester })
}

/// Absolute paths as technicians type them, and some that are not.
fn file_path() -> impl Strategy<Value = String> {
    prop_oneof!["(/[a-zA-Z0-9._ -]{1,20}){1,6}", text()]
}

fn collect_request() -> impl Strategy<Value = AgentRequest> {
    (requester(), file_path(), any::<u64>()).prop_map(|(requester, path, max_bytes)| {
        AgentRequest::CollectFile {
            requester,
            path,
            max_bytes,
        }
    })
}

prop_compose! {
    fn file_manifest()(
        path in file_path(),
        size_bytes in any::<u64>(),
        sha256 in "[0-9a-f]{64}",
        file_signature in "[0-9a-f]{140,144}",
        modified_at_secs in any::<i64>(),
        mode in any::<u32>(),
        uid in any::<u32>(),
        gid in any::<u32>(),
        hostname in name(),
        agent in name(),
        technician in name(),
        ticket in any::<u64>(),
        collected_at_ms in any::<u64>(),
    ) -> FileManifest {
        FileManifest {
            path, size_bytes, sha256, file_signature, modified_at_secs, mode, uid, gid,
            hostname, agent, technician, ticket, collected_at_ms,
        }
    }
}

fn file_rule() -> impl Strategy<Value = FileRule> {
    prop_oneof![
        Just(FileRule::AgentState),
        Just(FileRule::AgentConfig),
        prop_oneof![
            Just(SecretKind::PasswordHashes),
            Just(SecretKind::SshHostKey),
            Just(SecretKind::SshUserKey),
            Just(SecretKind::Keyring),
            Just(SecretKind::BrowserCredentials),
            Just(SecretKind::NetworkSecrets),
            Just(SecretKind::MachineCredentials),
            Just(SecretKind::UserCredentials),
        ]
        .prop_map(FileRule::Secret),
        text().prop_map(|glob| FileRule::PolicyDeny { glob }),
        Just(FileRule::NotAllowed),
    ]
}

fn file_refusal() -> impl Strategy<Value = FileRefusal> {
    prop_oneof![
        file_path().prop_map(|path| FileRefusal::RelativePath { path }),
        file_path().prop_map(|path| FileRefusal::NotFound { path }),
        file_path().prop_map(|path| FileRefusal::Symlink { path }),
        (file_path(), text()).prop_map(|(path, what)| FileRefusal::NotRegular { path, what }),
        (file_path(), text()).prop_map(|(path, reason)| FileRefusal::Unreadable { path, reason }),
        (file_path(), any::<u64>(), any::<u64>()).prop_map(|(path, size_bytes, limit_bytes)| {
            FileRefusal::TooLarge {
                path,
                size_bytes,
                limit_bytes,
            }
        }),
        (file_path(), file_path()).prop_map(|(path, link)| FileRefusal::LinkInPath { path, link }),
        (file_path(), file_rule(), option::of(file_path())).prop_map(|(path, rule, same_as)| {
            FileRefusal::Forbidden {
                path,
                rule,
                same_as,
            }
        }),
    ]
}

/// The agent's side of a collect: the header, the signed manifest, or a refusal.
fn collect_reply() -> impl Strategy<Value = AgentReply> {
    prop_oneof![
        any::<u64>().prop_map(|size_bytes| AgentReply::FileStart { size_bytes }),
        (file_manifest(), "[0-9a-f]{32}", vec(any::<u8>(), 64..73)).prop_map(
            |(m, key, signature)| {
                AgentReply::FileSent(Box::new(SignedItem {
                    key,
                    kind: deskside_proto::evidence::EvidenceKind::FileManifest,
                    bytes: serde_json::to_vec(&m).unwrap_or_default(),
                    signature,
                    redaction: vec![],
                }))
            }
        ),
        file_refusal().prop_map(AgentReply::FileRefused),
    ]
}

fn evidence_ref(kind: &'static str) -> impl Strategy<Value = EvidenceRef> {
    ("[0-9a-f]{64}", any::<u64>(), name()).prop_map(move |(sha, size_bytes, agent)| EvidenceRef {
        location: format!("/var/lib/deskside/evidence/{sha}"),
        sha256: sha,
        kind: kind.into(),
        size_bytes,
        agent: Some(agent),
        created_at_secs: 1_790_000_000,
        signature: Some("3045".into()),
        redaction: vec![],
    })
}

/// The controller's side of a collect: progress and the final report.
fn collect_tech_reply() -> impl Strategy<Value = TechReply> {
    prop_oneof![
        (any::<u64>(), any::<u64>()).prop_map(|(received_bytes, total_bytes)| {
            TechReply::CollectProgress {
                received_bytes,
                total_bytes,
            }
        }),
        (
            any::<u64>(),
            name(),
            file_manifest(),
            evidence_ref("file"),
            evidence_ref("file_manifest"),
            any::<u64>()
        )
            .prop_map(
                |(ticket, agent, manifest, evidence, manifest_evidence, elapsed_ms)| {
                    TechReply::Collected(Box::new(CollectReport {
                        ticket,
                        agent,
                        manifest,
                        evidence,
                        manifest_evidence,
                        elapsed_ms,
                    }))
                }
            ),
    ]
}

fn tech_request() -> impl Strategy<Value = TechRequest> {
    prop_oneof![
        Just(TechRequest::ListAgents),
        Just(TechRequest::ListTickets),
        (text(), option::of(name()), text(), "low|normal|high|urgent").prop_map(
            |(title, agent, requester, priority)| TechRequest::NewTicket {
                title,
                agent,
                requester,
                priority,
            }
        ),
        any::<u64>().prop_map(|number| TechRequest::ShowTicket { number }),
        (name(), any::<u64>())
            .prop_map(|(agent, ticket)| TechRequest::Diagnostics { agent, ticket }),
        (name(), any::<u64>(), scopes(), 0..=28_800u64, 0..=600u64).prop_map(
            |(agent, ticket, scopes, duration_secs, wait_secs)| TechRequest::RequestSession {
                agent,
                ticket,
                scopes,
                duration_secs,
                wait_secs,
            }
        ),
        ("[0-9]{3}-[0-9]{3}", any::<u64>())
            .prop_map(|(code, ticket)| TechRequest::JoinSession { code, ticket }),
        (any::<u64>(), text()).prop_map(|(number, text)| TechRequest::Note { number, text }),
        (any::<u64>(), tier(), text()).prop_map(|(number, to, note)| TechRequest::Escalate {
            number,
            to,
            note
        }),
        (name(), any::<u64>(), name(), params()).prop_map(|(agent, ticket, script, params)| {
            TechRequest::RunScript {
                agent,
                ticket,
                script,
                params,
            }
        }),
        (name(), any::<u64>(), file_path()).prop_map(|(agent, ticket, path)| {
            TechRequest::Collect {
                agent,
                ticket,
                path,
            }
        }),
    ]
}

prop_compose! {
    fn disk()(
        device in "/dev/[a-z0-9]{3,10}",
        mount in "/[a-z/]{0,20}",
        fs_type in "ext4|xfs|btrfs|tmpfs|vfat",
        total_bytes in any::<u64>(),
        available_bytes in any::<u64>(),
        used_bytes in any::<u64>(),
        read_only in any::<bool>(),
        inodes_total in any::<u64>(),
        inodes_free in any::<u64>(),
    ) -> Disk {
        Disk {
            device, mount, fs_type, total_bytes, available_bytes, used_bytes, read_only,
            inodes_total, inodes_free,
        }
    }
}

prop_compose! {
    fn interface()(
        name in "[a-z]{2,4}[0-9]{0,2}",
        mac in "([0-9a-f]{2}:){5}[0-9a-f]{2}",
        addresses in vec("[0-9]{1,3}(\\.[0-9]{1,3}){3}/[0-9]{1,2}|fe80::[0-9a-f]{1,4}/64", 0..4),
        up in any::<bool>(),
        oper_state in "up|down|unknown",
        mtu in any::<u32>(),
        counters in any::<[u64; 4]>(),
    ) -> Interface {
        let [rx_bytes, tx_bytes, rx_errors, tx_errors] = counters;
        Interface {
            name, mac, addresses, up, oper_state, mtu, rx_bytes, tx_bytes, rx_errors,
            tx_errors,
        }
    }
}

prop_compose! {
    fn finding()(
        severity in prop_oneof![
            Just(Severity::Info),
            Just(Severity::Warning),
            Just(Severity::Critical),
        ],
        code in "[a-z]{3,8}\\.[a-z_]{3,16}",
        message in text(),
    ) -> Finding {
        Finding { severity, code, message }
    }
}

prop_compose! {
    fn snapshot()(
        collected_at_ms in any::<u64>(),
        hostname in name(),
        usage_percent in 0.0f32..=100.0,
        load in (0.0f64..64.0, 0.0f64..64.0, 0.0f64..64.0),
        disks in vec(disk(), 0..4),
        interfaces in vec(interface(), 0..3),
        findings in vec(finding(), 0..4),
    ) -> Snapshot {
        let mut s = Snapshot { version: 1, collected_at_ms, disks, findings, ..Snapshot::default() };
        s.host.hostname = hostname;
        s.cpu.usage_percent = usage_percent;
        (s.cpu.load_average.one, s.cpu.load_average.five, s.cpu.load_average.fifteen) = load;
        s.network.interfaces = interfaces;
        s
    }
}

prop_compose! {
    fn diag_reply()(ticket in any::<u64>(), agent in name(), snapshot in snapshot(),
                    sha in "[0-9a-f]{64}", size_bytes in any::<u64>()) -> TechReply {
        TechReply::Diagnostics(Box::new(DiagReport {
            ticket,
            agent: agent.clone(),
            snapshot,
            evidence: EvidenceRef {
                sha256: sha.clone(),
                kind: "snapshot".into(),
                size_bytes,
                agent: Some(agent),
                created_at_secs: 1_790_000_000,
                location: format!("/var/lib/deskside/evidence/{sha}"),
                signature: None,
                redaction: vec!["emails".into()],
            },
        }))
    }
}

prop_compose! {
    fn enroll_token()(
        agent in any::<bool>(),
        controllers in proptest::collection::vec("[a-z0-9.-]{1,40}:[1-9][0-9]{0,3}", 1..=8),
        ca_sha256 in any::<[u8; 32]>(),
        secret in any::<[u8; 32]>(),
    ) -> EnrollToken {
        let kind = if agent { TokenKind::Agent } else { TokenKind::Technician };
        // A token carries each address once.
        let controllers = controllers.iter().fold(Vec::new(), |mut seen: Vec<String>, c| {
            if !seen.contains(c) {
                seen.push(c.clone());
            }
            seen
        });
        EnrollToken { kind, controllers, ca_sha256, secret }
    }
}

/// Up to 1 KiB of arbitrary bytes, biased towards the small first bytes that select a
/// real enum variant, so decoding gets past the first byte more often.
fn arbitrary_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..1024),
        (0u8..16, vec(any::<u8>(), 0..256)).prop_map(|(first, rest)| {
            let mut bytes = vec![first];
            bytes.extend(rest);
            bytes
        }),
    ]
}

/// A valid encoding with a few bytes overwritten: gets deep into the decoders.
fn mutated_encoding() -> impl Strategy<Value = Vec<u8>> {
    let encoded = prop_oneof![
        hello().prop_map(|m| encode(&m)),
        check_in().prop_map(|m| encode(&m)),
        tech_request().prop_map(|m| encode(&m)),
        agent_request().prop_map(|m| encode(&m)),
        collect_request().prop_map(|m| encode(&m)),
        collect_reply().prop_map(|m| encode(&m)),
        collect_tech_reply().prop_map(|m| encode(&m)),
        diag_reply().prop_map(|m| encode(&m)),
        enroll_token().prop_map(|m| encode(&m)),
    ]
    .prop_map(Result::unwrap_or_default);
    (
        encoded,
        vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    )
        .prop_map(|(mut bytes, edits)| {
            for (at, value) in edits {
                if !bytes.is_empty() {
                    let i = at.index(bytes.len());
                    if let Some(b) = bytes.get_mut(i) {
                        *b = value;
                    }
                }
            }
            bytes
        })
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Decodes `bytes` as `M` (plain and framed) and checks the result is consistent: a
/// success re-encodes, and decoding that encoding gives the same value back.
fn decodes_sanely<M: Message + PartialEq + Debug>(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(msg) = decode::<M>(bytes) {
        let again = encode(&msg)?;
        prop_assert!(again.len() <= bytes.len(), "{}: re-encoding grew", M::KIND);
        prop_assert_eq!(decode::<M>(&again)?, msg);
    }
    if let Ok(msg) = frame::decode_frame::<M>(bytes) {
        prop_assert_eq!(frame::decode_frame::<M>(&frame::encode_frame(&msg)?)?, msg);
    }
    Ok(())
}

/// For types whose `PartialEq` is not reflexive (snapshots hold floats, and a NaN never
/// equals itself), compare re-encodings instead of values.
fn decodes_sanely_bitwise<M: Message>(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(msg) = decode::<M>(bytes) {
        let again = encode(&msg)?;
        prop_assert_eq!(encode(&decode::<M>(&again)?)?, again);
    }
    if let Ok(msg) = frame::decode_frame::<M>(bytes) {
        let again = frame::encode_frame(&msg)?;
        prop_assert_eq!(
            frame::encode_frame(&frame::decode_frame::<M>(&again)?)?,
            again
        );
    }
    Ok(())
}

/// Every message type that implements [`Message`], against the same bytes.
fn decode_as_every_message(bytes: &[u8]) -> Result<(), TestCaseError> {
    decodes_sanely::<Hello>(bytes)?;
    decodes_sanely::<HelloReply>(bytes)?;
    decodes_sanely::<EnrollToken>(bytes)?;
    decodes_sanely::<EnrollRequest>(bytes)?;
    decodes_sanely::<EnrollReply>(bytes)?;
    decodes_sanely::<CheckIn>(bytes)?;
    decodes_sanely::<AgentRequest>(bytes)?;
    decodes_sanely_bitwise::<AgentReply>(bytes)?;
    decodes_sanely::<Delivery>(bytes)?;
    decodes_sanely::<NoticeAck>(bytes)?;
    decodes_sanely::<TechRequest>(bytes)?;
    decodes_sanely_bitwise::<TechReply>(bytes)?;
    Ok(())
}

fn round_trips<M: Message + PartialEq + Debug>(msg: &M) -> Result<(), TestCaseError> {
    let bytes = encode(msg)?;
    prop_assert_eq!(&decode::<M>(&bytes)?, msg);
    let framed = frame::encode_frame(msg)?;
    prop_assert_eq!(framed.len(), HEADER_LEN + bytes.len());
    prop_assert_eq!(framed.get(HEADER_LEN..), Some(bytes.as_slice()));
    prop_assert_eq!(&frame::decode_frame::<M>(&framed)?, msg);
    Ok(())
}

/// Every strict prefix of `msg`'s frame and of its payload is `Truncated`, and removing
/// any one byte anywhere in the frame is an error: never a panic, never a value.
fn truncations_are_errors<M: Message + Debug>(msg: &M) -> Result<(), TestCaseError> {
    let framed = frame::encode_frame(msg)?;
    for cut in 0..framed.len() {
        let short = framed.get(..cut).unwrap_or_default();
        let got = frame::decode_frame::<M>(short);
        prop_assert!(
            matches!(got, Err(DecodeError::Truncated { .. })),
            "{} frame cut to {cut} of {} bytes: {got:?}",
            M::KIND,
            framed.len()
        );
    }
    let payload = framed.get(HEADER_LEN..).unwrap_or_default();
    for cut in 0..payload.len() {
        let got = decode::<M>(payload.get(..cut).unwrap_or_default());
        prop_assert!(
            matches!(got, Err(DecodeError::Truncated { .. })),
            "{} payload cut to {cut} of {} bytes: {got:?}",
            M::KIND,
            payload.len()
        );
    }
    for skip in 0..framed.len() {
        let mut shorter = framed.clone();
        shorter.remove(skip);
        let got = frame::decode_frame::<M>(&shorter);
        prop_assert!(
            got.is_err(),
            "{} frame without byte {skip}: {got:?}",
            M::KIND
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// (a) Decoders never panic on arbitrary input
// ---------------------------------------------------------------------------------------

proptest! {
    #[test]
    fn every_message_decode_survives_arbitrary_bytes(bytes in arbitrary_bytes()) {
        decode_as_every_message(&bytes)?;
    }

    #[test]
    fn every_message_decode_survives_mutated_encodings(bytes in mutated_encoding()) {
        decode_as_every_message(&bytes)?;
    }

    #[test]
    fn decode_frame_survives_arbitrary_frames(
        len in prop_oneof![0u32..1100, any::<u32>()],
        payload in arbitrary_bytes(),
    ) {
        // A header that announces the real length half of the time gets past framing.
        let len = if len % 2 == 0 { u32::try_from(payload.len()).unwrap_or(u32::MAX) } else { len };
        let mut bytes = len.to_le_bytes().to_vec();
        bytes.extend_from_slice(&payload);
        decode_as_every_message(&bytes)?;
    }

    #[test]
    fn payload_len_accepts_exactly_the_kind_limit(header in any::<[u8; HEADER_LEN]>()) {
        let len = u32::from_le_bytes(header);
        fn check<M: Message>(header: [u8; HEADER_LEN], len: u32) -> Result<(), TestCaseError> {
            match frame::payload_len::<M>(header) {
                Ok(n) => prop_assert!(len <= M::MAX_BYTES && n as u64 == u64::from(len)),
                Err(e) => prop_assert_eq!(
                    e,
                    DecodeError::TooLarge { kind: M::KIND, len: u64::from(len), limit: M::MAX_BYTES }
                ),
            }
            Ok(())
        }
        check::<Hello>(header, len)?;
        check::<HelloReply>(header, len)?;
        check::<EnrollToken>(header, len)?;
        check::<EnrollRequest>(header, len)?;
        check::<EnrollReply>(header, len)?;
        check::<CheckIn>(header, len)?;
        check::<AgentRequest>(header, len)?;
        check::<AgentReply>(header, len)?;
        check::<Delivery>(header, len)?;
        check::<NoticeAck>(header, len)?;
        check::<TechRequest>(header, len)?;
        check::<TechReply>(header, len)?;
    }

    #[test]
    fn enroll_token_parse_survives_arbitrary_text(
        text in prop_oneof![
            any::<String>(),
            "\\s*dsk1-[A-Za-z0-9_-]{0,200}\\s*",
            "dsk1-\\PC{0,200}",
            "\\s*dsk2-[A-Za-z0-9_-]{0,400}\\s*",
        ],
    ) {
        if let Ok(token) = EnrollToken::parse(&text) {
            prop_assert_eq!(EnrollToken::parse(&token.to_text())?, token);
        }
    }
}

// ---------------------------------------------------------------------------------------
// (b) Realistic values survive encode → decode unchanged
// ---------------------------------------------------------------------------------------

proptest! {
    #[test]
    fn hello_round_trips(msg in hello()) {
        round_trips(&msg)?;
    }

    #[test]
    fn check_in_round_trips(msg in check_in()) {
        round_trips(&msg)?;
    }

    #[test]
    fn tech_request_round_trips(msg in tech_request()) {
        round_trips(&msg)?;
    }

    #[test]
    fn agent_diagnostics_request_round_trips(msg in agent_request()) {
        round_trips(&msg)?;
    }

    #[test]
    fn agent_collect_request_round_trips(msg in collect_request()) {
        round_trips(&msg)?;
    }

    #[test]
    fn agent_collect_replies_round_trip(msg in collect_reply()) {
        round_trips(&msg)?;
    }

    #[test]
    fn collect_progress_and_report_round_trip(msg in collect_tech_reply()) {
        round_trips(&msg)?;
    }

    #[test]
    fn snapshot_round_trips_inside_a_diagnostics_reply(msg in diag_reply()) {
        round_trips(&msg)?;
    }

    #[test]
    fn enroll_token_round_trips_as_text_and_bytes(token in enroll_token()) {
        round_trips(&token)?;
        prop_assert_eq!(EnrollToken::parse(&format!(" {}\n", token.to_text()))?, token);
    }
}

// ---------------------------------------------------------------------------------------
// (c) Truncation is always an error
// ---------------------------------------------------------------------------------------

proptest! {
    #[test]
    fn truncated_hello_frames_are_errors(msg in hello()) {
        truncations_are_errors(&msg)?;
    }

    #[test]
    fn truncated_tech_request_frames_are_errors(msg in tech_request()) {
        truncations_are_errors(&msg)?;
    }

    #[test]
    fn truncated_collect_frames_are_errors(request in collect_request(), reply in collect_reply()) {
        truncations_are_errors(&request)?;
        truncations_are_errors(&reply)?;
    }

    // A snapshot frame runs to kilobytes: checking every cut of every case is quadratic,
    // so each case checks one cut and one removed byte, chosen at random.
    #[test]
    fn truncated_diagnostics_reply_frames_are_errors(
        msg in diag_reply(),
        cut in any::<prop::sample::Index>(),
        skip in any::<prop::sample::Index>(),
    ) {
        let framed = frame::encode_frame(&msg)?;
        let cut = cut.index(framed.len());
        let got = frame::decode_frame::<TechReply>(framed.get(..cut).unwrap_or_default());
        prop_assert!(matches!(got, Err(DecodeError::Truncated { .. })), "cut to {cut}: {got:?}");
        let payload = framed.get(HEADER_LEN..).unwrap_or_default();
        let got = decode::<TechReply>(payload.get(..cut.min(payload.len().saturating_sub(1))).unwrap_or_default());
        prop_assert!(matches!(got, Err(DecodeError::Truncated { .. })), "payload cut: {got:?}");
        let mut shorter = framed.clone();
        shorter.remove(skip.index(framed.len()));
        prop_assert!(frame::decode_frame::<TechReply>(&shorter).is_err());
    }
}
