//! The REPL driven through a real pseudo-terminal: Rhai evaluation, commands, completion,
//! history, Ctrl-C, help and the continuation prompt. Only the tests that connect an engine
//! handle need Docker (the local engine).

use std::path::PathBuf;
use std::process::Command;

use rexpect::session::{spawn_command, PtySession};
use tempfile::TempDir;

const TIMEOUT_MS: u64 = 10_000;
const PROMPT: &str = "wsm> ";
const CONTINUATION: &str = "...> ";

/// A private world for one test: working directory, config dir, XDG state and config homes.
struct World {
    root: TempDir,
}

impl World {
    fn new() -> Self {
        let root = tempfile::tempdir().expect("temp dir");
        for dir in ["cwd", "config/stacks", "state", "xdg-config", "home"] {
            std::fs::create_dir_all(root.path().join(dir)).expect("create dir");
        }
        World { root }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("create dir");
        std::fs::write(p, text).expect("write file");
    }

    fn history(&self) -> String {
        std::fs::read_to_string(self.path("state/wsm/history")).unwrap_or_default()
    }

    /// Starts `wsm -C <config> repl` and waits for its first prompt.
    fn repl(&self) -> Repl {
        self.repl_with(&[])
    }

    /// Starts the REPL with more environment variables.
    fn repl_with(&self, env: &[(&str, &str)]) -> Repl {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wsm"));
        cmd.arg("-C").arg(self.path("config")).arg("repl");
        cmd.current_dir(self.path("cwd"));
        for var in ["WSM_CONFIG_DIR", "WSM_SCRIPT_PATH", "DOCKER_HOST", "STACK"] {
            cmd.env_remove(var);
        }
        cmd.env("XDG_STATE_HOME", self.path("state"))
            .env("XDG_CONFIG_HOME", self.path("xdg-config"))
            .env("HOME", self.path("home"))
            .env("TERM", "xterm");
        cmd.envs(env.iter().copied());
        let session = spawn_command(cmd, Some(TIMEOUT_MS)).expect("spawn wsm repl");
        let mut repl = Repl { session };
        repl.prompt();
        repl
    }
}

/// A running REPL.
struct Repl {
    session: PtySession,
}

impl Repl {
    /// Waits for the next prompt. Keys typed before the REPL reads its next line can be lost
    /// (the line editor drops what it read past the end of a line), so wait before typing.
    fn prompt(&mut self) {
        self.session.exp_string(PROMPT).expect("a prompt");
    }

    /// Waits for the prompt of a line that continues an unfinished block.
    fn continuation(&mut self) {
        self.session
            .exp_string(CONTINUATION)
            .expect("a continuation prompt");
    }

    /// Types keys without pressing Enter.
    fn keys(&mut self, keys: &str) {
        self.session.send(keys).expect("send keys");
        self.session.flush().expect("flush keys");
    }

    /// Types a line and presses Enter.
    fn line(&mut self, line: &str) {
        self.session.send_line(line).expect("send line");
    }

    /// Waits for `text` in the output, then for the prompt after it.
    fn expect(&mut self, text: &str) {
        if let Err(e) = self.session.exp_string(text) {
            panic!("expected {text:?} in the REPL output: {e}");
        }
        self.prompt();
    }

    /// Types a line that prints nothing and waits for the next prompt.
    fn quiet(&mut self, line: &str) {
        self.line(line);
        self.prompt();
    }

    /// Types a line, expects `text`, waits for the next prompt.
    fn eval(&mut self, line: &str, text: &str) {
        self.line(line);
        self.expect(text);
    }

    /// Leaves with Ctrl-D and checks that the process ended well.
    fn quit(mut self) {
        self.session.send_control('d').expect("Ctrl-D");
        self.session.exp_eof().expect("the REPL ends on Ctrl-D");
        let status = self.session.process_mut().wait().expect("exit status");
        assert!(
            matches!(status, rexpect::process::wait::WaitStatus::Exited(_, 0)),
            "the REPL exited with {status:?}"
        );
    }
}

#[test]
fn rhai_lines_keep_variables_and_functions() {
    let world = World::new();
    let mut repl = world.repl();
    repl.quiet("let x = 40;");
    repl.line("x + 2");
    repl.expect("=> 42");
    repl.quiet("fn twice(a) { a * 2 }");
    repl.eval("twice(x)", "=> 80");
    // A block left open continues on the next line, under the continuation prompt.
    repl.line("fn f(a) {");
    repl.continuation();
    repl.line("  a * 2");
    repl.continuation();
    repl.line("}");
    repl.prompt();
    repl.eval("f(21)", "=> 42");
    repl.eval(
        "import \"nodes\" as n; n::parse_id(\"sync\").service",
        "=> \"sync\"",
    );
    repl.eval("n::parse_id(\"3\").slot", "=> 3");
    // An imported module's functions complete after its alias.
    repl.keys("n::parse_i\t");
    repl.session
        .exp_string("n::parse_id")
        .expect("an imported module's function completes");
    repl.line("(\"2\").slot");
    repl.expect("=> 2");
    repl.quit();
}

