//! The real `prismctl` binary against a real `prism-proxy`: namespace
//! management (list, get, apply with dry run and expected version, delete,
//! explain), backend status, pattern list, reload, completion, the config
//! file and its precedence, `-o yaml`, and the errors' hints.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use prism_tests::{ProxyProcess, binary, free_addr, wait_until};

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Fails with both streams unless `o` exited 0; returns stdout.
#[track_caller]
fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

/// Fails unless `o` exited 1; returns stderr.
#[track_caller]
fn fails(o: &Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(1),
        "stdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
    stderr(o)
}

/// A name no other test run uses.
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// prismctl with its own config directory and no `PRISM_*` variables
/// from the caller.
struct Ctl {
    config_dir: PathBuf,
    addr: Option<String>,
}

impl Ctl {
    fn new(config_dir: &Path, proxy: &ProxyProcess) -> Self {
        Ctl {
            config_dir: config_dir.to_path_buf(),
            addr: Some(proxy.grpc_url()),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(binary("prismctl"));
        if let Some(addr) = &self.addr {
            cmd.args(["--addr", addr]);
        }
        cmd.args(args)
            .env("PRISM_CONFIG_DIR", &self.config_dir)
            .env("PRISM_NO_PROGRESS", "")
            .env_remove("PRISM_ADDR")
            .env_remove("PRISM_TOKEN")
            .env_remove("PRISM_CA_FILE")
            .env_remove("PRISM_CERT_FILE")
            .env_remove("PRISM_KEY_FILE")
            .env_remove("PRISM_TLS_SERVER_NAME");
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("running prismctl")
    }

    fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.command(args)
            .envs(env.iter().copied())
            .output()
            .expect("running prismctl")
    }

    fn run_stdin(&self, args: &[&str], input: &str) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running prismctl");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().expect("waiting for prismctl")
    }
}

