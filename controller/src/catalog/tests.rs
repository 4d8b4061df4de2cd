//! The catalog's manifests, bodies and signatures, refused and accepted.

use deskside_proto::msg::identity::Tier;
use deskside_proto::msg::script::{Interpreter, MAX_BODY_BYTES, ParamKind};

use super::*;

const GOOD: &str = r#"
name = "flush-dns"
version = 1
description = "Flush the DNS resolver cache"
changes = "Empties the local DNS cache; nothing else."
tier = "l1"
interpreter = "sh"
os = "linux"
timeout_secs = 30
body = "flush-dns.sh"

[[params]]
name = "host"
description = "a host name"
type = "string"
pattern = "[A-Za-z0-9.-]+"
max_len = 253

[[params]]
name = "count"
description = "how many"
type = "integer"
min = 1
max = 10
default = 3

[[params]]
name = "mode"
description = "how"
type = "enum"
values = ["fast", "full"]
default = "fast"

[[params]]
name = "dry_run"
description = "only show"
type = "bool"
default = true
"#;

const BODY: &str = "#!/bin/sh\nset -eu\necho flushing\n";

/// Writes `manifest` and `body` into a fresh directory; returns it and the manifest path.
fn write(manifest: &str, body: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("flush-dns.toml");
    std::fs::write(&path, manifest).expect("write manifest");
    std::fs::write(dir.path().join("flush-dns.sh"), body).expect("write body");
    (dir, path)
}

/// Loads a manifest that must fail; returns the error text.
fn refused(manifest: &str, body: &[u8]) -> String {
    let (_dir, path) = write(manifest, body);
    match load(&path) {
        Ok(_) => panic!("manifest was accepted:\n{manifest}"),
        Err(e) => {
            let text = e.to_string();
            assert!(text.contains("flush-dns"), "error names no file: {text}");
            text
        }
    }
}

#[test]
fn good_manifest_loads() {
    let (_dir, path) = write(GOOD, BODY.as_bytes());
    let (entry, body) = load(&path).expect("good manifest");
    assert_eq!(body, BODY);
    assert_eq!(entry.name, "flush-dns");
    assert_eq!(entry.tier, Tier::L1);
    assert_eq!(entry.interpreter, Interpreter::Sh);
    assert_eq!(entry.timeout_secs, 30);
    assert_eq!(entry.body_sha256, <[u8; 32]>::from(Sha256::digest(BODY)));
    let kinds: Vec<_> = entry.params.iter().map(|p| p.kind.clone()).collect();
    assert_eq!(
        kinds,
        vec![
            ParamKind::String {
                pattern: "[A-Za-z0-9.-]+".into(),
                max_len: 253
            },
            ParamKind::Integer { min: 1, max: 10 },
            ParamKind::Enum {
                values: vec!["fast".into(), "full".into()]
            },
            ParamKind::Bool,
        ]
    );
    let defaults: Vec<_> = entry.params.iter().map(|p| p.default.clone()).collect();
    assert_eq!(
        defaults,
        vec![
            None,
            Some("3".into()),
            Some("fast".into()),
            Some("true".into())
        ]
    );
}

#[test]
fn unknown_key_is_named() {
    let e = refused(
        &GOOD.replace("os = \"linux\"", "os = \"linux\"\nrun_as = \"root\""),
        BODY.as_bytes(),
    );
    assert!(e.contains("unknown field `run_as`"), "{e}");
    assert!(e.contains("line 9"), "{e}");
    let e = refused(
        &GOOD.replace("max_len = 253", "max_len = 253\nregex = \"x\""),
        BODY.as_bytes(),
    );
    assert!(e.contains("unknown field `regex`"), "{e}");
}

#[test]
fn key_of_another_type_is_refused() {
    let e = refused(
        &GOOD.replace("min = 1\n", "min = 1\npattern = \"[0-9]+\"\n"),
        BODY.as_bytes(),
    );
    assert!(e.contains("parameter \"count\""), "{e}");
    assert!(
        e.contains("`pattern` does not apply to type \"integer\""),
        "{e}"
    );
    let e = refused(
        &GOOD.replace("default = true", "default = true\nmax = 1"),
        BODY.as_bytes(),
    );
    assert!(
        e.contains("parameter \"dry_run\": `max` does not apply"),
        "{e}"
    );
    let e = refused(&GOOD.replace("max_len = 253\n", ""), BODY.as_bytes());
    assert!(e.contains("type \"string\" needs `max_len`"), "{e}");
    let e = refused(
        &GOOD.replace("type = \"enum\"", "type = \"float\""),
        BODY.as_bytes(),
    );
    assert!(e.contains("type \"float\" is not one of"), "{e}");
}

#[test]
fn bad_tier_and_interpreter_are_named() {
    let e = refused(&GOOD.replace("\"l1\"", "\"l4\""), BODY.as_bytes());
    assert!(e.contains("key `tier`"), "{e}");
    assert!(e.contains("expected l1, l2 or l3"), "{e}");
    let e = refused(
        &GOOD.replace("interpreter = \"sh\"", "interpreter = \"perl\""),
        BODY.as_bytes(),
    );
    assert!(e.contains("key `interpreter`: \"perl\""), "{e}");
}

#[test]
fn bad_pattern_and_bad_default_are_refused() {
    let e = refused(
        &GOOD.replace("\"[A-Za-z0-9.-]+\"", "\"([a-z\""),
        BODY.as_bytes(),
    );
    assert!(e.contains("parameter \"host\": bad pattern"), "{e}");
    let e = refused(
        &GOOD.replace("default = 3", "default = 11"),
        BODY.as_bytes(),
    );
    assert!(e.contains("default"), "{e}");
    assert!(e.contains("outside 1..=10"), "{e}");
}

