//! What each module and type of primitives is for. The primitives' own docs are written where
//! they are registered (`host::doc::Prim`); a test fails when one is in no section here.

/// What each module and type is for, in the order the reference lists them.
pub const SECTIONS: &[(&str, &str)] = &[
    (
        "docker",
        "The Docker Engine API: connect to an engine, then call the methods of the `Engine` \
         handle.",
    ),
    (
        "Engine",
        "A connection to one Docker engine (`docker::connect`). Results are maps in the Engine \
         API's own shape (`Spec`, `Status`, …).",
    ),
    (
        "Deploying",
        "A deploy going on beside the script (`e.deploy_begin`): wait until some services run, \
         then for its end.",
    ),
    (
        "ssh",
        "SSH sessions over one shared OpenSSH master per host.",
    ),
    (
        "SshSession",
        "A session on one host (`ssh::connect`): run commands, move files.",
    ),
    (
        "StackLock",
        "The per-stack lock held in the swarm (`e.lock_stack`); released when the value is \
         dropped.",
    ),
    (
        "compose",
        "Compose files: load, merge, interpolate, and plan what a deploy creates.",
    ),
    (
        "config",
        "KEY=VALUE configuration files: parsed, never executed; written atomically, 0600 when \
         they hold secrets.",
    ),
    ("args", "A command's arguments read against its usage line."),
    (
        "archive",
        "tar.gz archives of container folders: consistent dumps, checksums, copies in and out.",
    ),
    (
        "listing",
        "Rows printed as the Docker CLI prints its lists: `--format` Go templates, `json`, \
         `-q`, tables aligned as docker's; `-f KEY=VALUE` filters checked and applied.",
    ),
    (
        "digest",
        "Digests of values, and keyed digests (HMAC-SHA256) under a key read from a file the \
         script never sees.",
    ),
    (
        "Child",
        "A program `process::start` started and did not wait for: wait for its outcome or kill \
         it.",
    ),
    (
        "cleanup",
        "Undo actions the host runs however a command ends (error, Ctrl-C, SIGTERM).",
    ),
    (
        "fs",
        "A user's files as text; folders for build contexts; wsm's state folder and files \
         replaced whole.",
    ),
    (
        "schedule",
        "Job schedules: `every <duration>` or a five-field cron line (UTC), their slots due and \
         missed.",
    ),
    (
        "process",
        "Programs run to their end with a deadline, their output's tail kept.",
    ),
    (
        "node_id",
        "Node ids (`service[.slot]` and an application's own forms) read into service and slot.",
    ),
    (
        "http",
        "HTTP requests with deadlines (providers' APIs, notifications).",
    ),
    (
        "serve",
        "`wsm serve`'s HTTP server: it serves the pages, JSON and metrics a script publishes, \
         and wakes the script on the engine's events.",
    ),
    (
        "Server",
        "A running server (`serve::start`): publish its documents, wait for engine events.",
    ),
    (
        "git",
        "A repository's branch: the commit it points at and a shallow checkout (the `git` \
         program, with a deadline, nothing secret in its arguments).",
    ),
    (
        "term",
        "The terminal: tables, JSON, warnings, prompts, the editor, sleeping.",
    ),
    ("yaml", "Any YAML as a value."),
    (
        "Stack",
        "A stack seen from a script or the REPL (`stack(\"demo\")`): one method per command of \
         every family that acts on a stack, e.g. `st.status()`, `st.logs(\"1\", \"--tail\", \
         \"5\")`.",
    ),
    ("global", "Functions outside any module."),
];
