//! What a hostile probe broke (issues 13 and 23), each pinned on observable state: output paths
//! that are devices, FIFOs or directories (file types and bytes), the thaw after a signal at
//! dump-db's freeze and after a restore that fails in the node (`ps` state in the container),
//! edit-config under Ctrl-C, SIGTERM and SIGKILL (the stack file's bytes, the editor's private
//! copy), and config errors (exit code, no secret shown). Longer than 600 lines: the freeze
//! scenarios share their helpers (`/proc` states, the freeze moment) with the rest.

mod common;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A started one-node stack whose wavelet keeps its pid (no restarts on peer changes).
fn started(prefix: &str) -> TestStack {
    require_images();
    let s = TestStack::new(prefix);
    s.set("WAVELET_NODES", "1");
    s.set("WAVELET_RESTART_ON_PEER_CHANGE", "false");
    s.stack(&["start"]).ok();
    s
}

/// Makes a FIFO at `path`.
fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success());
}

/// Files in `dir` whose name ends with `suffix`.
fn leftovers(dir: &Path, suffix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(suffix) || n.starts_with(".wsm-cp-"))
        .collect()
}

/// The `ps` states of the wavelet processes in a container ("S", "T", …), "" when none.
fn wavelet_state(container: &str) -> String {
    docker_quiet(&[
        "exec",
        container,
        "sh",
        "-c",
        "for p in $(pgrep -x wavelet); do cut -d' ' -f3 /proc/$p/stat; done",
    ])
    .trim()
    .to_string()
}