#[test]
fn missing_body_file_is_named() {
    let (dir, path) = write(GOOD, BODY.as_bytes());
    std::fs::remove_file(dir.path().join("flush-dns.sh")).expect("remove body");
    let e = load(&path).map(|_| ()).expect_err("no body").to_string();
    assert!(e.contains("flush-dns.sh: cannot read script body"), "{e}");
    let e = refused(
        &GOOD.replace("\"flush-dns.sh\"", "\"../flush-dns.sh\""),
        BODY.as_bytes(),
    );
    assert!(e.contains("key `body`"), "{e}");
    assert!(e.contains("no `..`"), "{e}");
}

#[test]
fn oversized_and_non_utf8_files_are_refused() {
    let e = refused(GOOD, &vec![b'#'; MAX_BODY_BYTES + 1]);
    assert!(e.contains("script body is over 262144 bytes"), "{e}");
    let (_dir, path) = write(GOOD, &vec![b'#'; MAX_BODY_BYTES]);
    assert!(load(&path).is_ok(), "a body of exactly the limit loads");
    let e = refused(GOOD, b"echo \xff\n");
    assert!(e.contains("script body is not valid UTF-8"), "{e}");
    let big = format!("{GOOD}\n{}", "# padding\n".repeat(MAX_MANIFEST_BYTES / 10));
    let e = refused(&big, BODY.as_bytes());
    assert!(e.contains("manifest is over 65536 bytes"), "{e}");
}

#[test]
fn zero_timeout_is_refused() {
    let e = refused(
        &GOOD.replace("timeout_secs = 30", "timeout_secs = 0"),
        BODY.as_bytes(),
    );
    assert!(e.contains("timeout_secs must be 1..=3600"), "{e}");
}

#[test]
fn sign_verify_round_trip() {
    let (_dir, path) = write(GOOD, BODY.as_bytes());
    let (entry, body) = load(&path).expect("good manifest");
    let key = SigningKey::from_bytes(&[7; 32]);
    let public = key.verifying_key().to_bytes();
    let signature = sign(&entry, &key);
    assert_eq!(signature.len(), 64);
    verify(&entry, &body, &signature, &public).expect("round trip verifies");
    let other = SigningKey::from_bytes(&[8; 32]).verifying_key().to_bytes();
    assert!(verify(&entry, &body, &signature, &other).is_err());
}

#[test]
fn changed_body_or_flipped_signature_bit_fails() {
    let (_dir, path) = write(GOOD, BODY.as_bytes());
    let (entry, body) = load(&path).expect("good manifest");
    let key = SigningKey::from_bytes(&[7; 32]);
    let public = key.verifying_key().to_bytes();
    let signature = sign(&entry, &key);

    let mut changed = body.clone().into_bytes();
    if let Some(b) = changed.get_mut(20) {
        *b ^= 0x01;
    }
    let changed = String::from_utf8(changed).expect("still ASCII");
    let e = verify(&entry, &changed, &signature, &public).expect_err("changed body");
    assert!(matches!(e, CatalogError::BodyChanged { .. }), "{e}");
    assert!(e.to_string().contains("does not match the signed hash"));

    for bit in [0, 100, 511] {
        let mut flipped = signature.clone();
        if let Some(b) = flipped.get_mut(bit / 8) {
            *b ^= 1 << (bit % 8);
        }
        let e = verify(&entry, &body, &flipped, &public).expect_err("flipped bit");
        assert!(matches!(e, CatalogError::BadSignature { .. }), "{e}");
    }

    let mut edited = entry.clone();
    edited.timeout_secs = 3600;
    assert!(verify(&edited, &body, &signature, &public).is_err());
    let mut short = signature.clone();
    short.pop();
    assert!(verify(&entry, &body, &short, &public).is_err());
}

#[test]
fn a_self_service_manifest_with_a_free_text_parameter_is_refused_with_the_rule() {
    let flagged = GOOD.replace(
        "body = \"flush-dns.sh\"\n",
        "body = \"flush-dns.sh\"\nself_service = true\n",
    );
    let text = refused(&flagged, BODY.as_bytes());
    assert!(
        text.contains("\"host\"") && text.contains("closed choices (enum, bool, or integer"),
        "{text}"
    );
}

#[test]
fn a_self_service_manifest_with_closed_choices_loads_flagged_and_signs_apart() {
    let (head, _) = GOOD
        .split_once("[[params]]\nname = \"host\"")
        .expect("GOOD has a host parameter");
    let (_, tail) = GOOD
        .split_once("[[params]]\nname = \"count\"")
        .expect("GOOD has a count parameter");
    let flagged = format!(
        "{}self_service = true\n\n[[params]]\nname = \"count\"{tail}",
        head.trim_end_matches('\n').to_owned() + "\n"
    );
    let (_dir, path) = write(&flagged, BODY.as_bytes());
    let (entry, _) = load(&path).expect("closed choices are fine");
    assert!(entry.self_service);
    let key = SigningKey::from_bytes(&[5; 32]);
    let signature = sign(&entry, &key);
    let public = key.verifying_key().to_bytes();
    assert!(verify(&entry, BODY, &signature, &public).is_ok());
    let mut unflagged = entry.clone();
    unflagged.self_service = false;
    assert!(
        verify(&unflagged, BODY, &signature, &public).is_err(),
        "dropping the flag breaks the signature"
    );
}
