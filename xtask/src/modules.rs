//! The module tree of one crate target and which of its files refer to which: every
//! `.rs` file reached by `mod x;` from the target's root is a node; an edge `a → b` says
//! that file `a` names something in file `b` through a `use`, an inline path
//! (`crate::x::f()`, `super::T`, a child module's name) or a path inside a macro call.
//! `#[cfg(test)]` items are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

/// A path is followed through `use` re-exports at most this many times; more is a loop
/// of re-exports, which rustc rejects anyway.
const MAX_REEXPORT_HOPS: usize = 8;

/// One crate target's files and the references between them.
#[derive(Debug)]
pub struct ModuleGraph {
    /// Module paths of the files, `crate` for the root (`lib.rs`, `main.rs`).
    pub names: Vec<String>,
    /// `(from, to)` indices into `names`: file `from` names something in file `to`.
    pub edges: BTreeSet<(usize, usize)>,
}

/// A logical module: a file, or an inline `mod x { .. }` inside one.
#[derive(Debug)]
struct Logical {
    file: usize,
}

/// A reference found in a file: the logical module it was written in, and its path.
#[derive(Debug)]
struct Reference {
    /// The module path of the file it is in.
    file: Vec<String>,
    at: Vec<String>,
    path: Vec<String>,
    /// Outside `use`, a path's last segment is an item (`report::html()` is a function
    /// even where a module `report::html` exists), never a module.
    ends_in_item: bool,
}

/// Reads the target whose root file is `root` and builds its graph.
pub fn load(root: &Path) -> Result<ModuleGraph> {
    let mut files: Vec<(Vec<String>, syn::File)> = Vec::new();
    let mut logical: BTreeMap<Vec<String>, Logical> = BTreeMap::new();
    let dir = root.parent().unwrap_or(Path::new(".")).to_path_buf();
    discover(root, Vec::new(), dir, &mut files, &mut logical)?;

    let mut refs = Vec::new();
    let mut imports: BTreeMap<Vec<String>, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for (path, file) in &files {
        let mut v = Collector {
            file: path.clone(),
            at: path.clone(),
            refs: &mut refs,
            uses: Vec::new(),
        };
        v.visit_file(file);
        for (at, name, target) in v.uses {
            if let Some(abs) = absolute(&at, &target, &logical) {
                imports.entry(at).or_default().insert(name, abs);
            }
        }
    }

    let mut edges = BTreeSet::new();
    for r in &refs {
        let Some(abs) = absolute(&r.at, &r.path, &logical) else {
            continue;
        };
        let target = resolve(abs, r.ends_in_item, &logical, &imports);
        let (Some(from), Some(to)) = (logical.get(&r.at), logical.get(&target)) else {
            continue;
        };
        // A parent declares its children and is their face to the rest of the crate:
        // using them is what it is for, and is no edge.
        if from.file != to.file && !target.starts_with(&r.file) {
            edges.insert((from.file, to.file));
        }
    }
    let names = files
        .iter()
        .map(|(p, _)| {
            if p.is_empty() {
                "crate".to_owned()
            } else {
                p.join("::")
            }
        })
        .collect();
    Ok(ModuleGraph { names, edges })
}

/// Parses `file` as module `path`, and every module it declares, depth first.
fn discover(
    file: &Path,
    path: Vec<String>,
    dir: PathBuf,
    files: &mut Vec<(Vec<String>, syn::File)>,
    logical: &mut BTreeMap<Vec<String>, Logical>,
) -> Result<()> {
    let text = fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let parsed =
        syn::parse_file(&text).with_context(|| format!("parsing {} as Rust", file.display()))?;
    let index = files.len();
    logical.insert(path.clone(), Logical { file: index });
    let mut children = Vec::new();
    declared(&parsed.items, &path, &dir, index, logical, &mut children)?;
    files.push((path, parsed));
    for (child_path, child_file, child_dir) in children {
        discover(&child_file, child_path, child_dir, files, logical)?;
    }
    Ok(())
}

/// The modules `items` declare: inline ones are recorded as part of file `index`, the
/// `mod x;` ones are returned with the file and directory to read them from.
fn declared(
    items: &[syn::Item],
    path: &[String],
    dir: &Path,
    index: usize,
    logical: &mut BTreeMap<Vec<String>, Logical>,
    out: &mut Vec<(Vec<String>, PathBuf, PathBuf)>,
) -> Result<()> {
    for item in items {
        let syn::Item::Mod(m) = item else { continue };
        if test_only(item) {
            continue;
        }
        if m.attrs.iter().any(|a| a.path().is_ident("path")) {
            bail!(
                "module {} uses #[path], which this check does not follow",
                m.ident
            );
        }
        let name = m.ident.to_string();
        let mut child = path.to_vec();
        child.push(name.clone());
        let child_dir = dir.join(&name);
        match &m.content {
            Some((_, inner)) => {
                logical.insert(child.clone(), Logical { file: index });
                declared(inner, &child, &child_dir, index, logical, out)?;
            }
            None => {
                let flat = dir.join(format!("{name}.rs"));
                let nested = child_dir.join("mod.rs");
                let file = if flat.is_file() { flat } else { nested };
                out.push((child, file, child_dir));
            }
        }
    }
    Ok(())
}