/// A proxy whose namespaces live in `<dir>/namespaces` (the directory
/// config store), with `extra` namespace files.
fn proxy_with_store(dir: &Path, extra: &[(&str, String)]) -> ProxyProcess {
    let ns_dir = dir.join("namespaces");
    std::fs::create_dir_all(&ns_dir).unwrap();
    for (name, yaml) in extra {
        std::fs::write(ns_dir.join(format!("{name}.yaml")), yaml).unwrap();
    }
    let config = dir.join("prism.yaml");
    std::fs::write(
        &config,
        format!(
            "listeners:\n  grpc: {}\n  admin: {}\nnamespaces:\n  dir: namespaces\n\
             audit:\n  file:\n    fsync_interval_ms: 1000\n",
            free_addr(),
            free_addr()
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    ProxyProcess::start_with(&dir.join("data"), &["--config", &config])
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

/// The version `namespace get` reports.
fn version_of(ctl: &Ctl, name: &str) -> u64 {
    let out = ok(&ctl.run(&["-o", "json", "namespace", "get", name]));
    json(&out)["version"].as_u64().expect("a version")
}

#[test]
fn namespace_apply_get_list_dry_run_delete_and_explain() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = proxy_with_store(dir.path(), &[]);
    let ctl = Ctl::new(&dir.path().join("cli"), &proxy);
    let name = unique("e2e-apply");
    let v1 = format!("name: {name}\ndal: keyvalue\nbackend:\n  kind: memstore\n");
    let file = dir.path().join("ns.yaml");
    std::fs::write(&file, &v1).unwrap();
    let file = file.display().to_string();

    // apply creates the namespace, which then serves kv put/get.
    let out = ok(&ctl.run(&["namespace", "apply", "-f", &file]));
    assert!(
        out.starts_with(&format!("namespace {name} created (version ")),
        "{out}"
    );
    let first = version_of(&ctl, &name);
    assert!(first > 0);
    let record = ["--namespace", name.as_str(), "--id", "r1"];
    ok(&ctl.run(
        &[
            &["kv", "put"][..],
            &record,
            &["--key", "k", "--value", "v1"],
        ]
        .concat(),
    ));
    let out = ok(&ctl.run(&[&["-o", "json", "kv", "get"][..], &record].concat()));
    assert_eq!(json(&out)["items"][0]["value"], "v1", "{out}");

    // list and get show it; get -o yaml is the YAML as applied.
    let out = ok(&ctl.run(&["namespace", "list"]));
    let row = out
        .lines()
        .find(|l| l.starts_with(&name))
        .unwrap_or_else(|| panic!("{name} listed:\n{out}"));
    assert!(row.contains("memstore") && row.contains("ok"), "{row}");
    let out = ok(&ctl.run(&["-o", "json", "namespace", "list"]));
    assert!(
        json(&out)["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["name"] == name.as_str()),
        "{out}"
    );
    let out = ok(&ctl.run(&["namespace", "get", &name]));
    assert!(out.contains(&format!("Name:        {name}")), "{out}");
    assert!(out.contains("Backend:     memstore (embedded)"), "{out}");
    assert!(out.contains("Health:      ok"), "{out}");
    let applied = ok(&ctl.run(&["namespace", "get", &name, "-o", "yaml"]));
    assert!(applied.contains(&format!("name: {name}")), "{applied}");
    assert!(applied.contains("kind: memstore"), "{applied}");

    // Edit what get printed and apply it through stdin: updated, a new
    // version, and the diff shows the change.
    let edited = format!("{applied}description: orders by customer\n");
    let out = ok(&ctl.run_stdin(&["namespace", "apply", "-f", "-"], &edited));
    let second = version_of(&ctl, &name);
    assert!(second > first, "{second} > {first}");
    assert!(
        out.starts_with(&format!("namespace {name} updated (version {second})")),
        "{out}"
    );
    assert!(out.contains("+description: orders by customer"), "{out}");
    // The same YAML again changes nothing.
    let out = ok(&ctl.run_stdin(&["namespace", "apply", "-f", "-"], &edited));
    assert!(out.contains("unchanged"), "{out}");
    assert_eq!(version_of(&ctl, &name), second);
    // JSON and YAML forms of apply carry the same fields.
    let out = ok(&ctl.run_stdin(
        &["-o", "json", "namespace", "apply", "-f", "-", "--dry-run"],
        &edited,
    ));
    let result = json(&out);
    assert_eq!(result["result"], "unchanged", "{out}");
    assert_eq!(result["dry_run"], true, "{out}");
    let out = ok(&ctl.run_stdin(
        &["-o", "yaml", "namespace", "apply", "-f", "-", "--dry-run"],
        &edited,
    ));
    assert!(out.contains("result: unchanged"), "{out}");

    // A stale --expected-version is refused, with what to do next.
    let stale = format!("{edited}# stale edit\n");
    let err = fails(&ctl.run_stdin(
        &[
            "namespace",
            "apply",
            "-f",
            "-",
            "--expected-version",
            &first.to_string(),
        ],
        &stale.replace("orders by customer", "stale"),
    ));
    assert!(err.contains("FAILED_PRECONDITION"), "{err}");
    assert!(err.contains("hint:"), "{err}");

    // A dry run with an error shows the field error, exits 1, and changes
    // nothing.
    let broken = edited.replace("kind: memstore", "kind: nosuch");
    let out = ctl.run_stdin(&["namespace", "apply", "--dry-run", "-f", "-"], &broken);
    let err = fails(&out);
    let text = stdout(&out);
    assert!(text.contains("backend.kind"), "{text}");
    assert!(text.contains("nosuch"), "{text}");
    assert!(text.contains("nothing was changed"), "{text}");
    assert!(err.contains("error:"), "{err}");
    assert_eq!(version_of(&ctl, &name), second);
    let out = ok(&ctl.run(&["-o", "json", "namespace", "get", &name]));
    assert_eq!(json(&out)["status"]["backend"], "memstore", "{out}");
    // Without --dry-run the invalid change is refused, one field per line.
    let err = fails(&ctl.run_stdin(&["namespace", "apply", "-f", "-"], &broken));
    assert!(err.contains("INVALID_ARGUMENT"), "{err}");
    assert!(err.contains("backend.kind"), "{err}");
    assert_eq!(version_of(&ctl, &name), second);
    let out = ok(&ctl.run(&[&["-o", "json", "kv", "get"][..], &record].concat()));
    assert_eq!(json(&out)["items"][0]["value"], "v1", "still served: {out}");

    // explain says the YAML names the backend.
    let out = ok(&ctl.run(&["namespace", "explain", &name]));
    assert!(
        out.contains("memstore") && out.contains("explicit backend"),
        "{out}"
    );

    // delete drains and removes it: kv calls then get NOT_FOUND.
    let err = fails(&ctl.run(&["namespace", "delete", &name, "--expected-version", "1"]));
    assert!(err.contains("FAILED_PRECONDITION"), "{err}");
    let out = ok(&ctl.run(&["namespace", "delete", &name]));
    assert!(out.contains(&format!("namespace {name} deleted")), "{out}");
    assert!(out.contains("drained"), "{out}");
    let err = fails(&ctl.run(&[&["kv", "get"][..], &record].concat()));
    assert!(err.contains("NOT_FOUND"), "{err}");
    let err = fails(&ctl.run(&["namespace", "get", &name]));
    assert!(err.contains("NOT_FOUND"), "{err}");
    assert!(err.contains("prismctl namespace list"), "{err}");
    let out = ok(&ctl.run(&["namespace", "list"]));
    assert!(!out.contains(&name), "{out}");

    // The audit log has every change, with the version it made.
    let out = ok(&ctl.run(&[
        "-o",
        "json",
        "audit",
        "tail",
        "--namespace",
        &name,
        "-n",
        "100",
    ]));
    let records: Vec<serde_json::Value> = out.lines().map(json).collect();
    assert!(
        records
            .iter()
            .any(|r| r["method"] == "ApplyNamespace" && r["config_version"] == second),
        "{out}"
    );
    assert!(
        records.iter().any(|r| r["method"] == "DeleteNamespace"),
        "{out}"
    );
    let out = ok(&ctl.run(&["audit", "tail", "--namespace", &name, "-n", "100"]));
    assert!(out.contains(&format!("version {second}")), "{out}");
}

#[test]
fn reload_applies_files_changed_in_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = proxy_with_store(dir.path(), &[]);
    let ctl = Ctl::new(&dir.path().join("cli"), &proxy);
    let name = unique("e2e-reload");
    let ns_dir = dir.path().join("namespaces");

    // A file written behind the proxy's back is served after `reload`
    // (the proxy may also notice it by itself, so the reload may find
    // nothing left to do).
    std::fs::write(
        ns_dir.join(format!("{name}.yaml")),
        format!("name: {name}\ndal: keyvalue\nbackend:\n  kind: memstore\n"),
    )
    .unwrap();
    let out = ok(&ctl.run(&["-o", "json", "reload"]));
    let reload = json(&out);
    assert!(reload["rejected"].as_array().unwrap().is_empty(), "{out}");
    let record = ["--namespace", name.as_str(), "--id", "r"];
    ok(&ctl.run(&[&["kv", "put"][..], &record, &["--key", "k", "--value", "v"]].concat()));

    // A broken change is rejected: reload exits 1 and says why, and the
    // previous version keeps serving.
    std::fs::write(
        ns_dir.join(format!("{name}.yaml")),
        format!("name: {name}\ndal: keyvalue\nbackend:\n  kind: nosuch\n"),
    )
    .unwrap();
    let out = ctl.run(&["reload"]);
    if out.status.success() {
        // The proxy's own watcher got there first and rejected it already;
        // either way the old version serves.
        assert!(!stdout(&out).contains("applied"), "{}", stdout(&out));
    } else {
        let err = fails(&out);
        assert!(stdout(&out).contains("rejected"), "{}", stdout(&out));
        assert!(stdout(&out).contains(&name), "{}", stdout(&out));
        assert!(err.contains("rejected"), "{err}");
    }
    let out = ok(&ctl.run(&[&["-o", "json", "kv", "get"][..], &record].concat()));
    assert_eq!(json(&out)["items"][0]["value"], "v", "{out}");
}

#[test]
fn backend_status_and_pattern_list() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = unique("e2e-embedded");
    let process = unique("e2e-process");
    let proxy = proxy_with_store(
        dir.path(),
        &[
            (
                embedded.as_str(),
                format!("name: {embedded}\ndal: keyvalue\nbackend:\n  kind: memstore\n"),
            ),
            (
                process.as_str(),
                format!(
                    "name: {process}\ndal: keyvalue\nbackend:\n  kind: memstore\n  mode: process\n"
                ),
            ),
        ],
    );
    let ctl = Ctl::new(&dir.path().join("cli"), &proxy);

    let out = ok(&ctl.run(&["backend", "status"]));
    assert!(out.starts_with("NAMESPACE"), "{out}");
    let row = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in:\n{out}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        row(&embedded)[1..5],
        ["keyvalue", "memstore", "embedded", "yes"]
    );
    assert_eq!(
        row(&process)[1..5],
        ["keyvalue", "memstore", "process", "yes"]
    );
    let out = ok(&ctl.run(&["-o", "json", "backend", "status"]));
    let status = json(&out);
    let entry = status["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["namespace"] == process.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(entry["healthy"], true);
    assert_eq!(entry["mode"], "process");

    // The pattern serving `process` is a child of the proxy with that pid.
    let patterns = || json(&ok(&ctl.run(&["-o", "json", "pattern", "list"])));
    wait_until("the pattern process serves", || {
        patterns()["patterns"][0]["state"] == "serving"
    });
    let list = patterns();
    let all = list["patterns"].as_array().unwrap();
    assert_eq!(all.len(), 1, "only the process namespace: {list}");
    assert_eq!(all[0]["namespace"], process.as_str());
    assert_eq!(all[0]["restarts"], 0);
    let pid = all[0]["pid"].as_u64().unwrap();
    let parent = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let ppid: u32 = parent
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(ppid, proxy.child.id(), "the proxy started the pattern");
    let out = ok(&ctl.run(&["pattern", "list"]));
    assert!(out.starts_with("NAMESPACE"), "{out}");
    assert!(
        out.contains(&pid.to_string()) && out.contains("serving"),
        "{out}"
    );
    assert!(!out.contains(&embedded), "{out}");
    let out = ok(&ctl.run(&["-o", "yaml", "pattern", "list"]));
    assert!(out.contains(&format!("pid: {pid}")), "{out}");
}

#[test]
fn completion_scripts_for_each_shell() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = Ctl {
        config_dir: dir.path().to_path_buf(),
        addr: None,
    };
    let bash = ok(&ctl.run(&["completion", "bash"]));
    assert!(
        bash.contains("complete -F") && bash.contains("prismctl"),
        "{bash}"
    );
    assert!(bash.contains("namespace") && bash.contains("apply"), "bash");
    let zsh = ok(&ctl.run(&["completion", "zsh"]));
    assert!(zsh.starts_with("#compdef prismctl"), "{zsh}");
    let fish = ok(&ctl.run(&["completion", "fish"]));
    assert!(fish.contains("complete -c prismctl"), "{fish}");
    assert!(fish.contains("backend") && fish.contains("pattern"), "fish");
    let out = ctl.run(&["completion", "tcsh"]);
    assert_eq!(out.status.code(), Some(2), "usage error");
}