#[test]
fn an_error_does_not_end_the_repl() {
    let world = World::new();
    let mut repl = world.repl();
    repl.eval("let = ;", "error:");
    repl.eval("undefined_function_here()", "error:");
    repl.eval("stack no-such-command", "error:");
    repl.eval("1 + 1", "=> 2");
    repl.quit();
}

#[test]
fn stack_commands_run_as_in_the_shell() {
    let world = World::new();
    world.write("config/stacks/wsmrepltest", "WAVELET_NODES=7\n");
    let mut repl = world.repl();
    repl.eval("stack -s wsmrepltest config", "WAVELET_NODES=7");
    repl.eval("stack help", "Usage: stack [-s <stackName>] <command>");
    repl.eval("help", "Stack commands");
    repl.line("exit");
    repl.session.exp_eof().expect("exit ends the REPL");
}

#[test]
fn tab_completes_commands_including_dropped_in_scripts() {
    let world = World::new();
    world.write(
        "xdg-config/wsm/scripts/manage-stack/hello-there.rhai",
        "//! usage: hello-there\n//! Say hello.\nprint(\"hello from a dropped-in script\");\n",
    );
    let mut repl = world.repl();
    repl.keys("stack stat\t");
    repl.session
        .exp_string("status")
        .expect("stat completes to status");
    // Cancel the line rather than run it: status would ask Docker.
    repl.session.send_control('c').expect("Ctrl-C");
    repl.prompt();
    repl.keys("stack hello-t\t");
    repl.session
        .exp_string("hello-there")
        .expect("a dropped-in command completes");
    repl.line("");
    repl.expect("hello from a dropped-in script");
    // Node ids: with no stack running (or no Docker at all) the usual ids are offered.
    world.write("config/stacks/wsmrepltest", "WAVELET_NODES=3\n");
    repl.keys("stack -s wsmrepltest logs \t\t");
    repl.session
        .exp_string("loadbalancer")
        .expect("node ids are offered");
    // The line is shown again under the list; the prompt to wait for comes after Ctrl-C.
    repl.session
        .exp_string("wsm> stack -s wsmrepltest logs")
        .expect("the line again");
    repl.session.send_control('c').expect("Ctrl-C");
    repl.prompt();
    // Rhai names: the session's own variables and registered functions.
    repl.quiet("let a_long_variable_name = 5;");
    repl.keys("a_long_v\t");
    repl.session
        .exp_string("a_long_variable_name")
        .expect("a variable completes");
    repl.line(" + 1");
    repl.expect("=> 6");
    repl.keys("docker::conn\t");
    repl.session
        .exp_string("docker::connect")
        .expect("a module function completes");
    repl.session.send_control('c').expect("Ctrl-C");
    repl.prompt();
    repl.quit();
}

#[test]
fn history_is_saved_and_recalled() {
    let world = World::new();
    let mut repl = world.repl();
    repl.quiet("let remembered = 6;");
    repl.eval("remembered * 7", "=> 42");
    repl.eval("6 * 9", "=> 54");
    repl.quit();
    let history = world.history();
    assert!(
        history.contains("let remembered = 6;"),
        "history file: {history:?}"
    );
    assert!(
        history.contains("remembered * 7"),
        "history file: {history:?}"
    );

    // A new session recalls the last line with Up.
    let mut repl = world.repl();
    repl.keys("\x1b[A");
    repl.line("");
    repl.expect("=> 54");
    repl.quit();
}

#[test]
fn ctrl_c_at_the_prompt_cancels_the_line() {
    let world = World::new();
    let mut repl = world.repl();
    repl.keys("1 +");
    repl.session.exp_string("1 +").expect("echo");
    repl.session.send_control('c').expect("Ctrl-C");
    repl.prompt();
    repl.eval("2+2", "=> 4");
    // Ctrl-C during a running line interrupts it, and the REPL goes on.
    repl.line("loop { }");
    repl.session.exp_string("loop { }").expect("echo");
    std::thread::sleep(std::time::Duration::from_millis(500));
    repl.session.send_control('c').expect("Ctrl-C");
    repl.expect("error: interrupted");
    repl.eval("3+3", "=> 6");
    repl.quit();
}

#[test]
fn a_dropped_in_family_is_completed_and_run() {
    let world = World::new();
    world.write(
        "xdg-config/wsm/scripts/greetings/hello.rhai",
        "//! usage: hello <who>\n//! Say hello.\nprint(`hello ${args::parse(USAGE_ARGS, ARGS).who}`);\n",
    );
    let mut repl = world.repl();
    repl.keys("greeti\t");
    repl.session
        .exp_string("greetings")
        .expect("the family's name completes");
    repl.keys("hell\t");
    repl.session
        .exp_string("hello")
        .expect("the family's command completes");
    repl.line("repl");
    repl.expect("hello repl");
    repl.eval("wsm(\"greetings hello rhai\")", "hello rhai");
    repl.quit();
}

