//! Issue 23, item 10: TLS to a `tcp://` engine, as the Docker CLI does it. A real dockerd on a
//! netns host listens with `--tlsverify` on tcp 2376, its certificates made here by openssl
//! (a CA, the engine's certificate for its address, a client certificate). wsm reaches it with
//! `DOCKER_TLS_VERIFY` + `DOCKER_CERT_PATH`, and through a Docker context made by
//! `docker context create` with the same files; both bollard's requests and wsm's own raw ones
//! (`e.service`, which reads a spec as the engine stores it) go over TLS. Without the material,
//! or with a CA that did not sign the engine's certificate, the connection is refused in one
//! line; a plain `tcp://` address that is not loopback is warned about. The Docker CLI on the
//! engine's own socket is the witness.

mod common;

use std::path::Path;
use std::process::Command;

use common::hosts::{Bed, Host};
use common::*;

/// Runs openssl, panicking with its stderr.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA in `dir`, and a certificate signed by it for each of the engine (for the addresses
/// `sans`, e.g. `IP:10.0.0.2,IP:10.0.0.3`) and a client; `dir/client/{ca,cert,key}.pem` is what
/// a client needs.
fn make_certificates(dir: &Path, ca_name: &str, sans: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={ca_name}"),
            "-keyout",
            "ca-key.pem",
            "-out",
            "ca.pem",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        format!("subjectAltName={sans}\nextendedKeyUsage=serverAuth\n"),
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for who in ["server", "client"] {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN={who}"),
                "-keyout",
                &format!("{who}-key.pem"),
                "-out",
                &format!("{who}.csr"),
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{who}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca-key.pem",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &format!("{who}.ext"),
                "-out",
                &format!("{who}-cert.pem"),
            ],
        );
    }
    let client = dir.join("client");
    std::fs::create_dir_all(&client).unwrap();
    std::fs::copy(dir.join("ca.pem"), client.join("ca.pem")).unwrap();
    std::fs::copy(dir.join("client-cert.pem"), client.join("cert.pem")).unwrap();
    std::fs::copy(dir.join("client-key.pem"), client.join("key.pem")).unwrap();
}

/// A batch file that connects to the default engine, then reads a service through wsm's raw
/// requests and the engine's info through bollard.
const PROBE: &str = r#"
let e = docker::connect("");
print(`host ${e.host}`);
print(`version ${e.info().ServerVersion}`);
print(`service ${e.service("tlsprobe").Spec.Name}`);
"#;

