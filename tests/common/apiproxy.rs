//! A pass-through to the local engine's socket that notes the request line of every request
//! (the engine answers as ever; this only counts): how many Engine API requests a command makes,
//! asserted as behaviour, never timed.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The request lines seen so far, in order (`GET /v1.41/services?filters=… HTTP/1.1`).
pub type Seen = Arc<Mutex<Vec<String>>>;

/// Listens on `path` (a unix socket it creates) and passes every connection to
/// /var/run/docker.sock, noting each request line. Runs until the test process ends.
pub fn counting_proxy(path: &Path) -> Seen {
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let listener = UnixListener::bind(path).unwrap();
    let log = seen.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { return };
            let mut engine = UnixStream::connect("/var/run/docker.sock").unwrap();
            let (mut client_back, mut engine_in) =
                (client.try_clone().unwrap(), engine.try_clone().unwrap());
            std::thread::spawn(move || std::io::copy(&mut engine, &mut client_back));
            let log = log.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                let mut line = Vec::new();
                while let Ok(n) = client.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    // Noted before it is passed on, so that a request is in the list before its
                    // answer can reach the client.
                    for &b in &buf[..n] {
                        if b == b'\n' {
                            let l = String::from_utf8_lossy(&line).trim().to_string();
                            if ["GET /", "POST /", "DELETE /", "HEAD /", "PUT /"]
                                .iter()
                                .any(|m| l.starts_with(m))
                            {
                                log.lock().unwrap().push(l);
                            }
                            line.clear();
                        } else if line.len() < 512 {
                            line.push(b);
                        }
                    }
                    if engine_in.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    seen
}