#[test]
fn config_file_gives_the_address_below_environment_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = ProxyProcess::start(&dir.path().join("data"));
    let config_dir = dir.path().join("cli");
    std::fs::create_dir_all(&config_dir).unwrap();
    let config = config_dir.join("config.yaml");
    let ctl = Ctl {
        config_dir: config_dir.clone(),
        addr: None,
    };
    let dead = format!("127.0.0.1:{}", free_addr().port());

    // The file's address is used when no flag or variable is given.
    std::fs::write(&config, format!("address: {}\n", proxy.grpc_url())).unwrap();
    let out = ok(&ctl.run(&["health"]));
    assert!(out.contains("SERVING"), "{out}");
    let out = ok(&ctl.run(&["-o", "yaml", "whoami"]));
    assert!(out.contains("subject: anonymous"), "{out}");

    // PRISM_ADDR beats the file; the error says where the address came from.
    let err = fails(&ctl.run_env(&["health"], &[("PRISM_ADDR", &dead)]));
    assert!(err.contains(&dead), "{err}");
    assert!(err.contains("--addr or PRISM_ADDR"), "{err}");
    // --addr beats PRISM_ADDR.
    let out = ok(&ctl.run_env(
        &["--addr", &proxy.grpc_url(), "health"],
        &[("PRISM_ADDR", &dead)],
    ));
    assert!(out.contains("SERVING"), "{out}");

    // A file pointing at nothing: the hint names the file.
    std::fs::write(&config, format!("address: {dead}\n")).unwrap();
    let err = fails(&ctl.run(&["health"]));
    assert!(
        err.contains(&format!("is prism-proxy running at http://{dead}")),
        "{err}"
    );
    assert!(err.contains(&config.display().to_string()), "{err}");

    // Strict parsing: an unknown field names the file and the field.
    std::fs::write(&config, format!("adress: {}\n", proxy.grpc_url())).unwrap();
    let err = fails(&ctl.run(&["health"]));
    assert!(err.contains(&config.display().to_string()), "{err}");
    assert!(err.contains("adress"), "{err}");
    std::fs::write(&config, "tls:\n  ca: ca.pem\n").unwrap();
    let err = fails(&ctl.run(&["--addr", &proxy.grpc_url(), "health"]));
    assert!(err.contains("field 'tls"), "{err}");

    // TLS settings from the file apply: a CA file with a plain-text
    // address is refused before connecting.
    std::fs::write(&config, "tls:\n  ca_file: ca.pem\n").unwrap();
    let err = fails(&ctl.run(&["--addr", &proxy.grpc_url(), "health"]));
    assert!(err.contains("https://"), "{err}");

    // The token from the file is sent: this proxy has no authentication,
    // so it is accepted and ignored; a token with a newline cannot be
    // sent at all, which shows it was read.
    std::fs::write(&config, "token: \"a\\u0001b\"\n").unwrap();
    let err = fails(&ctl.run(&["--addr", &proxy.grpc_url(), "whoami"]));
    assert!(err.contains("token"), "{err}");
}