/// The host pids of the container's wavelet processes: the container shares the host's kernel,
/// so their state can be read from the host's /proc at once, without a `docker exec` that may
/// itself take seconds on a busy machine.
fn wavelet_host_pids(container: &str) -> Vec<u32> {
    let init: u32 = docker(&["inspect", "-f", "{{.State.Pid}}", container])
        .trim()
        .parse()
        .unwrap();
    let mut out = Vec::new();
    let mut todo = vec![init];
    while let Some(pid) = todo.pop() {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "wavelet" {
            out.push(pid);
        }
        for task in std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            todo.extend(
                children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
    }
    out
}

/// The states (`S`, `R`, `T`, …) of processes, read from the host's /proc.
fn host_states(pids: &[u32]) -> String {
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .filter_map(|stat| {
            stat.rsplit_once(") ")
                .map(|(_, rest)| rest.chars().next().unwrap_or('?'))
        })
        .collect()
}

/// Sends a signal (`INT`, `TERM`, `KILL`) to a process, or with `-` to a process group.
fn signal(sig: &str, pid: &str) {
    let status = Command::new("kill")
        .args([&format!("-{sig}"), "--", pid])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{sig} {pid}");
}

/// Waits for a child with a deadline; its exit code (or -1 for a signal).
fn wait_child(child: &mut Child, secs: u64) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            child.kill().ok();
            panic!("wsm did not end within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn dump_db_and_cp_refuse_devices_fifos_and_directories_before_copying() {
    let s = started("wsmout");
    let c = s.container("wavelet", 1);
    let dir = s.dir.path();
    let fifo = dir.join("fifo");
    mkfifo(&fifo);
    let device = dir.join("null-device");
    let made = Command::new("mknod")
        .arg(&device)
        .args(["c", "1", "3"])
        .status()
        .unwrap();
    assert!(made.success(), "mknod");
    let folder = dir.join("folder");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("kept"), "kept").unwrap();
    let is_char = |p: &Path| std::fs::metadata(p).unwrap().file_type().is_char_device();
    let is_fifo = |p: &Path| std::fs::metadata(p).unwrap().file_type().is_fifo();
    let folder_intact = || {
        let names: Vec<_> = std::fs::read_dir(&folder).unwrap().flatten().collect();
        names.len() == 1 && std::fs::read(folder.join("kept")).unwrap() == b"kept"
    };

    // Bad targets of dump-db: exit 2 at once, nothing copied, nothing frozen, target unchanged.
    let targets: [(&Path, &dyn Fn() -> bool); 4] = [
        (device.as_path(), &|| is_char(&device)),
        (fifo.as_path(), &|| is_fifo(&fifo)),
        (folder.as_path(), &folder_intact),
        (Path::new("/dev/null"), &|| is_char(Path::new("/dev/null"))),
    ];
    for (target, unchanged) in targets {
        let started = Instant::now();
        let r = s.stack(&["dump-db", "1", target.to_str().unwrap()]);
        assert_eq!(r.code, 2, "{}: {}", target.display(), r.stderr);
        assert!(unchanged(), "dump-db changed {}", target.display());
        assert!(
            r.stderr.contains(&target.display().to_string()) && !r.stderr.contains("freezing"),
            "{}",
            r.stderr
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "it copied first"
        );
        assert_eq!(leftovers(dir, ".partial"), Vec::<String>::new());
    }
    assert!(!wavelet_state(&c).contains('T'), "wavelet was left frozen");

    // cp out of the node: a device or FIFO as the target, or as the name inside a directory.
    let fifo_in_folder = folder.join("hostname");
    mkfifo(&fifo_in_folder);
    for target in [&device, &fifo, &folder] {
        let r = s.stack(&["cp", "1:/etc/hostname", target.to_str().unwrap()]);
        assert_eq!(r.code, 2, "{}: {}", target.display(), r.stderr);
    }
    assert!(is_char(&device) && is_fifo(&fifo) && is_fifo(&fifo_in_folder));
    let r = s.stack(&["cp", "1:/etc/hostname", "/dev/null"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(is_char(Path::new("/dev/null")));
    assert!(leftovers(dir, ".partial").is_empty() && leftovers(&folder, ".partial").is_empty());

    // A regular file and a new name still work.
    let plain = dir.join("plain");
    std::fs::write(&plain, "old").unwrap();
    s.stack(&["cp", "1:/etc/hostname", plain.to_str().unwrap()])
        .ok();
    assert_eq!(
        std::fs::read_to_string(&plain).unwrap().trim(),
        docker(&["exec", &c, "cat", "/etc/hostname"]).trim()
    );
}

/// Starts a dump-db that has to freeze wavelet and takes a few seconds for its frozen copy, and
/// waits until wavelet is frozen; returns the running wsm.
fn dump_at_the_freeze(s: &TestStack, container: &str, out: &Path) -> Child {
    let mut child = s
        .command(&[
            "stack",
            "-s",
            &s.name,
            "dump-db",
            "1",
            out.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    while !wavelet_state(container).contains('T') {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).ok();
            panic!("dump-db ended ({status}) before wavelet was frozen: {err}");
        }
        assert!(Instant::now() < deadline, "wavelet was never frozen");
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

#[test]
fn sigint_and_sigterm_at_the_freeze_leave_wavelet_running() {
    let s = TestStack::new("wsmfrz");
    s.set("WAVELET_NODES", "1");
    s.set("WAVELET_RESTART_ON_PEER_CHANGE", "false");
    // One copy only (the stand-in writes /db every 0.5 s, so it fails and the freeze follows),
    // and a slow one: ~30 MB of text at gzip level 9.
    s.set("WSM_DUMP_ATTEMPTS", "1");
    s.set("WSM_DUMP_LEVEL", "9");
    require_images();
    s.stack(&["start"]).ok();
    let c = s.container("wavelet", 1);
    docker(&["exec", &c, "sh", "-c", "seq 1 4000000 > /db/zz-bulk"]);
    for (sig, code) in [("INT", 130), ("TERM", 143)] {
        let out = s.dir.path().join(format!("dump-{sig}.tar.gz"));
        let mut child = dump_at_the_freeze(&s, &c, &out);
        let pids = wavelet_host_pids(&c);
        assert!(
            host_states(&pids).contains('T'),
            "SIG{sig}: wavelet is not frozen"
        );
        signal(sig, &child.id().to_string());
        let signalled = Instant::now();
        let mut state = host_states(&pids);
        while state.contains('T') && signalled.elapsed() < Duration::from_millis(1500) {
            std::thread::sleep(Duration::from_millis(10));
            state = host_states(&pids);
        }
        assert!(
            signalled.elapsed() <= Duration::from_millis(1500)
                && !state.is_empty()
                && state.chars().all(|st| st == 'S' || st == 'R'),
            "SIG{sig}: wavelet is {state:?} {:?} after the signal",
            signalled.elapsed()
        );
        assert_eq!(wait_child(&mut child, 30), code, "SIG{sig}");
        assert!(!out.exists(), "SIG{sig}: a dump was written");
        assert_eq!(leftovers(s.dir.path(), ".partial"), Vec::<String>::new());
        // The failed health checks of this freeze must not add up with the next one's.
        wait_healthy(&c);
    }
}

/// The lease of a freeze (`src/host/docker/freeze.rs`), plus what a busy machine adds.
const LEASE_AND_SLACK: Duration = Duration::from_secs(10 + 10);

/// Waits until the container's health check has no failure counted (a freeze makes it fail),
/// so that the next freeze does not get the task replaced.
fn wait_healthy(container: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = docker_quiet(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.Health.Status}} {{.State.Health.FailingStreak}}",
            container,
        ]);
        if seen.trim().ends_with(" 0") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the health check did not pass again within 60 s: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The lease folders of freezes left in a container. The `docker exec` has a deadline of its
/// own: once, on a busy machine, the CLI hung after its command had ended.
fn lease_folders(container: &str) -> String {
    let out = Command::new("timeout")
        .args(["20", "docker", "exec", container, "sh", "-c"])
        .arg("ls -d /tmp/.wsm-freeze-* 2>/dev/null || true")
        .output()
        .unwrap();
    if out.status.success() {
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    } else if !container_running(container) {
        // The task was replaced (a frozen wavelet fails its health check; on a loaded machine
        // the check can end it before the thaw): its /tmp, lease folder included, went with it.
        String::new()
    } else {
        "(docker exec failed or timed out)".into()
    }
}

/// Whether the container still runs (`docker inspect`); false when it is gone.
fn container_running(container: &str) -> bool {
    Command::new("docker")
        .args(["inspect", "-f", "{{.State.Running}}", container])
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "true")
}

#[test]
fn sigkill_sighup_or_a_stopped_wsm_at_the_freeze_leave_wavelet_running() {
    // Issue 23 item 3: nothing of wsm is left to thaw wavelet; the node does it itself.
    let s = TestStack::new("wsmlease");
    s.set("WAVELET_NODES", "1");
    s.set("WAVELET_RESTART_ON_PEER_CHANGE", "false");
    s.set("WSM_DUMP_ATTEMPTS", "1");
    s.set("WSM_DUMP_LEVEL", "9");
    require_images();
    s.stack(&["start"]).ok();
    let c = s.container("wavelet", 1);
    docker(&["exec", &c, "sh", "-c", "seq 1 4000000 > /db/zz-bulk"]);
    // The normal path still thaws at once and leaves no lease behind.
    let out = s.dir.path().join("dump-ok.tar.gz");
    let r = s.stack(&["dump-db", "1", out.to_str().unwrap()]);
    assert!(r.code == 0 && r.stderr.contains("freezing"), "{}", r.stderr);
    assert!(!wavelet_state(&c).contains('T'), "wavelet was left frozen");
    assert!(lease_folders(&c).is_empty(), "a lease folder was left");
    wait_healthy(&c);
    // KILL and HUP end wsm (its connection closes); STOP leaves it and its connection hanging,
    // so only the lease running out thaws wavelet.
    for sig in ["KILL", "HUP", "STOP"] {
        let out = s.dir.path().join(format!("dump-{sig}.tar.gz"));
        let mut child = dump_at_the_freeze(&s, &c, &out);
        let pids = wavelet_host_pids(&c);
        assert!(
            host_states(&pids).contains('T'),
            "SIG{sig}: wavelet is not frozen"
        );
        signal(sig, &child.id().to_string());
        let signalled = Instant::now();
        let mut state = host_states(&pids);
        while state.contains('T') && signalled.elapsed() < LEASE_AND_SLACK {
            std::thread::sleep(Duration::from_millis(100));
            state = host_states(&pids);
        }
        // Not stopped: sleeping, running or in the middle of a write (`D`).
        assert!(
            !state.is_empty() && state.chars().all(|st| "SRD".contains(st)),
            "SIG{sig}: wavelet is {state:?} {:?} after the signal to wsm",
            signalled.elapsed()
        );
        eprintln!("SIG{sig}: wavelet thawed {:?} after", signalled.elapsed());
        wait_for("the lease folder to go", 60, || {
            lease_folders(&c).is_empty()
        });
        if sig == "STOP" {
            signal("KILL", &child.id().to_string());
        }
        assert_eq!(
            wait_child(&mut child, 30),
            -1,
            "SIG{sig}: wsm was not killed"
        );
        if sig != "STOP" {
            wait_healthy(&c);
        }
    }
}

#[test]
fn a_restore_that_fails_in_the_node_leaves_wavelet_running() {
    // restore_db freezes wavelet in one shell command; a step that fails must not keep it so.
    let s = started("wsmrst");
    let c = s.container("wavelet", 1);
    let dump = s.dir.path().join("dump.tar.gz");
    s.stack(&["dump-db", "1", dump.to_str().unwrap()]).ok();
    // A `tar` that fails, first on the node image's PATH.
    docker(&[
        "exec",
        &c,
        "sh",
        "-c",
        "printf '#!/bin/sh\necho tar: no space left on device >&2\nexit 2\n' > /opt/perlin/bin/tar \
         && chmod +x /opt/perlin/bin/tar",
    ]);
    let batch = s.dir.path().join("restore.rhai");
    std::fs::write(
        &batch,
        "import \"wavelet/config\" as wcfg;\nimport \"wavelet/db\" as wdb;\n\
         wdb::restore_db(wcfg::context(ARGS[0]), docker::connect(\"\"), \"1\", ARGS[1]);\n",
    )
    .unwrap();
    let r = s.wsm(&[
        "run",
        batch.to_str().unwrap(),
        &s.name,
        dump.to_str().unwrap(),
    ]);
    docker(&["exec", &c, "rm", "/opt/perlin/bin/tar"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("restoring the database of node 1 failed")
            && r.stderr.contains("no space left"),
        "{}",
        r.stderr
    );
    let state = wavelet_state(&c);
    assert!(
        !state.is_empty() && !state.contains('T'),
        "wavelet is {state:?} after the failed restore"
    );
}

/// An edit-config session run by a shell-script "editor" in its own process group, with its own
/// state directory for the editor's copy.
struct EditSession {
    editor: PathBuf,
    state: PathBuf,
}

impl EditSession {
    /// `body` is the editor script; `$1` is the file, `$READY` a file to touch once it runs.
    fn new(s: &TestStack, body: &str) -> Self {
        let editor = s.dir.path().join("editor.sh");
        std::fs::write(&editor, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&editor, std::fs::Permissions::from_mode(0o755)).unwrap();
        EditSession {
            editor,
            state: s.dir.path().join("state"),
        }
    }

    fn ready_file(&self) -> PathBuf {
        self.editor.with_file_name("ready")
    }

    fn spawn(&self, s: &TestStack) -> Child {
        let _ = std::fs::remove_file(self.ready_file());
        s.command(&["stack", "-s", &s.name, "edit-config"])
            .env("VISUAL", &self.editor)
            .env("READY", self.ready_file())
            .env("XDG_STATE_HOME", &self.state)
            .env_remove("XDG_RUNTIME_DIR")
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Spawns wsm and waits until the editor runs.
    fn spawn_until_ready(&self, s: &TestStack) -> Child {
        let mut child = self.spawn(s);
        let ready = self.ready_file();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ready.exists() {
            assert!(child.try_wait().unwrap().is_none(), "wsm ended early");
            assert!(Instant::now() < deadline, "the editor never started");
            std::thread::sleep(Duration::from_millis(50));
        }
        child
    }

    /// The editor copies still on disk.
    fn copies(&self) -> Vec<PathBuf> {
        let dir = self.state.join("wsm/edit");
        std::fs::read_dir(&dir)
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }
}

#[test]
fn edit_config_keeps_comments_and_blank_lines() {
    let s = TestStack::bare("wsmcmt");
    let text = "# nodes for the demo\nWAVELET_NODES=3\n\n# registry, see the wiki\nREGISTRY=reg.example:5000 # mirror\n";
    std::fs::write(s.config_file(), text).unwrap();
    let edit = EditSession::new(&s, "echo 'WAVELET_KEYS=k1,p1' >> \"$1\"");
    let mut child = edit.spawn(&s);
    assert_eq!(wait_child(&mut child, 30), 0);
    assert_eq!(
        std::fs::read_to_string(s.config_file()).unwrap(),
        format!("{text}WAVELET_KEYS=k1,p1\n")
    );
    let mode = std::fs::metadata(s.config_file())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "a file holding secrets must be 0600");
}

#[test]
fn ctrl_c_goes_to_the_editor_and_its_saved_edit_is_kept() {
    let s = TestStack::bare("wsmint");
    s.set("WAVELET_NODES", "3");
    // An editor that saves when interrupted, as an editor asked to quit would.
    let edit = EditSession::new(
        &s,
        "trap 'echo WAVELET_NODES=5 >> \"$1\"; exit 0' INT\ntouch \"$READY\"\nwhile :; do sleep 0.1; done",
    );
    let mut child = edit.spawn_until_ready(&s);
    // Ctrl-C on a terminal goes to the foreground process group: wsm and its editor.
    signal("INT", &format!("-{}", child.id()));
    assert_eq!(wait_child(&mut child, 30), 0, "wsm abandoned the edit");
    let text = std::fs::read_to_string(s.config_file()).unwrap();
    assert!(text.ends_with("WAVELET_NODES=5\n"), "{text}");
    assert!(edit.copies().is_empty(), "{:?}", edit.copies());
}

#[test]
fn the_editors_copy_is_private_and_removed_after_sigterm_and_sigkill() {
    let s = TestStack::bare("wsmcpy");
    s.set("WAVELET_KEYS", "secretkey1,secretpub1");
    let before = std::fs::read(s.config_file()).unwrap();
    let edit = EditSession::new(
        &s,
        "echo \"$1\" > \"$READY.path\"\ntouch \"$READY\"\nwhile :; do sleep 0.1; done",
    );

    let mut child = edit.spawn_until_ready(&s);
    let copy = PathBuf::from(
        std::fs::read_to_string(edit.ready_file().with_extension("path"))
            .unwrap()
            .trim(),
    );
    assert!(copy.starts_with(&edit.state), "{}", copy.display());
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&copy), 0o600);
    assert_eq!(mode(copy.parent().unwrap()), 0o700);
    signal("TERM", &child.id().to_string());
    assert_eq!(wait_child(&mut child, 30), 143);
    assert!(edit.copies().is_empty(), "{:?}", edit.copies());
    assert_eq!(std::fs::read(s.config_file()).unwrap(), before);

    // SIGKILL leaves the copy (private) behind; the next session removes it.
    let mut child = edit.spawn_until_ready(&s);
    signal("KILL", &format!("-{}", child.id()));
    wait_child(&mut child, 30);
    assert_eq!(edit.copies().len(), 1);
    let quick = EditSession::new(&s, "true");
    let mut child = quick.spawn(&s);
    assert_eq!(wait_child(&mut child, 30), 0);
    assert!(quick.copies().is_empty(), "{:?}", quick.copies());
    assert_eq!(std::fs::read(s.config_file()).unwrap(), before);
}

