//! `docker-compose.yml` is the deployment for users' machines, and no Docker engine runs where this project is built
//! and tested, so these tests are what keep the file honest.
//!
//! The first group reads the file (with `<<` merge keys resolved, as Compose does) and checks what the pipeline
//! relies on: the binlog settings of every MySQL server, a single KRaft broker that never creates topics by itself,
//! health checks, data on named volumes, and host paths that exist in the repository. The last test runs
//! `docker-compose config -q`, which validates the file against the Compose schema without an engine: it is required
//! when `CI` is set and skipped with a note elsewhere if docker-compose is missing (`apt-get install docker-compose`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::{Mapping, Value};

/// The MySQL servers (component names of the local stack) and the database each one holds.
const MYSQL_SERVICES: [(&str, &str); 3] =
    [("mysql-users", "users"), ("mysql-catalog", "catalog"), ("mysql-orders", "orders")];

/// Server options the capture process relies on, as (option, value); values compare case-insensitively.
const BINLOG_OPTIONS: [(&str, &str); 8] = [
    ("log-bin", "binlog"),
    ("binlog-format", "ROW"),
    ("binlog-row-image", "FULL"),
    ("binlog-row-metadata", "FULL"),
    ("gtid-mode", "ON"),
    ("enforce-gtid-consistency", "ON"),
    ("default-time-zone", "+00:00"),
    ("character-set-server", "utf8mb4"),
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits inside the repository")
        .to_path_buf()
}

/// The compose file as one YAML value, with merge keys resolved (serde_yaml 0.9 does not do it while parsing).
fn compose_file() -> Value {
    let path = repo_root().join("docker-compose.yml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut doc: Value =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()));
    doc.apply_merge().expect("resolve `<<` merge keys");
    doc
}

fn services(doc: &Value) -> &Mapping {
    doc.get("services").and_then(Value::as_mapping).expect("a top-level `services` mapping")
}

fn service<'a>(doc: &'a Value, name: &str) -> &'a Value {
    services(doc).get(name).unwrap_or_else(|| panic!("no service `{name}` in docker-compose.yml"))
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        other => panic!("expected a scalar, found {other:?}"),
    }
}

/// What a value is in a deployment that sets none of the variables: `${NAME:-default}` and `${NAME-default}` become
/// the default, `${NAME}` nothing, `$$` a single `$`.
fn with_defaults(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some(inner) = rest.strip_prefix('{') {
            let end = inner.find('}').unwrap_or_else(|| panic!("unclosed `${{` in {text:?}"));
            let expression = &inner[..end];
            if let Some((_, default)) = expression.split_once(":-").or_else(|| expression.split_once('-')) {
                out.push_str(default);
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
        }
    }
    out.push_str(rest);
    out
}

/// A string or a list of strings (command, entrypoint, healthcheck test) as a list of words.
fn words(value: Option<&Value>) -> Vec<String> {
    match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        Some(Value::Sequence(items)) => items.iter().map(scalar).collect(),
        Some(other) => panic!("expected a string or a list, found {other:?}"),
    }
}

/// The container's argv as Docker builds it: entrypoint, then command.
fn argv(service: &Value) -> Vec<String> {
    let mut argv = words(service.get("entrypoint"));
    argv.extend(words(service.get("command")));
    argv
}

/// `--name=value` options of an argv, names with `_` spelt `-` (mysqld accepts both); the last one wins, as in mysqld.
fn options(argv: &[String]) -> BTreeMap<String, String> {
    argv.iter()
        .filter_map(|word| word.strip_prefix("--"))
        .filter_map(|option| option.split_once('='))
        .map(|(name, value)| (name.replace('_', "-"), value.to_owned()))
        .collect()
}

/// The service's environment (mapping or `NAME=value` list form), with variable defaults applied.
fn environment(service: &Value) -> BTreeMap<String, String> {
    match service.get("environment") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Mapping(entries)) => entries
            .iter()
            .map(|(name, value)| (scalar(name), with_defaults(&scalar(value))))
            .collect(),
        Some(Value::Sequence(entries)) => entries
            .iter()
            .map(|entry| {
                let entry = scalar(entry);
                let (name, value) = entry.split_once('=').unwrap_or((&entry, ""));
                (name.to_owned(), with_defaults(value))
            })
            .collect(),
        Some(other) => panic!("`environment` must be a mapping or a list, found {other:?}"),
    }
}

