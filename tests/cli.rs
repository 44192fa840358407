//! The command line through the real binary: `config check` and `config
//! show`, and the management commands (`domain`, `alias`, `queue`, `log`)
//! both offline (no node: the CLI opens the store itself) and against a
//! running node (the store is locked: the CLI must use the admin API),
//! which must print exactly the same things for the same state.

mod common;

use common::node::{ADMIN_KEY, CliOutput, NodeFiles, NodeOptions, clean_command, free_addr, run};
use common::sink::{SinkOptions, TestSink};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A config whose deferred messages stay put (first retry in an hour), and
/// whose admin key the node generates (the CLI must find it).
fn quiet_files() -> NodeFiles {
    NodeFiles::new(NodeOptions {
        retry_initial: "1h",
        retry_max: "1h",
        admin_key: false,
    })
}

// ---------------------------------------------------------------- config

/// `eas-relay config check FILE` with a clean environment plus `env`.
fn check(file: &Path, env: &[(&str, &str)]) -> CliOutput {
    let mut cmd = clean_command();
    cmd.args(["config", "check"]).arg(file);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(cmd)
}

#[test]
fn config_check_accepts_a_valid_file() {
    let files = NodeFiles::new(NodeOptions::default());
    let path = files.config.display().to_string();
    let out = check(&files.config, &[]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(out.stdout, format!("{path}: OK\n"));
    assert_eq!(out.stderr, "");
    // The file may also come from --config.
    let out = files.cli(&["config", "check"]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(out.stdout, format!("{path}: OK\n"));
    // An empty file is the defaults, and valid.
    let empty = files.dir.path().join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    assert_eq!(check(&empty, &[]).code, 0);
}

#[test]
fn the_configs_the_project_ships_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in ["config.example.toml", "deploy/container.toml"] {
        let out = check(&root.join(file), &[]);
        assert_eq!(out.code, 0, "{file}: {out:#?}");
    }
}

#[test]
fn config_check_names_the_key_the_value_and_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    // (what, file text, what stderr must say)
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "unknown key",
            "[smtp]\nmax_conections = 5\n",
            &[
                "key `smtp.max_conections`",
                "= 5",
                "unknown field `max_conections`",
            ],
        ),
        (
            "unknown section",
            "[smpt]\nlisten = \"127.0.0.1:25\"\n",
            &["key `smpt`", "unknown field `smpt`"],
        ),
        (
            "wrong type",
            "[smtp]\nmax_connections = \"many\"\n",
            &["key `smtp.max_connections`", "= \"many\"", "invalid type"],
        ),
        (
            "bad duration unit",
            "[queue]\nretry_max = \"5 fortnights\"\n",
            &[
                "key `queue.retry_max`",
                "= \"5 fortnights\"",
                "unknown duration unit `fortnights`",
            ],
        ),
        (
            "not a duration",
            "[smtp]\ncommand_timeout = \"soon\"\n",
            &[
                "key `smtp.command_timeout`",
                "= \"soon\"",
                "is not a duration",
            ],
        ),
        (
            "bad size",
            "[smtp]\nmax_message_size = \"lots\"\n",
            &["key `smtp.max_message_size`", "= \"lots\"", "not a size"],
        ),
        (
            "cert without key",
            "[tls]\ncert = \"/etc/eas-relay/cert.pem\"\n",
            &[
                "key `tls.key`",
                "(missing)",
                "tls.cert is set, so tls.key must be set too",
            ],
        ),
        (
            "bad address",
            "[smtp]\nlisten = \"nowhere:25\"\n",
            &[
                "key `smtp.listen`",
                "= \"nowhere:25\"",
                "invalid socket address",
            ],
        ),
        (
            "out of range",
            "[smtp]\nmax_line_length = 100\n",
            &["key `smtp.max_line_length`", "= 100", "between 512"],
        ),
        (
            "retry_max below retry_initial",
            "[queue]\nretry_initial = \"2h\"\nretry_max = \"1h\"\n",
            &["key `queue.retry_max`", "= 1h", "queue.retry_initial"],
        ),
        (
            "route without port",
            "[outbound.routes]\n\"dest.test\" = \"nohost\"\n",
            &["key `outbound.routes.\"dest.test\"`", "nohost"],
        ),
        (
            "TOML syntax",
            "[smtp\nlisten = 1\n",
            &["not valid TOML", "line 1"],
        ),
    ];
    for (i, (what, text, needles)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&file, text).unwrap();
        let out = check(&file, &[]);
        assert_eq!(out.code, 2, "{what}: exit code 2 expected: {out:#?}");
        assert_eq!(out.stdout, "", "{what}");
        assert!(
            out.stderr.starts_with(&format!("{}: ", file.display())),
            "{what}: the file is named: {}",
            out.stderr
        );
        for needle in *needles {
            assert!(
                out.stderr.contains(needle),
                "{what}: stderr must contain `{needle}`:\n{}",
                out.stderr
            );
        }
    }

    // A secret is named but never echoed.
    let file = dir.path().join("secret.toml");
    std::fs::write(&file, "[http]\nadmin_keys = [\"tiny-secret\"]\n").unwrap();
    let out = check(&file, &[]);
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(out.stderr.contains("http.admin_keys[0]"), "{}", out.stderr);
    assert!(
        out.stderr.contains("at least 16 characters"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("tiny-secret"),
        "secret leaked: {}",
        out.stderr
    );

    // No such file; no file at all.
    let out = check(&dir.path().join("missing.toml"), &[]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("cannot read config file"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("missing.toml"), "{}", out.stderr);
    let out = run({
        let mut cmd = clean_command();
        cmd.args(["config", "check"]);
        cmd
    });
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("needs a file"), "{}", out.stderr);
}

