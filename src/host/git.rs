//! `git::` — what the keeper needs of a repository: the commit a branch points at, and a
//! shallow checkout of it. Through the `git` program, not a library: it is maintained, it is
//! what users already configured (SSH's config and known hosts, proxies, CA bundles), it speaks
//! every transport, and a shallow single-branch fetch is its everyday work; libgit2 (git2)
//! has no shallow fetch to speak of, and gitoxide's would add a large build for less.
//!
//! Trust. The repository is data, never code: a fetch brings no hooks and no configuration,
//! only the transports named in `GIT_ALLOW_PROTOCOL` are allowed (no `ext::`, which runs a
//! command), git never prompts, and nothing secret is in its arguments: an SSH key is a path
//! in `GIT_SSH_COMMAND`, an HTTPS token goes in as an `http.extraHeader` through git's
//! `GIT_CONFIG_*` environment. Errors name the URL with any password in it masked.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use rhai::{Dynamic, Engine, Map, Module};

use super::doc::{check_opts, Opt, Prim};
use super::opts::{opt_int, opt_str};
use super::secrets::MASK;
use super::{script_err, Host, ScriptResult};

/// The options of `git::head` and `git::checkout`.
const GIT_OPTS: &[Opt] = &[
    ("ssh_key", "the path of a private key for an SSH repository"),
    ("token_file", "the path of a file holding an HTTPS token"),
    ("timeout", "seconds, 120: then git is killed"),
];

/// The URL as wsm may show it: its password masked as every output masks URL passwords
/// (`secrets::mask_text`), and a lone token in the user info of an http(s) URL, as web hosts
/// take them (`https://<token>@host/…`), masked too; an SSH user name is kept.
pub fn masked_url(url: &str) -> String {
    let lone_token = url.split_once("://").and_then(|(scheme, rest)| {
        let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
        let (user, host) = authority.rsplit_once('@')?;
        (scheme.starts_with("http") && !user.contains(':'))
            .then(|| format!("{scheme}://{MASK}@{host}{}", &rest[authority.len()..]))
    });
    super::secrets::mask_text(&lone_token.unwrap_or_else(|| url.to_string()))
}

/// The environment git runs with: no prompt, safe transports, the key or token.
fn environment(opts: &Map) -> ScriptResult<Vec<(String, String)>> {
    let mut env = vec![
        ("GIT_TERMINAL_PROMPT".to_string(), "0".to_string()),
        (
            "GIT_ALLOW_PROTOCOL".to_string(),
            "file:git:http:https:ssh".to_string(),
        ),
        // Nothing from the machine's or the user's git configuration changes what is fetched.
        ("GIT_CONFIG_NOSYSTEM".to_string(), "1".to_string()),
    ];
    let key = opt_str(opts, "ssh_key", "");
    let mut ssh = "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new".to_string();
    if !key.is_empty() {
        if !std::path::Path::new(&key).is_file() {
            return Err(script_err(format!("the SSH key {key} is not a file")));
        }
        ssh.push_str(&format!(
            " -o IdentitiesOnly=yes -i {}",
            shell_words::quote(&key)
        ));
    }
    env.push(("GIT_SSH_COMMAND".to_string(), ssh));
    let token_file = opt_str(opts, "token_file", "");
    if !token_file.is_empty() {
        let token = super::bounded::read_file(
            std::path::Path::new(&token_file),
            "the token file",
            64 * 1024,
        )
        .map_err(script_err)?;
        let token = String::from_utf8_lossy(&token).trim().to_string();
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
        env.extend([
            ("GIT_CONFIG_COUNT".to_string(), "1".to_string()),
            (
                "GIT_CONFIG_KEY_0".to_string(),
                "http.extraHeader".to_string(),
            ),
            (
                "GIT_CONFIG_VALUE_0".to_string(),
                format!("Authorization: Basic {basic}"),
            ),
        ]);
    }
    Ok(env)
}

/// Runs git with `args`; its output, or an error with git's last `fatal:`/`error:` line.
async fn git(
    args: &[&str],
    env: &[(String, String)],
    timeout: u64,
    what: &str,
) -> ScriptResult<String> {
    let mut argv = vec!["git".to_string()];
    argv.extend(args.iter().map(|a| a.to_string()));
    let o = super::process::run(&argv, env, Duration::from_secs(timeout), 64 * 1024, false)
        .await
        .map_err(|e| script_err(format!("{what}: cannot run git ({e}); is git installed?")))?;
    if o.timed_out {
        return Err(script_err(format!(
            "{what}: git did not finish within {timeout} s"
        )));
    }
    if o.code != 0 {
        let why = o
            .output
            .lines()
            .rev()
            .find(|l| l.starts_with("fatal:") || l.starts_with("error:"))
            .or_else(|| o.output.lines().rev().find(|l| !l.trim().is_empty()))
            .unwrap_or("git failed")
            .trim()
            .to_string();
        return Err(script_err(format!(
            "{what}: {}",
            super::secrets::mask_text(&why)
        )));
    }
    Ok(o.output)
}