#[test]
fn the_continuation_prompt_shows_until_the_block_ends() {
    let world = World::new();
    let mut repl = world.repl();
    repl.line("let total = [1, 2,");
    repl.continuation();
    repl.line("  3].reduce(|sum, x| sum + x, 0);");
    repl.prompt();
    repl.eval("total", "=> 6");
    // Ctrl-C under the continuation prompt drops the whole block.
    repl.line("fn never(a) {");
    repl.continuation();
    repl.session.send_control('c').expect("Ctrl-C");
    repl.prompt();
    repl.eval("never(1)", "error:");
    repl.quit();
}

#[test]
fn tab_after_a_dot_offers_the_methods_of_the_value_type() {
    let world = World::new();
    let mut repl = world.repl();
    repl.quiet("let e = docker::connect(docker::default_host());");
    repl.keys("e.\t\t");
    let listed = repl
        .session
        .exp_string("wsm> e.")
        .expect("the list, then the line again");
    for method in [
        "deploy",
        "services",
        "stack_state",
        "wait_converged",
        "api_version",
    ] {
        assert!(listed.contains(method), "e.<Tab> offers {method}: {listed}");
    }
    repl.session.send_control('c').expect("Ctrl-C");
    repl.prompt();
    // A prefix narrows them; one match is inserted.
    repl.keys("e.swarm_st\t");
    repl.session
        .exp_string("swarm_state")
        .expect("e.swarm_st completes");
    repl.line("().is_manager");
    repl.expect("=> true");
    // Rhai's own types too: a string's methods.
    repl.quiet("let word = \"abc\";");
    repl.keys("word.to_up\t");
    repl.session
        .exp_string("to_upper")
        .expect("a string's method completes");
    repl.line("()");
    repl.expect("=> \"ABC\"");
    // A map's keys are offered as its properties.
    repl.quiet("let info = e.swarm_state();");
    repl.keys("info.node_\t");
    repl.session
        .exp_string("info.node_")
        .expect("the common prefix");
    repl.keys("\t");
    repl.session
        .exp_string("node_addr")
        .expect("a map's keys are offered");
    // The line is shown again under the list; the prompt to wait for comes after Ctrl-C.
    repl.session
        .exp_string("wsm> info.node_")
        .expect("the line again");
    repl.session.send_control('c').expect("Ctrl-C");
    repl.prompt();
    // The type of a call comes from its documented return type.
    repl.keys("stack(\"x\").stat\t");
    repl.session
        .exp_string("status")
        .expect("a stack handle's command methods complete");
    repl.session.send_control('c').expect("Ctrl-C");
    repl.prompt();
    repl.quit();
}

#[test]
fn help_prints_the_doc_of_a_module_a_method_and_a_command_within_the_width() {
    let world = World::new();
    let mut repl = world.repl_with(&[("COLUMNS", "60")]);
    repl.quiet("let e = docker::connect(docker::default_host());");
    repl.line("help e.deploy");
    // Its options come last, each on a line of its own, the last declared last.
    let out = repl
        .session
        .exp_string("operation:")
        .expect("the doc of e.deploy");
    assert!(
        out.contains("e.deploy(stack: string, plan: map, opts: map) -> array"),
        "{out}"
    );
    // Words as the reader sees them, whatever line the wrapping put them on.
    let flat = out.split_whitespace().collect::<Vec<_>>().join(" ");
    for part in [
        "Returns the service names.",
        "resolve_image:",
        "record:",
        "rollback:",
    ] {
        assert!(flat.contains(part), "help e.deploy lacks {part:?}: {out}");
    }
    for line in out.lines().skip(2) {
        assert!(
            line.trim_end().chars().count() <= 60,
            "a help line is wider than the terminal: {line:?}"
        );
    }
    repl.prompt();
    repl.eval("help e", "e.swarm_state() -> map");
    repl.line("help docker");
    repl.session
        .exp_string("docker::connect(host: string) -> Engine")
        .expect("help docker lists connect");
    repl.expect("docker::exec_all");
    repl.eval(
        ":help ssh::connect",
        "ssh::connect(target: string, opts: map) -> SshSession",
    );
    repl.eval("help stack status", "usage: stack [-s <stackName>] status");
    repl.line("help stack");
    let listing = repl
        .session
        .exp_string("Usage: stack [-s <stackName>] <command>")
        .expect("help stack lists the family's commands");
    assert!(
        listing.contains("dump-db <nodeId> <outputFile>"),
        "{listing}"
    );
    for line in listing.lines().skip(1) {
        assert!(
            line.trim_end().chars().count() <= 60,
            "a help line is wider than the terminal: {line:?}"
        );
    }
    repl.prompt();
    repl.eval("help dockr", "did you mean docker");
    repl.quit();
}

#[test]
fn a_misspelt_method_names_the_one_that_exists() {
    let world = World::new();
    let mut repl = world.repl();
    repl.quiet("let e = docker::connect(docker::default_host());");
    repl.eval("e.servics(#{})", "did you mean e.service, e.services?");
    repl.eval("e.swarm_stat()", "did you mean e.swarm_state?");
    repl.eval(
        "e.services()",
        "it is called as e.services(filters: map) -> array",
    );
    repl.eval("docker::conect(\"\")", "did you mean docker::connect");
    repl.quit();
}
