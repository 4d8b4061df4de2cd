//! `cargo xtask cycles`: finds import cycles between the files of each crate target in
//! the workspace and prints each as `a → b → c → a`.
//!
//! Granularity: one node per `.rs` file (a `mod.rs` or `lib.rs` is its directory's
//! module; inline `mod x { .. }`, such as unit tests, belong to their file). An edge
//! `a → b` is any `use` or path in `a` that names something in `b`, re-exports followed
//! to the file that defines the item; except that a parent's references to its own
//! children are no edges: it declares them, re-exports them and dispatches into them,
//! which is what a parent is for. So a child using `super::Error` is fine, and a cycle
//! is files that are not parent and child depending on each other in a loop, directly or
//! through a parent: `server::tech → server::collect → server::tech`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::modules::{self, ModuleGraph};

/// One crate target: a library, binary, test, bench or example, with its root file.
#[derive(Debug)]
pub struct Target {
    /// `package (kind name)`, e.g. `deskside-controller (lib)`.
    pub label: String,
    pub root: PathBuf,
}

/// What `cargo metadata` says of the workspace members, the part read here.
#[derive(Debug, Deserialize)]
struct Metadata {
    packages: Vec<Package>,
}

#[derive(Debug, Deserialize)]
struct Package {
    name: String,
    targets: Vec<PackageTarget>,
}

#[derive(Debug, Deserialize)]
struct PackageTarget {
    name: String,
    kind: Vec<String>,
    src_path: PathBuf,
}

/// The cycles of one target, each as module names, first one repeated at the end.
#[derive(Debug)]
pub struct Found {
    pub target: String,
    pub cycles: Vec<Vec<String>>,
}

/// Every target of every workspace member, from `cargo metadata`.
pub fn targets(workspace: &Path) -> Result<Vec<Target>> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace)
        .args([
            "metadata",
            "--no-deps",
            "--offline",
            "--format-version",
            "1",
        ])
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let meta: Metadata =
        serde_json::from_slice(&out.stdout).context("reading cargo metadata's output")?;
    let mut found = Vec::new();
    for package in meta.packages {
        for target in package.targets {
            let kind = target.kind.first().map_or("?", String::as_str);
            let label = match kind {
                "lib" | "custom-build" => format!("{} ({kind})", package.name),
                _ => format!("{} ({kind} {})", package.name, target.name),
            };
            found.push(Target {
                label,
                root: target.src_path,
            });
        }
    }
    Ok(found)
}

/// The cycles of every target that has any.
pub fn check(targets: &[Target]) -> Result<Vec<Found>> {
    let mut found = Vec::new();
    for t in targets {
        let graph = modules::load(&t.root)
            .with_context(|| format!("reading the modules of {}", t.label))?;
        let cycles = cycles(&graph);
        if !cycles.is_empty() {
            found.push(Found {
                target: t.label.clone(),
                cycles,
            });
        }
    }
    Ok(found)
}

/// `a → b → a`.
pub fn show(cycle: &[String]) -> String {
    cycle.join(" → ")
}

/// For each strongly connected part of the graph, the shortest cycle through each of its
/// edges, without repeats: every file in a loop shows, and no cycle is longer than it
/// has to be.
pub fn cycles(graph: &ModuleGraph) -> Vec<Vec<String>> {
    let n = graph.names.len();
    let mut next: Vec<Vec<usize>> = vec![Vec::new(); n];
    for &(a, b) in &graph.edges {
        if let Some(out) = next.get_mut(a) {
            out.push(b);
        }
    }
    let component = components(&next);
    let mut seen = BTreeSet::new();
    for &(a, b) in &graph.edges {
        if component.get(a) != component.get(b) {
            continue;
        }
        if let Some(mut path) = shortest(&next, &component, b, a) {
            // Rotate so the smallest index leads: the same loop found from two edges
            // compares equal.
            let lead = path
                .iter()
                .enumerate()
                .min_by_key(|(_, v)| **v)
                .map_or(0, |(i, _)| i);
            path.rotate_left(lead);
            seen.insert(path);
        }
    }
    seen.into_iter()
        .map(|path| {
            path.iter()
                .chain(path.first())
                .map(|&i| graph.names.get(i).cloned().unwrap_or_default())
                .collect()
        })
        .collect()
}

/// Tarjan's strongly connected components: `component[v]` for each node.
#[expect(
    clippy::indexing_slicing,
    reason = "nodes are numbered 0..next.len() and every edge in `next` joins two of them"
)]
fn components(next: &[Vec<usize>]) -> Vec<usize> {
    struct State<'a> {
        next: &'a [Vec<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        component: Vec<usize>,
        counter: usize,
        components: usize,
    }
    fn visit(s: &mut State, v: usize) {
        s.index[v] = Some(s.counter);
        s.low[v] = s.counter;
        s.counter += 1;
        s.stack.push(v);
        s.on_stack[v] = true;
        for &w in &s.next[v] {
            match s.index[w] {
                None => {
                    visit(s, w);
                    s.low[v] = s.low[v].min(s.low[w]);
                }
                Some(i) if s.on_stack[w] => s.low[v] = s.low[v].min(i),
                Some(_) => {}
            }
        }
        if Some(s.low[v]) == s.index[v] {
            while let Some(w) = s.stack.pop() {
                s.on_stack[w] = false;
                s.component[w] = s.components;
                if w == v {
                    break;
                }
            }
            s.components += 1;
        }
    }
    let n = next.len();
    let mut s = State {
        next,
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        component: vec![0; n],
        counter: 0,
        components: 0,
    };
    for v in 0..n {
        if s.index[v].is_none() {
            visit(&mut s, v);
        }
    }
    s.component
}

/// The shortest path `from → .. → to` inside one component, as the nodes before `to`
/// are reached, starting with `to` itself: i.e. the cycle `to → from → .. → to`.
fn shortest(
    next: &[Vec<usize>],
    component: &[usize],
    from: usize,
    to: usize,
) -> Option<Vec<usize>> {
    let mut came_from: BTreeMap<usize, usize> = BTreeMap::new();
    let mut queue = VecDeque::from([from]);
    came_from.insert(from, from);
    while let Some(v) = queue.pop_front() {
        if v == to {
            let mut path = vec![v];
            let mut at = v;
            while at != from {
                at = *came_from.get(&at)?;
                path.push(at);
            }
            // path is to ← .. ← from; the cycle is to → from → .. → to.
            path.reverse();
            path.rotate_right(1);
            return Some(path);
        }
        for &w in next.get(v)? {
            if component.get(w) == component.get(from) && !came_from.contains_key(&w) {
                came_from.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests;
