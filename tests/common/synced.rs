//! Git-backed stacks of the keeper's tests (tests/sync.rs, tests/serve.rs): a bare repository
//! with a work tree that pushes to it, and a synced stack removed with its sync documents.

use std::process::Command;

use serde_json::Value;

use super::*;

/// A bare repository with a work tree that pushes to it.
pub struct Repo {
    pub dir: tempfile::TempDir,
}

impl Repo {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let r = Repo { dir };
        git(&["init", "-q", "--bare", "repo.git"], r.dir.path());
        git(&["init", "-q", "-b", "main", "work"], r.dir.path());
        r
    }

    pub fn url(&self) -> String {
        format!("file://{}/repo.git", self.dir.path().display())
    }

    /// Writes the files (path, text) into the work tree, commits and pushes; the short sha.
    pub fn commit(&self, files: &[(&str, &str)], subject: &str) -> String {
        let work = self.dir.path().join("work");
        for (path, text) in files {
            std::fs::write(work.join(path), text).unwrap();
        }
        git(&["add", "-A"], &work);
        git(&["commit", "-qm", subject], &work);
        git(&["push", "-q", &self.url(), "main"], &work);
        let out = Command::new("git")
            .args(["rev-parse", "--short=7", "HEAD"])
            .current_dir(&work)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// A test's synced stack: removed with its sync definition and history, however the test ends.
pub struct Synced {
    pub s: TestStack,
}

impl Synced {
    pub fn new(prefix: &str) -> Self {
        Synced {
            s: TestStack::bare(prefix),
        }
    }

    pub fn name(&self) -> &str {
        &self.s.name
    }

    pub fn wsm(&self, args: &[&str]) -> Run {
        self.s.wsm(args)
    }

    pub fn web(&self) -> Value {
        let text = docker(&["service", "inspect", &format!("{}_web", self.name())]);
        serde_json::from_str::<Vec<Value>>(&text).unwrap().remove(0)
    }

    pub fn ls(&self) -> Value {
        let rows: Vec<Value> =
            serde_json::from_str(self.wsm(&["sync", "ls", "--json"]).ok()).unwrap();
        rows.into_iter()
            .find(|r| r["stack"] == self.name())
            .unwrap_or(Value::Null)
    }
}

impl Drop for Synced {
    fn drop(&mut self) {
        let name = self.name().to_string();
        docker_quiet(&["config", "rm", &format!("wsm-state-sync.{name}")]);
        docker_quiet(&["config", "rm", &format!("wsm-state-sync-state.{name}")]);
        docker_quiet(&["config", "rm", &format!("wsm-state-job.sync-{name}")]);
        docker_quiet(&["config", "rm", &format!("wsm-state-job-runs.sync-{name}")]);
        // A sync killed while it held the stack's lock (a `wsm serve` ended by a failing test).
        docker_quiet(&["config", "rm", &format!("wsm-lock-{name}")]);
    }
}
