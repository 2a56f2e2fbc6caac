//! Which engine `docker::connect("")` reaches, chosen as the Docker CLI chooses it: `--context`,
//! then `DOCKER_HOST`, then `DOCKER_CONTEXT`, then the current context of
//! `$DOCKER_CONFIG/config.json` (default `~/.docker`), whose endpoint is in
//! `contexts/meta/<sha256 of the name>/meta.json`; else the local socket. So a user who ran
//! `docker context use prod` finds wsm on the same engine.

use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::tls;

/// The local engine's socket, the `default` context's endpoint without `DOCKER_HOST`.
pub const LOCAL_SOCKET: &str = "unix:///var/run/docker.sock";

/// An engine address and how it was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    /// The context's name, when a context chose it.
    pub context: Option<String>,
    /// What chose it: `--context`, `DOCKER_HOST`, `DOCKER_CONTEXT`, the config file, or the default.
    pub source: String,
    /// The TLS material for a `tcp://` engine: the context's, else the environment's.
    pub tls: Option<tls::Material>,
}

impl Endpoint {
    /// How `-v` and errors name it: `context "x" (DOCKER_CONTEXT)`, `DOCKER_HOST`.
    pub fn describe(&self) -> String {
        match &self.context {
            Some(name) => format!("Docker context {name:?}, from {}", self.source),
            None => self.source.clone(),
        }
    }
}

/// The folder of the Docker CLI's configuration: `$DOCKER_CONFIG`, else `~/.docker`.
fn config_dir() -> Option<PathBuf> {
    std::env::var_os("DOCKER_CONFIG")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| dirs::home_dir().map(|h| h.join(".docker")))
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Where `docker::connect("")` goes, or why it cannot be told (a named context that does not
/// exist or has no Docker endpoint). `flag` is the command line's `--context`.
pub fn default_endpoint(flag: Option<&str>) -> Result<Endpoint, String> {
    if let Some(name) = flag {
        return from_context(name, "--context");
    }
    if let Some(host) = env("DOCKER_HOST") {
        return Ok(Endpoint {
            host,
            context: None,
            source: "DOCKER_HOST".into(),
            tls: tls::Material::from_env()?,
        });
    }
    if let Some(name) = env("DOCKER_CONTEXT") {
        return from_context(&name, "DOCKER_CONTEXT");
    }
    if let Some(dir) = config_dir() {
        let file = dir.join("config.json");
        if let Ok(text) = std::fs::read_to_string(&file) {
            let config: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            if let Some(name) = config["currentContext"].as_str().filter(|n| !n.is_empty()) {
                return from_context(name, &file.display().to_string());
            }
        }
    }
    Ok(Endpoint {
        host: LOCAL_SOCKET.into(),
        context: None,
        source: "the default socket".into(),
        tls: None,
    })
}

/// The Docker endpoint of a named context; `default` is `DOCKER_HOST` or the local socket.
fn from_context(name: &str, source: &str) -> Result<Endpoint, String> {
    let mut tls = None;
    let host = if name == "default" {
        tls = tls::Material::from_env()?;
        env("DOCKER_HOST").unwrap_or_else(|| LOCAL_SOCKET.into())
    } else {
        let dir = config_dir().ok_or("no home folder to find Docker contexts in")?;
        // `docker context create --docker "host=…,ca=…,cert=…,key=…"` keeps copies here.
        let tls_dir = dir
            .join("contexts/tls")
            .join(hex::encode(Sha256::digest(name.as_bytes())))
            .join("docker");
        if tls_dir.is_dir() {
            tls = Some(tls::Material::in_dir(
                &tls_dir,
                &format!("Docker context {name:?}"),
            )?);
        }
        let meta = dir
            .join("contexts/meta")
            .join(hex::encode(Sha256::digest(name.as_bytes())))
            .join("meta.json");
        let text = std::fs::read_to_string(&meta).map_err(|_| {
            format!(
                "Docker context {name:?} (from {source}) does not exist: no {}; see `docker context ls`",
                meta.display()
            )
        })?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("cannot read {}: {e}", meta.display()))?;
        value["Endpoints"]["docker"]["Host"]
            .as_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| {
                format!(
                    "Docker context {name:?} has no Docker endpoint ({})",
                    meta.display()
                )
            })?
            .to_string()
    };
    Ok(Endpoint {
        host,
        context: Some(name.to_string()),
        source: source.to_string(),
        tls,
    })
}
