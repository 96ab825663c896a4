//! The crate graph and module graph against ARCHITECTURE.md's invariants, from cargo's own view
//! of the workspace (`cargo metadata`) and the sources: which crate may depend on which (normal
//! dependencies, transitively), that `manifests` stays a format library without network or CLI
//! dependencies, that the `worker-release` binary has exactly one home, and that the modules of
//! `manifests` import each other without a circle.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use e2e::workspace_root;
use serde_json::Value;

/// "Crate X must not depend, through normal dependencies at any depth, on any of these."
/// Build and dev dependencies do not count: they never end up in X's binaries or dependants.
///
/// Add a row per architectural rule.
const FORBIDDEN_DEPENDENCIES: &[(&str, &[&str])] = &[
    // The format library: no network I/O, no CLI (its consumers must not compile either).
    (
        "manifests",
        &["reqwest", "hyper", "tokio", "clap", "anyhow", "axum"],
    ),
    // The ESUP runner layer knows nothing of updates: neither the agent nor the signed release
    // format can reach it, only what the agent passes in (task gate, task metrics, version).
    (
        "esup-runner",
        &[
            "worker-agent",
            "manifests",
            "update-server",
            "worker-release",
        ],
    ),
    // The connection limits every HTTP server shares know no server of their own.
    (
        "serve-limits",
        &[
            "manifests",
            "update-server",
            "worker-agent",
            "esup-runner",
            "worker-release",
        ],
    ),
    // The release CLI reaches the server over HTTP only, and is no agent.
    ("worker-release", &["update-server", "worker-agent"]),
    // Agent and server share the format crate and the HTTP API, never each other's code.
    ("worker-agent", &["update-server", "worker-release"]),
    ("update-server", &["worker-agent", "worker-release"]),
];

/// The workspace as cargo resolves it.
struct Workspace {
    /// Package id -> package name, for every package in the resolve.
    names: BTreeMap<String, String>,
    /// Package id -> ids of its normal (non-build, non-dev) dependencies.
    normal_deps: BTreeMap<String, Vec<String>>,
    /// Workspace member name -> its package id.
    members: BTreeMap<String, String>,
    /// Every package's metadata entry (for its targets).
    packages: Vec<Value>,
}