/// The healthcheck command of a service, joined into one string; fails if there is none or it is disabled.
fn healthcheck(name: &str, service: &Value) -> String {
    let check = service.get("healthcheck").unwrap_or_else(|| panic!("`{name}` has no healthcheck"));
    assert_ne!(check.get("disable"), Some(&Value::Bool(true)), "`{name}` disables its healthcheck");
    let test = words(check.get("test"));
    assert!(
        !test.is_empty() && test[0] != "NONE",
        "`{name}` has a healthcheck without a test: {test:?}"
    );
    test.join(" ")
}

/// One entry of a service's `volumes`.
#[derive(Debug)]
struct Mount {
    /// Host path (bind mount) or volume name, variable defaults applied.
    source: String,
    target: String,
    bind: bool,
    read_only: bool,
}

fn mounts(service: &Value) -> Vec<Mount> {
    let Some(entries) = service.get("volumes").and_then(Value::as_sequence) else {
        return Vec::new();
    };
    entries
        .iter()
        .map(|entry| match entry {
            Value::String(short) => {
                let short = with_defaults(short);
                let parts: Vec<&str> = short.split(':').collect();
                let (source, target, mode) = match parts.as_slice() {
                    [target] => ("", *target, ""),
                    [source, target] => (*source, *target, ""),
                    [source, target, mode] => (*source, *target, *mode),
                    _ => panic!("cannot read volume {short:?}"),
                };
                Mount {
                    bind: source.starts_with(['.', '/', '~']),
                    source: source.to_owned(),
                    target: target.to_owned(),
                    read_only: mode.split(',').any(|option| option == "ro"),
                }
            }
            Value::Mapping(_) => Mount {
                source: with_defaults(&scalar(entry.get("source").unwrap_or(&Value::Null))),
                target: scalar(entry.get("target").expect("a long-syntax volume has a target")),
                bind: entry.get("type").map(scalar).as_deref() == Some("bind"),
                read_only: entry.get("read_only") == Some(&Value::Bool(true)),
            },
            other => panic!("cannot read volume {other:?}"),
        })
        .collect()
}

/// Asserts that `target` in the service is backed by a named volume declared at the top level.
fn assert_named_volume(doc: &Value, name: &str, target: &str) {
    let mounts = mounts(service(doc, name));
    let mount = mounts
        .iter()
        .find(|mount| mount.target.trim_end_matches('/') == target.trim_end_matches('/'))
        .unwrap_or_else(|| panic!("`{name}` mounts nothing on {target}: its data would die with the container"));
    assert!(
        !mount.bind && !mount.source.is_empty(),
        "`{name}` keeps {target} on {mount:?}, expected a named volume"
    );
    let declared = doc.get("volumes").and_then(Value::as_mapping);
    assert!(
        declared.is_some_and(|volumes| volumes.contains_key(mount.source.as_str())),
        "volume `{}` of `{name}` is not declared under the top-level `volumes`",
        mount.source
    );
}

