//! The doc of every primitive, one entry per registered name, kept beside the registrations
//! (`src/host/*`): `help`, completion and `wsm doc` read it, and a test fails when a registered
//! function has no entry here or an entry names nothing registered. Methods are keyed
//! `Type.name` (getters too), module functions `module::name`, global functions by name. A
//! signature's `-> Type` is what completion takes the expression's type to be.

use super::Doc;

macro_rules! doc {
    ($name:literal, [$($sig:literal),+ $(,)?], $text:literal) => {
        Doc { name: $name, sigs: &[$($sig),+], text: $text }
    };
}

/// What each module and type is for, in the order the reference lists them.
pub const SECTIONS: &[(&str, &str)] = &[
    ("docker", "The Docker Engine API: connect to an engine, then call the methods of the `Engine` handle."),
    ("Engine", "A connection to one Docker engine (`docker::connect`). Results are maps in the Engine API's own shape (`Spec`, `Status`, …)."),
    ("ssh", "SSH sessions over one shared OpenSSH master per host."),
    ("SshSession", "A session on one host (`ssh::connect`): run commands, move files."),
    ("StackLock", "The per-stack lock held in the swarm (`e.lock_stack`); released when the value is dropped."),
    ("compose", "Compose files: load, merge, interpolate, and plan what a deploy creates."),
    ("config", "KEY=VALUE configuration files: parsed, never executed; written atomically, 0600 when they hold secrets."),
    ("args", "A command's arguments read against its usage line."),
    ("archive", "tar.gz archives of container folders: consistent dumps, checksums, copies in and out."),
    ("cleanup", "Undo actions the host runs however a command ends (error, Ctrl-C, SIGTERM)."),
    ("fs", "A user's files as text; folders for build contexts; wsm's state folder and files replaced whole."),
    ("node_id", "Node ids (`service[.slot]` and an application's own forms) read into service and slot."),
    ("http", "HTTP requests with deadlines (providers' APIs)."),
    ("term", "The terminal: tables, JSON, warnings, prompts, the editor, sleeping."),
    ("yaml", "Any YAML as a value."),
    ("Stack", "A stack seen from a script or the REPL (`stack(\"demo\")`): one method per command of every family that acts on a stack, e.g. `st.status()`, `st.logs(\"1\", \"--tail\", \"5\")`."),
    ("global", "Functions outside any module."),
];

