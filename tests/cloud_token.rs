//! The cloud token (issue 23, item 11): it is on no process's command line while `swarm create`
//! runs, it is on no host (the shared descriptor carries none), and it goes only to the API
//! address the user wrote: a descriptor naming another address (a listener of this test's) is
//! imported without it, and a record naming one without a token of its own is refused. Real
//! hosts (netns hosts with sshd, made by the fake DigitalOcean API) and real SSH, as tests/swarm.rs.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::hosts::*;
use common::*;

/// A droplet's /etc as its own sshd sessions see it (the overlay's upper layer).
fn droplet_etc(host: &str, rel: &str) -> PathBuf {
    PathBuf::from(format!("/run/wsm-hosts/{host}/droplet/etc-upper/{rel}"))
}

/// Reads every process's command line until stopped; returns those that contain `needle`.
struct Scan {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(Vec<String>, u32)>,
}

impl Scan {
    fn start(needle: &str) -> Scan {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let needle = needle.as_bytes().to_vec();
        let thread = std::thread::spawn(move || {
            let mut found = Vec::new();
            let mut rounds = 0;
            while !s.load(Ordering::SeqCst) {
                for e in std::fs::read_dir("/proc").unwrap().flatten() {
                    let Ok(line) = std::fs::read(e.path().join("cmdline")) else {
                        continue;
                    };
                    if line.windows(needle.len()).any(|w| w == needle.as_slice()) {
                        let shown = String::from_utf8_lossy(&line).replace('\0', " ");
                        if !found.contains(&shown) {
                            found.push(shown);
                        }
                    }
                }
                rounds += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            (found, rounds)
        });
        Scan { stop, thread }
    }

    fn finish(self) -> (Vec<String>, u32) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

/// An HTTP listener that records every request it gets (head and body) and answers 404.
struct Listener {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Listener {
    fn start() -> Listener {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                let Ok((mut c, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                c.set_nonblocking(false).ok();
                c.set_read_timeout(Some(Duration::from_secs(2))).ok();
                let mut buf = vec![0u8; 16384];
                let n = c.read(&mut buf).unwrap_or(0);
                s.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..n]).to_string());
                let body = r#"{"id":"not_found","message":"not here"}"#;
                let _ = write!(
                    c,
                    "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Listener { port, seen, stop }
    }

    fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The value of `key` in KEY=VALUE text.
fn value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

#[test]
fn the_cloud_token_is_on_no_command_line_and_no_host_and_goes_only_where_the_user_said() {
    let bed = Bed::new();
    let token = format!("dop_v1_{}", unique("tok").replace('-', "_"));
    let fake = FakeDo::start_with_token(&bed, false, &token);
    let sw = unique("wtk");
    let config = bed.path("config");

    // Given as an argument (the original tool's way): accepted, with one warning line, and the
    // scan sees it on wsm's own command line (which shows the scan works). The droplet request
    // fails, so nothing is made; the keys request is slowed so the scan has time.
    fake.fault(serde_json::json!({"method": "GET", "path": "/v2/account/keys", "status": 429, "times": 1, "retry_after": 1}));
    fake.fault(
        serde_json::json!({"method": "POST", "path": "/v2/droplets", "status": 422, "times": 1}),
    );
    let scan = Scan::start(&token);
    let r = bed.wsm(&[
        "swarm",
        "create",
        "digitalocean",
        &sw,
        &token,
        "--count",
        "1",
    ]);
    let (found, _) = scan.finish();
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("no droplet was created"), "{}", r.stderr);
    let warnings: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains("visible to other users"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", r.stderr);
    assert!(
        warnings[0].contains("DIGITALOCEAN_TOKEN") && warnings[0].contains("standard input"),
        "{}",
        warnings[0]
    );
    assert!(
        found
            .iter()
            .any(|c| c.contains("swarm create digitalocean")),
        "the scan did not see the token on wsm's command line: {found:?}"
    );
    assert!(!bed.path(&format!("config/swarms/{sw}")).exists());

    // `-`: one line of standard input. Two hosts (a manager and a worker); while create runs,
    // no process's command line holds the token (the ssh commands that write the descriptor
    // included).
    let scan = Scan::start(&token);
    let r = bed.wsm_in(
        &config,
        &["swarm", "create", "digitalocean", &sw, "-", "--count", "2"],
        &format!("{token}\n"),
    );
    let (found, rounds) = scan.finish();
    assert!(r.ok().contains("Complete !"), "{}", r.stdout);
    assert!(!r.stderr.contains("visible to other users"), "{}", r.stderr);
    assert!(rounds > 5, "the scan ran {rounds} times");
    assert!(found.is_empty(), "the token on command lines: {found:?}");
    // The local record keeps the token it was given (0600); no host holds it.
    let record = bed.path(&format!("config/swarms/{sw}"));
    let text = std::fs::read_to_string(&record).unwrap();
    assert_eq!(value(&text, "DIGITALOCEAN_TOKEN"), Some(token.as_str()));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&record).unwrap().permissions().mode() & 0o777,
        0o600
    );
    for n in 1..=2 {
        let d = std::fs::read_to_string(droplet_etc(&format!("{sw}-{n}"), "wsm/swarm"))
            .unwrap_or_else(|e| panic!("descriptor on {sw}-{n}: {e}"));
        assert!(d.contains(&format!("SWARM_NAME={sw}")), "{d}");
        assert!(!d.contains(&token), "the token on host {sw}-{n}: {d}");
        assert!(!d.contains("DIGITALOCEAN_API_URL"), "{d}");
    }

    // A descriptor that points the API elsewhere (here: this test's listener), imported into a
    // second config directory whose own settings hold the user's default token and API address.
    let evil = Listener::start();
    let host2 = format!("{sw}-2");
    let ip2 = value(&text, "SWARM_HOSTS")
        .unwrap()
        .split(',')
        .nth(1)
        .unwrap()
        .split('/')
        .nth(1)
        .unwrap()
        .to_string();
    let planted = droplet_etc(&host2, "wsm/swarm");
    let mut d = std::fs::read_to_string(&planted).unwrap();
    d.push_str(&format!(
        "DIGITALOCEAN_API_URL=http://127.0.0.1:{}\n",
        evil.port
    ));
    std::fs::write(&planted, d).unwrap();
    let c2 = bed.path("config2");
    std::fs::create_dir_all(&c2).unwrap();
    let default = std::fs::read_to_string(config.join("default")).unwrap();
    std::fs::write(
        c2.join("default"),
        format!("{default}DIGITALOCEAN_TOKEN={token}\n"),
    )
    .unwrap();
    let r = bed.wsm_in(&c2, &["swarm", "import", &ip2], "");
    r.ok();
    let warned: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains("DIGITALOCEAN_API_URL"))
        .collect();
    assert_eq!(warned.len(), 1, "{}", r.stderr);
    assert!(warned[0].contains("not recorded"), "{}", warned[0]);
    let imported = c2.join(format!("swarms/{sw}"));
    let itext = std::fs::read_to_string(&imported).unwrap();
    assert!(!itext.contains("DIGITALOCEAN_API_URL"), "{itext}");
    assert!(!itext.contains(&token), "{itext}");

    // expand, doctor: the requests go to the user's API (the fake), none to the listener.
    let before = fake.requests().len();
    fake.fault(
        serde_json::json!({"method": "POST", "path": "/v2/droplets", "status": 422, "times": -1}),
    );
    let r = bed.wsm_in(&c2, &["swarm", "expand", &sw, "1"], "");
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("no droplet was created"), "{}", r.stderr);
    bed.wsm_in(&c2, &["--json", "swarm", "doctor"], "").ok();
    assert!(
        fake.requests()[before..]
            .iter()
            .any(|q| q["path"] == "/v2/account/keys?per_page=200"),
        "{:?}",
        fake.requests()
    );
    assert_eq!(evil.requests(), Vec::<String>::new());