#[test]
fn mysql_servers_write_the_binlog_that_capture_needs() {
    let doc = compose_file();
    let mut server_ids = BTreeMap::new();
    for (name, database) in MYSQL_SERVICES {
        let server = service(&doc, name);
        let image = server.get("image").map(scalar).unwrap_or_default();
        assert!(image.starts_with("mysql:8"), "`{name}` runs {image:?}, expected MySQL 8");

        let options = options(&argv(server));
        for (option, expected) in BINLOG_OPTIONS {
            let actual = options.get(option).map(String::as_str);
            assert!(
                actual.is_some_and(|actual| actual.eq_ignore_ascii_case(expected)),
                "`{name}` runs with --{option}={actual:?}, expected {expected}"
            );
        }
        let server_id: u32 = options
            .get("server-id")
            .unwrap_or_else(|| panic!("`{name}` has no --server-id"))
            .parse()
            .unwrap_or_else(|e| panic!("`{name}` has a non-numeric --server-id: {e}"));
        assert_ne!(server_id, 0, "`{name}`: server id 0 refuses replication clients");
        if let Some(other) = server_ids.insert(server_id, name) {
            panic!("`{name}` and `{other}` share server id {server_id}");
        }

        let env = environment(server);
        assert_eq!(env.get("MYSQL_DATABASE").map(String::as_str), Some(database), "`{name}`: MYSQL_DATABASE");
        assert!(
            env.get("MYSQL_ROOT_PASSWORD").is_some_and(|password| !password.is_empty()),
            "`{name}` needs a root password (with a default) in MYSQL_ROOT_PASSWORD"
        );

        let check = healthcheck(name, server);
        assert!(check.contains("mysqladmin") && check.contains("ping"), "`{name}` healthcheck: {check}");

        let mounts = mounts(server);
        let init = mounts
            .iter()
            .find(|mount| mount.target.trim_end_matches('/') == "/docker-entrypoint-initdb.d")
            .unwrap_or_else(|| panic!("`{name}` mounts no migrations on /docker-entrypoint-initdb.d"));
        assert_eq!(init.source.trim_end_matches('/'), format!("./migrations/{database}"), "`{name}` init scripts");
        assert!(init.read_only, "`{name}` mounts its migrations writable");
    }
}

#[test]
fn kafka_is_one_kraft_node_that_never_creates_topics() {
    let doc = compose_file();
    for (name, definition) in services(&doc) {
        let name = scalar(name);
        let image = definition.get("image").map(scalar).unwrap_or_default();
        assert!(
            !name.contains("zookeeper") && !image.contains("zookeeper"),
            "service `{name}` ({image}) is ZooKeeper: the broker must run in KRaft mode"
        );
    }

    let kafka = service(&doc, "kafka");
    let env = environment(kafka);
    let roles: BTreeSet<&str> = env
        .get("KAFKA_PROCESS_ROLES")
        .expect("KAFKA_PROCESS_ROLES is set (KRaft)")
        .split(',')
        .map(str::trim)
        .collect();
    assert_eq!(roles, BTreeSet::from(["broker", "controller"]), "one combined broker and controller");
    assert!(
        env.get("KAFKA_CONTROLLER_QUORUM_VOTERS").is_some_and(|voters| !voters.is_empty()),
        "KRaft needs KAFKA_CONTROLLER_QUORUM_VOTERS"
    );
    assert!(!env.contains_key("KAFKA_ZOOKEEPER_CONNECT"), "KRaft mode has no ZooKeeper connection");
    assert_eq!(
        env.get("KAFKA_AUTO_CREATE_TOPICS_ENABLE").map(String::as_str),
        Some("false"),
        "topics are created explicitly, never by a producer or consumer"
    );
    for variable in ["KAFKA_LISTENERS", "KAFKA_ADVERTISED_LISTENERS"] {
        let listeners = env.get(variable).unwrap_or_else(|| panic!("{variable} is set"));
        assert!(listeners.split(',').count() >= 2, "{variable} needs the network and the host: {listeners}");
    }

    let check = healthcheck("kafka", kafka);
    assert!(
        check.contains("kafka-topics.sh") || check.contains("kafka-broker-api-versions.sh"),
        "kafka healthcheck should ask the broker itself: {check}"
    );
}

