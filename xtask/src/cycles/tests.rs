use std::fs;
use std::path::Path;

use super::*;

fn write(dir: &Path, files: &[(&str, &str)]) -> Result<PathBuf> {
    for (name, text) in files {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(path, text)?;
    }
    Ok(dir.join("lib.rs"))
}

fn found(files: &[(&str, &str)]) -> Result<Vec<String>> {
    let dir = tempfile::tempdir()?;
    let root = write(dir.path(), files)?;
    let graph = modules::load(&root)?;
    Ok(cycles(&graph).iter().map(|c| show(c)).collect())
}

#[test]
fn a_loop_through_use_an_inline_path_and_a_macro_is_one_cycle() -> Result<()> {
    let cycles = found(&[
        ("lib.rs", "mod a;\nmod b;\nmod c;\n"),
        ("a.rs", "use crate::b::B;\npub fn f() {}\n"),
        ("b.rs", "pub struct B;\nfn g() { super::c::h(); }\n"),
        (
            "c.rs",
            "pub fn h() { println!(\"{:?}\", crate::a::f()); }\n",
        ),
    ])?;
    assert_eq!(cycles, ["a → b → c → a"]);
    Ok(())
}

#[test]
fn files_in_a_directory_are_nodes_and_their_parent_may_use_them() -> Result<()> {
    let cycles = found(&[
        ("lib.rs", "pub mod server;\nmod limits;\n"),
        (
            "server/mod.rs",
            "mod collect;\nmod tech;\npub const LIMIT: u32 = 1;\npub fn run() { tech::serve(); }\n",
        ),
        (
            "server/tech.rs",
            "use super::collect;\npub fn serve() { let _ = super::LIMIT; collect::go(); }\n",
        ),
        (
            "server/collect.rs",
            "pub fn go() { let _ = crate::limits::MAX; super::run(); super::tech::serve(); }\n",
        ),
        ("limits.rs", "pub const MAX: u32 = 2;\n"),
    ])?;
    assert_eq!(
        cycles,
        ["server::collect → server::tech → server::collect"],
        "the siblings' loop shows; their parent calling one of them is no part of it"
    );
    Ok(())
}

#[test]
fn declaring_and_re_exporting_children_is_not_a_cycle() -> Result<()> {
    let cycles = found(&[
        ("lib.rs", "mod a;\nmod b;\npub use a::A;\npub use b::B;\n"),
        ("a.rs", "pub struct A;\n"),
        (
            "b.rs",
            "use crate::A;\npub struct B(A);\n#[cfg(test)]\nmod tests { use super::*; }\n",
        ),
    ])?;
    assert!(cycles.is_empty(), "{cycles:?}");
    Ok(())
}

#[test]
fn a_re_export_is_followed_to_the_file_that_defines_the_item() -> Result<()> {
    let cycles = found(&[
        ("lib.rs", "mod a;\nmod b;\npub use a::A;\n"),
        ("a.rs", "pub struct A;\npub fn f() { crate::b::g(); }\n"),
        ("b.rs", "pub fn g() { let _ = crate::A; }\n"),
    ])?;
    assert_eq!(cycles, ["a → b → a"]);
    Ok(())
}

/// The workspace's own crates: any cycle between files is printed and fails the test.
#[test]
fn no_crate_in_the_workspace_has_import_cycles() -> Result<()> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask lives in the workspace")?;
    let found = check(&targets(workspace)?)?;
    let shown: Vec<String> = found
        .iter()
        .flat_map(|f| {
            f.cycles
                .iter()
                .map(move |c| format!("{}: {}", f.target, show(c)))
        })
        .collect();
    assert!(shown.is_empty(), "import cycles:\n{}", shown.join("\n"));
    Ok(())
}
