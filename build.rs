// Rebuild when a bundled script, stdlib module or node build context changes, so that the copy
// include_dir embeds is never stale; and tell the binary the commit it is built from
// (`wsm --version`): `$WSM_GIT_COMMIT` when set (a build from a tarball), else git's short
// hash of HEAD, else `unknown`. Only HEAD moving reruns this (not the index, which every
// `git status` may touch): a rerun rebuilds the crate.
use std::process::Command;

fn main() {
    for dir in ["stdlib", "scripts", "nodes"] {
        println!("cargo:rerun-if-changed={dir}");
        for entry in walk(std::path::Path::new(dir)) {
            println!("cargo:rerun-if-changed={}", entry.display());
        }
    }
    println!("cargo:rerun-if-env-changed=WSM_GIT_COMMIT");
    let commit = std::env::var("WSM_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=WSM_GIT_COMMIT={commit}");
}

/// `git` with `args` in the crate's folder, its output trimmed; None if it fails.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn git_commit() -> Option<String> {
    let hash = git(&["rev-parse", "--short=12", "HEAD"]).filter(|h| !h.is_empty())?;
    // Build again when HEAD moves: HEAD itself, the branch it names, the packed refs.
    for path in ["HEAD", "packed-refs"] {
        if let Some(p) = git(&["rev-parse", "--git-path", path]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        if let Some(p) = git(&["rev-parse", "--git-path", &branch]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    Some(hash)
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            }
            out.push(p);
        }
    }
    out
}