/// Makes a secret file the owner's alone (the relay refuses others).
fn private(path: &Path) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn config_check_opens_the_files_the_config_names() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pair = |name: &str| {
        let c = rcgen::generate_simple_self_signed(vec!["mx.test".into()]).unwrap();
        let cert = d.join(format!("{name}-cert.pem"));
        let key = d.join(format!("{name}-key.pem"));
        std::fs::write(&cert, c.cert.pem()).unwrap();
        std::fs::write(&key, c.signing_key.serialize_pem()).unwrap();
        // Key files must be the owner's alone.
        private(&key);
        (cert.display().to_string(), key.display().to_string())
    };
    let (cert, key) = pair("a");
    let (_, other_key) = pair("b");
    let keys = d.join("admin.keys");
    std::fs::write(&keys, "# keys\nabcdefghijklmnop-0123\n").unwrap();
    private(&keys);
    let empty_keys = d.join("empty.keys");
    std::fs::write(&empty_keys, "# none\n").unwrap();
    private(&empty_keys);
    let open_keys = d.join("open.keys");
    std::fs::write(&open_keys, "abcdefghijklmnop-0123\n").unwrap();
    let (_, open_key) = pair("open");
    std::fs::set_permissions(&open_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    // A certificate where a key belongs (private, so that its content is judged).
    let not_a_key = d.join("cert-as-key.pem");
    std::fs::copy(&cert, &not_a_key).unwrap();
    private(&not_a_key);
    let not_a_key = not_a_key.display().to_string();
    let ca = d.join("ca.pem");
    std::fs::write(&ca, "not a certificate\n").unwrap();
    let missing = d.join("missing.pem").display().to_string();
    let open_srs = d.join("open-srs.secrets");
    std::fs::write(&open_srs, "srs-secret-0123456789\n").unwrap();
    let open_activation = d.join("open-activation.secret");
    std::fs::write(&open_activation, "activation-secret-0123456789\n").unwrap();
    let open_redis = d.join("open-redis.password");
    std::fs::write(&open_redis, "redis-password-0123\n").unwrap();
    let open_db_url = d.join("open-db.url");
    std::fs::write(&open_db_url, "postgres://eas:db-pw-0123@db/eas\n").unwrap();
    let write = |name: &str, text: String| {
        let file = d.join(name);
        std::fs::write(&file, text).unwrap();
        file
    };
    let tls = |c: &str, k: &str| format!("[tls]\ncert = \"{c}\"\nkey = \"{k}\"\n");
    let dkim_key = |k: &str| {
        format!("[[dkim.keys]]\nselector = \"s1\"\nalgorithm = \"ed25519\"\nkey = \"{k}\"\n")
    };

    let good = write(
        "good.toml",
        tls(&cert, &key) + &format!("[http]\nadmin_keys_file = \"{}\"\n", keys.display()),
    );
    let out = check(&good, &[]);
    assert_eq!(out.code, 0, "{out:#?}");

    let cases = [
        (
            tls(&missing, &key),
            "key `tls.cert`",
            missing.as_str(),
            "No such file",
        ),
        (
            tls(&cert, &missing),
            "key `tls.key`",
            missing.as_str(),
            "No such file",
        ),
        (
            tls(&key, &cert),
            "key `tls.cert`",
            key.as_str(),
            "no PEM certificate",
        ),
        (
            tls(&cert, &other_key),
            "key `tls.key`",
            other_key.as_str(),
            "do not fit",
        ),
        (
            format!("[http]\nadmin_keys_file = \"{missing}\"\n"),
            "key `http.admin_keys_file`",
            missing.as_str(),
            "No such file",
        ),
        (
            format!("[http]\nadmin_keys_file = \"{}\"\n", empty_keys.display()),
            "key `http.admin_keys_file`",
            "empty.keys",
            "holds no key",
        ),
        (
            format!("[http]\nadmin_keys_file = \"{}\"\n", open_keys.display()),
            "key `http.admin_keys_file`",
            "open.keys",
            "mode 0644",
        ),
        (
            tls(&cert, &open_key),
            "key `tls.key`",
            open_key.as_str(),
            "mode 0644",
        ),
        (
            format!(
                "[outbound]\ntls = \"verified\"\ntls_ca_file = \"{}\"\n",
                ca.display()
            ),
            "key `outbound.tls_ca_file`",
            "ca.pem",
            "no PEM certificate",
        ),
        (
            format!("[srs]\nsecrets_file = \"{}\"\n", open_srs.display()),
            "key `srs.secrets_file`",
            "open-srs.secrets",
            "mode 0644",
        ),
        (
            format!("[srs]\nsecrets_file = \"{missing}\"\n"),
            "key `srs.secrets_file`",
            missing.as_str(),
            "No such file",
        ),
        (
            format!(
                "[chain]\nactivation_secret_file = \"{}\"\n",
                open_activation.display()
            ),
            "key `chain.activation_secret_file`",
            "open-activation.secret",
            "mode 0644",
        ),
        (
            format!("[chain]\nactivation_secret_file = \"{missing}\"\n"),
            "key `chain.activation_secret_file`",
            missing.as_str(),
            "No such file",
        ),
        (
            format!(
                "[dns_provisioning]\nredis_password_file = \"{}\"\n",
                open_redis.display()
            ),
            "key `dns_provisioning.redis_password_file`",
            "open-redis.password",
            "mode 0644",
        ),
        (
            format!("[dns_provisioning]\nredis_password_file = \"{missing}\"\n"),
            "key `dns_provisioning.redis_password_file`",
            missing.as_str(),
            "No such file",
        ),
        (
            format!(
                "[cluster]\ndatabase_url_file = \"{}\"\n",
                open_db_url.display()
            ),
            "key `cluster.database_url_file`",
            "open-db.url",
            "mode 0644",
        ),
        (
            format!("[cluster]\ndatabase_url_file = \"{missing}\"\n"),
            "key `cluster.database_url_file`",
            missing.as_str(),
            "No such file",
        ),
        (
            format!(
                "[cluster]\ndatabase_url = \"postgres://eas@db/eas?sslmode=require\"\nca_file = \"{key}\"\n"
            ),
            "key `cluster.ca_file`",
            key.as_str(),
            "no PEM certificate",
        ),
        (
            "[cluster]\nenabled = true\n".to_string(),
            "key `cluster.database_url`",
            "\"\"",
            "cluster.enabled needs database_url or database_url_file",
        ),
        (
            dkim_key(&missing),
            "key `dkim.keys[0].key`",
            missing.as_str(),
            "No such file",
        ),
        (
            dkim_key(&not_a_key),
            "key `dkim.keys[0].key`",
            not_a_key.as_str(),
            "not a usable DKIM key",
        ),
    ];
    for (i, (text, key_name, value, reason)) in cases.into_iter().enumerate() {
        let file = write(&format!("files{i}.toml"), text);
        let out = check(&file, &[]);
        assert_eq!(out.code, 2, "case {i}: {out:#?}");
        for needle in [key_name, value, reason] {
            assert!(
                out.stderr.contains(needle),
                "case {i}: `{needle}`: {}",
                out.stderr
            );
        }
    }
}