/// One entry per registered name.
pub const DOCS: &[Doc] = &[
    // docker::
    doc!("docker::connect", ["docker::connect(host: string) -> Engine"],
        "Connects to the Docker engine at `host` (`unix://…`, `ssh://user@host`, `tcp://…`) and negotiates the API version. \"\" means the default: the Docker context in use (`--context`, `DOCKER_HOST`, `DOCKER_CONTEXT`, the current context of `~/.docker/config.json`), else the local socket. Connections are cached per address. Fails when the engine does not answer within 30 s or the address is not supported."),
    doc!("docker::default_host", ["docker::default_host() -> string"],
        "The address `docker::connect(\"\")` goes to, resolved as the Docker CLI resolves it: `--context`, then `DOCKER_HOST`, then `DOCKER_CONTEXT`, then the current context in `~/.docker/config.json` (endpoint from `~/.docker/contexts/meta/<sha256 of name>/meta.json`), else `unix:///var/run/docker.sock`. Fails when the named context does not exist."),
    doc!("docker::exec_all", ["docker::exec_all(targets: array, cmd: array) -> array"],
        "Runs one command in many containers at once. Each target is a map with `engine` and `container`; its other keys are copied into its result, which adds `exit_code`, `stdout` and `stderr` (or `error`)."),
    // Engine
    doc!("Engine.host", ["e.host -> string"], "The address this engine was reached at."),
    doc!("Engine.api_version", ["e.api_version -> string"], "The Engine API version negotiated on connect, e.g. `1.47`."),
    doc!("Engine.info", ["e.info() -> map"], "The engine's system info as `docker info` reads it (`ServerVersion`, `Swarm.NodeAddr`, …)."),
    doc!("Engine.services", ["e.services(filters: map) -> array"], "The swarm's services matching Engine API filters, e.g. `#{label: \"com.docker.stack.namespace=demo\"}`; a filter's value is a string or an array of strings."),
    doc!("Engine.tasks", ["e.tasks(filters: map) -> array"], "The swarm's tasks matching Engine API filters (`service`, `node`, `desired-state`, `label`)."),
    doc!("Engine.volumes", ["e.volumes(filters: map) -> array"], "The engine's volumes matching Engine API filters (`name`, `label`)."),
    doc!("Engine.networks", ["e.networks(filters: map) -> array"], "The engine's networks matching Engine API filters (`name`, `label`)."),
    doc!("Engine.nodes", ["e.nodes() -> array"], "The swarm's nodes, as `docker node inspect` shows them. Fails on an engine that is not a swarm manager."),
    doc!("Engine.stack_state", ["e.stack_state(stack: string) -> map"], "A stack's `services`, `tasks`, `nodes`, `volumes` (named `<stack>_…`) and the engine's `info`, fetched at once."),
    doc!("Engine.remove_volume", ["e.remove_volume(name: string) -> bool"], "Removes a volume; false when there was none. Fails when a container uses it."),
    doc!("Engine.deploy", ["e.deploy(stack: string, plan: map, opts: map) -> array"],
        "Creates or updates a stack's networks, secrets, configs and services from a `compose::plan`, as `docker stack deploy` does. opts: `prune` (true: remove services the plan no longer has), `wait` (true), `timeout` (seconds, 300), `resolve_image` (\"always\", \"changed\" or \"never\"), `with_registry_auth` (false). Waits until the services run and jobs complete; a failed job or the deadline fails it, naming the service and the task's error. Returns the service names."),
    doc!("Engine.wait_converged", ["e.wait_converged(stack: string, timeout_secs: int)"], "Waits, with progress, until every service of the stack runs its desired tasks; fails at the deadline naming what it waited for."),
    doc!("Engine.scale", ["e.scale(service: string, replicas: int)"], "Sets a replicated service's replica count (no wait). Fails for a global service."),
    doc!("Engine.remove_stack", ["e.remove_stack(stack: string, timeout_secs: int) -> bool"], "Removes a stack's services, secrets and configs (not external ones), waits until its tasks are gone, then removes its networks, as `docker stack rm` does. Returns false when the stack had nothing."),
    doc!("Engine.service", ["e.service(name: string) -> map"], "The service as `docker service inspect` shows it (without `PreviousSpec`), or () when there is none."),
    doc!("Engine.rollback", ["e.rollback(service: string)"], "Puts the service back to its previous spec, as `docker service rollback` does; a usage error when it has none."),
    doc!("Engine.force_update", ["e.force_update(service: string) -> int"], "Replaces every task of the service by its update policy, as `docker service update --force` does; returns the new `TaskTemplate.ForceUpdate`."),
    doc!("Engine.wait_updated", ["e.wait_updated(services: array, timeout_secs: int)"], "Waits, with progress, until each service runs its current spec on every task it wants; a paused or automatically rolled-back update fails it."),
    doc!("Engine.exec", ["e.exec(container: string, cmd: array) -> map", "e.exec(container: string, cmd: array, stdin: string) -> map"], "Runs a command in a container (optionally with text on its stdin) and returns `#{exit_code, stdout, stderr}`. Fails when the container does not exist or is not running."),
    doc!("Engine.exec_interactive", ["e.exec_interactive(container: string, cmd: array, tty: bool) -> int"], "Runs a command in a container with this process's stdin and stdout (a TTY when `tty`); returns its exit code."),
    doc!("Engine.logs", ["e.logs(container: string, opts: map)"], "Prints a container's logs. opts: `follow` (false; Ctrl-C ends it), `tail` (\"all\"), `since` (unix seconds)."),
    doc!("Engine.attach", ["e.attach(container: string)"], "Attaches to the container's console until Ctrl-P Ctrl-Q or the end of piped input."),
    doc!("Engine.build", ["e.build(context_dir: string, tag: string, build_args: map)"], "Builds an image from a local folder with these build arguments, showing the build's output; fails with the build's error."),
    doc!("Engine.push", ["e.push(image: string)"], "Pushes an image to its registry with the credentials `docker login` stored."),
    doc!("Engine.image_digests", ["e.image_digests(image: string) -> array"], "The repo digests an image has (after a push or pull); [] when it has none."),
    doc!("Engine.swarm_init", ["e.swarm_init(advertise_addr: string) -> string"], "Makes this engine the first manager of a new swarm advertised on that address; returns the node id."),
    doc!("Engine.swarm_inspect", ["e.swarm_inspect() -> map"], "The swarm as its manager sees it (`ID`, `JoinTokens.Worker`, `JoinTokens.Manager`, …)."),
    doc!("Engine.swarm_join", ["e.swarm_join(manager_addr: string, token: string, advertise_addr: string)"], "Joins the swarm managed at `manager_addr` (host:2377) with a join token."),
    doc!("Engine.swarm_leave", ["e.swarm_leave(force: bool)"], "Leaves the swarm (`force`: even as the last manager)."),
    doc!("Engine.node_remove", ["e.node_remove(id: string, force: bool) -> bool"], "Removes a node from the swarm; false when it was not there."),
    doc!("Engine.swarm_state", ["e.swarm_state() -> map"], "This engine's place in a swarm: `#{local_state, node_id, node_addr, is_manager}`."),
    doc!("Engine.lock_stack", ["e.lock_stack(stack: string, operation: string, wait_secs: int) -> StackLock"], "Takes the stack's lock for `operation`, waiting up to `wait_secs` (0: fail at once) while another command holds it; the error names the holder. The lock is released when the returned value is dropped (the command ends)."),
    doc!("StackLock.name", ["lock.name -> string"], "The name of the swarm config object that holds the lock."),
    // ssh::
    doc!("ssh::connect", ["ssh::connect(target: string) -> SshSession", "ssh::connect(target: string, opts: map) -> SshSession"], "Connects to `user@host[:port]` (user root when omitted) over one shared OpenSSH master. opts: `timeout` (seconds; default 10 or `WSM_SSH_TIMEOUT`), `key` (a private key file: only that one is offered), `strict` (refuse hosts not in known_hosts). Fails naming the host and ssh's reason."),
    doc!("ssh::public_keys", ["ssh::public_keys() -> array"], "The user's public keys (ssh-agent and identity files), one line each."),
    doc!("ssh::parse_target", ["ssh::parse_target(target: string) -> map"], "`#{user, host, port}` of `user@host[:port]` or `ssh://…`; port is () when not given. Bad input is a usage error."),
    doc!("SshSession.target", ["s.target -> string"], "The `user@host[:port]` this session reaches."),
    doc!("SshSession.run", ["s.run(cmd) -> map", "s.run(cmd, stdin: string) -> map"], "Runs a command (a shell line, or an array of words quoted for the remote shell) on the host, optionally with text on its stdin; returns `#{exit_code, stdout, stderr}`. Fails only when the connection does."),
    doc!("SshSession.upload", ["s.upload(local: string, remote: string)", "s.upload(local: string, remote: string, mode: int)"], "Copies a local file to the host: parent folders made, written atomically, mode 0644 unless given (e.g. `0o600`)."),
    doc!("SshSession.download", ["s.download(remote: string, local: string)"], "Copies a file from the host, atomically on this side."),
    doc!("SshSession.read", ["s.read(remote: string) -> string"], "A remote text file's contents, or () when it does not exist."),
    doc!("SshSession.write", ["s.write(remote: string, text: string, mode: int)"], "Writes text to a remote file atomically (parent folders made, temporary file, rename) with the given mode."),
    doc!("SshSession.rename", ["s.rename(from: string, to: string)"], "Renames a remote file (`mv -f`), e.g. to keep a replaced file as `.old`."),
    doc!("SshSession.close", ["s.close()"], "Forgets the session: its master ends when the last handle is dropped (or a minute after its last use), and the next connect opens a fresh one."),
    // compose::
    doc!("compose::parse", ["compose::parse(yaml_text: string, env: map) -> map"], "Parses and interpolates one compose file's text with `env` alone (paths against the current directory). Bad input is a usage error."),
    doc!("compose::load", ["compose::load(files: array, opts: map) -> map"], "The merged, interpolated document of compose files (`\"-\"` is stdin), as `docker stack deploy -c … -c …` reads them. opts: `env_files` (paths), `env` (map). Bad input is a usage error naming the file and the key."),
    doc!("compose::interpolate", ["compose::interpolate(text: string, env: map) -> string"], "`${VAR}`, `${VAR-default}`, `${VAR:?message}` substitution on one string; an unset required variable is a usage error."),
    doc!("compose::to_yaml", ["compose::to_yaml(doc: map) -> string"], "Renders a (modified) compose document as YAML."),
    doc!("compose::specs", ["compose::specs(doc: map, stack: string) -> array"], "The Engine API service specs `e.deploy` would send for this document and stack."),
    doc!("compose::plan", ["compose::plan(doc: map, stack: string) -> map"], "What deploying `doc` as `stack` creates: `#{services: [#{name, spec}], networks: [#{name, spec}], warnings: […]}`, plus secrets and configs; the argument of `e.deploy`."),
    // config::
    doc!("config::dir", ["config::dir() -> string"], "The configuration directory (`-C`, `WSM_CONFIG_DIR`, or `./config`)."),
    doc!("config::read", ["config::read(path: string) -> map"], "Parses a KEY=VALUE file into a map; a missing file gives `#{}`. Errors name the file and line, never a value."),
    doc!("config::read_text", ["config::read_text(path: string) -> string"], "A config file's text as it is; \"\" when it does not exist. Files over the size limit are a usage error."),
    doc!("config::write_text", ["config::write_text(path: string, text: string)"], "Writes text that parses as KEY=VALUE (comments kept) atomically; 0600 when any key holds a secret."),
    doc!("config::exists", ["config::exists(path: string) -> bool"], "Whether the file exists."),
    doc!("config::parse", ["config::parse(text: string, origin: string) -> map"], "Parses KEY=VALUE text; errors name `origin` and the line."),
    doc!("config::render", ["config::render(values: map) -> string"], "Sorted KEY=VALUE lines, quoted where needed."),
    doc!("config::write", ["config::write(path: string, values: map)"], "Writes a map as KEY=VALUE lines atomically; 0600 when any key holds a secret."),
    doc!("config::list", ["config::list(dir: string) -> array"], "The names of the files in a folder, sorted; [] when it does not exist."),
    doc!("config::remove", ["config::remove(path: string) -> bool"], "Deletes a file; false when there was none."),
    doc!("config::rename", ["config::rename(from: string, to: string)"], "Renames a file (e.g. to keep a replaced one as `.old`)."),
    doc!("config::declare_secrets", ["config::declare_secrets(keys: array)"], "These keys hold secrets from now on: masked in output and errors, files holding them written 0600 (an application's schema declares them when its config is loaded)."),
    doc!("config::is_secret", ["config::is_secret(key: string) -> bool"], "Whether the key's value must be masked."),
    doc!("config::env", ["config::env() -> map"], "The process environment as a map."),
    // args::
    doc!("args::parse", ["args::parse(usage: string, args: array) -> map"], "Reads a command's arguments against its usage line (`<name>`, `[<opt>]`, `[-f]`, `[--tail <n>]`, `<files>...`) into a map by name; bad input is a usage error (exit 2) with the usage line."),
    // archive::
    doc!("archive::dump", ["archive::dump(engine: Engine, container: string, dir: string, out_file: string, opts: map) -> map"], "Writes a consistent tar.gz of a container folder: copied until two copies agree. opts: `attempts` (5), `level` (gzip 0-9, 1). Returns `#{consistent: true, attempts, checksum, bytes, files}`, or `#{consistent: false, attempts}` when the folder changed during every copy (nothing written)."),
    doc!("archive::checksum", ["archive::checksum(file: string) -> string"], "The checksum of a tar.gz's files, as `archive::dump` computes it."),
    doc!("archive::upload", ["archive::upload(engine: Engine, container: string, local_paths: array, container_dir: string)"], "Copies local files and folders into a container folder."),
    doc!("archive::download", ["archive::download(engine: Engine, container: string, container_path: string, local_dest: string, may_rename: bool)"], "Copies a path out of a container into an existing folder, or (`may_rename`) to a new name, as `docker cp` does."),
    doc!("archive::check_output", ["archive::check_output(path: string) -> string"], "Refuses (exit 2) an output file that is a device, FIFO, socket or folder, or whose folder does not exist; returns the path to write."),
    // cleanup::
    doc!("cleanup::exec", ["cleanup::exec(engine: Engine, container: string, argv: array, what: string) -> int"], "Registers an undo action: run `argv` in the container when the command ends by error, Ctrl-C or SIGTERM, unless run or cancelled first. Returns its id."),
    doc!("cleanup::run", ["cleanup::run(id: int)"], "Runs a pending undo action now (the normal path); Ctrl-C does not cut it short."),
    doc!("cleanup::cancel", ["cleanup::cancel(id: int) -> bool"], "Forgets a pending undo action; false when it was not pending."),
    // fs::
    doc!("fs::read", ["fs::read(path: string) -> string"], "A file's text (`\"-\"` reads standard input); an error names the file."),
    doc!("fs::is_file", ["fs::is_file(path: string) -> bool"], "Whether a regular file (or a link to one) is there."),
    doc!("fs::is_dir", ["fs::is_dir(path: string) -> bool"], "Whether a folder (or a link to one) is there."),
    doc!("fs::write", ["fs::write(path: string, text: string)"], "Creates or replaces a file with this text (e.g. a Dockerfile in a `temp_dir()`); user files that must be replaced atomically go through `config::`."),
    doc!("fs::copy", ["fs::copy(from: string, dest: string)"], "Copies a file, or a folder and everything under it, to `dest`, which must not exist yet (its parent folders are made)."),
    doc!("fs::state_dir", ["fs::state_dir() -> string"], "Where wsm keeps its state: `$XDG_STATE_HOME/wsm` (`~/.local/state/wsm`); fails when there is no state folder to use."),
    doc!("fs::stat", ["fs::stat(path: string) -> map"], "`#{kind: \"file\" | \"dir\" | \"other\", size, modified, modified_at}` of a path (modified in seconds since the epoch, modified_at as RFC 3339), or () when nothing is there."),
    doc!("fs::list", ["fs::list(dir: string) -> array"], "The names in a folder, sorted; fails naming the folder when it cannot be read."),
    doc!("fs::mkdir", ["fs::mkdir(path: string)"], "Creates a folder and its parents (mode 0700 for the new ones)."),
    doc!("fs::append", ["fs::append(path: string, text: string)"], "Adds text at the end of a file, creating it (mode 0600)."),
    doc!("fs::remove", ["fs::remove(path: string) -> bool"], "Removes a file; false when there was none."),
    doc!("fs::rotate_in", ["fs::rotate_in(staged: string, path: string, backup: string)"], "Puts the finished file `staged` at `path`, keeping the file that was there as `backup`; both stay whole at every moment."),
    // node_id::
    doc!("node_id::parse", ["node_id::parse(id: string, kind: map) -> map"], "Parses a node id (`service[.slot]`, or an application's own forms described by `kind`: `services`, `default_service`) into `#{service, slot}`; bad input is a usage error (exit 2) that lists the forms."),
    doc!("node_id::forms", ["node_id::forms(kind: map) -> string"], "How node ids of that kind are written, for messages."),
    // http::
    doc!("http::request", ["http::request(method: string, url: string, opts: map) -> map"], "An HTTP request. opts: `headers` (map), `json` (a value sent as JSON) or `body` (text), `timeout_ms` (10000). Returns `#{status, headers, body, json}`; fails on a network error or the deadline, not on an error status."),
    doc!("http::get", ["http::get(url: string, timeout_ms: int) -> map"], "A GET with a deadline; the same result as `http::request`."),
    // term::
    doc!("term::table", ["term::table(headers: array, rows: array) -> string"], "Aligned columns under the headers, as `docker … ls` prints them."),
    doc!("term::ago", ["term::ago(rfc3339: string) -> string"], "How long ago a time was, e.g. \"40 seconds ago\"."),
    doc!("term::json", ["term::json(value) -> string"], "Pretty JSON text of a value (what `--json` prints)."),
    doc!("term::eprint", ["term::eprint(text: string)"], "A line on stderr."),
    doc!("term::warn", ["term::warn(text: string)"], "`warning: text` on stderr."),
    doc!("term::warn_once", ["term::warn_once(text: string)"], "`warning: text` on stderr, once per process (a config read again by the REPL's completion does not repeat it)."),
    doc!("term::is_tty", ["term::is_tty() -> bool"], "Whether stdout is a terminal."),
    doc!("term::clear", ["term::clear()"], "Clears the screen (for `status watch`)."),
    doc!("term::edit", ["term::edit(text: string, file_name: string) -> string"], "Opens text in `$VISUAL`, `$EDITOR` or vi (Ctrl-C goes to the editor) and returns the edited text."),
    doc!("term::prompt", ["term::prompt(question: string) -> string"], "Asks a question and returns the line the user types."),
    doc!("term::confirm", ["term::confirm(question: string) -> bool"], "True when the user types y or yes; `--yes` answers for them, and without a terminal it is a usage error."),
    doc!("term::sleep", ["term::sleep(ms: int)"], "Sleeps, cut short by Ctrl-C (an error then)."),
    doc!("term::run", ["term::run(argv: array) -> int"], "Runs a local program with this terminal; returns its exit code."),
    doc!("term::now", ["term::now() -> float"], "Seconds since the epoch, with their fraction."),
    doc!("term::timestamp", ["term::timestamp() -> string"], "Now, as RFC 3339 UTC to the second (`2026-12-01T17:03:04Z`)."),
    // yaml::
    doc!("yaml::parse", ["yaml::parse(text: string, name: string) -> map"], "A YAML document as maps, arrays and scalars; bad YAML is an error naming `name` (e.g. the file it came from)."),
    // Stack
    doc!("stack", ["stack(name: string) -> Stack"], "A handle on the stack `name`; its methods run the commands of the families that act on a stack, e.g. `stack(\"demo\").status()`."),
    doc!("Stack.name", ["st.name -> string"], "The stack's name."),
    doc!("Stack.run", ["st.run(command: string, args: array)"], "Runs a command of the family on this stack with these arguments, e.g. `st.run(\"logs\", [\"1\", \"--tail\", \"5\"])`."),
    // global
    doc!("wsm", ["wsm(line: string)"], "Runs a command line as typed in the shell: `wsm(\"stack -s demo status\")`. `--json`, `--yes` and `--verbose` are fixed for the session. Returns the command's value; fails as the command fails."),
    doc!("run_command", ["run_command(family: string, command: string, args: array)"], "Runs another command script (`\"\"` for a command directly in `scripts/`); a leading `-s NAME` in args names the stack."),
    doc!("resource", ["resource(rel: string) -> string"], "The text of a file on the script search path (e.g. a bundled compose file); fails when it is not there."),
    doc!("materialize", ["materialize(rel_dir: string) -> string"], "Writes a folder of the search path (e.g. a node build context) into a fresh temporary folder and returns its path; removed when the process ends."),
    doc!("temp_dir", ["temp_dir() -> string"], "A fresh private temporary folder, removed when the process ends."),
    doc!("trimmed", ["trimmed(text: string) -> string"], "Text without surrounding white space (Rhai's own `trim()` works in place)."),
    doc!("exit_with", ["exit_with(code: int)"], "Ends the command with this exit code (e.g. the code of a program it ran)."),
    doc!("usage_error", ["usage_error(message: string)"], "Fails with exit code 2, the message and the command's usage line."),
    doc!("opts", ["opts() -> map"], "The global options as a map: `json`, `yes`, `verbose`, `config_dir`."),
];