    // A record that names its own API address but holds no token (as an older wsm's import
    // wrote it) is refused in one line, and doctor skips it saying so; nothing is sent there.
    std::fs::write(
        &imported,
        format!(
            "{itext}DIGITALOCEAN_API_URL=http://127.0.0.1:{}\n",
            evil.port
        ),
    )
    .unwrap();
    let r = bed.wsm_in(&c2, &["swarm", "destroy", &sw, "--yes"], "");
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(
        r.stderr.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("DIGITALOCEAN_API_URL") && r.stderr.contains("did not write"),
        "{}",
        r.stderr
    );
    let r = bed.wsm_in(&c2, &["--json", "swarm", "doctor"], "");
    r.ok();
    assert!(r.stderr.contains("skipped:"), "{}", r.stderr);
    assert_eq!(fake.droplets().len(), 2);
    assert_eq!(evil.requests(), Vec::<String>::new());

    // Without it, destroy deletes the droplets through the user's API with the user's token.
    std::fs::write(&imported, &itext).unwrap();
    bed.wsm_in(&c2, &["swarm", "destroy", &sw, "--yes"], "")
        .ok();
    assert!(fake.droplets().is_empty(), "{:?}", fake.droplets());
    assert_eq!(evil.requests(), Vec::<String>::new());
}