#[test]
fn clickhouse_is_health_checked_and_has_the_pipeline_users() {
    let doc = compose_file();
    let clickhouse = service(&doc, "clickhouse");
    let check = healthcheck("clickhouse", clickhouse);
    assert!(check.contains("/ping") || check.contains("clickhouse-client"), "clickhouse healthcheck: {check}");

    let mounts = mounts(clickhouse);
    let migrations = mounts
        .iter()
        .find(|mount| mount.target.trim_end_matches('/') == "/docker-entrypoint-initdb.d")
        .expect("migrations/clickhouse mounted on /docker-entrypoint-initdb.d");
    assert_eq!(migrations.source.trim_end_matches('/'), "./migrations/clickhouse");

    let users = mounts
        .iter()
        .find(|mount| mount.target.starts_with("/etc/clickhouse-server/users.d/"))
        .expect("a users.d file mounted into /etc/clickhouse-server/users.d/");
    let xml = std::fs::read_to_string(repo_root().join(&users.source))
        .unwrap_or_else(|e| panic!("read {}: {e}", users.source));
    for user in ["<views>", "<analyst>"] {
        assert!(xml.contains(user), "{} does not define {user}", users.source);
    }
    // Every password the users file reads must reach the container.
    let env = environment(clickhouse);
    for variable in xml.split("from_env=\"").skip(1).filter_map(|rest| rest.split('"').next()) {
        assert!(env.contains_key(variable), "{} reads {variable}, which clickhouse's environment lacks", users.source);
    }
}

#[test]
fn data_lives_on_named_volumes() {
    let doc = compose_file();
    for (name, _) in MYSQL_SERVICES {
        assert_named_volume(&doc, name, "/var/lib/mysql");
    }
    let log_dirs = environment(service(&doc, "kafka"))
        .get("KAFKA_LOG_DIRS")
        .cloned()
        .expect("KAFKA_LOG_DIRS is set, so the data directory is known");
    for dir in log_dirs.split(',') {
        assert_named_volume(&doc, "kafka", dir);
    }
    assert_named_volume(&doc, "clickhouse", "/var/lib/clickhouse");
}

#[test]
fn every_mounted_host_path_exists_in_the_repository() {
    let doc = compose_file();
    let root = repo_root();
    let mut checked = 0;
    for (name, definition) in services(&doc) {
        for mount in mounts(definition).into_iter().filter(|mount| mount.bind) {
            assert!(
                !mount.source.starts_with(['/', '~']),
                "`{}` mounts {}: host paths must be relative to the repository",
                scalar(name),
                mount.source
            );
            let path = root.join(&mount.source);
            assert!(path.exists(), "`{}` mounts {}, which does not exist", scalar(name), path.display());
            checked += 1;
        }
    }
    assert!(checked > 0, "no bind mounts found: the volume parser is broken");
}

#[test]
fn docker_compose_accepts_the_file() {
    let root = repo_root();
    let output = match Command::new("docker-compose")
        .args(["-f", "docker-compose.yml", "config", "-q"])
        .current_dir(&root)
        .output()
    {
        Ok(output) => output,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let advice = "docker-compose is not on PATH; install it (Debian: `apt-get install docker-compose`) \
                          to validate docker-compose.yml against the Compose schema";
            if std::env::var_os("CI").is_some() {
                panic!("{advice}: CI requires this check");
            }
            eprintln!("note: {advice}; skipping `docker-compose config` (set CI to make this a failure)");
            return;
        }
        Err(e) => panic!("run docker-compose: {e}"),
    };
    assert!(
        output.status.success(),
        "`docker-compose -f docker-compose.yml config -q` failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The project's services built from the repository's Dockerfile, with the port of their `/metrics` and `/health`.
const APP_SERVICES: [(&str, u16); 2] = [("capture", 9090), ("views", 9091)];

/// `depends_on` of a service as (service, condition); the short list form means `service_started`.
fn depends_on(service: &Value) -> BTreeMap<String, String> {
    match service.get("depends_on") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Sequence(names)) => names.iter().map(|n| (scalar(n), "service_started".to_owned())).collect(),
        Some(Value::Mapping(entries)) => entries
            .iter()
            .map(|(name, spec)| {
                let condition = spec.get("condition").map(scalar).unwrap_or_else(|| "service_started".into());
                (scalar(name), condition)
            })
            .collect(),
        Some(other) => panic!("`depends_on` must be a list or a mapping, found {other:?}"),
    }
}