#[test]
fn without_system_roots_the_relay_starts_and_config_check_says_verified_cannot() {
    // A machine without CA certificates: the system store is empty.
    let files = NodeFiles::new(NodeOptions::default());
    let empty = files.dir.path().join("no-roots.pem");
    std::fs::write(&empty, "").unwrap();
    let no_dir = files.dir.path().join("no-roots.d");
    std::fs::create_dir(&no_dir).unwrap();
    let (empty, no_dir) = (empty.display().to_string(), no_dir.display().to_string());
    let env = [
        ("SSL_CERT_FILE", empty.as_str()),
        ("SSL_CERT_DIR", no_dir.as_str()),
    ];
    // Plain DNS and opportunistic TLS need no roots: the relay starts, with
    // inbound verification on (its resolver is built at start; a DNS
    // server on a dead loopback port, so nothing leaves the machine).
    let text = std::fs::read_to_string(&files.config).unwrap();
    let text = text
        .replace("[auth]\nenabled = false", "[auth]\nenabled = true")
        .replace(
            "[outbound]\n",
            "[outbound]\nnameservers = [\"127.0.0.1:9\"]\n",
        );
    std::fs::write(&files.config, text).unwrap();
    let mut node = files.start_env(&env);
    assert!(node.terminate(Duration::from_secs(20)).success());
    assert_eq!(files.cli_env(&["config", "check"], &env).code, 0);
    // `verified` without a CA file cannot verify anything: said before start.
    let verified = files.dir.path().join("verified.toml");
    let text = std::fs::read_to_string(&files.config).unwrap();
    std::fs::write(
        &verified,
        text.replace("[outbound]\n", "[outbound]\ntls = \"verified\"\n"),
    )
    .unwrap();
    let mut cmd = clean_command();
    cmd.args(["config", "check"]).arg(&verified);
    cmd.envs(env);
    let out = run(cmd);
    assert_eq!(out.code, 2, "{out:#?}");
    for needle in ["key `outbound.tls`", "no trusted root", "tls_ca_file"] {
        assert!(out.stderr.contains(needle), "`{needle}`: {}", out.stderr);
    }
}