#[test]
fn yaml_and_json_output_of_the_older_commands() {
    let dir = tempfile::tempdir().unwrap();
    let ns = unique("e2e-yaml");
    let yaml =
        format!("name: {ns}\ndal: keyvalue\nbackend:\n  kind: memstore\naudit:\n  policy: block\n");
    let proxy = proxy_with_store(dir.path(), &[(ns.as_str(), yaml)]);
    let ctl = Ctl::new(&dir.path().join("cli"), &proxy);
    let record = ["--namespace", ns.as_str(), "--id", "r"];
    ok(&ctl.run(
        &[
            &["kv", "put"][..],
            &record,
            &["--key", "k", "--value", "hello"],
        ]
        .concat(),
    ));
    let out = ok(&ctl.run(&[&["-o", "yaml", "kv", "get"][..], &record].concat()));
    assert!(
        out.contains("key: k") && out.contains("value: hello"),
        "{out}"
    );
    let out = ok(&ctl.run(&["-o", "yaml", "health"]));
    assert!(out.contains("serving: true"), "{out}");
    let out = ok(&ctl.run(&["-o", "yaml", "namespace", "explain", &ns]));
    assert!(out.contains("backend: memstore"), "{out}");
    let out = ok(&ctl.run(&["-o", "yaml", "audit", "tail", "-n", "1"]));
    assert!(out.starts_with("---\n"), "{out}");
    assert!(out.contains("method: Get"), "the last call: {out}");
    assert_eq!(out.matches("---\n").count(), 1, "{out}");
}