/// The option paths of an example TOML file (`key`, `section.key`, and `section` for every `[section]` or
/// `[[section]]`), for checking that environment overrides name real options.
fn example_options(path: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let mut section = String::new();
    let mut options = BTreeSet::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        if line.starts_with('[') {
            section = line.trim_matches(['[', ']']).to_owned();
            options.insert(section.clone());
        } else if let Some((key, _)) = line.split_once('=') {
            let key = key.trim().trim_matches('"');
            options.insert(if section.is_empty() { key.to_owned() } else { format!("{section}.{key}") });
        }
    }
    options
}

#[test]
fn capture_and_views_are_built_from_the_repository_dockerfile() {
    let doc = compose_file();
    let dockerfile = std::fs::read_to_string(repo_root().join("Dockerfile")).expect("a Dockerfile at the repository root");
    let stages: Vec<&str> =
        dockerfile.lines().map(str::trim).filter(|l| l.to_ascii_uppercase().starts_with("FROM ")).collect();
    assert!(stages.len() >= 2, "the Dockerfile should build in one stage and run in another: {stages:?}");
    assert!(stages[0].contains("rust:1"), "the build stage should start from rust:1: {}", stages[0]);
    assert!(stages[stages.len() - 1].contains("debian:bookworm-slim"), "the runtime stage: {}", stages[stages.len() - 1]);

    for (name, port) in APP_SERVICES {
        let app = service(&doc, name);
        let build = app.get("build").unwrap_or_else(|| panic!("`{name}` is not built from the repository"));
        let (context, file) = match build {
            Value::String(context) => (context.clone(), "Dockerfile".to_owned()),
            _ => (
                build.get("context").map(scalar).unwrap_or_else(|| panic!("`{name}` build has no context")),
                build.get("dockerfile").map(scalar).unwrap_or_else(|| "Dockerfile".into()),
            ),
        };
        assert_eq!(context.trim_end_matches('/'), ".", "`{name}` builds from the repository root");
        assert_eq!(file, "Dockerfile", "`{name}` builds the repository's Dockerfile");
        assert!(
            dockerfile.contains(&format!("target/release/{name}")),
            "the Dockerfile does not install the `{name}` binary"
        );

        let argv = argv(app);
        assert_eq!(argv.first().map(String::as_str), Some(name), "`{name}` runs {argv:?}");
        assert!(app.get("restart").is_some(), "`{name}` has no restart policy");

        let env = environment(app);
        let listen_key = format!("CDC_{}_LISTEN", name.to_ascii_uppercase());
        let listen = env.get(&listen_key).unwrap_or_else(|| panic!("`{name}` sets no {listen_key}"));
        assert_eq!(listen, &format!("0.0.0.0:{port}"), "`{name}` must listen beyond the container's loopback");
        let check = healthcheck(name, app);
        assert!(
            check.contains(&format!("127.0.0.1:{port}/health")) || check.contains(&format!("localhost:{port}/health")),
            "`{name}` healthcheck should ask its own /health on {port}: {check}"
        );
        let tool = check.split_whitespace().find(|w| ["curl", "wget"].contains(w));
        if let Some(tool) = tool {
            assert!(dockerfile.contains(tool), "`{name}` checks its health with {tool}, which the image does not install");
        }
    }
}