impl Workspace {
    /// `cargo metadata` for the platform this workspace was built for: restricting the resolve
    /// to it means no other platform's crates need downloading, and those never link here.
    fn load() -> Self {
        let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
            .current_dir(workspace_root())
            .args(["metadata", "--format-version", "1", "--locked"])
            .args(["--filter-platform", manifests::BUILD_PLATFORM])
            .output()
            .expect("cargo metadata runs");
        assert!(
            output.status.success(),
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let metadata: Value = serde_json::from_slice(&output.stdout).expect("metadata is JSON");
        let packages = metadata["packages"].as_array().expect("packages").clone();
        let names: BTreeMap<String, String> = packages
            .iter()
            .map(|p| (string(&p["id"]), string(&p["name"])))
            .collect();
        let normal_deps = metadata["resolve"]["nodes"]
            .as_array()
            .expect("resolve.nodes")
            .iter()
            .map(|node| {
                let deps = node["deps"]
                    .as_array()
                    .expect("deps")
                    .iter()
                    .filter(|dep| {
                        dep["dep_kinds"]
                            .as_array()
                            .expect("dep_kinds")
                            .iter()
                            .any(|kind| kind["kind"].is_null())
                    })
                    .map(|dep| string(&dep["pkg"]))
                    .collect();
                (string(&node["id"]), deps)
            })
            .collect();
        let members = metadata["workspace_members"]
            .as_array()
            .expect("workspace_members")
            .iter()
            .map(|id| (names[&string(id)].clone(), string(id)))
            .collect();
        Workspace {
            names,
            normal_deps,
            members,
            packages,
        }
    }

    /// Names of every package `member` depends on through normal dependencies, at any depth.
    fn normal_closure(&self, member: &str) -> BTreeSet<String> {
        let start = self
            .members
            .get(member)
            .unwrap_or_else(|| panic!("{member} is not a workspace member: {:?}", self.members));
        let mut seen = BTreeSet::new();
        let mut pending = vec![start.clone()];
        while let Some(id) = pending.pop() {
            for dep in &self.normal_deps[&id] {
                if seen.insert(dep.clone()) {
                    pending.push(dep.clone());
                }
            }
        }
        seen.iter().map(|id| self.names[id].clone()).collect()
    }
}

fn string(value: &Value) -> String {
    value.as_str().expect("a string").to_owned()
}

#[test]
fn no_crate_depends_on_what_the_architecture_forbids() {
    let workspace = Workspace::load();
    let mut violations = Vec::new();
    for (member, forbidden) in FORBIDDEN_DEPENDENCIES {
        let closure = workspace.normal_closure(member);
        for name in *forbidden {
            if closure.contains(*name) {
                violations.push(format!("{member} depends on {name}"));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "forbidden dependencies (see `cargo tree -e normal -i NAME -p CRATE`): {violations:#?}"
    );
}

#[test]
fn the_dependency_closure_of_manifests_is_seen() {
    // The rows above say what manifests must not reach; this says it still reaches what a
    // format library is made of, so the rule above is not passing on an empty closure.
    let closure = Workspace::load().normal_closure("manifests");
    for needed in ["ed25519-dalek", "serde_json", "sha2"] {
        assert!(
            closure.contains(needed),
            "manifests lost {needed}: {closure:?}"
        );
    }
}

#[test]
fn worker_release_binary_lives_in_its_own_crate() {
    let workspace = Workspace::load();
    let homes: Vec<String> = workspace
        .packages
        .iter()
        .filter(|package| {
            package["targets"]
                .as_array()
                .expect("targets")
                .iter()
                .any(|target| {
                    target["name"] == "worker-release"
                        && target["kind"]
                            .as_array()
                            .expect("kind")
                            .iter()
                            .any(|kind| kind == "bin")
                })
        })
        .map(|package| string(&package["name"]))
        .collect();
    assert_eq!(homes, ["worker-release"]);
}

/// The modules of a crate whose modules are the files of `src/` (no nested module files), and
/// which modules each one names through `crate::`. The crate root (`lib.rs`, named `crate`)
/// depends on the modules it re-exports from (`pub use MODULE::...`).
fn module_imports(src: &std::path::Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(src).unwrap_or_else(|e| panic!("{}: {e}", src.display())) {
        let path = entry.expect("dir entry").path();
        assert!(
            !path.is_dir(),
            "{}: nested modules need a smarter module graph here",
            path.display()
        );
        if path.extension().is_some_and(|e| e == "rs") {
            let stem = path
                .file_stem()
                .expect("stem")
                .to_string_lossy()
                .into_owned();
            let name = if stem == "lib" {
                "crate".to_owned()
            } else {
                stem
            };
            files.insert(name, std::fs::read_to_string(&path).expect("read module"));
        }
    }
    let modules: BTreeSet<String> = files.keys().cloned().collect();
    let mut graph = BTreeMap::new();
    for (module, text) in &files {
        let mut imports = BTreeSet::new();
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or_default();
            for (at, _) in code.match_indices("crate::") {
                imports.extend(first_segments(&code[at + "crate::".len()..]));
            }
            if module == "crate" {
                if let Some(rest) = code.trim().strip_prefix("pub use ") {
                    imports.extend(first_segments(rest));
                }
            }
        }
        // `crate::Name` (a re-export) is an import of the crate root.
        let imports = imports
            .into_iter()
            .map(|name| {
                if modules.contains(&name) {
                    name
                } else {
                    "crate".to_owned()
                }
            })
            .filter(|name| name != module)
            .collect();
        graph.insert(module.clone(), imports);
    }
    graph
}

/// `a::b`, `{a::b, c}` or `a` after `crate::`: the first segment of each path.
fn first_segments(rest: &str) -> Vec<String> {
    let ident = |text: &str| -> String {
        text.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    match rest.strip_prefix('{') {
        Some(group) => group
            .split('}')
            .next()
            .unwrap_or_default()
            .split(',')
            .map(ident)
            .filter(|name| !name.is_empty())
            .collect(),
        None => vec![ident(rest)]
            .into_iter()
            .filter(|n| !n.is_empty())
            .collect(),
    }
}

/// A circle in `graph`, as the modules along it, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|start| visit(start, graph, &mut Vec::new(), &mut done))
}

#[test]
fn manifests_modules_import_each_other_without_a_circle() {
    let graph = module_imports(&workspace_root().join("manifests/src"));
    // The parser must see the imports that exist, or "no circle" would mean nothing.
    assert!(graph["signed"].contains("role"), "{graph:#?}");
    assert!(graph["crate"].contains("verify"), "{graph:#?}");
    assert_eq!(find_cycle(&graph), None, "{graph:#?}");

    let mut with_circle = graph.clone();
    with_circle
        .get_mut("timestamp")
        .expect("timestamp module")
        .insert("error".to_owned());
    assert!(
        find_cycle(&with_circle).is_some(),
        "the circle check finds circles"
    );
}