/// `path` written in module `at`, from the crate root; `None` when it does not start in
/// this crate (`std::..`, another crate, a local item or variable).
fn absolute(
    at: &[String],
    path: &[String],
    logical: &BTreeMap<Vec<String>, Logical>,
) -> Option<Vec<String>> {
    let (first, rest) = path.split_first()?;
    let mut base = match first.as_str() {
        "crate" => return Some(rest.to_vec()),
        "self" => at.to_vec(),
        "super" => {
            let mut b = at.to_vec();
            b.pop()?;
            b
        }
        _ => {
            let mut child = at.to_vec();
            child.push(first.clone());
            if !logical.contains_key(&child) {
                return None;
            }
            let mut full = at.to_vec();
            full.extend(path.iter().cloned());
            return Some(full);
        }
    };
    let mut rest = rest;
    while let Some((s, r)) = rest.split_first() {
        if s != "super" {
            break;
        }
        base.pop()?;
        rest = r;
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

/// The logical module an absolute path lands in: its longest module prefix, followed
/// through `use` re-exports so that `crate::Thing` counts as a reference to the file that
/// defines `Thing`, not to `lib.rs` that re-exports it.
fn resolve(
    mut abs: Vec<String>,
    ends_in_item: bool,
    logical: &BTreeMap<Vec<String>, Logical>,
    imports: &BTreeMap<Vec<String>, BTreeMap<String, Vec<String>>>,
) -> Vec<String> {
    for _ in 0..MAX_REEXPORT_HOPS {
        let mut len = abs.len().saturating_sub(usize::from(ends_in_item));
        while len > 0 && !logical.contains_key(abs.get(..len).unwrap_or_default()) {
            len -= 1;
        }
        let module = abs.get(..len).unwrap_or_default().to_vec();
        let next = abs
            .get(len)
            .and_then(|item| imports.get(&module)?.get(item));
        match next {
            Some(target) if *target != abs => {
                let mut followed = target.clone();
                followed.extend(abs.iter().skip(len + 1).cloned());
                abs = followed;
            }
            _ => return module,
        }
    }
    abs
}

/// `#[cfg(test)]`: unit tests may use anything in their crate to build fixtures; they
/// are no part of the crate's structure.
fn test_only(item: &syn::Item) -> bool {
    let attrs = match item {
        syn::Item::Mod(m) => &m.attrs,
        syn::Item::Fn(f) => &f.attrs,
        syn::Item::Use(u) => &u.attrs,
        syn::Item::Impl(i) => &i.attrs,
        syn::Item::Struct(s) => &s.attrs,
        syn::Item::Const(c) => &c.attrs,
        _ => return false,
    };
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.meta
                .require_list()
                .is_ok_and(|l| l.tokens.to_string() == "test")
    })
}

/// Walks one file, noting each path that may name this crate's modules.
struct Collector<'a> {
    file: Vec<String>,
    at: Vec<String>,
    refs: &'a mut Vec<Reference>,
    /// `(module, name, path)`: `use path as name` in `module`.
    uses: Vec<(Vec<String>, String, Vec<String>)>,
}

impl Collector<'_> {
    fn note(&mut self, path: Vec<String>, ends_in_item: bool) {
        self.refs.push(Reference {
            file: self.file.clone(),
            at: self.at.clone(),
            path,
            ends_in_item,
        });
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => self.use_leaf(prefix, &n.ident, &n.ident),
            syn::UseTree::Rename(r) => self.use_leaf(prefix, &r.ident, &r.rename),
            syn::UseTree::Glob(_) => self.note(prefix.clone(), false),
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(prefix, t);
                }
            }
        }
    }

    fn use_leaf(&mut self, prefix: &[String], ident: &syn::Ident, name: &syn::Ident) {
        let mut full = prefix.to_vec();
        if ident != "self" {
            full.push(ident.to_string());
        }
        let name = if name == "self" {
            prefix.last().cloned().unwrap_or_default()
        } else {
            name.to_string()
        };
        self.uses.push((self.at.clone(), name, full.clone()));
        self.note(full, false);
    }

    /// Paths inside a macro call are tokens to syn: `crate :: a :: b`, `super :: x`.
    fn tokens(&mut self, tokens: TokenStream) {
        let mut path: Vec<String> = Vec::new();
        let mut colons = 0;
        for tt in tokens {
            match tt {
                TokenTree::Group(g) => {
                    self.flush(&mut path);
                    self.tokens(g.stream());
                }
                TokenTree::Ident(i) => {
                    if path.is_empty() || colons != 2 {
                        self.flush(&mut path);
                    }
                    path.push(i.to_string());
                    colons = 0;
                }
                TokenTree::Punct(p) if p.as_char() == ':' && !path.is_empty() && colons < 2 => {
                    colons += 1;
                }
                _ => {
                    self.flush(&mut path);
                    colons = 0;
                }
            }
        }
        self.flush(&mut path);
    }

    fn flush(&mut self, path: &mut Vec<String>) {
        let starts_here = path
            .first()
            .is_some_and(|s| matches!(s.as_str(), "crate" | "super" | "self"));
        if path.len() > 1 && starts_here {
            self.note(std::mem::take(path), true);
        }
        path.clear();
    }
}

impl<'ast> Visit<'ast> for Collector<'_> {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        if !test_only(item) {
            syn::visit::visit_item(self, item);
        }
    }

    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        self.at.push(m.ident.to_string());
        syn::visit::visit_item_mod(self, m);
        self.at.pop();
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &u.tree);
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        // A lone name is a local item or variable; a module is named only on the way
        // to something in it.
        if p.segments.len() > 1 {
            self.note(
                p.segments.iter().map(|s| s.ident.to_string()).collect(),
                true,
            );
        }
        syn::visit::visit_path(self, p);
    }

    /// `pub(in crate::x)` and `pub(super)` grant access; they use nothing.
    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {}

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        syn::visit::visit_macro(self, m);
        self.tokens(m.tokens.clone());
    }
}