#[test]
fn capture_reads_every_mysql_server_with_the_account_their_init_creates() {
    let doc = compose_file();
    let capture = service(&doc, "capture");
    let env = environment(capture);
    assert_eq!(env.get("CDC_CAPTURE_KAFKA__BROKERS").map(String::as_str), Some("kafka:9092"), "the broker's network listener");
    let state_dir = env.get("CDC_CAPTURE_STATE_DIR").expect("CDC_CAPTURE_STATE_DIR is set, so the checkpoints' place is known");
    assert_named_volume(&doc, "capture", state_dir);

    let sources = env.get("CDC_CAPTURE_SOURCES").expect("CDC_CAPTURE_SOURCES lists the servers");
    let urls: Vec<&str> = sources.split("url=\"").skip(1).filter_map(|rest| rest.split('"').next()).collect();
    let ids: Vec<u32> = sources
        .split("server_id=")
        .skip(1)
        .map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next().unwrap_or_default().parse().expect("a numeric server_id"))
        .collect();
    assert_eq!((urls.len(), ids.len()), (MYSQL_SERVICES.len(), MYSQL_SERVICES.len()), "one source per server: {sources}");
    let conditions = depends_on(capture);
    for (name, database) in MYSQL_SERVICES {
        let server = service(&doc, name);
        let server_env = environment(server);
        let password = server_env
            .get("CAPTURE_MYSQL_PASSWORD")
            .unwrap_or_else(|| panic!("`{name}` gets no CAPTURE_MYSQL_PASSWORD for the capture account"));
        let url = format!("mysql://cdc_capture:{password}@{name}:3306/{database}");
        assert!(urls.contains(&url.as_str()), "no capture source {url} in {urls:?}");

        let server_id = options(&argv(server)).get("server-id").cloned().unwrap_or_default();
        assert!(!ids.iter().any(|id| id.to_string() == server_id), "a capture server_id equals `{name}`'s --server-id");

        // The init script: the account and its privileges, passed to mysqld as --init-file.
        let script = argv(server).join(" ");
        assert!(script.contains("--init-file="), "`{name}` does not hand mysqld an init file");
        assert!(script.contains("CREATE USER IF NOT EXISTS 'cdc_capture'@'%'"), "`{name}` does not create cdc_capture");
        let grant = script
            .lines()
            .find(|l| l.contains("GRANT") && l.contains("'cdc_capture'"))
            .unwrap_or_else(|| panic!("`{name}` grants cdc_capture nothing"));
        for privilege in ["REPLICATION SLAVE", "REPLICATION CLIENT", "SELECT"] {
            assert!(grant.contains(privilege) && grant.contains("ON *.*"), "`{name}`: {grant} lacks {privilege} ON *.*");
        }
        assert_eq!(conditions.get(name).map(String::as_str), Some("service_healthy"), "capture waits for `{name}`");
    }
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "capture server ids must differ: {ids:?}");
    assert_eq!(conditions.get("kafka").map(String::as_str), Some("service_healthy"), "capture waits for kafka");

    let known = example_options("capture/capture.example.toml");
    for key in env.keys().filter_map(|k| k.strip_prefix("CDC_CAPTURE_")) {
        let option = key.to_ascii_lowercase().replace("__", ".");
        assert!(known.contains(&option), "CDC_CAPTURE_{key} is no option of capture.example.toml");
    }
}

#[test]
fn views_writes_to_clickhouse_as_the_views_user() {
    let doc = compose_file();
    let views = service(&doc, "views");
    let env = environment(views);
    let clickhouse_env = environment(service(&doc, "clickhouse"));
    let expected = [
        ("CDC_VIEWS_BROKERS", "kafka:9092"),
        ("CDC_VIEWS_CLICKHOUSE_URL", "http://clickhouse:8123"),
        ("CDC_VIEWS_CLICKHOUSE_USER", "views"),
        ("CDC_VIEWS_DATABASE", "reporting"),
        ("CDC_VIEWS_CLICKHOUSE_PASSWORD", clickhouse_env.get("CLICKHOUSE_WRITER_PASSWORD").expect("a writer password").as_str()),
    ];
    for (key, value) in expected {
        assert_eq!(env.get(key).map(String::as_str), Some(value), "views: {key}");
    }
    let conditions = depends_on(views);
    for dependency in ["kafka", "clickhouse"] {
        assert_eq!(conditions.get(dependency).map(String::as_str), Some("service_healthy"), "views waits for `{dependency}`");
    }
    let known = example_options("views/views.example.toml");
    for key in env.keys().filter_map(|k| k.strip_prefix("CDC_VIEWS_")) {
        assert!(known.contains(&key.to_ascii_lowercase()), "CDC_VIEWS_{key} is no option of views.example.toml");
    }
}