#[test]
fn config_errors_exit_2_and_never_show_a_value() {
    let s = TestStack::bare("wsmcfg");
    let file = s.config_file();
    for (text, secret) in [
        ("WAVELET_KEYS secretvalue123\n", "secretvalue123"),
        ("WAVELET_KEYS=\"secretvalue123\n", "secretvalue123"),
        (
            "WAVELET_KEYS='secretvalue123' trailing-secret\n",
            "trailing-secret",
        ),
        ("WAVELET_KEYS secretvalue=123\n", "secretvalue"),
    ] {
        std::fs::write(&file, format!("WAVELET_NODES=3\n{text}")).unwrap();
        let r = s.stack(&["config"]);
        assert_eq!(r.code, 2, "{text}: {}", r.stderr);
        let first = r.stderr.lines().next().unwrap_or("");
        assert!(
            first.starts_with(&format!("error: {}:2: ", file.display())),
            "{}",
            r.stderr
        );
        assert!(
            !r.stderr.contains(secret),
            "the value was shown: {}",
            r.stderr
        );
    }
    assert!(s.stack(&["config"]).stderr.contains("WAVELET_KEYS"));

    std::fs::write(&file, b"WAVELET_NODES=3\nWAVELET_GENESIS=\xff\xfe\n").unwrap();
    let r = s.stack(&["config"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("{}:2", file.display())),
        "{}",
        r.stderr
    );
}

