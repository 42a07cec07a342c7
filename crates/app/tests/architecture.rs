//! The code map's dependency rules and size rule, checked against the workspace itself so that
//! a change that breaks them fails the build's tests, not a later review.
//!
//! Reads `cargo metadata --no-deps` (the workspace's own manifests; no network) for each
//! crate's direct normal dependencies.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Each workspace crate's direct normal (non-dev, non-build) dependencies.
fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--no-deps", "--format-version", "1", "--offline"])
        .current_dir(workspace_root())
        .output()
        .expect("run cargo metadata");
    assert!(out.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut map = BTreeMap::new();
    for p in meta["packages"].as_array().unwrap() {
        let deps = p["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["kind"].is_null())
            // An optional dependency is listed under the feature that turns it on: checked by
            // `OPTIONAL` below.
            .map(|d| {
                let name = d["name"].as_str().unwrap();
                if d["optional"] == true {
                    format!("{name}?")
                } else {
                    name.to_owned()
                }
            })
            .collect();
        map.insert(p["name"].as_str().unwrap().to_owned(), deps);
    }
    map
}

/// Crates each crate must never depend on directly: (crate, forbidden, why).
const RULES: &[(&str, &[&str], &str)] = &[
    (
        "portcullis-core",
        &["tokio", "sqlx", "axum", "serde", "portcullis-store", "portcullis-app", "russh"],
        "the domain core is pure: no I/O, no serialization",
    ),
    (
        "portcullis-store",
        &["portcullis-app", "portcullis-api", "portcullis-proxy", "axum", "russh"],
        "the store knows nothing of use cases or front ends",
    ),
    (
        "portcullis-vault",
        &["portcullis-store", "portcullis-app", "portcullis-api", "tokio", "sqlx"],
        "the vault does no I/O",
    ),
    (
        "portcullis-connect",
        &["portcullis-store", "portcullis-app", "portcullis-api"],
        "connectors know nothing of the store or use cases",
    ),
    (
        "portcullis-directory",
        &["portcullis-store", "portcullis-app", "portcullis-api", "portcullis-vault", "sqlx"],
        "the directory client knows nothing of the store, use cases or keys",
    ),
    (
        "portcullis-recording",
        &["portcullis-store", "portcullis-vault", "portcullis-app"],
        "the recording format knows nothing of sessions or keys",
    ),
    (
        "portcullis-search",
        &["portcullis-store", "portcullis-vault", "portcullis-app", "portcullis-api", "tokio", "sqlx"],
        "the search index knows nothing of sessions' rows, keys or who may see what",
    ),
    (
        "portcullis-app",
        &[
            "portcullis-api",
            "portcullis-proxy",
            "portcullis-cli",
            "axum",
            "hyper",
            "http",
            "tower",
            "utoipa",
            "russh",
            "serde",
        ],
        "the application layer knows nothing of HTTP, DTOs or SSH",
    ),
    (
        "portcullis-api",
        &["portcullis-proxy", "russh", "portcullis-cli", "portcullis-web"],
        "the HTTP adapter never depends on a protocol proxy",
    ),
    (
        "portcullis-proxy",
        &["portcullis-api", "axum", "hyper", "utoipa", "portcullis-cli"],
        "the protocol proxies never depend on the HTTP crate",
    ),
    (
        "portcullis-cli",
        &["portcullis-store", "portcullis-app", "portcullis-api", "portcullis-vault", "sqlx"],
        "the CLI speaks only HTTP to the server",
    ),
    (
        "portcullis-web",
        &["portcullis-api", "portcullis-proxy", "portcullis-cli", "portcullis-vault", "sqlx", "russh", "utoipa"],
        "the web UI is a front end on the application layer; it never depends on the API crate (its administration pages call the API's router, which the binary hands it)",
    ),
    (
        "portcullis-notify",
        &["portcullis-api", "portcullis-proxy", "portcullis-cli", "portcullis-web", "axum", "russh", "utoipa"],
        "delivery reads what the workflow committed and knows no front end",
    ),
];

/// Optional dependencies a crate may have (and only behind a feature): the core's documents
/// (connection policies) derive serialization and OpenAPI schemas for the store and the API,
/// so there is one definition; the core's logic never serializes.
const OPTIONAL: &[(&str, &[&str])] = &[("portcullis-core", &["serde", "utoipa"])];

#[test]
fn crates_depend_only_on_what_the_code_map_allows() {
    let deps = dependencies();
    let mut broken = Vec::new();
    for (krate, forbidden, why) in RULES {
        let have = deps.get(*krate).unwrap_or_else(|| panic!("{krate} is not in the workspace"));
        for f in *forbidden {
            if have.contains(*f) {
                broken.push(format!("{krate} depends on {f}, but {why}"));
            }
            let allowed = OPTIONAL.iter().any(|(k, list)| k == krate && list.contains(f));
            if have.contains(&format!("{f}?")) && !allowed {
                broken.push(format!("{krate} depends on {f} (optionally), but {why}"));
            }
        }
    }
    assert!(broken.is_empty(), "dependency rules broken (see ARCHITECTURE.md):\n{}", broken.join("\n"));
    // The rule set covers every workspace crate that others build on.
    for (name, _) in deps.iter().filter(|(n, _)| n.starts_with("portcullis-")) {
        let exempt = ["portcullis-testkit", "portcullis-bench", "portcullis"];
        assert!(
            exempt.contains(&name.as_str()) || RULES.iter().any(|(k, _, _)| k == name),
            "{name} has no dependency rule; add one to RULES and to ARCHITECTURE.md"
        );
    }
}

/// The most lines one source file may have: beyond it, split by responsibility.
const MAX_LINES: usize = 800;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_source_file_is_longer_than_800_lines() {
    let mut files = Vec::new();
    rust_files(&workspace_root().join("crates"), &mut files);
    assert!(files.len() > 50, "found only {} source files; is the walk right?", files.len());
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).unwrap().lines().count();
            (n > MAX_LINES).then(|| format!("{} ({n} lines)", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "files over {MAX_LINES} lines; split them by responsibility:\n{}", long.join("\n"));
}