#[test]
fn services_run_on_their_own_database_with_the_account_the_image_creates() {
    let doc = compose_file();
    let dockerfile = std::fs::read_to_string(repo_root().join("Dockerfile")).expect("a Dockerfile");
    for (name, port, consumes) in [("users", 8081, false), ("catalog", 8082, true), ("orders", 8083, true)] {
        let app = service(&doc, name);
        assert_eq!(argv(app).first().map(String::as_str), Some(name), "`{name}` runs its own binary");
        assert!(dockerfile.contains(&format!("target/release/{name}")), "the Dockerfile does not install `{name}`");
        let env = environment(app);
        assert_eq!(env.get("SERVICE_LISTEN"), Some(&format!("0.0.0.0:{port}")), "`{name}` listens beyond loopback");
        let mysql = service(&doc, &format!("mysql-{name}"));
        let server_env = environment(mysql);
        let user = server_env.get("MYSQL_USER").unwrap_or_else(|| panic!("mysql-{name} creates no app account"));
        let password = server_env.get("MYSQL_PASSWORD").expect("an app password");
        assert_eq!(server_env.get("MYSQL_DATABASE").map(String::as_str), Some(name));
        assert_eq!(
            env.get("SERVICE_MYSQL_URL"),
            Some(&format!("mysql://{user}:{password}@mysql-{name}:3306/{name}")),
            "`{name}` uses its own database with the account mysql-{name} creates"
        );
        let conditions = depends_on(app);
        assert_eq!(conditions.get(&format!("mysql-{name}")).map(String::as_str), Some("service_healthy"));
        if consumes {
            assert_eq!(env.get("KAFKA_BROKERS").map(String::as_str), Some("kafka:9092"), "`{name}` consumes change topics");
            assert_eq!(conditions.get("kafka").map(String::as_str), Some("service_healthy"));
        }
        let check = healthcheck(name, app);
        assert!(check.contains(&format!("127.0.0.1:{port}/health")), "`{name}` healthcheck: {check}");
    }
    let capture = environment(service(&doc, "capture"));
    let sources = capture.get("CDC_CAPTURE_SOURCES").expect("capture sources");
    assert_eq!(sources.matches("exclude=[\"*.applied_events\", \"*.known_*\"]").count(), 3, "the services' bookkeeping is not captured: {sources}");
}

#[test]
fn prometheus_scrapes_every_process_and_grafana_shows_metrics_that_exist() {
    let doc = compose_file();
    let prometheus = service(&doc, "prometheus");
    assert!(mounts(prometheus).iter().any(|m| m.source.ends_with("deploy/prometheus/prometheus.yml")));
    let config: Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo_root().join("deploy/prometheus/prometheus.yml")).expect("the scrape config"),
    )
    .expect("YAML");
    let targets: Vec<String> = config["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs")
        .iter()
        .flat_map(|job| job["static_configs"].as_sequence().cloned().unwrap_or_default())
        .flat_map(|c| c["targets"].as_sequence().cloned().unwrap_or_default())
        .map(|t| scalar(&t))
        .collect();
    for (name, port) in [("capture", 9090), ("views", 9091), ("users", 8081), ("catalog", 8082), ("orders", 8083)] {
        service(&doc, name);
        assert!(targets.contains(&format!("{name}:{port}")), "prometheus does not scrape {name}:{port}: {targets:?}");
    }

    let grafana = service(&doc, "grafana");
    let sources: Vec<String> = mounts(grafana).iter().map(|m| m.source.clone()).collect();
    assert!(sources.iter().any(|s| s.ends_with("deploy/grafana/provisioning")), "{sources:?}");
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("deploy/grafana/dashboards/cdc-pipeline.json")).expect("the dashboard"),
    )
    .expect("JSON");
    let code: String = ["capture/src/metrics.rs", "views/src/metrics.rs", "services/src/metrics.rs"]
        .iter()
        .map(|p| std::fs::read_to_string(repo_root().join(p)).expect("metrics source"))
        .collect();
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8);
    for panel in panels {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            for name in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("cdc_")) {
                let base = name.trim_end_matches("_total").trim_end_matches("_bucket");
                assert!(code.contains(&format!("\"{base}\"")), "panel `{}` queries {name}, which no process exports", panel["title"]);
            }
        }
    }
}