#[test]
fn permission_denied_says_which_permission_and_who_grants_it() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = prism_tests::oidc::TestIssuer::start();
    let name = unique("e2e-guarded");
    let ns_dir = dir.path().join("namespaces");
    std::fs::create_dir_all(&ns_dir).unwrap();
    std::fs::write(
        ns_dir.join(format!("{name}.yaml")),
        format!(
            "name: {name}\ndal: keyvalue\nbackend:\n  kind: memstore\n\
             policy:\n  read: [\"*\"]\n  admin: [\"user:bob\"]\n"
        ),
    )
    .unwrap();
    let config = dir.path().join("prism.yaml");
    std::fs::write(
        &config,
        format!(
            "listeners:\n  grpc: {}\n  admin: {}\nnamespaces:\n  dir: namespaces\n\
             auth:\n  enabled: true\n  jwt:\n    issuer: {}\n    audience: {}\n    \
             jwks_url: {}\n",
            free_addr(),
            free_addr(),
            issuer.url(),
            prism_tests::oidc::AUDIENCE,
            issuer.jwks_url()
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let proxy = ProxyProcess::start_with(&dir.path().join("data"), &["--config", &config]);
    let config_dir = dir.path().join("cli");
    std::fs::create_dir_all(&config_dir).unwrap();
    let ctl = Ctl::new(&config_dir, &proxy);

    // The token comes from the config file.
    let alice = issuer.sign(&issuer.claims("alice"));
    std::fs::write(config_dir.join("config.yaml"), format!("token: {alice}\n")).unwrap();
    let out = ok(&ctl.run(&["-o", "json", "whoami"]));
    assert_eq!(json(&out)["subject"], "alice", "{out}");

    // alice may read but not administer the namespace.
    let err = fails(&ctl.run(&["namespace", "get", &name]));
    assert!(err.contains("PERMISSION_DENIED"), "{err}");
    assert!(
        err.contains("hint: you lack the 'admin' permission"),
        "{err}"
    );
    assert!(
        err.contains("policy.admin") && err.contains("auth.admins"),
        "{err}"
    );
    assert!(err.contains("prismctl whoami"), "{err}");

    // bob (by --token, which beats the file) administers it.
    let bob = issuer.sign(&issuer.claims("bob"));
    let out = ok(&ctl.run(&["--token", &bob, "namespace", "get", &name]));
    assert!(out.contains(&format!("Name:        {name}")), "{out}");
    assert!(out.contains("admin: user:bob"), "{out}");

    // Without any token: UNAUTHENTICATED, and how to log in.
    std::fs::remove_file(config_dir.join("config.yaml")).unwrap();
    let err = fails(&ctl.run(&["namespace", "list"]));
    assert!(err.contains("UNAUTHENTICATED"), "{err}");
    assert!(err.contains("prismctl login"), "{err}");
}