#[test]
fn config_check_warns_about_inline_secrets_everyone_can_read() {
    let files = NodeFiles::new(NodeOptions::default());
    // The harness writes it 0600: no warning.
    let out = check(&files.config, &[]);
    assert_eq!((out.code, out.stderr.as_str()), (0, ""), "{out:#?}");
    std::fs::set_permissions(&files.config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = check(&files.config, &[]);
    assert_eq!(out.code, 0, "a warning, not a refusal: {out:#?}");
    for needle in ["warning:", "mode 0644", "http.admin_keys", "chmod 600"] {
        assert!(out.stderr.contains(needle), "`{needle}`: {}", out.stderr);
    }
    // A database password in the URL is one; a user alone is not.
    let db = files.dir.path().join("db.toml");
    std::fs::write(
        &db,
        "[cluster]\ndatabase_url = \"postgres://eas:db-pw-0123@db/eas\"\n",
    )
    .unwrap();
    let out = check(&db, &[]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(
        out.stderr.contains("cluster.database_url"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("db-pw-0123"), "{}", out.stderr);
    std::fs::write(&db, "[cluster]\ndatabase_url = \"postgres://eas@db/eas\"\n").unwrap();
    let out = check(&db, &[]);
    assert_eq!((out.code, out.stderr.as_str()), (0, ""), "{out:#?}");
    // Without inline secrets a readable config is fine.
    let plain = files.dir.path().join("plain.toml");
    std::fs::write(&plain, "hostname = \"relay.test\"\n").unwrap();
    let out = check(&plain, &[]);
    assert_eq!((out.code, out.stderr.as_str()), (0, ""), "{out:#?}");
}

#[test]
fn environment_overrides_are_checked_and_named() {
    let files = NodeFiles::new(NodeOptions::default());
    let bad = [("EAS_RELAY_SMTP__MAX_CONNECTIONS", "abc")];
    let out = check(&files.config, &bad);
    assert_eq!(out.code, 2, "{out:#?}");
    for needle in ["key `smtp.max_connections`", "= \"abc\"", "invalid type"] {
        assert!(out.stderr.contains(needle), "`{needle}`: {}", out.stderr);
    }
    // Every command refuses the bad override the same way; serve does not start.
    for args in [
        &["domain", "list"][..],
        &["serve"][..],
        &["config", "show"][..],
    ] {
        let out = files.cli_env(args, &bad);
        assert_eq!(out.code, 2, "{args:?}: {out:#?}");
        assert!(
            out.stderr.contains("key `smtp.max_connections`") && out.stderr.contains("\"abc\""),
            "{args:?}: {}",
            out.stderr
        );
    }
    assert!(
        std::net::TcpStream::connect(files.smtp).is_err(),
        "serve must not listen with a bad config"
    );
    // A misspelt override is an unknown key, not silently ignored.
    let out = check(&files.config, &[("EAS_RELAY_SMTP__MAX_CONECTIONS", "5")]);
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(out.stderr.contains("smtp.max_conections"), "{}", out.stderr);
    // A good override wins over the file and the defaults.
    let out = files.cli_env(
        &["config", "show"],
        &[
            ("EAS_RELAY_SMTP__MAX_CONNECTIONS", "7"),
            ("EAS_RELAY_QUEUE__MAX_AGE", "2d"),
        ],
    );
    let shown: toml::Table = out.ok().parse().expect("config show prints TOML");
    assert_eq!(shown["smtp"]["max_connections"].as_integer(), Some(7));
    assert_eq!(shown["queue"]["max_age"].as_str(), Some("2d"));
    assert_eq!(shown["queue"]["retry_initial"].as_str(), Some("200ms"));
    assert_eq!(
        shown["smtp"]["listen"].as_str(),
        Some(files.smtp.to_string().as_str())
    );
}

#[test]
fn config_show_does_not_hand_out_the_secrets_written_inline() {
    let files = NodeFiles::new(NodeOptions::default());
    let out = files.cli_env(
        &["config", "show"],
        &[
            (
                "EAS_RELAY_CLUSTER__DATABASE_URL",
                "postgres://eas:hunter2@db.internal/eas",
            ),
            (
                "EAS_RELAY_CHAIN__ACTIVATION_SECRET",
                "activation-secret-xyz",
            ),
            (
                "EAS_RELAY_DNS_PROVISIONING__REDIS_URL",
                "redis://:redispw@127.0.0.1:6379",
            ),
        ],
    );
    let text = out.ok();
    for secret in [ADMIN_KEY, "hunter2", "activation-secret-xyz", "redispw"] {
        assert!(!text.contains(secret), "{secret} shown:\n{text}");
    }
    let shown: toml::Table = text.parse().expect("config show prints TOML");
    assert_eq!(
        shown["cluster"]["database_url"].as_str(),
        Some("postgres://***@db.internal/eas"),
        "where it connects is still shown"
    );
    assert_eq!(shown["http"]["admin_keys"][0].as_str(), Some("***"));
    assert_eq!(shown["chain"]["activation_secret"].as_str(), Some("***"));
}

#[test]
fn config_show_prints_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let out = run({
        let mut cmd = clean_command();
        cmd.args(["config", "show"]).current_dir(dir.path());
        cmd
    });
    let mut shown: toml::Table = out.ok().parse().expect("config show prints TOML");
    let hostname = shown.remove("hostname").expect("hostname is shown");
    assert!(!hostname.as_str().unwrap().is_empty());
    // config.example.toml documents every key with its default.
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml"))
            .unwrap();
    let example: toml::Table = example.parse().unwrap();
    assert_eq!(shown, example, "config show must print the defaults");
    assert_eq!(shown["data_dir"].as_str(), Some("./data"));
    assert_eq!(shown["smtp"]["listen"].as_str(), Some("127.0.0.1:2525"));
    assert_eq!(shown["http"]["listen"].as_str(), Some("127.0.0.1:8080"));
    // What it prints is itself a valid config.
    let file = dir.path().join("shown.toml");
    std::fs::write(&file, &out.stdout).unwrap();
    assert_eq!(check(&file, &[]).code, 0);
    // Nothing was created by looking.
    assert!(!dir.path().join("data").exists());
}

// ------------------------------------------------------------ management

/// A CLI session that checks exit codes and keeps a transcript.
struct Session<'a> {
    files: &'a NodeFiles,
    transcript: Vec<(Vec<String>, CliOutput)>,
}

impl<'a> Session<'a> {
    fn new(files: &'a NodeFiles) -> Self {
        Session {
            files,
            transcript: Vec::new(),
        }
    }

    /// Runs a command that must succeed; returns stdout.
    fn ok(&mut self, args: &[&str]) -> String {
        let out = self.files.cli(args);
        assert_eq!(out.code, 0, "{args:?}: {out:#?}");
        assert_eq!(out.stderr, "", "{args:?}");
        self.keep(args, out).stdout.clone()
    }

    /// Runs a command that must fail with exit 1 and say `says` on
    /// stderr; returns stderr.
    fn fails(&mut self, args: &[&str], says: &str) -> String {
        let out = self.files.cli(args);
        assert_eq!(out.code, 1, "{args:?}: {out:#?}");
        assert_eq!(out.stdout, "", "{args:?}");
        assert!(
            out.stderr.starts_with("eas-relay: "),
            "{args:?}: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains(says),
            "{args:?}: stderr must contain `{says}`: {}",
            out.stderr
        );
        self.keep(args, out).stderr.clone()
    }

    fn keep(&mut self, args: &[&str], out: CliOutput) -> &CliOutput {
        // Paths differ between two sessions; the rest must not.
        let dir = self.files.dir.path().display().to_string();
        self.transcript
            .push((args.iter().map(|s| s.replace(&dir, "$DIR")).collect(), out));
        &self.transcript.last().unwrap().1
    }

    /// `--json` output of a command, parsed.
    fn json(&mut self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.ok(&all);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    }
}

/// Commands that only read, for comparing the two modes.
const READS: &[&[&str]] = &[
    &["domain", "list"],
    &["--json", "domain", "list"],
    &["alias", "list"],
    &["--json", "alias", "list"],
    &["alias", "list", "d.country"],
    &["alias", "list", "alias1.country"],
    &["--json", "alias", "list", "D.Country"],
    &["queue", "list"],
    &["--json", "queue", "list"],
    &["log", "d.country"],
    &["--json", "log", "d.country"],
    &["log", "d.country", "hello"],
    &["log", "d.country", "--limit", "1"],
    &["--json", "log", "d.country", "--limit", "0"],
];

/// What the read commands print.
fn snapshot(files: &NodeFiles, extra: &[Vec<String>]) -> Vec<(Vec<String>, CliOutput)> {
    READS
        .iter()
        .map(|a| a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .chain(extra.iter().cloned())
        .map(|args| {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = files.cli(&refs);
            assert_eq!(out.code, 0, "{args:?}: {out:#?}");
            (args, out)
        })
        .collect()
}

fn assert_same(
    what: &str,
    a: &[(Vec<String>, CliOutput)],
    b: &[(Vec<String>, CliOutput)],
    normalize: fn(&str) -> String,
) {
    assert_eq!(a.len(), b.len(), "{what}: transcripts differ in length");
    for ((args_a, out_a), (args_b, out_b)) in a.iter().zip(b) {
        assert_eq!(args_a, args_b);
        assert_eq!(out_a.code, out_b.code, "{what}: exit code of {args_a:?}");
        assert_eq!(
            normalize(&out_a.stdout),
            normalize(&out_b.stdout),
            "{what}: stdout of {args_a:?}"
        );
        assert_eq!(out_a.stderr, out_b.stderr, "{what}: stderr of {args_a:?}");
    }
}

fn exact(s: &str) -> String {
    s.to_string()
}

/// Creation times differ between two stores built the same way.
fn without_times(s: &str) -> String {
    fn scrub(v: &mut Value) {
        match v {
            Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    if k == "created" || k == "added" {
                        *v = Value::Null;
                    } else {
                        scrub(v);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(scrub),
            _ => {}
        }
    }
    match serde_json::from_str::<Value>(s) {
        Ok(mut v) => {
            scrub(&mut v);
            v.to_string()
        }
        Err(_) => s.to_string(),
    }
}

/// An alias table as ../shared/bench/gen-aliases.sh writes it: 1200
/// aliases in alias1.country (more than one API page) and one in each of
/// alias2..alias1001.country (more than a page of domains).
fn alias_table(dir: &Path) -> std::path::PathBuf {
    let mut text = String::from("# alias<TAB>destination\n");
    for i in 1..=1200 {
        text.push_str(&format!("{i}fwd@alias1.country\td1.u{i}@dest.test\n"));
    }
    for d in 2..=1001 {
        text.push_str(&format!("1fwd@alias{d}.country\td{d}.u1@dest.test\n"));
    }
    let path = dir.join("aliases.tsv");
    std::fs::write(&path, text).unwrap();
    path
}

/// Domain and alias management, the same in both modes.
fn manage_domains_and_aliases(s: &mut Session) {
    let dir = s.files.dir.path();
    let header = "DOMAIN                                   ACTIVE  SOURCE   ALIASES\n";
    assert_eq!(s.ok(&["domain", "list"]), header);
    assert_eq!(s.ok(&["alias", "list"]), "");
    assert_eq!(s.json(&["domain", "list"]), serde_json::json!([]));
    assert_eq!(
        s.ok(&["domain", "add", "d.country"]),
        "added domain d.country\n"
    );
    s.fails(
        &["domain", "add", "D.COUNTRY"],
        "domain: d.country is already registered",
    );
    s.fails(
        &["domain", "add", "not a domain"],
        "domain: `not a domain` is not a valid domain name",
    );
    assert_eq!(
        s.ok(&["alias", "add", "hello@d.country", "u@dest.test"]),
        "added hello@d.country -> u@dest.test\n"
    );
    assert_eq!(
        s.ok(&[
            "alias",
            "add",
            "Multi@D.country",
            "a@dest.test, b@dest.test"
        ]),
        "added multi@d.country -> a@dest.test,b@dest.test\n"
    );
    let added = s.json(&["alias", "add", "*@d.country", "catch@dest.test"]);
    assert_eq!(added["alias"], "*");
    assert_eq!(added["forward"], "catch@dest.test");
    assert_eq!(added["active"], true);
    s.fails(
        &["alias", "add", "hello@d.country", "other@dest.test"],
        "alias: hello@d.country already exists",
    );
    s.fails(
        &["alias", "add", "bad name@d.country", "x@dest.test"],
        "alias: `bad name` is not a valid alias",
    );
    s.fails(
        &["alias", "add", "x@d.country", "not-an-address"],
        "forward: `not-an-address` is not a valid email address",
    );
    s.fails(
        &["alias", "add", "x@d.country", "me@d.country"],
        "forwarding loop",
    );
    s.fails(
        &["alias", "add", "x@unknown.country", "u@dest.test"],
        "domain unknown.country not found",
    );
    s.fails(
        &["alias", "add", "noat", "u@dest.test"],
        "address: `noat` must be alias@domain",
    );
    let err = s.fails(
        &["alias", "remove", "nobody@d.country"],
        "alias nobody@d.country not found",
    );
    assert_eq!(err, "eas-relay: alias nobody@d.country not found\n");
    s.fails(
        &["alias", "remove", "bad/name@d.country"],
        "alias: `bad/name` is not a valid alias",
    );

    // Import is all or nothing: a bad line 2 leaves no trace.
    let broken = dir.join("broken.tsv");
    std::fs::write(
        &broken,
        "1fwd@alias1.country\td1.u1@dest.test\nnot-an-alias-line\n",
    )
    .unwrap();
    s.fails(&["alias", "import", broken.to_str().unwrap()], "line 2:");
    s.fails(
        &["alias", "list", "alias1.country"],
        "domain alias1.country not found",
    );
    let table = alias_table(dir);
    assert_eq!(
        s.ok(&["alias", "import", table.to_str().unwrap()]),
        "imported 2200 aliases\n"
    );
    assert_eq!(
        s.json(&["alias", "import", table.to_str().unwrap()]),
        serde_json::json!({ "imported": 2200 }),
        "importing again replaces"
    );

    // Removing a domain removes its aliases.
    s.ok(&["domain", "add", "tmp.country"]);
    s.ok(&["alias", "add", "x@tmp.country", "u@dest.test"]);
    assert_eq!(
        s.ok(&["domain", "remove", "tmp.country"]),
        "removed domain tmp.country and its aliases\n"
    );
    s.fails(
        &["alias", "list", "tmp.country"],
        "domain tmp.country not found",
    );
    s.fails(
        &["domain", "remove", "tmp.country"],
        "domain tmp.country not found",
    );
    assert_eq!(
        s.ok(&["alias", "remove", "multi@d.country"]),
        "removed multi@d.country\n"
    );
    assert_eq!(s.json(&["alias", "remove", "*@d.country"]), Value::Null);

    // What is left.
    let domains = s.ok(&["domain", "list"]);
    assert_eq!(domains.lines().count(), 1 + 1002, "{domains}");
    assert!(
        domains.contains(&format!(
            "\n{:<40} yes     static      1200\n",
            "alias1.country"
        )),
        "{domains}"
    );
    assert!(
        domains.contains(&format!("\n{:<40} yes     static         1\n", "d.country")),
        "{domains}"
    );
    assert_eq!(s.json(&["domain", "list"]).as_array().unwrap().len(), 1002);
    assert_eq!(
        s.ok(&["alias", "list", "d.country"]),
        "hello@d.country -> u@dest.test\n"
    );
    let aliases = s.ok(&["alias", "list", "alias1.country"]);
    assert_eq!(aliases.lines().count(), 1200);
    assert!(aliases.contains("\n1200fwd@alias1.country -> d1.u1200@dest.test\n"));
    assert_eq!(s.ok(&["alias", "list"]).lines().count(), 2201);
    let listed = s.json(&["alias", "list", "d.country"]);
    assert_eq!(listed[0]["domain"], "d.country");
    assert_eq!(listed[0]["alias"]["alias"], "hello");
    assert_eq!(listed[0]["alias"]["forward"], "u@dest.test");
    assert_eq!(s.ok(&["log", "d.country"]), "");
    assert_eq!(s.json(&["log", "d.country"]), serde_json::json!([]));
    assert_eq!(
        s.ok(&["queue", "list"]),
        "ID                    SIZE ARRIVED              SENDER                           PENDING\n0 message(s)\n"
    );
}

#[test]
fn domain_and_alias_commands_print_the_same_offline_and_online() {
    // One store managed offline, another through a running node.
    let offline = quiet_files();
    let online = quiet_files();
    let _node = online.start();
    let mut a = Session::new(&offline);
    manage_domains_and_aliases(&mut a);
    let mut b = Session::new(&online);
    manage_domains_and_aliases(&mut b);
    assert!(
        !offline.data_dir.join("admin.key").exists(),
        "offline management needs no node and no key"
    );
    assert_same(
        "offline vs online",
        &a.transcript,
        &b.transcript,
        without_times,
    );
}

/// Sends `subjects` to hello@d.country through the node's SMTP port.
fn send(files: &NodeFiles, subjects: &[&str]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = common::smtp::Client::connect(files.smtp).await;
        c.ehlo("client.test").await;
        for s in subjects {
            let m = common::smtp::message("sender@example.org", "hello@d.country", s, "body");
            c.send_mail("sender@example.org", &["hello@d.country"], &m)
                .await;
        }
        c.quit().await;
    });
}

/// Polls `queue list --json` until `done` holds (15 s at most).
fn wait_queue(files: &NodeFiles, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = files.cli(&["--json", "queue", "list"]);
        let queue: Value = serde_json::from_str(out.ok()).unwrap();
        let queue = queue.as_array().unwrap().clone();
        if done(&queue) {
            return queue;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {queue:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn attempts(entry: &Value) -> u64 {
    entry["recipients"][0]["attempts"].as_u64().unwrap()
}

/// The errors of queue commands for a message that is gone.
fn queue_errors(files: &NodeFiles, gone: &str) -> Vec<(Vec<String>, CliOutput)> {
    let mut s = Session::new(files);
    s.fails(
        &["queue", "show", gone],
        &format!("message {gone} not found"),
    );
    s.fails(
        &["queue", "drop", gone],
        &format!("message {gone} not found"),
    );
    s.fails(
        &["queue", "retry", gone],
        &format!("message {gone} not found"),
    );
    s.fails(&["queue", "retry"], "id: give a queue id, or --all");
    s.fails(
        &["queue", "show", "nothex"],
        "id: `nothex` is not a queue id (16 hex digits)",
    );
    s.fails(
        &["log", "nowhere.country"],
        "domain nowhere.country not found",
    );
    s.transcript
}

#[test]
fn queue_and_log_commands_offline_and_online() {
    let files = quiet_files();
    let mut s = Session::new(&files);
    s.ok(&["domain", "add", "d.country"]);
    s.ok(&["alias", "add", "hello@d.country", "u@dest.test"]);
    let table = alias_table(files.dir.path());
    s.ok(&["alias", "import", table.to_str().unwrap()]);
    let offline = snapshot(&files, &[]);

    // Same state, node running: same output.
    let mut node = files.start();
    assert!(
        files.data_dir.join("admin.key").exists(),
        "the node generated its admin key"
    );
    let online = snapshot(&files, &[]);
    assert_same("same state", &offline, &online, exact);

    // Three messages; the destination is down, so each is deferred once
    // and then waits an hour.
    send(&files, &["q one", "q two", "q three"]);
    let queue = wait_queue(&files, "first attempts", |q| {
        q.len() == 3 && q.iter().all(|e| attempts(e) == 1)
    });
    let ids: Vec<String> = queue
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    let subjects: Vec<&str> = queue
        .iter()
        .map(|e| e["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, ["q one", "q two", "q three"]);
    let r = &queue[0]["recipients"][0];
    assert_eq!(r["address"], "u@dest.test");
    assert_eq!(r["alias"], "hello@d.country");
    assert_eq!(r["status"], "pending");
    assert!(
        r["last_reply"].as_str().unwrap().starts_with("451 4.4.1 "),
        "{r}"
    );

    let list = s.ok(&["queue", "list"]);
    assert!(list.ends_with("3 message(s)\n"), "{list}");
    for id in &ids {
        assert!(
            list.contains(&format!("\n{id} ")) && list.contains("sender@example.org"),
            "{list}"
        );
    }
    let show = s.ok(&["queue", "show", &ids[0].to_lowercase()]);
    assert!(
        show.starts_with(&format!("id:         {}\n", ids[0])),
        "{show}"
    );
    assert!(show.contains("subject:    q one\n"), "{show}");
    assert!(show.contains("message-id: <q.one@client.test>\n"), "{show}");
    assert!(
        show.contains(
            "recipient:  u@dest.test (alias hello@d.country) pending after 1 attempt(s), next "
        ),
        "{show}"
    );
    let log = s.ok(&["log", "d.country"]);
    assert_eq!(log.lines().count(), 3, "{log}");
    for line in log.lines() {
        assert!(
            line.contains(" hello@d.country -> u@dest.test SOFT-BOUNCE: 451 4.4.1 connection to "),
            "{line}"
        );
    }

    // Changes through the running node.
    assert_eq!(s.ok(&["queue", "retry", &ids[0]]), "1 message(s) due now\n");
    wait_queue(&files, "the retry", |q| attempts(&q[0]) == 2);
    assert_eq!(
        s.ok(&["queue", "drop", &ids[2]]),
        format!("dropped {}\n", ids[2])
    );
    assert!(
        !files.data_dir.join("spool").join(&ids[2]).exists(),
        "a dropped message's body is deleted"
    );
    let errors_online = queue_errors(&files, &ids[2]);
    let shows: Vec<Vec<String>> = ids[..2]
        .iter()
        .flat_map(|id| {
            [
                vec!["queue".to_string(), "show".into(), id.clone()],
                vec![
                    "--json".to_string(),
                    "queue".into(),
                    "show".into(),
                    id.clone(),
                ],
            ]
        })
        .collect();
    let online = snapshot(&files, &shows);
    let status = node.terminate(Duration::from_secs(20));
    assert!(status.success(), "clean shutdown: {status}");

    // The same state offline prints the same, errors included.
    let offline = snapshot(&files, &shows);
    assert_same("queue, same state", &online, &offline, exact);
    assert_same(
        "queue errors",
        &errors_online,
        &queue_errors(&files, &ids[2]),
        exact,
    );

    // Changes offline.
    assert_eq!(s.ok(&["queue", "retry", "--all"]), "2 message(s) due now\n");
    let queue = s.json(&["queue", "list"]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    for e in queue.as_array().unwrap() {
        let next = e["recipients"][0]["next_attempt"].as_u64().unwrap();
        assert!(next <= now, "retried messages are due now: {e}");
    }
    assert_eq!(
        s.ok(&["queue", "drop", &ids[1]]),
        format!("dropped {}\n", ids[1])
    );
    assert!(!files.data_dir.join("spool").join(&ids[1]).exists());
    assert!(files.data_dir.join("spool").join(&ids[0]).exists());
    assert!(s.ok(&["queue", "list"]).ends_with("\n1 message(s)\n"));

    // The node picks up the offline retry at start; with the destination
    // up, `queue retry --all` through the node delivers.
    let mut node = files.start();
    let queue = wait_queue(&files, "the offline retry", |q| attempts(&q[0]) == 3);
    assert_eq!(queue.len(), 1);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sink = rt.block_on(TestSink::with(SinkOptions {
        bind: Some(files.dest),
        ..SinkOptions::default()
    }));
    assert_eq!(s.ok(&["queue", "retry", "--all"]), "1 message(s) due now\n");
    wait_queue(&files, "delivery", |q| q.is_empty());
    let got = rt.block_on(sink.wait_for(1, Duration::from_secs(10)));
    assert!(
        got[0].text().contains("Subject: q one\r\n"),
        "{}",
        got[0].text()
    );
    let log = s.ok(&["log", "d.country", "--limit", "2"]);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(
        lines[0].contains(" hello@d.country -> u@dest.test DELIVERED: 250 2.0.0 queued"),
        "newest first: {log}"
    );
    assert!(lines[1].contains(" SOFT-BOUNCE: 451 4.4.1 "), "{log}");
    // 3 + 1 + 1 attempts failed, then one delivery.
    assert_eq!(s.ok(&["log", "d.country"]).lines().count(), 6);
    assert_eq!(
        s.json(&["log", "d.country", "hello"])
            .as_array()
            .unwrap()
            .len(),
        6
    );

    // A node holds the store: a CLI with a wrong key, or one that cannot
    // reach the admin API, says so instead of touching the store.
    let out = files.cli_env(
        &["domain", "list"],
        &[(
            "EAS_RELAY_HTTP__ADMIN_KEYS",
            "[\"wrong-key-0123456789abcdef\"]",
        )],
    );
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stderr.contains("refused the key"), "{}", out.stderr);
    let elsewhere = free_addr().to_string();
    let out = files.cli_env(
        &["domain", "list"],
        &[("EAS_RELAY_HTTP__LISTEN", elsewhere.as_str())],
    );
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(
        out.stderr.contains("in use by a running node") && out.stderr.contains(&elsewhere),
        "{}",
        out.stderr
    );
    let status = node.terminate(Duration::from_secs(20));
    assert!(status.success(), "clean shutdown: {status}");
    drop(sink);
}

#[test]
fn output_to_a_closed_pipe_is_not_a_crash() {
    let files = quiet_files();
    files.cli(&["domain", "add", "d.country"]).ok();
    let mut cmd = files.command();
    cmd.args(["domain", "list"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    drop(child.stdout.take()); // like `eas-relay domain list | head -0`
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

/// A reload signal (logrotate's postrotate, `systemctl reload`, a closed
/// terminal) must not stop a mail server: SIGHUP's default action would.
#[test]
fn a_hangup_signal_does_not_stop_the_relay() {
    let files = NodeFiles::new(NodeOptions::default());
    let mut node = files.start();
    let sent = std::process::Command::new("kill")
        .args(["-HUP", &node.pid().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !files.log().contains("SIGHUP ignored") {
        assert!(
            std::time::Instant::now() < deadline,
            "no SIGHUP line:\n{}",
            files.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Still serving, and it still stops cleanly on SIGTERM.
    assert_eq!(files.cli(&["domain", "list"]).code, 0);
    assert!(node.terminate(Duration::from_secs(20)).success());
}