/// The commit `branch` points at in the repository at `url`.
async fn head(url: &str, branch: &str, opts: &Map) -> ScriptResult<String> {
    let env = environment(opts)?;
    let timeout = opt_int(opts, "timeout", 120).max(1) as u64;
    let what = format!("{} (branch {branch})", masked_url(url));
    let reference = format!("refs/heads/{branch}");
    let out = git(&["ls-remote", "--", url, &reference], &env, timeout, &what).await?;
    out.lines()
        .filter_map(|l| l.split_once('\t'))
        .find(|(_, r)| *r == reference)
        .map(|(sha, _)| sha.to_string())
        .ok_or_else(|| script_err(format!("{what}: the repository has no branch {branch}")))
}

/// Fetches the branch's newest commit alone into a new folder `dir` and checks it out.
async fn checkout(url: &str, branch: &str, dir: &str, opts: &Map) -> ScriptResult<Map> {
    let env = environment(opts)?;
    let timeout = opt_int(opts, "timeout", 120).max(1) as u64;
    let what = format!("{} (branch {branch})", masked_url(url));
    if std::path::Path::new(dir).exists()
        && std::fs::read_dir(dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(script_err(format!(
            "{dir} is not an empty folder to check out into"
        )));
    }
    git(&["init", "-q", "--", dir], &env, timeout, &what).await?;
    let refspec = format!("+refs/heads/{branch}:refs/remotes/origin/{branch}");
    git(
        &[
            "-C",
            dir,
            "fetch",
            "-q",
            "--depth",
            "1",
            "--no-tags",
            "--",
            url,
            &refspec,
        ],
        &env,
        timeout,
        &what,
    )
    .await?;
    let remote = format!("refs/remotes/origin/{branch}");
    git(
        &["-C", dir, "checkout", "-q", "--detach", &remote],
        &env,
        timeout,
        &what,
    )
    .await?;
    let shown = git(
        &["-C", dir, "log", "-1", "--format=%H%n%s"],
        &env,
        timeout,
        &what,
    )
    .await?;
    let mut lines = shown.lines();
    let commit = lines.next().unwrap_or("").trim().to_string();
    let subject = lines.next().unwrap_or("").trim().to_string();
    let mut m = Map::new();
    m.insert("commit".into(), Dynamic::from(commit));
    m.insert("subject".into(), Dynamic::from(subject));
    Ok(m)
}

/// Registers the `git::` module.
pub fn register(engine: &mut Engine, host: &Arc<Host>) {
    let mut m = Module::new();
    let h = host.clone();
    let prim = Prim::new("git::head(url: string, branch: string, opts: map) -> string")
        .opts(GIT_OPTS)
        .doc(
            "The commit (full sha) a branch of a repository points at now (`git ls-remote`): \
             one round trip, nothing fetched. An error names the URL (its password masked) and \
             git's reason.",
        );
    prim.set_in(
        &mut m,
        move |url: &str, branch: &str, opts: Map| -> ScriptResult<String> {
            check_opts("git::head", &opts, GIT_OPTS)?;
            h.block(head(url, branch, &opts))
        },
    );
    let h = host.clone();
    let prim = Prim::new(
        "git::checkout(url: string, branch: string, dir: string, opts: map) -> map",
    )
    .opts(GIT_OPTS)
    .doc(
        "Fetches the newest commit of a branch alone (shallow, no tags) into `dir`, a new or \
             empty folder, and checks it out: `#{commit, subject}`. No hooks or configuration \
             come with it; the transports are file, git, http, https and ssh.",
    );
    prim.set_in(
        &mut m,
        move |url: &str, branch: &str, dir: &str, opts: Map| -> ScriptResult<Map> {
            check_opts("git::checkout", &opts, GIT_OPTS)?;
            h.block(checkout(url, branch, dir, &opts))
        },
    );
    engine.register_static_module("git", m.into());
}

#[cfg(test)]
mod tests {
    use super::masked_url;
    use crate::host::secrets::MASK;

    #[test]
    fn a_password_in_a_url_is_masked() {
        assert_eq!(
            masked_url("https://bob:s3cret@git.example/a/b.git"),
            format!("https://bob:{MASK}@git.example/a/b.git")
        );
        assert_eq!(
            masked_url("https://tok3n@git.example/a.git"),
            format!("https://{MASK}@git.example/a.git")
        );
        assert_eq!(masked_url("file:///srv/a.git"), "file:///srv/a.git");
        assert_eq!(masked_url("git@host:a.git"), "git@host:a.git");
        assert_eq!(masked_url("ssh://git@host/a.git"), "ssh://git@host/a.git");
    }
}
