//! Who this user is to SSH: the home directory ssh reads and the public keys it logs in with
//! (the agent's, then the identity files `ssh -G` names), so a new host can be given them.

use std::path::PathBuf;

/// The home directory ssh uses: the password database's, not `$HOME`.
pub fn passwd_home() -> Option<PathBuf> {
    // SAFETY: getpwuid returns a pointer into static storage or null; read at once.
    unsafe {
        let pw = libc::getpwuid(libc::getuid());
        if pw.is_null() || (*pw).pw_dir.is_null() {
            return None;
        }
        let dir = std::ffi::CStr::from_ptr((*pw).pw_dir);
        Some(PathBuf::from(dir.to_string_lossy().into_owned()))
    }
}

/// The public keys this user logs in with: the agent's, then the `.pub` files beside the
/// identity files `ssh` would offer (as `ssh -G` reports them, so ssh_config counts).
pub fn public_keys() -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    let mut add = |line: &str| {
        let line = line.trim();
        let mut words = line.split_whitespace();
        let (Some(kind), Some(blob)) = (words.next(), words.next()) else {
            return;
        };
        if !(kind.starts_with("ssh-") || kind.starts_with("ecdsa-") || kind.starts_with("sk-")) {
            return;
        }
        if !keys
            .iter()
            .any(|k| k.split_whitespace().nth(1) == Some(blob))
        {
            keys.push(line.to_string());
        }
    };
    if std::env::var_os("SSH_AUTH_SOCK").is_some() {
        if let Ok(out) = std::process::Command::new("ssh-add").arg("-L").output() {
            if out.status.success() {
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .for_each(&mut add);
            }
        }
    }
    if let Ok(out) = std::process::Command::new("ssh")
        .args(["-G", "wsm-identity-probe"])
        .stdin(std::process::Stdio::null())
        .output()
    {
        let home = passwd_home().unwrap_or_default();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Some(file) = line.strip_prefix("identityfile ") else {
                continue;
            };
            let path = match file.strip_prefix("~/") {
                Some(rest) => home.join(rest),
                None => PathBuf::from(file),
            };
            let pubfile = PathBuf::from(format!("{}.pub", path.display()));
            if let Ok(text) = std::fs::read_to_string(&pubfile) {
                text.lines().for_each(&mut add);
            }
        }
    }
    keys
}