#[test]
fn a_tcp_engine_with_tlsverify_is_reached_over_tls_from_the_environment_and_a_context() {
    let bed = Bed::new();
    let certs = tempfile::tempdir().unwrap();
    // The host's address is known once it is up; its dockerd needs the certificate at start.
    // Netns hosts get 10.231.0.<10+index>: make the engine's certificate for every address a
    // host of this process may get, as the index is chosen at `up`.
    let base = common::hosts::index_base();
    let sans: Vec<String> = (base..245)
        .map(|i| format!("IP:10.231.0.{}", 10 + i))
        .collect();
    make_certificates(certs.path(), "wsm-test-ca", &sans.join(","));
    let c = certs.path();
    let args = format!(
        "--tlsverify --tlscacert {} --tlscert {} --tlskey {} -H tcp://0.0.0.0:2376",
        c.join("ca.pem").display(),
        c.join("server-cert.pem").display(),
        c.join("server-key.pem").display()
    );
    let host = Host::up_with(
        "wsmtls",
        &bed.public_key(),
        &[("WSM_HOSTS_DOCKERD_ARGS", &args)],
    );
    let socket = host.env["DOCKER_HOST"].clone();
    let cli = |args: &[&str]| {
        let out = Command::new("docker")
            .arg("-H")
            .arg(&socket)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    cli(&["swarm", "init", "--advertise-addr", host.ip()]);
    cli(&[
        "service",
        "create",
        "--detach",
        "--name",
        "tlsprobe",
        "wsm-no-such-image:1",
    ]);
    let version = cli(&["version", "--format", "{{.Server.Version}}"]);
    let tcp = format!("tcp://{}:2376", host.ip());
    let probe = bed.path("probe.rhai");
    std::fs::write(&probe, PROBE).unwrap();
    let config = bed.path("config");
    let wsm = |env: &[(&str, &str)]| -> Run {
        bed.command(&config, &["run", probe.to_str().unwrap()])
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH")
            .env_remove("DOCKER_CONTEXT")
            .envs(env.iter().copied())
            .output()
            .unwrap()
            .into()
    };

    // From the environment, as the Docker CLI reads it.
    let client = c.join("client");
    let run = wsm(&[
        ("DOCKER_HOST", &tcp),
        ("DOCKER_TLS_VERIFY", "1"),
        ("DOCKER_CERT_PATH", client.to_str().unwrap()),
    ]);
    let out = run.ok();
    assert!(out.contains(&format!("version {version}")), "{out}");
    assert!(
        out.contains("service tlsprobe"),
        "the raw request over TLS: {out}"
    );
    assert!(!run.stderr.contains("without TLS"), "{}", run.stderr);

    // Without the material: the engine refuses plain HTTP; one line, and the warning.
    let plain = wsm(&[("DOCKER_HOST", &tcp)]);
    assert_eq!(plain.code, 1, "{}", plain.stderr);
    assert!(plain.stderr.contains("without TLS"), "{}", plain.stderr);
    assert_eq!(
        plain
            .stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .count(),
        1,
        "{}",
        plain.stderr
    );

    // A CA that did not sign the engine's certificate: refused, naming TLS.
    let other = tempfile::tempdir().unwrap();
    make_certificates(other.path(), "another-ca", &format!("IP:{}", host.ip()));
    let wrong = wsm(&[
        ("DOCKER_HOST", &tcp),
        ("DOCKER_TLS_VERIFY", "1"),
        (
            "DOCKER_CERT_PATH",
            other.path().join("client").to_str().unwrap(),
        ),
    ]);
    assert_eq!(wrong.code, 1, "{}", wrong.stdout);
    assert!(
        wrong.stderr.to_lowercase().contains("tls") || wrong.stderr.contains("certificate"),
        "{}",
        wrong.stderr
    );
    assert!(!wrong.stdout.contains("service tlsprobe"));

    // A missing file is bad input, named.
    let missing = wsm(&[
        ("DOCKER_HOST", &tcp),
        ("DOCKER_TLS_VERIFY", "1"),
        ("DOCKER_CERT_PATH", c.to_str().unwrap()),
    ]);
    assert_eq!(missing.code, 2, "{}", missing.stderr);
    assert!(
        missing.stderr.contains("cert.pem is missing"),
        "{}",
        missing.stderr
    );

    // Through a Docker context holding the same files (`docker context create` copies them).
    let docker_config = bed.path("docker-config");
    std::fs::create_dir_all(&docker_config).unwrap();
    let made = Command::new("docker")
        .env("DOCKER_CONFIG", &docker_config)
        .args(["context", "create", "tlsctx", "--docker"])
        .arg(format!(
            "host={tcp},ca={},cert={},key={}",
            client.join("ca.pem").display(),
            client.join("cert.pem").display(),
            client.join("key.pem").display()
        ))
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let run: Run = bed
        .command(
            &config,
            &["--context", "tlsctx", "run", probe.to_str().unwrap()],
        )
        .env("DOCKER_CONFIG", &docker_config)
        .env_remove("DOCKER_TLS_VERIFY")
        .env_remove("DOCKER_CERT_PATH")
        .output()
        .unwrap()
        .into();
    let out = run.ok();
    assert!(out.contains("service tlsprobe"), "{out}");
    assert!(out.contains(&format!("host {tcp}")), "{out}");
}