#[test]
fn bad_node_ids_and_missing_config_dirs_exit_2() {
    let s = TestStack::bare("wsmid");
    let r = s.stack(&["dump-db", "999999999999999999999", "out.tar.gz"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(!r.stderr.contains(".rhai"), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("\"999999999999999999999\" is not a node id: the slot is too large"),
        "{}",
        r.stderr
    );

    let missing = s.dir.path().join("no-such-config");
    let r = wsm_in(s.dir.path(), &missing, &["stack", "-s", &s.name, "config"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(&missing.display().to_string()),
        "{}",
        r.stderr
    );
    assert!(!missing.exists());
    let r: Run = Command::new(env!("CARGO_BIN_EXE_wsm"))
        .args(["stack", "-s", &s.name, "config"])
        .env("WSM_CONFIG_DIR", &missing)
        .current_dir(s.dir.path())
        .output()
        .unwrap()
        .into();
    assert_eq!(r.code, 2, "{}", r.stderr);

    // The default ./config may be absent: the defaults apply.
    let empty = tempfile::tempdir().unwrap();
    let r: Run = Command::new(env!("CARGO_BIN_EXE_wsm"))
        .args(["stack", "-s", &s.name, "config"])
        .env_remove("WSM_CONFIG_DIR")
        .current_dir(empty.path())
        .output()
        .unwrap()
        .into();
    r.ok();
}

#[test]
fn misspelt_config_keys_are_warned_about_once_naming_key_and_file() {
    let s = TestStack::bare("wsmkey");
    std::fs::write(
        s.config_file(),
        "WAVELET_NODS=3\nWSM_DUMP_ATEMPTS=2\nREGISTY=r:5000\nWAVELET_NODES=2\nREGISTRY=r:5000\n\
         SWARM_HOSTS=a/1/2\nDOCKER_HOST=unix:///var/run/docker.sock\nNODE_LABELS=x\n\
         DIGITALOCEAN_REGION=nyc1\nswarmName=\nstackName=x\nWAVELET_GENESIS=g\n",
    )
    .unwrap();
    let r = s.stack(&["config"]);
    r.ok();
    let file = s.config_file().display().to_string();
    let warnings: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(warnings.len(), 3, "{}", r.stderr);
    for key in ["WAVELET_NODS", "WSM_DUMP_ATEMPTS", "REGISTY"] {
        assert!(
            warnings
                .iter()
                .any(|w| w.contains(key) && w.contains(&file)),
            "{key}: {}",
            r.stderr
        );
    }
}
